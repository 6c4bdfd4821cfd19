//! Scripted engine tests of loss recovery: RFC 3042 limited transmit,
//! RFC 8985 RACK-TLP (tail loss probes, time-based loss detection, lost
//! retransmissions), RFC 3522/4015 undo of a spurious recovery, RFC 2883
//! D-SACK, and RFC 7323 §5.3 PAWS for reordered duplicate ACKs.

mod common;

use common::script::*;
use xdptcp::tcp::Config;
use xdptcp::time::Duration;
use xdptcp::wire::TcpFlags;

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;
/// The window the scripted peer advertises after the handshake (scaled by 2^7).
const WIN: u16 = 512;
const RTT: Duration = Duration::from_millis(20);

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect()
}

/// An established connection with a 20 ms round trip and `segments` full
/// segments sent at once (at most the initial window of 10); returns the MSS.
fn sent(config: Config, segments: usize, queued: usize) -> (Script, u32) {
    let mut s = Script::established_with_rtt(config, RTT);
    let mss = s.conn.mss();
    s.conn.send(&bytes(queued * mss)).unwrap();
    let out = s.drain();
    assert_eq!(out.len(), segments);
    (s, mss as u32)
}

/// A duplicate ACK from the peer SACKing `[from, to)` in segments.
fn sack(mss: u32, una: u32, from: u32, to: u32) -> Seg {
    Seg::ack(P1, ISS1 + una * mss).win(WIN).sack(&[(ISS1 + from * mss, ISS1 + to * mss)])
}

fn seg_index(mss: u32, g: &Seg) -> u32 {
    (g.seq - ISS1) / mss
}

#[test]
fn limited_transmit_with_sack_sends_new_data_on_the_first_two_duplicate_acks() {
    // RFC 3042 (RFC 6675 §5 step 3 with SACK): each of the first two
    // duplicate ACKs lets one new segment go; the window does not change.
    let (mut s, mss) = sent(Config::default(), 10, 20);
    let cwnd = s.conn.cwnd();
    s.advance(RTT);
    s.inject(sack(mss, 0, 1, 2));
    let out = s.drain();
    assert_eq!(out.iter().map(|g| seg_index(mss, g)).collect::<Vec<_>>(), vec![10], "first duplicate ACK");
    assert!(!s.conn.in_recovery(), "RACK waits a reordering window before deeming segment 0 lost");
    s.inject(sack(mss, 0, 1, 3));
    let out = s.drain();
    assert_eq!(out.iter().map(|g| seg_index(mss, g)).collect::<Vec<_>>(), vec![11], "second duplicate ACK");
    assert!(!s.conn.in_recovery());
    assert_eq!(s.conn.cwnd(), cwnd);
    // A third SACKed segment: no reordering seen, so no reordering window
    // (RFC 8985 §6.2): segment 0 is lost, and fast recovery resends it.
    s.inject(sack(mss, 0, 1, 4));
    assert!(s.conn.in_recovery());
    let out = s.drain();
    assert_eq!(seg_index(mss, &out[0]), 0);
    assert_eq!(s.conn.stats().retransmits, 1);
}

#[test]
fn limited_transmit_without_sack() {
    // A peer without SACK: RFC 3042 lets cwnd + 2·SMSS be in flight on the
    // first two duplicate ACKs; the third starts fast retransmit.
    let mut s = Script::active(Config::default());
    let syn = s.expect();
    s.advance(RTT);
    s.inject(Seg::syn(PEER_ISN).acking(ISS1).win(65535).mss(1460).ts(100, syn.options.timestamp.unwrap().tsval).ws(7));
    s.expect();
    s.inject(Seg::ack(P1, ISS1).win(WIN));
    assert!(!s.conn.sack_enabled());
    let mss = s.conn.mss() as u32;
    s.conn.send(&bytes(20 * mss as usize)).unwrap();
    assert_eq!(s.drain().len(), 10);
    let dup = || Seg::ack(P1, ISS1).win(WIN);
    s.inject(dup());
    assert_eq!(s.drain().iter().map(|g| seg_index(mss, g)).collect::<Vec<_>>(), vec![10]);
    s.inject(dup());
    assert_eq!(s.drain().iter().map(|g| seg_index(mss, g)).collect::<Vec<_>>(), vec![11]);
    s.inject(dup());
    assert!(s.conn.in_recovery());
    assert_eq!(seg_index(mss, &s.expect()), 0, "fast retransmit on the third");
}

