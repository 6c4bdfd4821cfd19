//! Bounded resources of a shard, end to end over simulated links (seeded
//! loss and reordering, virtual clock): the connection cap, per-connection
//! buffers, shard-wide reassembly memory and receive-memory pressure. Every
//! cap degrades gracefully (a RST, a dropped segment the peer retransmits,
//! a window that stops growing) and is counted; the shard's tracked totals
//! are checked against a recount after every frame, stay within their
//! limits, and return to zero once every connection is gone.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::CloseReason;
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::EthernetAddress;

use common::shards::{self, Parts, ShardPair};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 9;
const MSS: usize = 1460;

/// Byte `i` of the stream a client port sends.
fn byte(port: u16, i: usize) -> u8 {
    let x = (i as u64 ^ (u64::from(port) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

/// The server: checks every byte it reads against the pattern; while
/// `paused` it reads nothing (data stays buffered). Closes after the peer's
/// FIN once everything is read.
#[derive(Default)]
struct Sink {
    paused: bool,
    accepted: usize,
    corrupt: usize,
    /// (bytes read, reason) of every connection gone.
    finished: Vec<(usize, CloseReason)>,
}

#[derive(Default)]
struct SinkState {
    read: usize,
    peer_closed: bool,
}

impl App for Sink {
    type State = SinkState;
    fn on_accept(&mut self, _c: &mut Conn<'_, SinkState>) {
        self.accepted += 1;
    }
    fn on_data(&mut self, c: &mut Conn<'_, SinkState>, data: &[u8]) -> usize {
        if self.paused {
            return 0;
        }
        let port = c.remote().port();
        let st = c.state();
        for (k, &b) in data.iter().enumerate() {
            if b != byte(port, st.read + k) {
                self.corrupt += 1;
            }
        }
        st.read += data.len();
        if st.peer_closed {
            c.close(); // settled after this read: a FIN, as nothing is left
        }
        data.len()
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, SinkState>) {
        c.state().peer_closed = true;
        if c.tcp().recv_queue() == 0 {
            c.close();
        }
    }
    fn on_closed(&mut self, _id: ConnId, state: SinkState, reason: CloseReason) {
        self.finished.push((state.read, reason));
    }
}

/// The client: sends `total` bytes of its pattern on each connection, then
/// a FIN; closes when the server's FIN comes.
#[derive(Default)]
struct Source {
    total: usize,
    connected: usize,
    sent: HashMap<ConnId, usize>,
    closed: Vec<(ConnId, CloseReason)>,
    /// Sends cut short by a full send buffer.
    short_writes: usize,
}

impl Source {
    fn pump(&mut self, c: &mut Conn<'_, ()>) {
        let port = c.local().port();
        let sent = self.sent.entry(c.id()).or_default();
        while *sent < self.total {
            let n = (self.total - *sent).min(16 << 10);
            let chunk: Vec<u8> = (*sent..*sent + n).map(|i| byte(port, i)).collect();
            let w = c.send(&chunk).unwrap_or(0);
            *sent += w;
            if w < n {
                self.short_writes += 1;
                return;
            }
        }
        c.shutdown();
    }
}

impl App for Source {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.connected += 1;
        self.sent.insert(c.id(), 0);
        self.pump(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        self.pump(c);
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
    fn on_closed(&mut self, id: ConnId, _s: (), reason: CloseReason) {
        self.closed.push((id, reason));
    }
}

struct World {
    now: Instant,
    server: Shard<Sink>,
    client: Shard<Source>,
    sink: Sink,
    source: Source,
    to_server: Link,
    to_client: Link,
    buf: Vec<u8>,
    /// Highest totals the server held at any point: (all, out of order).
    peak: (u64, u64),
}

impl World {
    fn new(server: StackConfig, to_server: LinkConfig, to_client: LinkConfig, seed: u64) -> World {
        Self::with_client(server, Self::client_config(), to_server, to_client, seed)
    }

    fn with_client(server: StackConfig, client: StackConfig, to_server: LinkConfig, to_client: LinkConfig, seed: u64) -> World {
        let mut server = Shard::new(server, [1; 16]);
        server.listen(PORT);
        server.announce();
        let client = Shard::new(client, [2; 16]);
        World {
            now: Instant::from_secs(1),
            server,
            client,
            sink: Sink::default(),
            source: Source::default(),
            to_server: Link::new(to_server, seed),
            to_client: Link::new(to_client, seed + 1),
            buf: vec![0u8; 2048],
            peak: (0, 0),
        }
    }

    fn server_config() -> StackConfig {
        StackConfig::new(SERVER_MAC, SERVER_IP, 24)
    }

    fn client_config() -> StackConfig {
        StackConfig::new(CLIENT_MAC, CLIENT_IP, 24)
    }

    /// The caps hold, and the incrementally tracked totals are exact.
    #[track_caller]
    fn check(&mut self) {
        let cfg = self.server.config();
        let s = *self.server.stats();
        assert_eq!(self.server.recount_buffered(), (s.recv_buffered, s.ooo_buffered), "tracked totals drifted from a recount");
        assert!(s.ooo_buffered as usize <= cfg.reassembly_limit, "reassembly {} > limit {}", s.ooo_buffered, cfg.reassembly_limit);
        assert!(s.recv_buffered as usize <= cfg.memory_limit, "receive memory {} > limit {}", s.recv_buffered, cfg.memory_limit);
        for (_, c) in self.server.connections() {
            assert!(c.recv_held() <= cfg.tcp.recv_buffer, "a receive buffer overflowed");
            assert!(c.send_queue() <= cfg.tcp.send_buffer, "a send buffer overflowed");
        }
        let client = self.client.config();
        for (_, c) in self.client.connections() {
            assert!(c.recv_held() <= client.tcp.recv_buffer, "a client receive buffer overflowed");
            assert!(c.send_queue() <= client.tcp.send_buffer, "a client send buffer overflowed");
        }
        assert!(self.server.connections().count() <= cfg.max_connections);
        self.peak = (self.peak.0.max(s.recv_buffered), self.peak.1.max(s.ooo_buffered));
    }

    /// Runs until `done` or `limit` of virtual time, checking the caps after
    /// every frame and timer pass.
    fn run(&mut self, limit: Duration, done: impl FnMut(&World) -> bool) -> bool {
        shards::run(self, limit, done)
    }

    fn connect(&mut self) -> ConnId {
        self.client.connect(self.now, SocketAddrV4::new(SERVER_IP, PORT)).expect("client table has room")
    }

    /// Everything was read intact and every connection is gone from the
    /// server, its tracked totals back at zero.
    #[track_caller]
    fn assert_all_done(&mut self, conns: usize) {
        let bytes = self.source.total;
        let ok = self.run(Duration::from_secs(60), |w| w.sink.finished.len() == conns && w.server.connections().count() == 0);
        assert!(ok, "{} of {conns} server connections finished; {:?}", self.sink.finished.len(), self.server.stats());
        assert_eq!(self.sink.corrupt, 0, "corrupted bytes");
        assert!(self.sink.finished.iter().all(|&(n, r)| n == bytes && r == CloseReason::Normal), "{:?}", self.sink.finished);
        let s = self.server.stats();
        assert_eq!((s.recv_buffered, s.ooo_buffered), (0, 0), "accounting leak after every connection closed");
    }
}

impl ShardPair for World {
    type S = Sink;
    type C = Source;
    fn parts(&mut self) -> Parts<'_, Sink, Source> {
        Parts { now: &mut self.now, server: &mut self.server, srv: &mut self.sink, client: &mut self.client, cli: &mut self.source, to_server: &mut self.to_server, to_client: &mut self.to_client, buf: &mut self.buf }
    }
    fn view(&self) -> (&Shard<Sink>, &Shard<Source>, &Link, &Link) {
        (&self.server, &self.client, &self.to_server, &self.to_client)
    }
    fn server_received(&mut self, _frame: &[u8]) {
        self.check();
    }
    fn checkpoint(&mut self) {
        self.check();
    }
}

#[test]
fn tiny_reassembly_limit_under_loss_and_reordering() {
    let mut cfg = World::server_config();
    cfg.reassembly_limit = 12 << 10; // about eight segments, for the whole shard
    let lossy = LinkConfig::ideal(Duration::from_micros(300))
        .with_bandwidth(1_000_000_000, 4 << 20)
        .with_loss(0.02)
        .with_reorder(0.1, Duration::from_micros(400))
        .with_duplicate(0.01);
    let back = LinkConfig::ideal(Duration::from_micros(300)).with_loss(0.01);
    let mut w = World::new(cfg, lossy, back, 41);
    w.source.total = 3 << 20;
    const CONNS: usize = 4;
    for _ in 0..CONNS {
        w.connect();
    }
    let done = w.run(Duration::from_secs(600), |w| w.sink.finished.len() == CONNS);
    assert!(done, "finished {} of {CONNS}: {:?}", w.sink.finished.len(), w.server.stats());
    w.assert_all_done(CONNS);
    let s = *w.server.stats();
    assert!(s.ooo_dropped > 0, "the limit never bit: {s:?}");
    assert!(w.peak.1 > 0, "nothing was ever held out of order");
    eprintln!("ooo_dropped {} peak ooo {} of {}", s.ooo_dropped, w.peak.1, 12 << 10);
}

#[test]
fn receive_memory_pressure_clamps_windows_then_recovers() {
    let mut cfg = World::server_config();
    cfg.tcp.recv_buffer = 64 << 10;
    cfg.memory_limit = 256 << 10; // 16 connections could hold 1 MiB
    let pressure = cfg.memory_pressure() as u64;
    let link = LinkConfig::ideal(Duration::from_micros(200)).with_bandwidth(1_000_000_000, 4 << 20);
    let mut client = World::client_config();
    client.tcp.send_buffer = 64 << 10; // the senders' own cap, hit at once
    let mut w = World::with_client(cfg, client, link.clone(), link, 7);
    w.source.total = 512 << 10;
    w.sink.paused = true;

    // The application reads nothing: eight connections fill what the
    // shard allows, and no more.
    let mut first = Vec::new();
    for _ in 0..8 {
        first.push(w.connect());
    }
    w.run(Duration::from_secs(3), |_| false);
    let s = *w.server.stats();
    assert!(s.recv_buffered >= pressure, "held {} of {}: the pressure mark was never reached", s.recv_buffered, 256 << 10);
    assert!(w.peak.0 <= 256 << 10);

    // Newcomers under pressure are offered a clamped window (at the limit:
    // none), not their 64 KiB buffer.
    let clamped = s.window_clamped;
    let mut late = Vec::new();
    for _ in 0..8 {
        late.push(w.connect());
    }
    w.run(Duration::from_secs(2), |w| w.source.connected == 16);
    assert_eq!(w.source.connected, 16);
    assert!(w.server.stats().window_clamped > clamped, "{:?}", w.server.stats());
    for id in &late {
        let wnd = w.client.connection(*id).expect("open").send_window();
        assert!(wnd <= 4 * MSS, "a late connection was offered {wnd} bytes");
    }
    assert!(w.peak.0 <= 256 << 10);
    assert!(w.source.short_writes > 0, "the send buffer never filled");

    // The application reads again: every transfer completes, byte-exact.
    w.sink.paused = false;
    let ids: Vec<ConnId> = w.server.connections().map(|(id, _)| id).collect();
    let now = w.now;
    for id in ids {
        w.server.resume_reading(now, id, &mut w.sink);
    }
    let done = w.run(Duration::from_secs(600), |w| w.sink.finished.len() == 16);
    assert!(done, "finished {} of 16: {:?}", w.sink.finished.len(), w.server.stats());
    w.assert_all_done(16);
    let s = *w.server.stats();
    eprintln!("peak held {} of {}, window_clamped {}, mem_dropped {}, ooo_dropped {}", w.peak.0, 256 << 10, s.window_clamped, s.mem_dropped, s.ooo_dropped);
}

#[test]
fn connection_cap_refuses_with_rst_and_the_rest_keep_working() {
    let mut cfg = World::server_config();
    cfg.max_connections = 3;
    let link = LinkConfig::ideal(Duration::from_micros(100)).with_bandwidth(1_000_000_000, 4 << 20);
    let mut w = World::new(cfg, link.clone(), link, 3);
    w.source.total = 1 << 20;
    for _ in 0..3 {
        w.connect();
    }
    assert!(w.run(Duration::from_secs(2), |w| w.sink.accepted == 3));

    // The fourth SYN finds the table full: RST, counted, no state kept.
    let resets = w.server.stats().resets_sent;
    let fourth = w.connect();
    assert!(w.run(Duration::from_secs(2), |w| w.client.connection(fourth).is_none()));
    let s = *w.server.stats();
    assert_eq!(s.refused_full, 1);
    assert_eq!(s.resets_sent, resets + 1);
    assert_eq!(s.passive_opens, 3);
    assert_eq!(w.source.connected, 3, "the refused connection never connected");
    assert_eq!(w.source.closed, vec![(fourth, CloseReason::Refused)], "the application learns its connect was refused");

    // The three transfer everything and close; then there is room again.
    w.assert_all_done(3);
    let fifth = w.connect();
    assert!(w.run(Duration::from_secs(2), |w| w.sink.accepted == 4));
    assert!(w.client.connection(fifth).is_some());
    assert_eq!(w.server.stats().refused_full, 1);
}
