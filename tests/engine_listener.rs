//! Listener tests: SYN queue, accept queue, SYN cookies (RFC 4987 §3.6).

mod common;

use std::sync::Arc;

use common::script::*;
use xdptcp::tcp::isn::IsnGenerator;
use xdptcp::tcp::listener::SYNCOOKIE_VALID;
use xdptcp::tcp::syncookie::SynCookies;
use xdptcp::tcp::{Config, Listener, ListenerConfig, State, SynCookieMode, SynOutcome};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::{TcpFlags, TcpPacket, TcpRepr};

fn listener(cfg: ListenerConfig) -> Listener<u32> {
    Listener::new(LOCAL, cfg, Arc::new(Config::default()), IsnGenerator::new([1; 16]), SynCookies::new([2; 16]))
}

fn parse(bytes: &[u8]) -> Seg {
    let p = TcpPacket::new_checked(bytes).unwrap();
    let r = TcpRepr::parse(&p, *LOCAL.ip(), *REMOTE.ip(), true).unwrap();
    let mut s = Seg::new(r.flags, r.seq.0).win(r.window);
    s.ack = r.ack.0;
    s.options = r.options;
    s
}

#[test]
fn syn_queue_and_accept_queue_have_their_own_limits() {
    let mut l = listener(ListenerConfig { syn_backlog: 2, accept_backlog: 1, syn_cookies: SynCookieMode::Off, abort_on_overflow: false });
    let now = Instant::from_secs(1);
    let mut out = [0u8; 64];
    let syn = Script::linux_syn();
    assert!(matches!(l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out), SynOutcome::Accept(_)));
    assert!(matches!(l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out), SynOutcome::Accept(_)));
    assert_eq!(l.syn_queue_len(), 2);
    assert!(matches!(l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out), SynOutcome::Drop));
    assert_eq!(l.stats().syn_queue_overflows, 1);
    // One completes: it moves to the accept queue, which then is full.
    assert!(l.can_complete());
    l.on_established(7, true);
    assert_eq!((l.syn_queue_len(), l.accept_queue_len()), (1, 1));
    assert!(!l.can_complete());
    assert_eq!(l.accept(), Some(7));
    assert!(l.can_complete());
}

#[test]
fn syn_cookies_when_the_syn_queue_is_full() {
    let mut l = listener(ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() });
    let now = Instant::from_secs(10);
    let mut out = [0u8; 64];
    let syn = Seg::syn(PEER_ISN).mss(1400).sack_ok().ts(777, 0).ws(7);
    let SynOutcome::Cookie(n) = l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out) else { panic!("expected a cookie") };
    let sa = parse(&out[..n]);
    assert_eq!(sa.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(sa.ack, PEER_ISN + 1);
    // MSS from the table: the largest entry ≤ 1400 is 1300.
    assert_eq!(sa.options.mss, Some(1300));
    assert!(sa.options.sack_permitted && sa.options.window_scale.is_some());
    let ts = sa.options.timestamp.unwrap();
    assert_eq!(ts.tsecr, 777);
    assert_eq!(l.syn_queue_len(), 0, "no state kept");
    assert_eq!(l.stats().cookies_sent, 1);

    // The final ACK rebuilds the connection, options included.
    let later = now + Duration::from_secs(3);
    let ack = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1)).ts(778, ts.tsval);
    let conn = l.on_cookie_ack(later, LOCAL, REMOTE, &ack.repr()).expect("valid cookie");
    assert_eq!(conn.state(), State::Established);
    assert_eq!(conn.mss(), 1300 - 12);
    assert!(conn.sack_enabled());
    assert_eq!(conn.window_scales().map(|w| w.0), Some(7));
    assert_eq!(l.stats().cookies_validated, 1);
}

#[test]
fn forged_or_stale_cookies_are_rejected() {
    let mut l = listener(ListenerConfig { syn_cookies: SynCookieMode::Always, ..ListenerConfig::default() });
    let now = Instant::from_secs(10);
    let mut out = [0u8; 64];
    let SynOutcome::Cookie(n) = l.on_syn(now, LOCAL, REMOTE, &Seg::syn(PEER_ISN).mss(1460).repr(), &mut out) else { panic!() };
    let sa = parse(&out[..n]);
    // A blind attacker guessing the cookie (one off in the hash, not in
    // the MSS index of the low 3 bits).
    let forged = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1 + 64));
    assert!(l.on_cookie_ack(now, LOCAL, REMOTE, &forged.repr()).is_none());
    assert_eq!(l.stats().cookies_failed, 1);
    // In time it is fine; without timestamps no SACK or scaling survive.
    let good = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1));
    let conn = l.on_cookie_ack(now + Duration::from_secs(1), LOCAL, REMOTE, &good.repr()).unwrap();
    assert!(!conn.sack_enabled());
    assert_eq!(conn.window_scales(), None);
    // Too late: older than two 64 s counter periods. Another SYN (a
    // cookie sent at 190 s) keeps the listener under flood, so it is the
    // cookie's own age that fails it, and it counts as failed.
    let other = Seg::syn(PEER_ISN + 5000).mss(1460);
    assert!(matches!(l.on_syn(now + Duration::from_secs(190), LOCAL, REMOTE, &other.repr(), &mut out), SynOutcome::Cookie(_)));
    assert!(l.on_cookie_ack(now + Duration::from_secs(200), LOCAL, REMOTE, &good.repr()).is_none());
    assert_eq!(l.stats().cookies_failed, 2);
}