#[test]
fn tail_loss_probe_recovers_a_tail_loss_without_rto() {
    // Four segments; the last two are lost. No duplicate ACKs come back, so
    // only the probe (RFC 8985 §7) can avoid the RTO.
    let (mut s, mss) = sent(Config::default(), 4, 4);
    let t0 = s.now;
    s.advance(RTT);
    s.inject(Seg::ack(P1, ISS1 + 2 * mss).win(WIN));
    let acked_at = s.now;
    // PTO = 2·SRTT + 2 ms after that ACK; nothing new to send, so the
    // highest segment goes again.
    let fired = s.advance(Duration::from_millis(50));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0 - acked_at, Duration::from_millis(42));
    assert_eq!(seg_index(mss, &fired[0].1), 3);
    assert_eq!((s.conn.stats().loss_probes, s.conn.stats().timeouts), (1, 0));
    // A round trip later the probe is SACKed: RACK deems segment 2 lost
    // (sent before the probe, and out for longer than RTT + reo_wnd).
    s.advance(RTT - Duration::from_millis(8));
    s.inject(sack(mss, 2, 3, 4));
    assert!(s.conn.in_recovery());
    let re = s.drain();
    assert_eq!(seg_index(mss, &re[0]), 2);
    s.inject(Seg::ack(P1, ISS1 + 4 * mss).win(WIN));
    assert!(!s.conn.in_recovery());
    assert_eq!(s.conn.stats().timeouts, 0, "no RTO");
    assert!(s.now - t0 < Duration::from_millis(200), "recovered before the first RTO would have fired");
}

#[test]
fn tail_loss_probe_of_new_data() {
    // With data waiting (cwnd-limited, say), the probe is a new segment,
    // beyond cwnd, and leaves cwnd alone.
    let (mut s, mss) = sent(Config::default(), 10, 12);
    let cwnd = s.conn.cwnd();
    let fired = s.advance(Duration::from_millis(45));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(seg_index(mss, &fired[0].1), 10, "the next new segment");
    assert_eq!(s.conn.stats().retransmits, 0);
    assert_eq!(s.conn.cwnd(), cwnd);
    // One probe per flight: nothing more until an ACK.
    let more = s.advance(Duration::from_millis(100));
    assert!(more.is_empty(), "{more:?}");
}

#[test]
fn a_probe_that_repaired_a_loss_reduces_the_window_once() {
    // Segment 3 of 4 is lost; the probe resends it and the ACK covers it all.
    let (mut s, mss) = sent(Config::default(), 4, 4);
    s.advance(RTT);
    s.inject(Seg::ack(P1, ISS1 + 3 * mss).win(WIN));
    let cwnd = s.conn.cwnd();
    let fired = s.advance(Duration::from_millis(250));
    assert_eq!(fired.len(), 1, "one probe, at the RTO's time at the latest: {fired:?}");
    assert_eq!(seg_index(mss, &fired[0].1), 3);
    s.advance(RTT);
    // Ambiguous so far: the original may have been delayed, not lost.
    s.inject(Seg::ack(P1, ISS1 + 4 * mss).win(WIN));
    assert_eq!(s.conn.stats().probe_recoveries, 0);
    // An ACK beyond the probe without a D-SACK for it: it was lost.
    s.conn.send(&bytes(mss as usize)).unwrap();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 5 * mss).win(WIN));
    assert_eq!(s.conn.stats().probe_recoveries, 1);
    assert!(s.conn.cwnd() < cwnd, "one congestion response");
    assert_eq!(s.conn.stats().timeouts, 0);
}

#[test]
fn a_probe_reported_as_a_duplicate_leaves_the_window_alone() {
    let (mut s, mss) = sent(Config::default(), 4, 4);
    s.advance(RTT);
    s.inject(Seg::ack(P1, ISS1 + 3 * mss).win(WIN));
    let cwnd = s.conn.cwnd();
    s.advance(Duration::from_millis(250));
    s.advance(RTT);
    s.inject(Seg::ack(P1, ISS1 + 4 * mss).win(WIN));
    // The peer had the original: the probe comes back as a D-SACK (RFC 2883).
    s.inject(Seg::ack(P1, ISS1 + 4 * mss).win(WIN).sack(&[(ISS1 + 3 * mss, ISS1 + 4 * mss)]));
    assert_eq!(s.conn.stats().dsacks, 1);
    s.conn.send(&bytes(mss as usize)).unwrap();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 5 * mss).win(WIN));
    assert_eq!(s.conn.stats().probe_recoveries, 0);
    assert!(s.conn.cwnd() >= cwnd);
}

