//! Scripted engine tests: windows under pressure. The advertised window and
//! RCV.ADV (RFC 9293 §3.8.6, RFC 7323 §2.3, RFC 1122 §4.2.3.3), segments
//! at a zero receive window (RFC 9293 §3.10.7.4), the persist timer for
//! small and zero send windows (RFC 1122 §4.2.2.17 and §4.2.3.4, RFC 9293
//! §3.8.6.1), orphan retry limits and the user timeout (RFC 5482).

mod common;

use common::script::*;
use xdptcp::tcp::{CloseReason, Config, Event, RxBudget, State, Timer};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::TcpFlags;

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The window a segment of ours advertises, in bytes.
fn advertised(s: &Script, seg: &Seg) -> usize {
    let scale = s.conn.window_scales().map_or(0, |(_, ours)| ours);
    (seg.window as usize) << scale
}

/// Our SYN is answered by a SYN-ACK with `ws` (or none); returns our ACK of it.
fn handshake(s: &mut Script, ws: Option<u8>) -> Seg {
    let syn = s.expect();
    assert!(syn.has(TcpFlags::SYN));
    let mut syn_ack = Seg::syn(PEER_ISN).acking(ISS1).win(65535).mss(1460).sack_ok().ts(100, syn.options.timestamp.map_or(0, |t| t.tsval));
    if let Some(ws) = ws {
        syn_ack = syn_ack.ws(ws);
    }
    s.inject(syn_ack);
    let ack = s.expect();
    assert!(ack.has(TcpFlags::ACK) && !ack.has(TcpFlags::SYN));
    ack
}

/// Runs the clock to the next timer (or 1 s on, if none runs) and returns
/// what was sent then, with the times.
fn wait(s: &mut Script) -> Vec<(Instant, Seg)> {
    match s.conn.poll_timeout() {
        Some(t) if t > s.now => s.advance(t - s.now),
        Some(_) => s.advance(Duration::ZERO),
        None => s.advance(Duration::from_secs(1)),
    }
}

#[test]
fn without_window_scaling_rcv_adv_is_the_advertised_field() {
    // RFC 9293 §3.1: an unscaled window field carries at most 65 535. The
    // right edge we accept data up to is what the peer was told, not the
    // 4 MiB buffer behind it (a wider target for blind injection).
    let mut s = Script::active(Config { window_scaling: false, ..Config::default() });
    let ack = handshake(&mut s, Some(7));
    assert_eq!(s.conn.window_scales(), None);
    assert_eq!(ack.window, 65535);
    assert_eq!(s.conn.recv_window(), 65535, "RCV.ADV − RCV.NXT");
    // Beyond the advertised window, though inside the buffer: refused.
    s.inject(Seg::ack(P1 + 70_000, ISS1).data(b"injected"));
    let answer = s.expect();
    assert_eq!(answer.ack, P1);
    assert!(answer.options.sack_blocks.is_empty(), "nothing beyond the window was kept: {answer:?}");
    assert_eq!(s.conn.ooo_queue(), 0);
    assert_eq!(s.conn.stats().out_of_window, 1);
}

#[test]
fn window_smaller_than_the_scale_unit_is_advertised_as_zero() {
    // A 64 MiB buffer takes scale 11: a unit of 2048 bytes, more than an
    // MSS. A window cap between the two passes receiver SWS avoidance but
    // rounds to a field of 0 (Linux __tcp_select_window rounds down to the
    // unit); RCV.ADV then stays at RCV.NXT: it must not run ahead of what
    // the peer was told.
    let mut s = Script::active(Config { recv_buffer: 64 << 20, ..Config::default() });
    s.conn.set_rx_budget(RxBudget { window: 2000, ..RxBudget::UNLIMITED });
    let ack = handshake(&mut s, Some(7));
    assert_eq!(s.conn.window_scales(), Some((7, 11)));
    assert!(s.conn.mss() < 2000);
    assert_eq!(ack.window, 0);
    assert_eq!(s.conn.recv_window(), 0, "RCV.ADV ran ahead of the advertised window");
    // The peer probes the closed window with a byte: not taken, answered with 0.
    s.inject(Seg::ack(P1, ISS1).data(b"p"));
    let answer = s.expect();
    assert_eq!((answer.ack, answer.window), (P1, 0));
    assert_eq!(s.conn.recv_queue(), 0);
    // Memory frees: the window opens by a multiple of the unit, all of it advertised.
    s.conn.set_rx_budget(RxBudget { window: 10_000, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1 - 1, ISS1));
    let update = s.expect();
    assert_eq!(advertised(&s, &update), 10_000 / 2048 * 2048);
    assert_eq!(advertised(&s, &update), s.conn.recv_window());
}

