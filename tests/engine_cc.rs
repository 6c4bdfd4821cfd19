//! Scripted engine tests of the window after idle (RFC 5681 §4.1's restart
//! window, RFC 9438 §5.8's CUBIC epoch), of the rate limit on ACKs for
//! invalid segments (Linux's tcp_invalid_ratelimit), of the retransmission
//! after SACK reneging (RFC 2018 §8), of in-order data when the
//! out-of-order table is full, and of the order of SACK blocks (RFC 2018 §4).

mod common;

use common::script::*;
use xdptcp::tcp::{Config, State};
use xdptcp::time::Duration;
use xdptcp::wire::TcpFlags;

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;
/// 65535 << 7: a peer window (8 MiB) that never limits these tests.
const BIG: u16 = 65535;
const RTT: Duration = Duration::from_millis(20);

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect()
}

/// One round trip: `flight` reaches the peer, which ACKs each segment as
/// it arrives, one RTT after it was sent. Returns what those ACKs let go.
fn round(s: &mut Script, flight: &[Seg]) -> Vec<Seg> {
    assert!(s.advance(RTT).is_empty(), "no timer fires within one RTT");
    let mut next = Vec::new();
    for seg in flight {
        s.inject(Seg::ack(P1, seg.seq + seg.len()).win(BIG));
        next.extend(s.drain());
    }
    next
}

/// Runs rounds until everything queued is sent and acknowledged; returns
/// the number of segments of each flight.
fn until_idle(s: &mut Script, mut flight: Vec<Seg>) -> Vec<usize> {
    let mut sizes = Vec::new();
    while !flight.is_empty() {
        sizes.push(flight.len());
        flight = round(s, &flight);
    }
    sizes
}

/// An established connection with a 20 ms RTT that sent 150 segments in
/// slow start (flights of 10, 20, 40, 80) and has nothing in flight.
/// Returns the MSS.
fn warmed(config: Config) -> (Script, usize) {
    let mut s = Script::established_with_rtt(config, RTT);
    s.inject(Seg::ack(P1, ISS1).win(BIG));
    let mss = s.conn.mss();
    s.conn.send(&bytes(150 * mss)).unwrap();
    let first = s.drain();
    assert_eq!(until_idle(&mut s, first), vec![10, 20, 40, 80]);
    // Slow start doubled the window each round while the sender used it;
    // the last flight emptied the queue, so its ACKs grew it no further.
    assert!(s.conn.cwnd() >= 80 * mss, "cwnd {}", s.conn.cwnd());
    (s, mss)
}

#[test]
fn the_window_restarts_after_an_idle_period_longer_than_the_rto() {
    // RFC 5681 §4.1 / Linux tcp_cwnd_restart: after 5 s of silence (many
    // RTOs) the sender comes back with min(IW, cwnd), not an 80-segment
    // burst; ssthresh keeps at least 3/4 of the old window, so slow start
    // climbs back quickly.
    let (mut s, mss) = warmed(Config::default());
    let before = s.conn.cwnd();
    assert!(s.advance(Duration::from_secs(5)).is_empty());
    s.conn.send(&bytes(200 * mss)).unwrap();
    let burst = s.drain();
    assert_eq!(burst.len(), 10, "restart window after idle");
    assert!(s.conn.ssthresh() >= before * 3 / 4, "ssthresh {} below 3/4 of {before}", s.conn.ssthresh());
    // Still slow start: the next round doubles.
    let next = round(&mut s, &burst);
    assert_eq!(next.len(), 20);
}

#[test]
fn a_short_idle_period_halves_the_window_per_rto_elapsed() {
    // Linux tcp_cwnd_restart: one halving for each started RTO of
    // idleness beyond the first. 2.5 RTOs idle: halved twice.
    let (mut s, mss) = warmed(Config::default());
    let rto = s.conn.rtt().rto();
    let cwnd = s.conn.cwnd();
    assert!(s.advance(rto * 5 / 2).is_empty());
    s.conn.send(&bytes(200 * mss)).unwrap();
    assert_eq!(s.drain().len(), cwnd / 4 / mss);
}

#[test]
fn no_restart_within_one_rto_or_when_disabled() {
    let (mut s, mss) = warmed(Config::default());
    let rto = s.conn.rtt().rto();
    let cwnd = s.conn.cwnd();
    assert!(s.advance(rto / 2).is_empty());
    s.conn.send(&bytes(200 * mss)).unwrap();
    assert_eq!(s.drain().len(), cwnd / mss, "idle for less than an RTO: the window stands");

    let (mut s, mss) = warmed(Config { slow_start_after_idle: false, ..Config::default() });
    let cwnd = s.conn.cwnd();
    assert!(s.advance(Duration::from_secs(5)).is_empty());
    s.conn.send(&bytes(200 * mss)).unwrap();
    assert_eq!(s.drain().len(), cwnd / mss, "slow_start_after_idle off");
}