#[test]
fn rack_detects_a_lost_retransmission() {
    let (mut s, mss) = sent(Config::default(), 10, 30);
    s.advance(RTT);
    // Segment 0 lost; 1..=3 SACKed (limited transmit sends 10 and 11), then
    // RACK deems it lost.
    for k in 2..=3 {
        s.inject(sack(mss, 0, 1, k));
        s.drain();
    }
    s.inject(sack(mss, 0, 1, 4));
    assert!(s.conn.in_recovery());
    assert_eq!(s.drain().iter().map(|g| seg_index(mss, g)).collect::<Vec<_>>(), vec![0]);
    // The rest of the first flight arrives: new data goes after the retransmission.
    s.advance(Duration::from_millis(1));
    s.inject(sack(mss, 0, 1, 10));
    let after: Vec<u32> = s.drain().iter().map(|g| seg_index(mss, g)).collect();
    assert!(!after.is_empty() && after.iter().all(|&k| k >= 12), "new data after the retransmission: {after:?}");
    // The retransmission is lost too, but what was sent after it arrives: the
    // duplicate ACKs cannot tell, RACK can (RFC 8985 §3.3).
    s.advance(RTT);
    let last = *after.last().unwrap();
    s.inject(sack(mss, 0, 1, last + 1));
    assert_eq!(s.conn.stats().lost_retransmits, 1);
    let again = s.drain();
    assert_eq!(seg_index(mss, &again[0]), 0, "resent again, without waiting for the RTO");
    assert_eq!(s.conn.stats().timeouts, 0);
    assert_eq!(s.conn.stats().recoveries, 1, "one recovery episode, one reduction");
}

#[test]
fn rack_waits_a_reordering_window_once_reordering_was_seen() {
    let (mut s, mss) = sent(Config::default(), 10, 10);
    s.advance(RTT);
    // Segment 1 arrives after 2: reordering, not loss.
    s.inject(sack(mss, 0, 2, 3));
    s.inject(Seg::ack(P1, ISS1 + 3 * mss).win(WIN));
    assert!(!s.conn.in_recovery());
    // Now segment 3 is missing while 4..=7 are SACKed: with reordering
    // seen, RACK waits min_RTT/4 = 5 ms before deeming it lost.
    s.inject(sack(mss, 3, 4, 8));
    assert!(!s.conn.in_recovery(), "within the reordering window");
    s.expect_nothing();
    let fired = s.advance(Duration::from_millis(5));
    assert!(s.conn.in_recovery(), "the reordering timer fired");
    assert_eq!(seg_index(mss, &fired[0].1), 3);
}

/// Ten segments out, segment 0 lost: three SACKs echoing the originals'
/// TSval start a recovery that retransmits it. Returns the window before
/// and the originals' TSval.
fn timestamped_recovery() -> (Script, u32, usize, u32) {
    let (mut s, mss) = sent(Config::default(), 10, 10);
    let cwnd = s.conn.cwnd();
    s.advance(RTT);
    let sent_ts = s.tsval() - RTT.as_millis() as u32;
    for k in 2..=4 {
        s.inject(sack(mss, 0, 1, k).ts(500, sent_ts));
    }
    assert!(s.conn.in_recovery());
    assert_eq!(seg_index(mss, &s.expect()), 0);
    (s, mss, cwnd, sent_ts)
}

#[test]
fn spurious_recovery_is_undone() {
    // RFC 3522: the ACK ending recovery echoes the original's TSval, older
    // than the retransmission's: the original was only delayed.
    let (mut s, mss, cwnd, sent_ts) = timestamped_recovery();
    assert!(s.conn.cwnd() < cwnd);
    s.advance(Duration::from_millis(3));
    s.inject(Seg::ack(P1, ISS1 + 10 * mss).win(WIN).ts(503, sent_ts));
    assert!(!s.conn.in_recovery());
    assert_eq!(s.conn.stats().undos, 1);
    assert!(s.conn.cwnd() >= cwnd, "the window from before returns");
}