#[test]
fn data_at_a_zero_receive_window_still_carries_its_ack() {
    // RFC 9293 §3.10.7.4: "If the RCV.WND is zero, no segments will be
    // acceptable, but special allowance should be made to accept valid
    // ACKs, URGs, and RSTs." A segment at RCV.NXT with data (a probe, or the
    // peer's own data) has its ACK and window taken, its data dropped, as
    // Linux does (tcp_sequence, tcp_data_queue). Otherwise two ends whose
    // windows are both closed never learn that their data arrived.
    let mut s = Script::established(Config { recv_buffer: 4096, ..Config::default() });
    let mut seq = P1;
    while s.conn.recv_window() > 0 {
        let n = s.conn.recv_window().min(1000);
        s.inject(Seg::ack(seq, ISS1).data(&bytes(n, 3)));
        seq += n as u32;
    }
    assert_eq!(s.conn.recv_queue(), 4096);
    s.drain();
    s.conn.send(b"hello").unwrap();
    let out = s.expect();
    assert_eq!((out.payload.as_slice(), out.window), (&b"hello"[..], 0));
    // The peer's next segment: one byte at our RCV.NXT, acknowledging our data.
    s.inject(Seg::ack(seq, ISS1 + 5).win(1000).data(b"x"));
    assert_eq!(s.conn.snd_una().0, ISS1 + 5, "the ACK field was ignored");
    assert_eq!(s.conn.bytes_in_flight(), 0);
    assert_eq!(s.conn.send_window(), 1000 << 7);
    assert_eq!(s.conn.recv_queue(), 4096, "the byte beyond the window is not taken");
    let answer = s.expect();
    assert_eq!((answer.ack, answer.window), (seq, 0), "answered at once with the closed window");
    // A bare FIN takes no buffer space: it is accepted at a zero window (as
    // Linux does since 6.10).
    s.inject(Seg::ack(seq, ISS1 + 5).win(1000).fin());
    assert_eq!(s.conn.state(), xdptcp::tcp::State::CloseWait);
    assert_eq!(s.expect().ack, seq + 1);
}

#[test]
fn small_peer_window_with_nothing_in_flight_does_not_hang() {
    // A slow reader under the no-shrink rule: the peer acknowledges
    // everything with a window of 512 bytes (4 << 7), less than an MSS and
    // less than half the largest window it offered, and the update that
    // would open its window is lost. Sender SWS avoidance holds the sliver
    // back, and with nothing in flight no retransmission timer runs: RFC
    // 1122 §4.2.3.4 / RFC 9293 §3.8.6.2.1 want the override (persist) timer
    // armed whenever data waits and nothing is in flight (Linux
    // tcp_check_probe_timer); when it fires, what the window allows goes
    // (Linux tcp_write_wakeup).
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).win(4));
    let data = bytes(10_000, 1);
    assert_eq!(s.conn.send(&data).unwrap(), data.len());
    s.expect_nothing();
    assert!(s.conn.timer(Timer::Persist).is_some(), "no timer runs while data waits for a small window");
    let start = s.now;
    let mut received = Vec::new();
    while received.len() < data.len() && s.now - start < Duration::from_secs(60) {
        let mut segs: Vec<Seg> = s.drain();
        if segs.is_empty() {
            segs = wait(&mut s).into_iter().map(|(_, g)| g).collect();
        }
        for seg in segs {
            assert!(seg.payload.len() <= 512, "beyond the peer's window: {} bytes", seg.payload.len());
            if !seg.payload.is_empty() && seg.seq == ISS1 + received.len() as u32 {
                received.extend_from_slice(&seg.payload);
            }
        }
        // The reader takes what came: the window stays 512 from the new ACK.
        s.inject(Seg::ack(P1, ISS1 + received.len() as u32).win(4));
    }
    assert_eq!(received.len(), data.len(), "sender stalled: {} of {} bytes after {:?}", received.len(), data.len(), s.now - start);
    assert_eq!(received, data);
    assert!(s.now - start < Duration::from_secs(10), "one RTO per sliver at most: took {:?}", s.now - start);
}

