//! Scripted engine tests: retransmission timer (RFC 6298), SYN and SYN-ACK
//! retries, keepalive (RFC 1122 §4.2.3.6).

mod common;

use common::script::*;
use xdptcp::tcp::{CloseReason, Config, Event, Keepalive, State};
use xdptcp::time::Duration;
use xdptcp::wire::TcpFlags;

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;

fn gaps(times: &[xdptcp::time::Instant]) -> Vec<u64> {
    times.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect()
}

#[test]
fn syn_is_retransmitted_with_backoff_then_gives_up() {
    let mut s = Script::active(Script::config());
    let t0 = s.now;
    s.expect();
    let resent = s.advance(Duration::from_secs(300));
    let syns: Vec<_> = resent.iter().filter(|(_, g)| g.has(TcpFlags::SYN)).map(|(t, _)| *t).collect();
    // tcp_syn_retries = 6: resent at 1, 3, 7, 15, 31, 63 s; given up at 127 s.
    assert_eq!(syns.len(), 6);
    let mut all = vec![t0];
    all.extend(&syns);
    assert_eq!(gaps(&all), vec![1000, 2000, 4000, 8000, 16000, 32000]);
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(s.events(), vec![Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn syn_ack_is_retransmitted_five_times_with_backoff() {
    let mut s = Script::passive(Script::config(), Script::linux_syn());
    let t0 = s.now;
    s.expect();
    let resent = s.advance(Duration::from_secs(300));
    let times: Vec<_> = resent.iter().filter(|(_, g)| g.has(TcpFlags::SYN | TcpFlags::ACK)).map(|(t, _)| *t).collect();
    let mut all = vec![t0];
    all.extend(&times);
    // Linux: 1 s, 2 s, 4 s, 8 s, 16 s, then give up.
    assert_eq!(gaps(&all), vec![1000, 2000, 4000, 8000, 16000]);
    assert_eq!(s.conn.state(), State::Closed);
}

#[test]
fn peer_retransmitted_syn_gets_our_syn_ack_again() {
    let mut s = Script::passive(Script::config(), Script::linux_syn());
    s.expect();
    s.inject(Script::linux_syn());
    let again = s.expect();
    assert_eq!(again.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(again.seq, OUR_ISS);
}

/// The RTO alone: no tail loss probe (RFC 8985) standing in for the first one.
fn no_tlp() -> Config {
    Config { rack_tlp: false, ..Config::default() }
}

#[test]
fn rto_doubles_and_respects_the_minimum() {
    let mut s = Script::established(no_tlp());
    s.conn.send(b"x").unwrap();
    let t0 = s.now;
    s.expect();
    // No ACK ever: the RTO starts at ≥ 200 ms (min RTO; the handshake
    // sampled a zero RTT) and doubles (RFC 6298 §5.5).
    let resent: Vec<_> = s.advance(Duration::from_secs(30)).into_iter().map(|(t, _)| t).collect();
    let mut all = vec![t0];
    all.extend(resent);
    let g = gaps(&all);
    assert_eq!(g[0], 200, "first RTO is the 200 ms minimum: {g:?}");
    for w in g.windows(2) {
        assert_eq!(w[1], w[0] * 2, "exponential backoff: {g:?}");
    }
}

#[test]
fn min_rto_is_configurable() {
    let mut s = Script::established(Config { min_rto: Duration::from_millis(50), ..Config::default() });
    s.conn.send(b"x").unwrap();
    let t0 = s.now;
    s.expect();
    let first = s.advance(Duration::from_secs(1))[0].0;
    assert_eq!((first - t0).as_millis(), 50);
}

#[test]
fn karn_ignores_rtt_of_retransmitted_segments() {
    let mut s = Script::established(Script::config());
    let srtt_before = s.conn.rtt().srtt();
    s.conn.send(b"x").unwrap();
    s.expect();
    s.advance(Duration::from_millis(250)); // timeout: resent
    s.advance(Duration::from_millis(1000));
    // The ACK is ambiguous (original or retransmission): no sample.
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.conn.rtt().srtt(), srtt_before);
    // A fresh segment is timed again.
    s.conn.send(b"y").unwrap();
    s.expect();
    s.advance(Duration::from_millis(30));
    s.inject(Seg::ack(P1, ISS1 + 2));
    assert_ne!(s.conn.rtt().srtt(), srtt_before);
}

#[test]
fn loss_probe_stands_in_for_the_first_rto() {
    // RFC 8985 §7.2: with one segment out, the PTO (2·SRTT + WCDelAckT) runs
    // past the RTO, so the probe goes at the RTO's time in its place, without
    // collapsing the window; the RTO then runs from the probe and backs off.
    let mut s = Script::established(Script::config());
    s.conn.send(b"x").unwrap();
    let t0 = s.now;
    s.expect();
    let cwnd = s.conn.cwnd();
    let first = s.advance(Duration::from_millis(200));
    assert_eq!(first.len(), 1, "the probe: the highest segment again, {first:?}");
    assert_eq!((first[0].0 - t0).as_millis(), 200);
    assert_eq!(first[0].1.payload, b"x");
    assert_eq!((s.conn.stats().loss_probes, s.conn.stats().timeouts), (1, 0));
    assert_eq!(s.conn.cwnd(), cwnd, "a probe leaves cwnd alone");
    let resent: Vec<_> = s.advance(Duration::from_secs(30)).into_iter().map(|(t, _)| t).collect();
    let mut all = vec![first[0].0];
    all.extend(resent);
    let g = gaps(&all);
    assert_eq!(&g[..4], &[200, 400, 800, 1600], "then RTOs, backing off: {g:?}");
    assert_eq!(s.conn.stats().loss_probes, 1, "one probe per flight");
}

#[test]
fn gives_up_after_max_retries_with_rst_and_error() {
    let mut s = Script::established(Config { max_retries: 4, ..no_tlp() });
    s.conn.send(b"x").unwrap();
    s.expect();
    let sent = s.advance(Duration::from_secs(60));
    let data: Vec<_> = sent.iter().filter(|(_, g)| g.payload == b"x").collect();
    assert_eq!(data.len(), 4, "four retransmissions");
    assert!(sent.last().unwrap().1.has(TcpFlags::RST), "then a RST");
    assert_eq!(s.conn.state(), State::Closed);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn keepalive_is_off_by_default() {
    let mut s = Script::established(Script::config());
    assert!(s.advance(Duration::from_secs(3 * 3600)).is_empty());
    assert_eq!(s.conn.state(), State::Established);
}

#[test]
fn keepalive_defaults_match_linux() {
    let ka = Keepalive::default();
    assert_eq!((ka.time.as_secs(), ka.interval.as_secs(), ka.probes), (7200, 75, 9));
}

#[test]
fn keepalive_probes_then_drops_a_dead_peer() {
    let ka = Keepalive { time: Duration::from_secs(100), interval: Duration::from_secs(10), probes: 3 };
    let mut s = Script::established(Config { keepalive: Some(ka), ..Config::default() });
    let t0 = s.now;
    let sent = s.advance(Duration::from_secs(200));
    let probes: Vec<_> = sent.iter().filter(|(_, g)| !g.has(TcpFlags::RST)).collect();
    assert_eq!(probes.len(), 3);
    assert_eq!((probes[0].0 - t0).as_secs(), 100);
    assert_eq!((probes[1].0 - probes[0].0).as_secs(), 10);
    // A probe is a segment the peer must ACK: SEQ = SND.UNA − 1, no data.
    assert_eq!(probes[0].1.seq, ISS1 - 1);
    assert!(probes[0].1.payload.is_empty());
    assert!(sent.last().unwrap().1.has(TcpFlags::RST));
    assert_eq!(s.conn.state(), State::Closed);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}

#[test]
fn keepalive_answered_keeps_the_connection() {
    let ka = Keepalive { time: Duration::from_secs(100), interval: Duration::from_secs(10), probes: 3 };
    let mut s = Script::established(Config { keepalive: Some(ka), ..Config::default() });
    for _ in 0..5 {
        let sent = s.advance(Duration::from_secs(101));
        assert_eq!(sent.len(), 1);
        s.inject(Seg::ack(P1, ISS1));
    }
    assert_eq!(s.conn.state(), State::Established);
}

#[test]
fn keepalive_survives_fin_wait_1_and_watches_fin_wait_2() {
    // Linux keeps keepalive running in every synchronized state (it only
    // defers while data or a FIN is outstanding). A keepalive timer that
    // fired in FIN-WAIT-1 must not be lost: once the FIN is acknowledged,
    // a half-closed connection whose peer then vanished (its RST lost) is
    // probed and dropped, not left in FIN-WAIT-2 for ever.
    let ka = Keepalive { time: Duration::from_secs(100), interval: Duration::from_secs(10), probes: 3 };
    let mut s = Script::established(Config { keepalive: Some(ka), ..Config::default() });
    s.conn.shutdown(xdptcp::tcp::Shutdown::Write);
    let fin = s.expect();
    assert!(fin.has(TcpFlags::FIN));
    // The FIN goes unacknowledged past the keepalive time: retransmitted.
    let resent = s.advance(Duration::from_secs(150));
    assert!(resent.iter().all(|(_, g)| g.has(TcpFlags::FIN)), "{resent:?}");
    assert_eq!(s.conn.state(), State::FinWait1);
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::FinWait2);
    // Then silence: probes, and the drop.
    let sent = s.advance(Duration::from_secs(300));
    let probes = sent.iter().filter(|(_, g)| !g.has(TcpFlags::RST)).count();
    assert_eq!(probes, 3, "{sent:?}");
    assert_eq!(s.conn.state(), State::Closed);
    assert!(s.events().contains(&Event::Closed(CloseReason::TimedOut)));
}
