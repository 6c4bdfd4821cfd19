//! Packetdrill-style scripting of one connection: inject the peer's
//! segments, expect ours, move the virtual clock. Segments pass through the
//! real wire code both ways (emit, checksum, parse), so scripts test the
//! bytes, not just the structs.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use xdptcp::tcp::{Config, Connection, Event};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::{SackBlocks, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp};

pub const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 5000);
pub const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);
/// The peer's initial sequence number in scripts.
pub const PEER_ISN: u32 = 1_000_000;
pub const OUR_ISS: u32 = 5_000_000;

/// A segment, owned, with builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn new(flags: TcpFlags, seq: u32) -> Seg {
        Seg { flags, seq, ack: 0, window: 65535, options: TcpOptions::default(), payload: Vec::new() }
    }
    pub fn syn(seq: u32) -> Seg {
        Seg::new(TcpFlags::SYN, seq)
    }
    /// A plain ACK from the peer.
    pub fn ack(seq: u32, ack: u32) -> Seg {
        Seg::new(TcpFlags::ACK, seq).acking(ack)
    }
    pub fn acking(mut self, ack: u32) -> Seg {
        self.flags |= TcpFlags::ACK;
        self.ack = ack;
        self
    }
    pub fn win(mut self, window: u16) -> Seg {
        self.window = window;
        self
    }
    pub fn mss(mut self, mss: u16) -> Seg {
        self.options.mss = Some(mss);
        self
    }
    pub fn ws(mut self, shift: u8) -> Seg {
        self.options.window_scale = Some(shift);
        self
    }
    pub fn sack_ok(mut self) -> Seg {
        self.options.sack_permitted = true;
        self
    }
    pub fn ts(mut self, tsval: u32, tsecr: u32) -> Seg {
        self.options.timestamp = Some(TcpTimestamp { tsval, tsecr });
        self
    }
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Seg {
        let mut b = SackBlocks::new();
        for &(l, r) in blocks {
            b.push(SeqNumber(l), SeqNumber(r));
        }
        self.options.sack_blocks = b;
        self
    }
    pub fn data(mut self, bytes: &[u8]) -> Seg {
        self.payload = bytes.to_vec();
        self.flags |= TcpFlags::PSH;
        self
    }
    pub fn fin(mut self) -> Seg {
        self.flags |= TcpFlags::FIN;
        self
    }
    pub fn rst(mut self) -> Seg {
        self.flags |= TcpFlags::RST;
        self
    }
    /// Sequence space used: payload, plus SYN and FIN.
    pub fn len(&self) -> u32 {
        self.payload.len() as u32 + self.flags.syn() as u32 + self.flags.fin() as u32
    }
    pub fn repr(&self) -> TcpRepr<'_> {
        TcpRepr {
            src_port: REMOTE.port(),
            dst_port: LOCAL.port(),
            seq: SeqNumber(self.seq),
            ack: SeqNumber(self.ack),
            flags: self.flags,
            window: self.window,
            urgent: 0,
            options: self.options,
            payload: &self.payload,
        }
    }
    fn from_repr(r: &TcpRepr<'_>) -> Seg {
        Seg { flags: r.flags, seq: r.seq.0, ack: r.ack.0, window: r.window, options: r.options, payload: r.payload.to_vec() }
    }
    pub fn has(&self, f: TcpFlags) -> bool {
        self.flags.contains(f)
    }
}

/// One connection under test, with its clock.
pub struct Script {
    pub now: Instant,
    pub conn: Connection,
    buf: Vec<u8>,
}

impl Script {
    pub fn config() -> Config {
        Config::default()
    }

    /// An active open at t = 1 s (the SYN is not yet polled).
    pub fn active(config: Config) -> Script {
        let now = Instant::from_secs(1);
        let conn = Connection::connect(Arc::new(config), LOCAL, REMOTE, SeqNumber(OUR_ISS), 0, now);
        Script { now, conn, buf: vec![0u8; 9000] }
    }