#[test]
fn needed_recovery_is_not_undone() {
    let (mut s, mss, cwnd, _) = timestamped_recovery();
    let rxt_ts = s.tsval();
    s.advance(RTT);
    // The retransmission filled the hole: the ACK echoes its TSval.
    s.inject(Seg::ack(P1, ISS1 + 10 * mss).win(WIN).ts(520, rxt_ts));
    assert!(!s.conn.in_recovery());
    assert_eq!(s.conn.stats().undos, 0);
    assert!(s.conn.cwnd() < cwnd);
}

#[test]
fn duplicates_are_reported_with_dsack() {
    // RFC 2883: data received twice is reported in the first SACK block.
    let mut s = Script::established(Script::config());
    let data = bytes(300);
    s.inject(Seg::ack(P1, ISS1).data(&data[..100]));
    s.inject(Seg::ack(P1, ISS1).data(&data[..100]));
    let a = s.expect();
    assert_eq!(a.ack, P1 + 100);
    let b = a.options.sack_blocks.as_slice();
    assert_eq!(b.iter().map(|&(l, r)| (l.0, r.0)).collect::<Vec<_>>(), vec![(P1, P1 + 100)]);
    // Out of order, twice: the D-SACK, then the block holding it.
    s.inject(Seg::ack(P1 + 200, ISS1).data(&data[200..300]));
    s.drain();
    s.inject(Seg::ack(P1 + 200, ISS1).data(&data[200..300]));
    let a = s.expect();
    let b: Vec<_> = a.options.sack_blocks.as_slice().iter().map(|&(l, r)| (l.0, r.0)).collect();
    assert_eq!(b, vec![(P1 + 200, P1 + 300), (P1 + 200, P1 + 300)]);
    // Reported once.
    s.inject(Seg::ack(P1 + 100, ISS1).data(&data[100..200]));
    let a = s.drain().pop().unwrap();
    assert!(a.options.sack_blocks.is_empty());
    assert_eq!(s.read_all(), data);
}

#[test]
fn paws_lets_a_reordered_duplicate_ack_through() {
    // Two ACKs the peer sent 2 ms apart arrive swapped. The older one fails
    // PAWS (TSval < TS.Recent) but is a pure duplicate ACK within an RTO of
    // TS.Recent: its SACK block counts (as Linux's tcp_disordered_ack).
    let (mut s, mss) = sent(Config::default(), 10, 20);
    s.advance(RTT);
    let echo = s.tsval() - RTT.as_millis() as u32;
    s.inject(sack(mss, 0, 2, 3).ts(1002, echo));
    s.drain();
    s.inject(sack(mss, 0, 1, 2).ts(1000, echo));
    assert_eq!(s.conn.stats().disordered_acks, 1);
    assert_eq!(s.conn.stats().out_of_window, 0);
    let out = s.drain();
    assert!(out.iter().all(|g| !g.payload.is_empty()), "no ACK in reply: {out:?}");
    assert_eq!(out.iter().map(|g| seg_index(mss, g)).collect::<Vec<_>>(), vec![11], "its SACK made room for new data");
}

#[test]
fn paws_still_rejects_old_duplicates() {
    let (mut s, mss) = sent(Config::default(), 10, 20);
    s.advance(RTT);
    s.inject(sack(mss, 0, 2, 3).ts(100_000, 0));
    s.drain();
    // Far older than one RTO: an old duplicate, dropped and answered.
    s.inject(sack(mss, 0, 1, 2).ts(90_000, 0));
    let a = s.expect();
    assert!(a.payload.is_empty() && a.has(TcpFlags::ACK));
    assert_eq!(s.conn.stats().out_of_window, 1);
    // Slightly older, but not a duplicate ACK (it moves SND.UNA): dropped
    // too, and not answered: one answer per 500 ms to invalid pure ACKs
    // (Linux's tcp_invalid_ratelimit).
    s.inject(Seg::ack(P1, ISS1 + mss).win(WIN).ts(99_999, 0));
    s.expect_nothing();
    assert_eq!(s.conn.stats().out_of_window, 2);
    assert_eq!(s.conn.stats().invalid_acks_limited, 1);
    assert_eq!(s.conn.snd_una().0, ISS1);
    // Slightly older data: dropped (only pure ACKs are let through).
    s.inject(Seg::ack(P1, ISS1).win(WIN).data(b"late").ts(99_999, 0));
    s.expect();
    assert_eq!(s.conn.stats().out_of_window, 3);
    assert_eq!(s.conn.stats().disordered_acks, 0);
}
