//! Scripted engine tests: data, ACKs, windows, SACK and segment acceptance
//! (RFC 9293 §3.8 and §3.10.7.4, RFC 5681 §4.2, RFC 2018, RFC 6675,
//! RFC 1122 §4.2.3.3–4, RFC 896, RFC 7323, RFC 5961).

mod common;

use common::script::*;
use xdptcp::tcp::{Config, Event, State};
use xdptcp::time::Duration;
use xdptcp::wire::TcpFlags;

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn delayed_ack_waits_for_timer_on_one_segment() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).data(&bytes(100, 1)));
    s.expect_nothing();
    let fired = s.advance(Duration::from_millis(39));
    assert!(fired.is_empty());
    let fired = s.advance(Duration::from_millis(2));
    assert_eq!(fired.len(), 1, "delayed ACK after 40 ms");
    assert_eq!(fired[0].1.ack, P1 + 100);
}

#[test]
fn delayed_ack_timer_is_configurable() {
    let mut s = Script::established(Config { delayed_ack: Duration::from_millis(5), ..Config::default() });
    s.inject(Seg::ack(P1, ISS1).data(&bytes(10, 1)));
    let fired = s.advance(Duration::from_millis(6));
    assert_eq!(fired.len(), 1);
}

#[test]
fn every_second_full_segment_is_acked_at_once() {
    let mut s = Script::established(Script::config());
    let mss = s.conn.mss();
    s.inject(Seg::ack(P1, ISS1).data(&bytes(mss, 1)));
    s.expect_nothing();
    s.inject(Seg::ack(P1 + mss as u32, ISS1).data(&bytes(mss, 2)));
    let ack = s.expect();
    assert_eq!(ack.ack, P1 + 2 * mss as u32);
    s.expect_nothing();
}

#[test]
fn batch_of_segments_gets_one_coalesced_ack() {
    let mut s = Script::established(Script::config());
    let mss = s.conn.mss() as u32;
    for k in 0..10 {
        s.inject(Seg::ack(P1 + k * mss, ISS1).data(&bytes(mss as usize, k as u8)));
    }
    let acks = s.drain();
    assert_eq!(acks.len(), 1, "one ACK for the whole batch");
    assert_eq!(acks[0].ack, P1 + 10 * mss);
}

#[test]
fn out_of_order_data_is_sacked_at_once_and_reassembled() {
    let mut s = Script::established(Script::config());
    let data = bytes(3000, 7);
    // Segment 2 and 3 arrive before 1.
    s.inject(Seg::ack(P1 + 2000, ISS1).data(&data[2000..3000]));
    let a = s.expect();
    assert_eq!(a.ack, P1, "duplicate ACK at once for out-of-order data");
    assert_eq!(a.options.sack_blocks.as_slice().len(), 1);
    assert_eq!(a.options.sack_blocks.as_slice()[0].0 .0, P1 + 2000);
    s.inject(Seg::ack(P1 + 1000, ISS1).data(&data[1000..1500]));
    let a = s.expect();
    let blocks = a.options.sack_blocks.as_slice();
    // RFC 2018 §4: the first block reports the most recent arrival.
    assert_eq!((blocks[0].0 .0, blocks[0].1 .0), (P1 + 1000, P1 + 1500));
    assert_eq!(blocks.len(), 2);
    assert!(s.read_all().is_empty(), "nothing in order yet");
    s.inject(Seg::ack(P1 + 1500, ISS1).data(&data[1500..2000]));
    s.inject(Seg::ack(P1, ISS1).data(&data[..1000]));
    // Filling the gap is ACKed at once (RFC 5681 §4.2).
    let a = s.drain();
    assert_eq!(a.last().unwrap().ack, P1 + 3000);
    assert!(a.last().unwrap().options.sack_blocks.is_empty());
    assert_eq!(s.read_all(), data);
}