/// A SYN with timestamps and window scale `ws` answered with a cookie; the
/// final ACK (`window`, `payload`, `fin`) rebuilds the connection. Returns the
/// SYN-ACK and the connection, with the final ACK fed to it as the shard does.
fn cookie_handshake(l: &mut Listener<u32>, now: Instant, syn: Seg, window: u16, payload: &[u8], fin: bool) -> (Seg, Box<xdptcp::tcp::Connection>) {
    let mut out = [0u8; 64];
    let SynOutcome::Cookie(n) = l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out) else { panic!("expected a cookie") };
    let sa = parse(&out[..n]);
    let mut ack = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1)).win(window);
    if let Some(ts) = sa.options.timestamp {
        ack = ack.ts(778, ts.tsval);
    }
    if !payload.is_empty() {
        ack = ack.data(payload);
    }
    if fin {
        ack = ack.fin();
    }
    let mut conn = l.on_cookie_ack(now, LOCAL, REMOTE, &ack.repr()).expect("valid cookie");
    conn.handle_segment(now, &ack.repr());
    (sa, conn)
}

fn poll_seg(conn: &mut xdptcp::tcp::Connection, now: Instant) -> Option<Seg> {
    let mut buf = [0u8; 2048];
    let n = conn.poll_transmit(now, &mut buf)?;
    let p = TcpPacket::new_checked(&buf[..n]).unwrap();
    let r = TcpRepr::parse(&p, *LOCAL.ip(), *REMOTE.ip(), true).unwrap();
    let mut s = Seg::new(r.flags, r.seq.0).win(r.window);
    s.ack = r.ack.0;
    s.options = r.options;
    s.payload = r.payload.to_vec();
    Some(s)
}

/// RFC 7323 §2.2–2.3: the shift the peer announced applies to the windows it
/// sends; ours (7 for the default 4 MiB buffer) to those we send. The cookie
/// must carry the peer's shift (in our TSval, as Linux's
/// cookie_init_timestamp), not ours.
#[test]
fn cookie_connection_uses_the_peers_window_scale() {
    for peer_ws in [0u8, 6, 8, 14] {
        let mut l = listener(ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() });
        let now = Instant::from_secs(10);
        let syn = Seg::syn(PEER_ISN).mss(1460).sack_ok().ts(777, 0).ws(peer_ws);
        let (sa, conn) = cookie_handshake(&mut l, now, syn, 1000, &[], false);
        assert_eq!(sa.options.window_scale, Some(7), "the SYN-ACK announces our own shift");
        assert_eq!(conn.window_scales(), Some((peer_ws, 7)), "(peer's shift, ours) for a peer with shift {peer_ws}");
        assert_eq!(conn.send_window(), 1000 << peer_ws, "the peer's window, read with its shift {peer_ws}");
    }
    // A shift above 14 counts as 14 (RFC 7323 §2.3).
    let mut l = listener(ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() });
    let syn = Seg::syn(PEER_ISN).mss(1460).ts(777, 0).ws(15);
    let (_, conn) = cookie_handshake(&mut l, Instant::from_secs(10), syn, 1, &[], false);
    assert_eq!(conn.window_scales(), Some((14, 7)));
}

/// The stateless SYN-ACK advertised a window; the connection rebuilt from the
/// cookie must honour it (RFC 9293 §3.10.7.4: data within RCV.WND is
/// acceptable), so data and FIN on the final ACK, or right after it, are
/// taken, not dropped to cost the peer an RTO.
#[test]
fn cookie_connection_takes_data_and_fin_on_the_final_ack() {
    let mut l = listener(ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() });
    let now = Instant::from_secs(10);
    let syn = Seg::syn(PEER_ISN).mss(1460).sack_ok().ts(777, 0).ws(7);
    let (sa, mut conn) = cookie_handshake(&mut l, now, syn, 500, b"hello", true);
    assert_eq!(sa.window, 65535, "the SYN-ACK's (unscaled) window");
    assert_eq!(conn.recv_queue(), 5, "data on the final ACK taken");
    assert_eq!(conn.state(), State::CloseWait, "FIN on the final ACK taken");
    assert_eq!(conn.stats().out_of_window, 0);
    let reply = poll_seg(&mut conn, now).expect("an ACK");
    assert_eq!(reply.ack, PEER_ISN + 1 + 5 + 1, "data and FIN acknowledged");

    // A pure final ACK, then data before we sent anything at all.
    let mut l = listener(ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() });
    let syn = Seg::syn(PEER_ISN).mss(1460).ts(777, 0);
    let (sa, mut conn) = cookie_handshake(&mut l, now, syn, 500, &[], false);
    assert_eq!(conn.recv_window(), usize::from(sa.window), "RCV.WND is what the SYN-ACK advertised");
    assert!(poll_seg(&mut conn, now).is_none(), "a pure ACK is not answered");
    let tsval = sa.options.timestamp.unwrap().tsval;
    let data = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1)).win(500).ts(779, tsval).data(&[7u8; 1000]);
    conn.handle_segment(now, &data.repr());
    assert_eq!(conn.recv_queue(), 1000, "data right after the final ACK taken");
    assert_eq!(conn.stats().out_of_window, 0);
}

