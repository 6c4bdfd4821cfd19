//! Scripted engine tests: opening, closing and resetting (RFC 9293 §3.5,
//! §3.6, §3.10; RFC 2525 §2.17; RFC 1337; RFC 6191).

mod common;

use common::script::*;
use xdptcp::tcp::{reset_for, CloseReason, Event, Shutdown, State};
use xdptcp::time::Duration;
use xdptcp::wire::{SeqNumber, TcpFlags};

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;

#[test]
fn active_open_sends_syn_with_options_and_completes() {
    let mut s = Script::active(Script::config());
    assert_eq!(s.conn.state(), State::SynSent);
    let syn = s.expect();
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.seq, OUR_ISS);
    assert_eq!(syn.options.mss, Some(1460));
    assert!(syn.options.sack_permitted);
    assert!(syn.options.window_scale.is_some());
    assert!(syn.options.timestamp.is_some());
    s.expect_nothing();
    s.inject(Seg::syn(PEER_ISN).acking(ISS1).mss(1400).sack_ok().ts(7, 0).ws(2));
    assert_eq!(s.conn.state(), State::Established);
    let ack = s.expect();
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!((ack.seq, ack.ack), (ISS1, P1));
    assert_eq!(s.events(), vec![Event::Connected]);
    // RFC 7323 §2.2: the peer's scale applies from now on.
    assert_eq!(s.conn.window_scales().map(|w| w.0), Some(2));
    // RFC 9293 §3.7.1: we respect the peer's MSS (less the 12 timestamp bytes).
    assert_eq!(s.conn.mss(), 1400 - 12);
}

#[test]
fn passive_open_answers_syn_ack_and_completes() {
    let mut s = Script::passive(Script::config(), Script::linux_syn());
    assert_eq!(s.conn.state(), State::SynReceived);
    let sa = s.expect();
    assert_eq!(sa.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((sa.seq, sa.ack), (OUR_ISS, P1));
    assert_eq!(sa.options.mss, Some(1460));
    assert!(sa.options.sack_permitted && sa.options.window_scale.is_some());
    assert_eq!(sa.options.timestamp.unwrap().tsecr, 100);
    s.inject(Seg::ack(P1, ISS1).ts(101, sa.options.timestamp.unwrap().tsval));
    assert_eq!(s.conn.state(), State::Established);
    assert_eq!(s.events(), vec![Event::Connected]);
    s.expect_nothing();
}

#[test]
fn passive_open_without_options_uses_rfc_defaults() {
    let mut s = Script::passive(Script::config(), Seg::syn(PEER_ISN).win(8192));
    let sa = s.expect();
    // Options the peer did not offer are not used (RFC 7323 §1.3, RFC 2018 §2).
    assert!(sa.options.timestamp.is_none());
    assert!(sa.options.window_scale.is_none());
    assert!(!sa.options.sack_permitted);
    s.inject(Seg::ack(P1, ISS1).win(8192));
    // RFC 9293 §3.7.1: 536 without an MSS option.
    assert_eq!(s.conn.mss(), 536);
    assert_eq!(s.conn.window_scales(), None);
}

#[test]
fn simultaneous_open() {
    let mut s = Script::active(Script::config());
    let syn = s.expect();
    // Their SYN crosses ours (RFC 9293 §3.5 figure 8).
    s.inject(Seg::syn(PEER_ISN).mss(1460).sack_ok().ws(7).ts(5, 0));
    assert_eq!(s.conn.state(), State::SynReceived);
    // Our reply: a SYN-ACK carrying our original ISS and acknowledging
    // theirs, with our options again (the peer's are settled now).
    let sa = s.expect();
    assert_eq!(sa.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((sa.seq, sa.ack), (syn.seq, P1));
    assert_eq!(sa.seq, OUR_ISS);
    assert_eq!(sa.options.mss, syn.options.mss);
    assert_eq!(sa.options.window_scale, syn.options.window_scale);
    assert!(sa.options.sack_permitted);
    assert_eq!(sa.options.timestamp.map(|t| t.tsecr), Some(5), "echoes their SYN's TSval");
    assert!(sa.payload.is_empty());
    s.expect_nothing();
    assert!(s.events().is_empty(), "not connected before the ACK of our SYN");
    s.inject(Seg::syn(PEER_ISN).acking(ISS1).mss(1460).sack_ok().ws(7).ts(6, sa.options.timestamp.unwrap().tsval));
    // Their SYN-ACK repeats their SYN (sequence space already received): we
    // answer with an ACK at SND.NXT acknowledging it, nothing more.
    let ack = s.expect();
    assert_eq!(ack.flags, TcpFlags::ACK);
    assert_eq!((ack.seq, ack.ack), (ISS1, P1));
    s.expect_nothing();
    // In SYN-RECEIVED their ACK of our SYN completes us.
    s.inject(Seg::ack(P1, ISS1).ts(7, 0));
    assert_eq!(s.conn.state(), State::Established);
    assert_eq!(s.events(), vec![Event::Connected]);
    s.expect_nothing();
}

#[test]
fn active_close_four_way_then_time_wait_for_2msl() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    assert_eq!(s.conn.state(), State::FinWait1);
    let fin = s.expect();
    assert!(fin.has(TcpFlags::FIN | TcpFlags::ACK));
    assert_eq!(fin.seq, ISS1);
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::FinWait2);
    s.inject(Seg::ack(P1, ISS1 + 1).fin());
    assert_eq!(s.conn.state(), State::TimeWait);
    let ack = s.expect();
    assert_eq!(ack.ack, P1 + 1);
    // 2 × MSL = 60 s by default.
    s.advance(Duration::from_millis(59_900));
    assert_eq!(s.conn.state(), State::TimeWait);
    s.advance(Duration::from_millis(200));
    assert_eq!(s.conn.state(), State::Closed);
    assert!(s.events().contains(&Event::Closed(CloseReason::Normal)));
}