#[test]
fn duplicate_and_overlapping_segments_are_trimmed() {
    let mut s = Script::established(Script::config());
    let data = bytes(300, 3);
    s.inject(Seg::ack(P1, ISS1).data(&data[..200]));
    // Overlaps 100 bytes already received.
    s.inject(Seg::ack(P1 + 100, ISS1).data(&data[100..300]));
    // A pure duplicate.
    s.inject(Seg::ack(P1, ISS1).data(&data[..100]));
    assert!(s.drain().iter().any(|a| a.ack == P1 + 300));
    assert_eq!(s.read_all(), data);
    assert!(s.conn.stats().dup_segments >= 1);
}

#[test]
fn segment_outside_window_is_acked_and_dropped() {
    let mut s = Script::established(Config { recv_buffer: 4096, ..Config::default() });
    // Far beyond the 4 KiB window.
    s.inject(Seg::ack(P1 + 100_000, ISS1).data(b"junk"));
    let a = s.expect();
    assert_eq!(a.ack, P1);
    assert!(a.options.sack_blocks.is_empty(), "nothing was kept");
    assert!(s.read_all().is_empty());
    assert_eq!(s.conn.stats().out_of_window, 1);
}

#[test]
fn receive_window_follows_free_buffer_space() {
    let mut s = Script::established(Config { recv_buffer: 16 * 1024, ..Config::default() });
    let first = {
        s.inject(Seg::ack(P1, ISS1).data(&bytes(1000, 1)));
        s.advance(Duration::from_millis(50));
        s.conn.recv_queue()
    };
    assert_eq!(first, 1000);
    // Fill the buffer without reading: the advertised window closes to zero.
    let mut seq = P1 + 1000;
    for _ in 0..15 {
        s.inject(Seg::ack(seq, ISS1).data(&bytes(1024, 2)));
        seq += 1024;
    }
    let last = s.drain().pop().unwrap_or_else(|| s.advance(Duration::from_millis(50)).pop().unwrap().1);
    let scale = s.conn.window_scales().unwrap().1;
    let advertised = (last.window as usize) << scale;
    assert!(advertised <= 16 * 1024 - s.conn.recv_queue(), "window {advertised} exceeds free space");
    assert!(advertised < 1024, "window should be (nearly) closed, is {advertised}");
    // Reading reopens it with a window update.
    let n = s.read_all().len();
    assert_eq!(n, 1000 + 15 * 1024);
    let upd = s.expect();
    assert!(((upd.window as usize) << scale) >= 8 * 1024, "window update after reading");
}

#[test]
fn receiver_avoids_silly_window_updates() {
    // RFC 1122 §4.2.3.3 (Linux __tcp_select_window): don't advertise tiny
    // increases. A closed window stays closed until it can open by
    // min(buffer / 2, MSS): reading a few bytes sends no update, and every
    // ACK that goes out meanwhile (here the answers to the peer's
    // zero-window probes) still offers 0.
    let mut s = Script::established(Config { recv_buffer: 64 * 1024, ..Config::default() });
    let scale = s.conn.window_scales().unwrap().1;
    let mss = s.conn.mss();
    let mut seq = P1;
    while s.conn.recv_window() > 0 {
        let n = mss.min(s.conn.recv_window());
        s.inject(Seg::ack(seq, ISS1).data(&bytes(n, 9)));
        seq += n as u32;
    }
    let mut acks = s.drain();
    acks.extend(s.advance(Duration::from_millis(50)).into_iter().map(|(_, g)| g));
    let last = acks.pop().expect("the segment that closed the window is ACKed");
    assert_eq!(last.window, 0, "the window is closed");
    let threshold = mss.min(32 * 1024);
    let mut buf = [0u8; 10];
    let mut freed = 0;
    while freed + buf.len() < threshold {
        freed += s.conn.recv(&mut buf);
        s.expect_nothing();
        // A zero-window probe (an old sequence number) is answered at once;
        // probes come at least an RTO apart, and answers to invalid
        // segments at most every 500 ms (`Config::invalid_ack_interval`).
        assert!(s.advance(Duration::from_millis(500)).is_empty());
        s.inject(Seg::ack(seq - 1, ISS1));
        let answer = s.expect();
        assert_eq!(answer.ack, seq);
        assert_eq!(answer.window, 0, "window offered after reading {freed} of the {threshold} bytes it takes to reopen");
    }
    // Reading the rest of the threshold sends the update, by at least that much.
    while freed < threshold {
        freed += s.conn.recv(&mut buf);
    }
    let update = s.expect();
    assert!((update.window as usize) << scale >= threshold, "update {} << {scale} after {freed} bytes read", update.window);
    assert_eq!((update.window as usize) << scale, s.conn.recv_window());
}