/// Linux's tcp_synq_no_recent_overflow: in `WhenFull` mode an ACK is taken
/// as a cookie only within 2 minutes (`SYNCOOKIE_VALID`) of the last cookie
/// sent; otherwise the listener is not under a flood, and an ACK matching no
/// connection is not a cookie (a blind attacker's guess gets a RST instead).
#[test]
fn when_full_cookies_are_taken_only_after_a_recent_overflow() {
    let cfg = ListenerConfig { syn_backlog: 1, ..ListenerConfig::default() };
    let mut l = listener(cfg);
    let now = Instant::from_secs(1000);
    let mut out = [0u8; 64];
    let syn = Seg::syn(PEER_ISN).mss(1460);
    // The queue has room: a real half-open connection, no cookie.
    assert!(matches!(l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out), SynOutcome::Accept(_)));
    // What a valid cookie for this SYN looks like (from a twin listener with
    // the same keys that did send it): this listener never sent one.
    let mut twin = listener(ListenerConfig { syn_backlog: 0, ..cfg });
    let SynOutcome::Cookie(n) = twin.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out) else { panic!() };
    let sa = parse(&out[..n]);
    let ack = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1));
    assert!(l.on_cookie_ack(now, LOCAL, REMOTE, &ack.repr()).is_none(), "no overflow yet: no cookie accepted");
    assert_eq!(l.stats().cookies_failed, 0, "not counted as a failed cookie (as Linux)");

    // The queue overflows: a cookie goes out, and its ACK is taken.
    let SynOutcome::Cookie(n) = l.on_syn(now, LOCAL, REMOTE, &syn.repr(), &mut out) else { panic!("queue full: a cookie") };
    let sa = parse(&out[..n]);
    let ack = Seg::ack(PEER_ISN + 1, sa.seq.wrapping_add(1));
    assert!(l.on_cookie_ack(now + Duration::from_secs(60), LOCAL, REMOTE, &ack.repr()).is_some(), "60 s after an overflow");
    // The cookie itself would still be valid (cookies last up to 192 s),
    // but once SYNCOOKIE_VALID has passed since the last overflow the
    // listener takes none.
    assert_eq!(SYNCOOKIE_VALID, Duration::from_secs(120));
    let late = now + SYNCOOKIE_VALID + Duration::from_secs(1);
    assert!(l.on_cookie_ack(late, LOCAL, REMOTE, &ack.repr()).is_none(), "no overflow for 2 minutes: no cookie accepted");
}

/// Jumbo frames: a peer at MTU 9000 (MSS 8960) keeps its MSS under cookies
/// instead of being cut to 1460; so do 4352 (FDDI), 9216 and loopback MTUs.
#[test]
fn cookie_mss_table_covers_jumbo_frames() {
    let tcp = Arc::new(Config { mss: 65495, ..Config::default() });
    let mut l: Listener<u32> = Listener::new(LOCAL, ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() }, tcp, IsnGenerator::new([1; 16]), SynCookies::new([2; 16]));
    for (peer_mss, want) in [(1460u16, 1460u16), (4312, 4312), (8000, 4312), (8960, 8960), (9000, 8960), (9176, 9176), (16000, 9176), (65495, 65495), (65535, 65495)] {
        let (sa, conn) = cookie_handshake(&mut l, Instant::from_secs(10), Seg::syn(PEER_ISN).mss(peer_mss), 1000, &[], false);
        assert_eq!(sa.options.mss, Some(want), "the SYN-ACK announces the MSS the cookie keeps");
        assert_eq!(conn.mss(), usize::from(want), "peer MSS {peer_mss}");
    }
    // Our own MSS still caps what we send.
    let tcp = Arc::new(Config::for_mtu(9000));
    let mut l: Listener<u32> = Listener::new(LOCAL, ListenerConfig { syn_backlog: 0, ..ListenerConfig::default() }, tcp, IsnGenerator::new([1; 16]), SynCookies::new([2; 16]));
    let (_, conn) = cookie_handshake(&mut l, Instant::from_secs(10), Seg::syn(PEER_ISN).mss(9176), 1000, &[], false);
    assert_eq!(conn.mss(), 8960);
}