#[test]
fn passive_close_through_close_wait_and_last_ack() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).fin());
    assert_eq!(s.conn.state(), State::CloseWait);
    assert_eq!(s.expect().ack, P1 + 1);
    assert_eq!(s.events(), vec![Event::PeerClosed]);
    s.conn.close();
    assert_eq!(s.conn.state(), State::LastAck);
    let fin = s.expect();
    assert!(fin.has(TcpFlags::FIN));
    s.inject(Seg::ack(P1 + 1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(s.events(), vec![Event::Closed(CloseReason::Normal)]);
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    let fin = s.expect();
    assert!(fin.has(TcpFlags::FIN));
    // Their FIN crosses ours, not acknowledging it.
    s.inject(Seg::ack(P1, ISS1).fin());
    assert_eq!(s.conn.state(), State::Closing);
    assert_eq!(s.expect().ack, P1 + 1);
    s.inject(Seg::ack(P1 + 1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::TimeWait);
}

#[test]
fn half_close_keeps_receiving() {
    let mut s = Script::established(Script::config());
    s.conn.send(b"request").unwrap();
    s.conn.shutdown(Shutdown::Write);
    let seg = s.expect();
    assert_eq!(seg.payload, b"request");
    assert!(seg.has(TcpFlags::FIN), "FIN rides on the last data");
    s.inject(Seg::ack(P1, ISS1 + 8));
    assert_eq!(s.conn.state(), State::FinWait2);
    // The peer keeps sending; we keep reading.
    s.inject(Seg::ack(P1, ISS1 + 8).data(b"response part 1"));
    s.inject(Seg::ack(P1 + 15, ISS1 + 8).data(b" and 2"));
    assert_eq!(s.read_all(), b"response part 1 and 2");
    assert!(s.conn.send(b"more").is_err(), "the write side is shut");
    s.inject(Seg::ack(P1 + 21, ISS1 + 8).fin());
    assert_eq!(s.conn.state(), State::TimeWait);
}

#[test]
fn peer_rst_with_exact_sequence_aborts() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::new(TcpFlags::RST, P1));
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(s.events(), vec![Event::Closed(CloseReason::Reset)]);
    s.expect_nothing();
}