#[test]
fn cubic_does_not_count_idle_time_in_its_epoch() {
    // RFC 9438 §5.8: t in W_cubic(t) must not include idle periods.
    // Linux shifts the epoch start by the idle time (CA_EVENT_TX_START).
    // Without it, 30 s of idle puts W_cubic far above the window and the
    // next round grows it by the 1.5× clamp.
    let config = Config { slow_start_after_idle: false, ..Config::default() };
    let mut s = Script::established_with_rtt(config, RTT);
    s.inject(Seg::ack(P1, ISS1).win(BIG));
    let mss = s.conn.mss() as u32;
    s.conn.send(&bytes(40 * mss as usize)).unwrap();
    let flight = s.drain();
    assert_eq!(flight.len(), 10);
    // A loss (segment 0; SACKs for 1..4) halves to congestion avoidance.
    s.advance(RTT);
    for k in 2..=4 {
        s.inject(Seg::ack(P1, ISS1).win(BIG).sack(&[(ISS1 + mss, ISS1 + k * mss)]));
    }
    assert!(s.conn.in_recovery());
    let resent = s.drain();
    assert_eq!(resent[0].seq, ISS1);
    s.advance(RTT);
    s.inject(Seg::ack(P1, ISS1 + 10 * mss).win(BIG));
    assert!(!s.conn.in_recovery());
    let rest = s.drain();
    let sizes = until_idle(&mut s, rest);
    assert!(!sizes.is_empty());
    let cwnd = s.conn.cwnd();
    assert!(cwnd < s.conn.ssthresh() * 2, "in congestion avoidance: cwnd {cwnd}, ssthresh {}", s.conn.ssthresh());

    assert!(s.advance(Duration::from_secs(30)).is_empty());
    s.conn.send(&bytes(400 * mss as usize)).unwrap();
    let flight = s.drain();
    assert_eq!(flight.len() * mss as usize, cwnd / mss as usize * mss as usize, "no restart: the whole window goes");
    round(&mut s, &flight);
    let grown = s.conn.cwnd();
    assert!(grown * 10 < cwnd * 12, "one round after idle grew cwnd from {cwnd} to {grown} (more than 20 %)");
}

/// Out-of-window pure ACKs, as a confused peer or a loop sends them.
#[test]
fn acks_for_invalid_segments_are_rate_limited() {
    let mut s = Script::established(Config::default());
    let far = P1 + 50_000_000;
    s.inject(Seg::ack(far, ISS1).win(512));
    assert!(s.expect().has(TcpFlags::ACK), "the first out-of-window segment is answered");
    for _ in 0..20 {
        s.advance(Duration::from_millis(10));
        s.inject(Seg::ack(far, ISS1).win(512));
        s.expect_nothing();
    }
    // 500 ms after the last answer, the next one is answered again.
    s.advance(Duration::from_millis(300));
    s.inject(Seg::ack(far, ISS1).win(512));
    assert!(s.expect().has(TcpFlags::ACK));
    // Segments carrying data are not part of an ACK loop: each is answered
    // (Linux tcp_oow_rate_limited), here old data retransmitted.
    s.inject(Seg::ack(P1 - 1000, ISS1).win(512).data(&[1; 100]));
    assert_eq!(s.expect().ack, P1);
    assert!(s.conn.stats().invalid_acks_limited >= 20);
}

#[test]
fn paws_rejects_are_rate_limited() {
    let mut s = Script::established(Config::default());
    // TS.Recent is 100 (the SYN-ACK's); a TSval 10 s older fails PAWS (too
    // old to be an ACK merely reordered, RFC 7323 §5.3).
    const OLD: u32 = 100u32.wrapping_sub(10_000);
    s.inject(Seg::ack(P1, ISS1).win(512).ts(OLD, 0));
    assert!(s.expect().has(TcpFlags::ACK));
    for _ in 0..10 {
        s.advance(Duration::from_millis(20));
        s.inject(Seg::ack(P1, ISS1).win(512).ts(OLD, 0));
        s.expect_nothing();
    }
    s.advance(Duration::from_millis(400));
    s.inject(Seg::ack(P1, ISS1).win(512).ts(OLD, 0));
    assert!(s.expect().has(TcpFlags::ACK));
}