#[test]
fn unanswered_zero_window_probes_give_up() {
    // The window closed, then the peer went silent: after tcp_retries2 (15)
    // unanswered probes the connection ends with a RST, as Linux's
    // tcp_probe_timer does, instead of probing every two minutes for ever.
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).win(0));
    s.conn.send(b"blocked").unwrap();
    s.expect_nothing();
    let start = s.now;
    let sent = s.advance(Duration::from_secs(3600));
    let probes = sent.iter().filter(|(_, g)| !g.has(TcpFlags::RST)).count();
    assert_eq!(s.conn.state(), State::Closed, "still {:?} after {probes} probes", s.conn.state());
    assert_eq!(probes, 15);
    let (at, last) = sent.last().unwrap();
    assert!(last.has(TcpFlags::RST));
    // 200 ms doubling to the 120 s cap: 204.6 s, then 6 × 120 s.
    assert_eq!((*at - start).as_millis(), 204_600 + 6 * 120_000);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn zero_window_with_data_in_flight_is_not_timed_out_while_the_peer_answers() {
    // The peer took part of what we sent, closed its window and dropped the
    // rest. Our retransmissions then probe the window, and each is answered
    // (window still 0): the peer is alive, so the retransmission limit does
    // not end the connection (Linux tcp_retransmit_timer's zero-window case;
    // it gives up only if the peer falls silent for 2 × the RTO cap).
    let mut s = Script::established(Script::config());
    let data = bytes(3000, 7);
    s.conn.send(&data).unwrap();
    assert_eq!(s.drain().iter().map(|g| g.payload.len()).sum::<usize>(), 3000);
    s.inject(Seg::ack(P1, ISS1 + 1000).win(0));
    let start = s.now;
    let mut answered = 0;
    while s.now - start < Duration::from_secs(3600) {
        let sent = wait(&mut s);
        for (_, seg) in &sent {
            assert!(!seg.has(TcpFlags::RST), "reset after {answered} answered retransmissions");
            answered += 1;
            s.inject(Seg::ack(P1, ISS1 + 1000).win(0));
        }
    }
    assert!(answered > 15, "{answered}");
    assert_eq!(s.conn.state(), State::Established);
    // The window opens: the rest goes.
    s.inject(Seg::ack(P1, ISS1 + 1000).win(512));
    let mut sent: Vec<Seg> = s.drain();
    sent.extend(wait(&mut s).into_iter().map(|(_, g)| g));
    assert!(sent.iter().any(|g| g.seq == ISS1 + 1000 && !g.payload.is_empty()), "{sent:?}");
}