#[test]
fn rst_to_our_syn_means_refused() {
    let mut s = Script::active(Script::config());
    s.expect();
    s.inject(Seg::new(TcpFlags::RST, 0).acking(ISS1));
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(s.events(), vec![Event::Closed(CloseReason::Refused)]);
}

/// RFC 9293 §3.10.7.4 trims duplicates before anything else looks at the
/// text: a closed application is reset only for new data (as Linux's
/// tcp_rcv_state_process checks `end_seq - fin` against RCV.NXT), never for
/// a retransmission of bytes it already read, with the FIN that follows them.
#[test]
fn retransmitted_old_data_with_fin_to_a_closed_app_is_not_reset() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).data(b"hello"));
    assert_eq!(s.read_all(), b"hello");
    s.conn.close();
    assert_eq!(s.conn.state(), State::FinWait1);
    let out = s.drain();
    assert!(out.iter().any(|seg| seg.has(TcpFlags::FIN)), "{out:?}");
    // Our ACK of "hello" was lost: the peer resends it, now with its FIN,
    // and acknowledges our FIN.
    s.inject(Seg::ack(P1, ISS1 + 1).data(b"hello").fin());
    let ack = s.expect();
    assert!(!ack.has(TcpFlags::RST), "reset for bytes already received: {ack:?}");
    assert_eq!(ack.ack, P1 + 6, "the FIN is taken");
    assert_eq!(s.conn.state(), State::TimeWait);
    assert!(!s.events().iter().any(|e| matches!(e, Event::Closed(CloseReason::Aborted))));
}

#[test]
fn new_data_to_a_closed_app_is_still_reset() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).data(b"hello"));
    assert_eq!(s.read_all(), b"hello");
    s.conn.close();
    let _ = s.drain();
    // Old bytes, then new ones: nobody will read those.
    s.inject(Seg::ack(P1, ISS1 + 1).data(b"hello world").fin());
    let rst = s.expect();
    assert!(rst.has(TcpFlags::RST), "{rst:?}");
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(s.events(), vec![Event::Closed(CloseReason::Aborted)]);
}

#[test]
fn abort_sends_rst_and_drops_queued_data() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).win(0));
    s.conn.send(b"never sent").unwrap();
    s.conn.abort();
    let rst = s.expect();
    assert!(rst.has(TcpFlags::RST));
    assert_eq!(rst.seq, ISS1);
    assert!(rst.payload.is_empty());
    assert_eq!(s.conn.state(), State::Closed);
    assert_eq!(s.events(), vec![Event::Closed(CloseReason::Aborted)]);
    s.expect_nothing();
}

#[test]
fn close_with_unread_data_sends_rst_not_fin() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).data(b"unread"));
    let _ = s.drain();
    s.conn.close();
    let seg = s.expect();
    assert!(seg.has(TcpFlags::RST), "RFC 2525 §2.17: RST, not FIN");
    assert!(!seg.has(TcpFlags::FIN));
    assert_eq!(s.conn.state(), State::Closed);
}

#[test]
fn reset_for_unmatched_segments() {
    // RFC 9293 §3.10.7.1: with an ACK, <SEQ=SEG.ACK><CTL=RST>.
    let with_ack = Seg::ack(10, 20).data(b"xyz");
    let rst = reset_for(&with_ack.repr()).unwrap();
    assert_eq!(rst.flags, TcpFlags::RST);
    assert_eq!(rst.seq, SeqNumber(20));
    assert_eq!((rst.src_port, rst.dst_port), (LOCAL.port(), REMOTE.port()));
    // Without: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; a SYN counts one.
    let syn = Seg::syn(77);
    let rst = reset_for(&syn.repr()).unwrap();
    assert_eq!(rst.flags, TcpFlags::RST | TcpFlags::ACK);
    assert_eq!((rst.seq, rst.ack), (SeqNumber(0), SeqNumber(78)));
    // Never a RST for a RST.
    assert!(reset_for(&Seg::new(TcpFlags::RST, 5).repr()).is_none());
}