#[test]
fn sender_respects_peer_window_and_mss() {
    let mut s = Script::established(Script::config());
    // Peer window: 3000 bytes (scale 7 → 23 << 7 = 2944).
    s.inject(Seg::ack(P1, ISS1).win(23));
    s.conn.send(&bytes(10_000, 4)).unwrap();
    let segs = s.drain();
    let total: usize = segs.iter().map(|g| g.payload.len()).sum();
    // Two full segments; the 48-byte remainder of the window is a silly
    // sliver while more data waits (RFC 1122 §4.2.3.4).
    assert_eq!(total, 2 * s.conn.mss());
    assert!(segs.iter().all(|g| g.payload.len() <= s.conn.mss()));
}

#[test]
fn sender_avoids_silly_window_segments() {
    // RFC 1122 §4.2.3.4: with more data queued, don't send a 100-byte sliver
    // just because the window has 100 bytes free.
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).win(100)); // 12 800 bytes
    s.conn.send(&bytes(20_000, 5)).unwrap();
    let segs = s.drain();
    let sent: usize = segs.iter().map(|g| g.payload.len()).sum();
    assert!(sent <= 12_800);
    let mss = s.conn.mss();
    assert!(segs.iter().all(|g| g.payload.len() == mss), "only full segments: {:?}", segs.iter().map(|g| g.payload.len()).collect::<Vec<_>>());
}

#[test]
fn zero_window_is_probed_with_backoff() {
    // RFC 1122 §4.2.2.17, RFC 9293 §3.8.6.1: a closed window is probed for
    // as long as the peer answers. Each probe here is answered, the window
    // still closed: the answers show the peer alive (they reset the count
    // of unanswered probes that would end the connection, Linux
    // icsk_probes_out) but not the backoff (icsk_backoff), which doubles
    // from the RTO up to the RTO cap (tcp_probe0_when).
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).win(0));
    s.conn.send(b"blocked").unwrap();
    s.expect_nothing();
    let mut times = vec![s.now];
    while times.len() <= 30 {
        let t = s.conn.poll_timeout().expect("the persist timer runs");
        for (at, probe) in s.advance(t - s.now) {
            // A probe: an old sequence number, no data (RFC 1122 §4.2.3.6).
            assert_eq!((probe.seq, probe.payload.len()), (ISS1 - 1, 0), "{probe:?}");
            times.push(at);
            s.inject(Seg::ack(P1, ISS1).win(0));
        }
    }
    let gaps: Vec<u128> = times.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(&gaps[..10], &[200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 102_400], "backoff: {gaps:?}");
    assert!(gaps[10..].iter().all(|&g| g == 120_000), "capped at the 120 s RTO cap: {gaps:?}");
    // 30 probes in about an hour, more than the 15 retransmissions that
    // would end a connection whose peer is silent.
    assert_eq!(s.conn.state(), State::Established);
    // The window opens and the data flows.
    s.inject(Seg::ack(P1, ISS1).win(100));
    let seg = s.expect();
    assert_eq!(seg.payload, b"blocked");
}