#[test]
fn zero_window_with_data_in_flight_gives_up_once_the_peer_is_silent() {
    // The same closed window, but the peer is gone: the connection ends
    // once nothing has been heard for twice the 120 s RTO cap (Linux
    // tcp_rtx_probe0_timed_out), at the first retransmission after that.
    let mut s = Script::established(Script::config());
    s.conn.send(&bytes(3000, 7)).unwrap();
    s.drain();
    s.inject(Seg::ack(P1, ISS1 + 1000).win(0));
    let heard = s.now;
    let sent = s.advance(Duration::from_secs(3600));
    let (at, last) = sent.last().unwrap();
    assert!(last.has(TcpFlags::RST), "{last:?}");
    assert_eq!(s.conn.state(), State::Closed);
    let silent = *at - heard;
    assert!(silent > Duration::from_secs(240) && silent <= Duration::from_secs(360), "gave up after {silent:?} of silence");
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

/// The RTO alone: no tail loss probe (RFC 8985) standing in for the first one.
fn no_tlp() -> Config {
    Config { rack_tlp: false, ..Config::default() }
}

#[test]
fn orphan_held_at_a_zero_window_gives_up() {
    // The application closed with data still queued: FIN_WAIT_1, unsent
    // data and the FIN behind it, and the peer answers every probe with a
    // window of 0 (a sockstress-style pin). An orphan gets orphan_retries
    // (8) probes, then ends with a RST and a stated reason, in bounded time
    // (Linux tcp_probe_timer with tcp_orphan_retries).
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).win(0));
    s.conn.send(&bytes(5000, 1)).unwrap();
    s.expect_nothing();
    s.conn.close();
    assert_eq!(s.conn.state(), State::FinWait1);
    let start = s.now;
    let mut probes = 0;
    while s.conn.state() != State::Closed && s.now - start < Duration::from_secs(3600) {
        for (_, seg) in wait(&mut s) {
            if seg.has(TcpFlags::RST) {
                continue;
            }
            assert_eq!((seg.seq, seg.payload.len()), (ISS1 - 1, 0), "{seg:?}");
            probes += 1;
            s.inject(Seg::ack(P1, ISS1).win(0));
        }
    }
    assert_eq!(s.conn.state(), State::Closed, "still {:?} after {probes} answered probes in {:?}", s.conn.state(), s.now - start);
    assert_eq!(probes, 8);
    // Probes at 0.2 s doubling: the eighth at 51 s, the end 51.2 s later.
    assert_eq!((s.now - start).as_millis(), 102_200);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn orphan_retransmissions_are_bounded() {
    // Closed with data unacknowledged and the peer silent: orphan_retries
    // (8) retransmission timeouts, not max_retries (15) (Linux
    // tcp_write_timeout for an orphan).
    let mut s = Script::established(no_tlp());
    s.conn.send(b"last words").unwrap();
    s.conn.close();
    let first = s.expect();
    assert!(first.has(TcpFlags::FIN));
    let sent = s.advance(Duration::from_secs(3600));
    let resent = sent.iter().filter(|(_, g)| g.payload == b"last words").count();
    assert_eq!(resent, 8, "{} retransmissions", resent);
    assert!(sent.last().unwrap().1.has(TcpFlags::RST));
    assert_eq!(s.conn.state(), State::Closed);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn orphan_retries_is_configurable() {
    let mut s = Script::established(Config { orphan_retries: 3, ..no_tlp() });
    s.conn.send(b"x").unwrap();
    s.conn.close();
    s.expect();
    let sent = s.advance(Duration::from_secs(3600));
    assert_eq!(sent.iter().filter(|(_, g)| g.payload == b"x").count(), 3);
    assert_eq!(s.conn.state(), State::Closed);
    // A connection the application still holds keeps max_retries.
    let mut s = Script::established(Config { orphan_retries: 3, ..no_tlp() });
    s.conn.send(b"x").unwrap();
    s.expect();
    let sent = s.advance(Duration::from_secs(3600));
    assert_eq!(sent.iter().filter(|(_, g)| g.payload == b"x").count(), 15);
}

/// When the RST that ended the connection went, after `start`.
fn reset_after(sent: &[(Instant, Seg)], start: Instant) -> Duration {
    let (at, rst) = sent.last().expect("something was sent");
    assert!(rst.has(TcpFlags::RST), "the last segment is no RST: {rst:?}");
    *at - start
}

#[test]
fn user_timeout_ends_unacknowledged_data_on_time() {
    // RFC 5482 / Linux TCP_USER_TIMEOUT: data unacknowledged for 5 s ends
    // the connection at 5 s, the retransmission timer cut short to meet it
    // (Linux tcp_clamp_rto_to_user_timeout), long before max_retries.
    let mut s = Script::established(Config { user_timeout: Some(Duration::from_secs(5)), ..no_tlp() });
    s.conn.send(b"x").unwrap();
    let start = s.now;
    s.expect();
    let sent = s.advance(Duration::from_secs(600));
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(reset_after(&sent, start), Duration::from_secs(5));
    // Resent at 0.2, 0.6, 1.4 and 3 s.
    assert_eq!(sent.iter().filter(|(_, g)| g.payload == b"x").count(), 4);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn user_timeout_replaces_the_retry_count() {
    // Linux: with TCP_USER_TIMEOUT set, time alone decides; 15
    // retransmissions (925 s here) do not end the connection before its 30
    // minutes are up.
    let mut s = Script::established(Config { user_timeout: Some(Duration::from_secs(1800)), ..no_tlp() });
    s.conn.send(b"x").unwrap();
    let start = s.now;
    s.expect();
    let sent = s.advance(Duration::from_secs(3600));
    assert!(sent.iter().filter(|(_, g)| g.payload == b"x").count() > 15);
    assert_eq!(reset_after(&sent, start), Duration::from_secs(1800));
}

#[test]
fn user_timeout_counts_from_the_last_progress() {
    // An ACK of new data is progress: the timeout runs again from there.
    let mut s = Script::established(Config { user_timeout: Some(Duration::from_secs(5)), ..no_tlp() });
    s.conn.send(b"a").unwrap();
    let start = s.now;
    s.expect();
    s.advance(Duration::from_secs(3));
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::Established);
    s.conn.send(b"b").unwrap();
    s.expect();
    let sent = s.advance(Duration::from_secs(600));
    assert_eq!(reset_after(&sent, start), Duration::from_secs(8));
}

#[test]
fn user_timeout_ends_a_zero_window_stall() {
    // Linux: the closed window is probed without opening for longer than
    // the user timeout (from the first probe): the connection ends, however
    // faithfully the peer answers.
    let mut s = Script::established(Config { user_timeout: Some(Duration::from_secs(10)), ..Config::default() });
    s.inject(Seg::ack(P1, ISS1).win(0));
    s.conn.send(b"blocked").unwrap();
    s.expect_nothing();
    let start = s.now;
    let mut sent = Vec::new();
    while s.conn.state() != State::Closed && s.now - start < Duration::from_secs(600) {
        for (at, seg) in wait(&mut s) {
            s.inject(Seg::ack(P1, ISS1).win(0));
            sent.push((at, seg));
        }
    }
    assert_eq!(s.conn.state(), State::Closed, "still {:?} after {:?}", s.conn.state(), s.now - start);
    // The first probe at 0.2 s, the end 10 s later.
    assert_eq!(reset_after(&sent, start), Duration::from_millis(10_200));
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn user_timeout_is_set_per_connection() {
    let mut s = Script::established(no_tlp());
    s.conn.send(b"x").unwrap();
    let start = s.now;
    s.expect();
    // Set while the retransmission timer runs: it is brought forward.
    s.conn.set_user_timeout(Some(Duration::from_millis(150)));
    assert_eq!(s.conn.config().user_timeout, Some(Duration::from_millis(150)));
    let sent = s.advance(Duration::from_secs(60));
    assert_eq!(reset_after(&sent, start), Duration::from_millis(150));
    assert_eq!(s.conn.state(), State::Closed);
    // Another connection of the same stack is not affected.
    let mut other = Script::established(no_tlp());
    assert_eq!(other.conn.config().user_timeout, None);
    other.conn.send(b"x").unwrap();
    other.expect();
    other.advance(Duration::from_secs(60));
    assert_eq!(other.conn.state(), State::Established);
}