#[test]
fn acks_in_time_wait_are_rate_limited_but_fins_are_answered() {
    let mut s = Script::established(Config::default());
    s.conn.close();
    let fin = s.expect();
    assert!(fin.has(TcpFlags::FIN));
    s.inject(Seg::ack(P1, ISS1 + 1).win(512).fin());
    assert_eq!(s.expect().ack, P1 + 1);
    assert_eq!(s.conn.state(), State::TimeWait);
    // Stray ACKs: one answer per 500 ms.
    s.inject(Seg::ack(P1 + 1, ISS1 + 1).win(512).ts(200, 0));
    assert!(s.expect().has(TcpFlags::ACK));
    for _ in 0..10 {
        s.advance(Duration::from_millis(10));
        s.inject(Seg::ack(P1 + 1, ISS1 + 1).win(512).ts(200, 0));
        s.expect_nothing();
    }
    // A retransmitted FIN is always answered (it did not get our ACK).
    s.inject(Seg::ack(P1, ISS1 + 1).win(512).ts(200, 0).fin());
    assert_eq!(s.expect().ack, P1 + 1);
}

#[test]
fn a_timeout_after_sack_reneging_resends_snd_una_first() {
    // RFC 2018 §8: after a timeout the segment at the left edge of the
    // window goes first, whether or not it was SACKed: an ACK that stops
    // at SACKed data shows the receiver discarded it (reneged).
    let mut s = Script::established_with_rtt(Config::default(), RTT);
    s.inject(Seg::ack(P1, ISS1).win(BIG));
    let mss = s.conn.mss() as u32;
    s.conn.send(&bytes(10 * mss as usize)).unwrap();
    assert_eq!(s.drain().len(), 10);
    s.advance(RTT);
    // Segments 2..6 SACKed, 0 and 1 missing.
    s.inject(Seg::ack(P1, ISS1).win(BIG).sack(&[(ISS1 + 2 * mss, ISS1 + 6 * mss)]));
    s.drain();
    // Segments 0 and 1 arrive; the cumulative ACK stops at 2: the receiver
    // dropped what it had SACKed.
    s.inject(Seg::ack(P1, ISS1 + 2 * mss).win(BIG));
    s.drain();
    let timeouts = s.conn.stats().timeouts;
    let mut out = Vec::new();
    while s.conn.stats().timeouts == timeouts {
        out = s.advance(Duration::from_millis(100));
    }
    assert_eq!(s.conn.stats().timeouts, timeouts + 1);
    let (_, first) = out.first().expect("the timeout resends something");
    assert_eq!(first.seq, ISS1 + 2 * mss, "the first retransmission after the timeout is SND.UNA's segment");
}

#[test]
fn in_order_data_is_taken_when_the_out_of_order_table_is_full() {
    // With every out-of-order range slot in use, an in-order segment that
    // does not touch the first range needs no slot: it is delivered, and
    // acknowledged.
    let mut s = Script::established(Config::default());
    let ranges = xdptcp::tcp::assembler::MAX_RANGES as u32;
    for k in 0..ranges {
        s.inject(Seg::ack(P1 + 100 + 2 * k, ISS1).win(512).data(&[9]));
    }
    s.drain();
    s.inject(Seg::ack(P1, ISS1).win(512).data(&[1; 50]));
    let acks = s.drain();
    let ack = acks.last().map(|a| a.ack).unwrap_or_else(|| s.advance(Duration::from_millis(200)).last().expect("an ACK").1.ack);
    assert_eq!(ack, P1 + 50, "the in-order bytes are acknowledged");
    assert_eq!(s.read_all(), vec![1; 50]);
    assert_eq!(s.conn.stats().bytes_received, u64::from(ranges) + 50);
}

#[test]
fn sack_blocks_after_the_first_repeat_the_most_recent() {
    // RFC 2018 §4: the first block holds the segment that triggered the
    // ACK; the others repeat the most recently reported first blocks.
    let mut s = Script::established(Config::default());
    // Five disjoint ranges, A (lowest) first … E last, with holes between.
    for (k, start) in [100u32, 300, 500, 700, 900].into_iter().enumerate() {
        s.inject(Seg::ack(P1 + start, ISS1).win(512).ts(200 + k as u32, 0).data(&[7; 10]));
        s.drain();
    }
    // A new segment in the middle range C: it comes first, then E and D.
    s.inject(Seg::ack(P1 + 510, ISS1).win(512).ts(210, 0).data(&[7; 10]));
    let ack = s.expect();
    let blocks: Vec<(u32, u32)> = ack.options.sack_blocks.as_slice().iter().map(|&(l, r)| (l.0 - P1, r.0 - P1)).collect();
    assert_eq!(blocks, vec![(500, 520), (900, 910), (700, 710)]);
}