#[test]
fn nagle_is_off_by_default_and_holds_small_segments_when_on() {
    let mut s = Script::established(Script::config());
    s.conn.send(b"a").unwrap();
    s.expect();
    s.conn.send(b"b").unwrap();
    assert_eq!(s.expect().payload, b"b", "no Nagle: small segments go at once");

    let mut s = Script::established(Config { nagle: true, ..Config::default() });
    s.conn.send(b"a").unwrap();
    assert_eq!(s.expect().payload, b"a");
    s.conn.send(b"b").unwrap();
    s.conn.send(b"c").unwrap();
    s.expect_nothing(); // RFC 896: wait while small data is unacknowledged
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.expect().payload, b"bc");
}

#[test]
fn send_buffer_has_a_hard_cap() {
    let mut s = Script::established(Config { send_buffer: 8192, ..Config::default() });
    s.inject(Seg::ack(P1, ISS1).win(0));
    assert_eq!(s.conn.send(&bytes(10_000, 1)).unwrap(), 8192);
    assert_eq!(s.conn.send(b"x").unwrap(), 0);
    // Acknowledgement frees space and reports it.
    s.inject(Seg::ack(P1, ISS1).win(512));
    let segs = s.drain();
    let sent: usize = segs.iter().map(|g| g.payload.len()).sum();
    s.inject(Seg::ack(P1, ISS1 + sent as u32).win(512));
    assert!(s.events().contains(&Event::Writable));
    assert!(s.conn.send_capacity() >= sent);
}

#[test]
fn fast_retransmit_resends_only_the_sacked_hole() {
    let mut s = Script::established(Script::config());
    let mss = s.conn.mss() as u32;
    s.conn.send(&bytes(10 * mss as usize, 6)).unwrap();
    let segs = s.drain();
    assert_eq!(segs.len(), 10, "initial window of 10 segments");
    // Segment 1 lost; 2..=4 SACKed by three duplicate ACKs.
    for k in 2..=4u32 {
        s.inject(Seg::ack(P1, ISS1).sack(&[(ISS1 + mss, ISS1 + k * mss)]));
    }
    let re = s.drain();
    assert!(!re.is_empty(), "fast retransmit");
    assert_eq!(re[0].seq, ISS1);
    assert_eq!(re[0].payload.len(), mss as usize);
    assert!(re.iter().all(|g| g.seq >= ISS1 + 10 * mss || g.seq == ISS1), "only the hole is resent: {:?}", re.iter().map(|g| g.seq - ISS1).collect::<Vec<_>>());
    assert!(s.conn.in_recovery());
    assert_eq!(s.conn.stats().retransmits, 1);
    // The full ACK ends recovery.
    s.inject(Seg::ack(P1, ISS1 + 10 * mss));
    assert!(!s.conn.in_recovery());
}

#[test]
fn sack_recovery_repairs_several_holes() {
    let mut s = Script::established(Script::config());
    let mss = s.conn.mss() as u32;
    s.conn.send(&bytes(10 * mss as usize, 6)).unwrap();
    s.drain();
    // Segments 0, 3 and 6 lost.
    let b = |a: u32, z: u32| (ISS1 + a * mss, ISS1 + z * mss);
    s.inject(Seg::ack(P1, ISS1).sack(&[b(1, 2)]));
    s.inject(Seg::ack(P1, ISS1).sack(&[b(1, 3)]));
    s.inject(Seg::ack(P1, ISS1).sack(&[b(4, 5), b(1, 3)]));
    s.inject(Seg::ack(P1, ISS1).sack(&[b(4, 6), b(1, 3)]));
    s.inject(Seg::ack(P1, ISS1).sack(&[b(7, 8), b(4, 6), b(1, 3)]));
    s.inject(Seg::ack(P1, ISS1).sack(&[b(7, 10), b(4, 6), b(1, 3)]));
    let re: Vec<u32> = s.drain().iter().filter(|g| g.seq < ISS1 + 10 * mss).map(|g| (g.seq - ISS1) / mss).collect();
    assert_eq!(re, vec![0, 3, 6], "each hole resent once, nothing SACKed resent");
}