    /// A passive open from `syn` at t = 1 s (the SYN-ACK is not yet polled).
    pub fn passive(config: Config, syn: Seg) -> Script {
        let now = Instant::from_secs(1);
        let conn = Connection::accept(Arc::new(config), LOCAL, REMOTE, &syn.repr(), SeqNumber(OUR_ISS), 0, now);
        Script { now, conn, buf: vec![0u8; 9000] }
    }

    /// The SYN a Linux peer sends: MSS 1460, SACK, timestamps, window scale 7.
    pub fn linux_syn() -> Seg {
        Seg::syn(PEER_ISN).win(64240).mss(1460).sack_ok().ts(100, 0).ws(7)
    }

    /// An ESTABLISHED connection from an active open with Linux-like options.
    /// The SYN-ACK's window is unscaled (RFC 7323 §2.2); a window update then
    /// advertises 512 << 7 = 64 KiB.
    pub fn established(config: Config) -> Script {
        Script::established_with_rtt(config, Duration::ZERO)
    }

    /// Like [`Script::established`], with the SYN-ACK arriving `rtt` after
    /// the SYN: the handshake's sample makes SRTT and the minimum RTT `rtt`.
    pub fn established_with_rtt(config: Config, rtt: Duration) -> Script {
        let mut s = Script::active(config);
        let syn = s.expect();
        assert!(syn.has(TcpFlags::SYN));
        assert!(s.advance(rtt).is_empty());
        s.inject(Seg::syn(PEER_ISN).acking(OUR_ISS + 1).win(65535).mss(1460).sack_ok().ts(100, syn.options.timestamp.map_or(0, |t| t.tsval)).ws(7));
        let ack = s.expect();
        assert!(ack.has(TcpFlags::ACK) && !ack.has(TcpFlags::SYN));
        assert_eq!(s.conn.poll_event(), Some(Event::Connected));
        s.inject(Seg::ack(PEER_ISN + 1, OUR_ISS + 1).win(512));
        assert_eq!(s.conn.send_window(), 512 << 7);
        s.expect_nothing();
        s
    }

    /// Feeds a segment from the peer, through emit → bytes → parse.
    pub fn inject(&mut self, seg: Seg) {
        let repr = seg.repr();
        let len = repr.header_len() + seg.payload.len();
        let mut bytes = vec![0u8; len];
        repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), *REMOTE.ip(), *LOCAL.ip(), true);
        let packet = TcpPacket::new_checked(&bytes[..]).expect("valid packet");
        let parsed = TcpRepr::parse(&packet, *REMOTE.ip(), *LOCAL.ip(), true).expect("parses");
        self.conn.handle_segment(self.now, &parsed);
    }

    /// Our next segment, if any, checked for a valid checksum.
    pub fn poll(&mut self) -> Option<Seg> {
        let n = self.conn.poll_transmit(self.now, &mut self.buf)?;
        let packet = TcpPacket::new_checked(&self.buf[..n]).expect("we emitted a malformed header");
        let repr = TcpRepr::parse(&packet, *LOCAL.ip(), *REMOTE.ip(), true).expect("we emitted a bad checksum");
        Some(Seg::from_repr(&repr))
    }

    #[track_caller]
    pub fn expect(&mut self) -> Seg {
        self.poll().expect("expected a segment, got none")
    }

    #[track_caller]
    pub fn expect_nothing(&mut self) {
        if let Some(seg) = self.poll() {
            panic!("expected no segment, got {seg:?}");
        }
    }

    pub fn drain(&mut self) -> Vec<Seg> {
        std::iter::from_fn(|| self.poll()).collect()
    }

    /// The TSval our segments carry now (scripts use a zero offset).
    pub fn tsval(&self) -> u32 {
        self.now.as_millis() as u32
    }

    /// Moves the clock forward by `d`, firing every timer on the way.
    /// Returns the segments sent when timers fired, with their times.
    pub fn advance(&mut self, d: Duration) -> Vec<(Instant, Seg)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.conn.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.conn.handle_timeout(self.now);
            while let Some(seg) = self.poll() {
                out.push((self.now, seg));
            }
        }
        self.now = end;
        out
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// Everything readable, consumed.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let (a, b) = self.conn.recv_slices();
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        self.conn.consume(v.len());
        v
    }
}