#[test]
fn time_wait_acks_retransmitted_fin_and_restarts_timer() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1).fin());
    assert_eq!(s.conn.state(), State::TimeWait);
    s.expect();
    s.advance(Duration::from_secs(50));
    // Our ACK of their FIN was lost; they resend the FIN.
    s.inject(Seg::ack(P1, ISS1 + 1).fin());
    let ack = s.expect();
    assert_eq!(ack.ack, P1 + 1);
    s.advance(Duration::from_secs(50));
    assert_eq!(s.conn.state(), State::TimeWait, "2MSL restarted at the FIN");
    s.advance(Duration::from_secs(11));
    assert_eq!(s.conn.state(), State::Closed);
}

#[test]
fn time_wait_ignores_rst() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1).fin());
    s.expect();
    // RFC 1337: no TIME-WAIT assassination.
    s.inject(Seg::new(TcpFlags::RST, P1 + 1));
    assert_eq!(s.conn.state(), State::TimeWait);
    s.expect_nothing();
}

#[test]
fn time_wait_reuse_needs_newer_timestamp_or_sequence() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1).fin().ts(500, 0));
    assert_eq!(s.conn.state(), State::TimeWait);
    // RFC 6191: timestamps decide when both sides use them.
    assert!(s.conn.time_wait_accepts_syn(&Seg::syn(1).ts(501, 0).repr()));
    assert!(!s.conn.time_wait_accepts_syn(&Seg::syn(P1 + 100).ts(499, 0).repr()));
    // Not a SYN, or a SYN-ACK: never.
    assert!(!s.conn.time_wait_accepts_syn(&Seg::ack(1, 1).ts(900, 0).repr()));
    // A SYN without a timestamp falls back to the sequence rule.
    assert!(s.conn.time_wait_accepts_syn(&Seg::syn(P1 + 2).repr()));
    assert!(!s.conn.time_wait_accepts_syn(&Seg::syn(P1).repr()));
}

/// RFC 6191 / RFC 9293 §3.6.1 without timestamps: a new SYN may take over
/// the TIME_WAIT 4-tuple only with a sequence number beyond RCV.NXT; any
/// other SYN is refused as a new connection and gets TIME_WAIT's ACK.
#[test]
fn time_wait_reuse_without_timestamps_goes_by_sequence() {
    let mut s = Script::passive(Script::config(), Seg::syn(PEER_ISN).win(65535).mss(1460));
    let sa = s.expect();
    assert!(sa.options.timestamp.is_none());
    s.inject(Seg::ack(P1, ISS1));
    assert_eq!(s.conn.state(), State::Established);
    assert!(s.conn.ts_recent().is_none(), "no timestamps negotiated");
    s.inject(Seg::ack(P1, ISS1).data(b"bye"));
    assert_eq!(s.read_all(), b"bye");
    s.conn.close();
    let _ = s.drain();
    s.inject(Seg::ack(P1 + 3, ISS1 + 1).fin());
    assert_eq!(s.conn.state(), State::TimeWait);
    let rcv_nxt = P1 + 4;
    assert_eq!(s.conn.rcv_nxt().0, rcv_nxt);
    let _ = s.drain();
    // Beyond RCV.NXT: a new incarnation, accepted.
    assert!(s.conn.time_wait_accepts_syn(&Seg::syn(rcv_nxt + 1).repr()));
    assert!(s.conn.time_wait_accepts_syn(&Seg::syn(rcv_nxt + 1_000_000).repr()));
    // A timestamp on the new SYN does not help when the old connection had none.
    assert!(!s.conn.time_wait_accepts_syn(&Seg::syn(rcv_nxt - 1).ts(1_000_000, 0).repr()));
    // At or below RCV.NXT: refused, and the SYN gets TIME_WAIT's ACK (at
    // most one per 500 ms, `Config::invalid_ack_interval`).
    for seq in [rcv_nxt, rcv_nxt - 1, PEER_ISN] {
        assert!(s.advance(Duration::from_millis(500)).is_empty());
        let syn = Seg::syn(seq);
        assert!(!s.conn.time_wait_accepts_syn(&syn.repr()), "SYN at {seq} accepted");
        s.inject(syn);
        let ack = s.expect();
        assert_eq!(ack.flags, TcpFlags::ACK, "SYN at {seq}: {ack:?}");
        assert_eq!((ack.seq, ack.ack), (ISS1 + 1, rcv_nxt));
        assert_eq!(s.conn.state(), State::TimeWait);
    }
}