#[test]
fn paws_drops_old_timestamps() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).data(b"new").ts(1000, 0));
    s.drain();
    // RFC 7323 §5.3: an older TSval is a wrapped-around old duplicate.
    s.inject(Seg::ack(P1 + 3, ISS1).data(b"old").ts(900, 0));
    let a = s.expect();
    assert_eq!(a.ack, P1 + 3, "dropped, but ACKed");
    assert_eq!(s.read_all(), b"new");
    // Our segments echo TS.Recent.
    assert_eq!(a.options.timestamp.unwrap().tsecr, 1000);
}

#[test]
fn rst_in_window_but_not_exact_gets_challenge_ack() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::new(TcpFlags::RST, P1 + 10));
    assert_eq!(s.conn.state(), State::Established);
    let a = s.expect();
    assert_eq!((a.flags, a.ack), (TcpFlags::ACK, P1));
    // Outside the window: silently dropped.
    s.inject(Seg::new(TcpFlags::RST, P1 + 100_000_000));
    s.expect_nothing();
    assert_eq!(s.conn.stats().challenge_acks, 1);
}

#[test]
fn syn_on_established_gets_challenge_ack() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::syn(P1 + 5));
    assert_eq!(s.conn.state(), State::Established);
    let a = s.expect();
    assert_eq!((a.flags, a.ack), (TcpFlags::ACK, P1));
}

#[test]
fn unacceptable_ack_is_dropped_with_an_ack() {
    let mut s = Script::established(Script::config());
    // Acknowledges data we never sent (RFC 5961 §5.2).
    s.inject(Seg::ack(P1, ISS1 + 5000).data(b"payload"));
    let a = s.expect();
    assert_eq!(a.ack, P1, "the payload was not taken");
    assert!(s.read_all().is_empty());
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut s = Script::established(Script::config());
    let mut sent = 0;
    for k in 0..100 {
        s.inject(Seg::new(TcpFlags::RST, P1 + 1 + k));
        sent += s.drain().len();
    }
    assert_eq!(sent, 10, "default limit: 10 per second per connection");
    s.advance(Duration::from_millis(1001));
    s.inject(Seg::new(TcpFlags::RST, P1 + 1));
    assert_eq!(s.drain().len(), 1, "the limit is per second");
}

#[test]
fn data_after_close_is_answered_with_rst() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1).data(b"too late"));
    assert!(s.expect().has(TcpFlags::RST));
    assert_eq!(s.conn.state(), State::Closed);
}

#[test]
fn direct_receive_hands_payload_in_place() {
    let mut s = Script::established(Script::config());
    let seg = Seg::ack(P1, ISS1).data(b"hello world");
    let repr = seg.repr();
    let delivery = s.conn.handle_segment_direct(s.now, &repr);
    let direct = delivery.payload();
    assert_eq!(direct, b"hello world");
    assert!(std::ptr::eq(direct.as_ptr(), seg.payload.as_ptr()), "no copy");
    // The application consumed 6 bytes; the rest is buffered.
    delivery.complete(6);
    assert_eq!(s.read_all(), b"world");
}

#[test]
fn close_inside_a_direct_delivery_depends_on_what_was_consumed() {
    // Consumed everything, then closed: a graceful FIN.
    let mut s = Script::established(Script::config());
    let seg = Seg::ack(P1, ISS1).data(b"last words");
    let mut delivery = s.conn.handle_segment_direct(s.now, &seg.repr());
    let direct = delivery.payload();
    delivery.handle().close();
    delivery.complete(direct.len());
    assert_eq!(s.conn.state(), State::FinWait1);
    assert!(s.expect().has(TcpFlags::FIN));
    // Left some unread, then closed: RST (RFC 2525 §2.17).
    let mut s = Script::established(Script::config());
    let seg = Seg::ack(P1, ISS1).data(b"last words");
    let mut delivery = s.conn.handle_segment_direct(s.now, &seg.repr());
    delivery.handle().close();
    delivery.complete(4);
    assert_eq!(s.conn.state(), State::Closed);
    assert!(s.expect().has(TcpFlags::RST));
}