#[test]
fn fin_wait_2_times_out_after_close() {
    let mut s = Script::established(Script::config());
    s.conn.close();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::FinWait2);
    // The peer never sends its FIN: tcp_fin_timeout (60 s) ends it.
    s.advance(Duration::from_secs(59));
    assert_eq!(s.conn.state(), State::FinWait2);
    s.advance(Duration::from_secs(2));
    assert_eq!(s.conn.state(), State::Closed);
}

#[test]
fn half_closed_fin_wait_2_has_no_timeout() {
    let mut s = Script::established(Script::config());
    s.conn.shutdown(Shutdown::Write);
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1));
    assert_eq!(s.conn.state(), State::FinWait2);
    // shutdown() is not close(): the application may still read for ever.
    s.advance(Duration::from_secs(600));
    assert_eq!(s.conn.state(), State::FinWait2);
}

#[test]
fn time_wait_follows_a_configured_msl() {
    let mut s = Script::established(xdptcp::tcp::Config { msl: Duration::from_secs(2), ..xdptcp::tcp::Config::default() });
    s.conn.close();
    s.expect();
    s.inject(Seg::ack(P1, ISS1 + 1).fin());
    assert_eq!(s.conn.state(), State::TimeWait);
    s.advance(Duration::from_millis(3_900));
    assert_eq!(s.conn.state(), State::TimeWait);
    s.advance(Duration::from_millis(200));
    assert_eq!(s.conn.state(), State::Closed, "2 × MSL = 4 s");
}

#[test]
fn mss_is_derived_from_the_mtu_and_announced() {
    let mut s = Script::active(xdptcp::tcp::Config::for_mtu(9000));
    assert_eq!(s.expect().options.mss, Some(8960));
}

/// RFC 9293 §3.8.6: the window we advertise after an active open depends on
/// our buffer, never on where the peer's ISN happens to lie. (A stale right
/// edge from the SYN, computed before the peer's ISN was known, once made
/// the first ACK advertise a zero window for some peer ISNs, stalling the
/// connection: found by the crr benchmark.)
#[test]
fn active_open_window_does_not_depend_on_the_peer_isn() {
    let mut windows = std::collections::BTreeSet::new();
    let mut isns = vec![0u32, 1, 65_535, 0x7FF6_A43B, 0x7FFF_0000, 0x7FFF_FFFF, 0x8000_0000, 0x8000_FFFF, 0xFFFF_0000, 0xFFFF_FFFF];
    isns.extend((0..512u32).map(|k| k.wrapping_mul(0x9E37_79B9)));
    for isn in isns {
        let mut s = Script::active(Script::config());
        let syn = s.expect();
        s.inject(Seg::syn(isn).acking(OUR_ISS + 1).win(65535).mss(1460).sack_ok().ts(100, syn.options.timestamp.map_or(0, |t| t.tsval)).ws(7));
        let ack = s.expect();
        assert!(ack.has(TcpFlags::ACK) && !ack.has(TcpFlags::SYN));
        assert_eq!(ack.ack, isn.wrapping_add(1));
        assert!(ack.window > 0, "zero window after a SYN-ACK with ISN {isn:#x}");
        windows.insert(ack.window);
    }
    assert_eq!(windows.len(), 1, "the advertised window varied with the peer ISN: {windows:?}");
}
