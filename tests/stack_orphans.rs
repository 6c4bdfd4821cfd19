//! Orphans and send memory on the real shard, end to end over simulated
//! links (virtual clock). An orphan is a connection the application closed
//! that is still finishing: its unsent data and FIN wait for the peer. A
//! peer that holds its window at 0 keeps an orphan, and its send buffer,
//! for ever (a sockstress-style pin), so, as Linux does:
//! - at most `max_orphans` are kept (`tcp_max_orphans`): a close beyond it
//!   resets the connection instead;
//! - send buffers count in the shard's `memory_limit` with receive memory
//!   (`tcp_mem`): sends beyond it are cut short (a connection may always
//!   queue 4 KiB, Linux's `tcp_wmem[0]`);
//! - when memory runs out, orphans holding send data are reset, at close
//!   and at their timers (`tcp_check_oom`, `tcp_out_of_resources`), not the
//!   connections an application still holds.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::{CloseReason, State};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::EthernetAddress;

use common::shards::{self, Parts, ShardPair};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 80;
/// What a connection may always queue to send (Linux's tcp_wmem[0]).
const FLOOR: usize = 4096;

/// Byte `i` of the stream the server sends to client port `port`.
fn byte(port: u16, i: usize) -> u8 {
    let x = (i as u64 ^ (u64::from(port) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

/// How a server connection ends once it has queued its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum End {
    /// `close()`: the connection becomes an orphan until it finishes.
    #[default]
    Close,
    /// `shutdown()`: a FIN, but the application keeps the connection.
    Shutdown,
    /// Nothing: the test closes it.
    Hold,
}

#[derive(Debug, Clone, Copy, Default)]
struct Plan {
    bytes: usize,
    end: End,
}

/// The server: each accepted connection takes the next plan, writes its
/// bytes as fast as the send buffer (and the shard's memory) lets it, then
/// ends as planned.
#[derive(Default)]
struct Writer {
    plans: VecDeque<Plan>,
    /// Client ports whose data the server leaves unread.
    unread: HashSet<u16>,
    short_writes: usize,
    closed: Vec<(u16, CloseReason)>,
    ids: HashMap<u16, ConnId>,
}

#[derive(Default)]
struct WriterState {
    plan: Plan,
    sent: usize,
    ended: bool,
    port: u16,
}

impl Writer {
    fn pump(&mut self, c: &mut Conn<'_, WriterState>) {
        let port = c.remote().port();
        loop {
            let st = c.state();
            let (sent, plan) = (st.sent, st.plan);
            if sent >= plan.bytes {
                if !st.ended {
                    st.ended = true;
                    match plan.end {
                        End::Close => c.close(),
                        End::Shutdown => c.shutdown(),
                        End::Hold => {}
                    }
                }
                return;
            }
            let n = (plan.bytes - sent).min(16 << 10);
            let chunk: Vec<u8> = (sent..sent + n).map(|i| byte(port, i)).collect();
            let w = c.send(&chunk).unwrap_or(0);
            c.state().sent += w;
            if w < n {
                self.short_writes += 1;
                return;
            }
        }
    }
}

impl App for Writer {
    type State = WriterState;
    fn on_accept(&mut self, c: &mut Conn<'_, WriterState>) {
        let port = c.remote().port();
        self.ids.insert(port, c.id());
        let st = c.state();
        st.plan = self.plans.pop_front().expect("a plan for every connection");
        st.port = port;
        self.pump(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, WriterState>) {
        self.pump(c);
    }
    fn on_data(&mut self, c: &mut Conn<'_, WriterState>, data: &[u8]) -> usize {
        if self.unread.contains(&c.remote().port()) { 0 } else { data.len() }
    }
    fn on_closed(&mut self, _id: ConnId, st: WriterState, reason: CloseReason) {
        self.closed.push((st.port, reason));
    }
}

/// The client: reads and checks everything, except on connections whose
/// port is paused (their data stays buffered, so the window closes).
/// Closes once the server's FIN came and everything was read.
#[derive(Default)]
struct Reader {
    paused: HashSet<u16>,
    /// Bytes each new connection sends the server on connecting.
    send_bytes: usize,
    corrupt: usize,
    /// Client port → (bytes read, why it closed).
    finished: HashMap<u16, (usize, CloseReason)>,
}

#[derive(Default)]
struct ReaderState {
    read: usize,
    peer_closed: bool,
    port: u16,
}

impl App for Reader {
    type State = ReaderState;
    fn on_connected(&mut self, c: &mut Conn<'_, ReaderState>) {
        c.state().port = c.local().port();
        let _ = c.send(&vec![7u8; self.send_bytes]);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ReaderState>, data: &[u8]) -> usize {
        let port = c.local().port();
        if self.paused.contains(&port) {
            return 0;
        }
        let st = c.state();
        self.corrupt += data.iter().enumerate().filter(|&(k, &b)| b != byte(port, st.read + k)).count();
        st.read += data.len();
        if st.peer_closed {
            c.close();
        }
        data.len()
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ReaderState>) {
        c.state().peer_closed = true;
        if c.tcp().recv_queue() == 0 {
            c.close();
        }
    }
    fn on_closed(&mut self, _id: ConnId, st: ReaderState, reason: CloseReason) {
        self.finished.insert(st.port, (st.read, reason));
    }
}

struct World {
    now: Instant,
    server: Shard<Writer>,
    client: Shard<Reader>,
    writer: Writer,
    reader: Reader,
    to_server: Link,
    to_client: Link,
    buf: Vec<u8>,
    /// Client port of every connection opened, in order.
    ports: Vec<u16>,
    ids: Vec<ConnId>,
    /// The most the server's send buffers held together.
    peak_send: usize,
}

impl World {
    fn new(server: StackConfig, plans: Vec<Plan>) -> World {
        let mut server = Shard::new(server, [1; 16]);
        server.listen(PORT);
        server.announce();
        let mut client = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
        // Small windows: what the server sends mostly waits in its buffers.
        // Ten full segments (MSS 1448 with timestamps), so that a reader
        // that stops closes the window to exactly 0.
        client.tcp.recv_buffer = 10 * 1448;
        let link = LinkConfig::ideal(Duration::from_millis(1)).with_bandwidth(100_000_000, 1 << 20);
        World {
            now: Instant::from_secs(1),
            server,
            client: Shard::new(client, [2; 16]),
            writer: Writer { plans: plans.into(), ..Writer::default() },
            reader: Reader::default(),
            to_server: Link::new(link.clone(), 5),
            to_client: Link::new(link, 6),
            buf: vec![0u8; 2048],
            ports: Vec::new(),
            ids: Vec::new(),
            peak_send: 0,
        }
    }

    fn server_config() -> StackConfig {
        StackConfig::new(SERVER_MAC, SERVER_IP, 24)
    }

    /// Bytes in the server's send buffers, recounted.
    fn server_send_held(&self) -> usize {
        self.server.connections().map(|(_, c)| c.send_queue()).sum()
    }

    /// Send and receive memory together stay within `memory_limit`, but for
    /// what each connection may always queue.
    #[track_caller]
    fn check(&mut self) {
        let cfg = self.server.config();
        let send = self.server_send_held();
        let (recv, _) = self.server.recount_buffered();
        let conns = self.server.connections().count();
        assert!(send + recv as usize <= cfg.memory_limit + conns * FLOOR, "server memory {send} + {recv} over the limit {} ({conns} connections)", cfg.memory_limit);
        self.peak_send = self.peak_send.max(send);
    }

    /// The tracked totals agree with a recount.
    #[track_caller]
    fn audit(&self) {
        let s = self.server.stats();
        assert_eq!(s.send_buffered, self.server_send_held() as u64, "tracked send memory drifted");
        let orphans = self.server.connections().filter(|(_, c)| c.is_orphan()).count();
        assert_eq!(s.orphans, orphans as u64, "tracked orphans drifted");
        assert_eq!(self.server.recount_buffered(), (s.recv_buffered, s.ooo_buffered));
    }

    fn run(&mut self, limit: Duration, done: impl FnMut(&World) -> bool) -> bool {
        shards::run(self, limit, done)
    }

    /// Opens a connection, paused or reading, and waits until the server
    /// has accepted it.
    fn open(&mut self, paused: bool) -> u16 {
        let id = self.client.connect(self.now, SocketAddrV4::new(SERVER_IP, PORT)).expect("room");
        let port = self.client.connection(id).unwrap().local().port();
        if paused {
            self.reader.paused.insert(port);
        }
        self.ports.push(port);
        self.ids.push(id);
        assert!(self.run(Duration::from_secs(2), |w| w.writer.ids.contains_key(&port)), "not accepted");
        port
    }

    fn resume(&mut self, port: u16) {
        self.reader.paused.remove(&port);
        let k = self.ports.iter().position(|&p| p == port).expect("ours");
        let (now, id) = (self.now, self.ids[k]);
        self.client.resume_reading(now, id, &mut self.reader);
    }

    /// The server connection for client port `port`, if still there.
    fn server_conn(&self, port: u16) -> Option<&xdptcp::tcp::Connection> {
        self.server.connection(*self.writer.ids.get(&port)?).filter(|c| c.remote().port() == port)
    }

    fn reason(&self, port: u16) -> Option<CloseReason> {
        self.reader.finished.get(&port).map(|&(_, r)| r)
    }
}

impl ShardPair for World {
    type S = Writer;
    type C = Reader;
    fn parts(&mut self) -> Parts<'_, Writer, Reader> {
        Parts { now: &mut self.now, server: &mut self.server, srv: &mut self.writer, client: &mut self.client, cli: &mut self.reader, to_server: &mut self.to_server, to_client: &mut self.to_client, buf: &mut self.buf }
    }
    fn view(&self) -> (&Shard<Writer>, &Shard<Reader>, &Link, &Link) {
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
fn closes_beyond_max_orphans_are_reset() {
    let mut cfg = World::server_config();
    cfg.max_orphans = 3;
    let mut w = World::new(cfg, vec![Plan { bytes: 64 << 10, end: End::Close }; 5]);
    // Five connections whose reader stops at once: each server connection
    // queues 64 KiB and closes, and becomes an orphan in FIN_WAIT_1, its
    // window held at 0; the fourth and fifth closes find three orphans held.
    let ports: Vec<u16> = (0..5).map(|_| w.open(true)).collect();
    w.run(Duration::from_secs(3), |_| false);
    for &p in &ports[..3] {
        assert_eq!(w.reason(p), None, "an orphan within the limit was reset");
        assert_eq!(w.server_conn(p).map(|c| c.state()), Some(State::FinWait1));
    }
    for &p in &ports[3..] {
        assert_eq!(w.reason(p), Some(CloseReason::Reset), "close beyond max_orphans was not reset");
        assert!(w.server_conn(p).is_none());
        assert!(w.writer.closed.contains(&(p, CloseReason::Aborted)), "{:?}", w.writer.closed);
    }
    let s = *w.server.stats();
    assert_eq!((s.orphans, s.orphans_reset, s.orphans_reset_memory), (3, 2, 0), "{s:?}");
    w.audit();

    // The readers come back: the three orphans deliver everything and finish.
    for &p in &ports[..3] {
        w.resume(p);
    }
    assert!(w.run(Duration::from_secs(60), |w| w.reader.finished.len() == 5), "{:?}", w.reader.finished);
    for &p in &ports[..3] {
        assert_eq!(w.reader.finished[&p], (64 << 10, CloseReason::Normal));
    }
    assert_eq!(w.reader.corrupt, 0);
    w.run(Duration::from_millis(100), |_| false);
    // Finished orphans wait in TIME_WAIT, which is not counted as orphans.
    assert_eq!(w.server.stats().orphans, 0);
    assert_eq!(w.server.time_wait_count(), 3);
    w.audit();
}

#[test]
fn send_buffers_count_in_the_memory_limit() {
    let mut cfg = World::server_config();
    cfg.memory_limit = 256 << 10;
    cfg.tcp.send_buffer = 256 << 10;
    let mut w = World::new(cfg, vec![Plan { bytes: 1 << 20, end: End::Shutdown }; 4]);
    // Four writers that could each queue 256 KiB; their readers have stopped.
    let ports: Vec<u16> = (0..4).map(|_| w.open(true)).collect();
    w.run(Duration::from_secs(3), |_| false);
    assert!(w.writer.short_writes > 0);
    let held = w.server_send_held();
    assert!(held >= 3 * (256 << 10) / 4, "only {held} bytes queued: the limit was never reached");
    assert!(held <= (256 << 10) + 4 * FLOOR, "{held} bytes queued over a 256 KiB limit");
    assert_eq!(w.server.stats().send_buffered, held as u64);
    w.audit();
    // Receive windows are clamped under the pressure send data makes, yet
    // every connection may still queue a little: every writer got some out.
    for &p in &ports {
        let c = w.server_conn(p).unwrap();
        assert!(c.stats().bytes_acked > 0 || c.send_queue() > 0, "a writer never queued anything");
    }

    // The readers come back: everything arrives intact, memory returns.
    for &p in &ports {
        w.resume(p);
    }
    assert!(w.run(Duration::from_secs(120), |w| w.reader.finished.len() == 4), "{:?} {:?}", w.reader.finished, w.server.stats());
    for &p in &ports {
        assert_eq!(w.reader.finished[&p], (1 << 20, CloseReason::Normal));
    }
    assert_eq!(w.reader.corrupt, 0);
    w.run(Duration::from_millis(100), |_| false);
    assert_eq!(w.server.stats().send_buffered, 0);
    assert!(w.peak_send <= (256 << 10) + 4 * FLOOR);
    w.audit();
}

#[test]
fn orphan_pinned_by_a_zero_window_is_reset_when_memory_runs_out() {
    let mut cfg = World::server_config();
    cfg.memory_limit = 256 << 10;
    cfg.tcp.send_buffer = 192 << 10;
    let plans = vec![Plan { bytes: 192 << 10, end: End::Close }, Plan { bytes: 1 << 20, end: End::Shutdown }];
    let mut w = World::new(cfg, plans);
    // A: queues 192 KiB and closes; its reader holds the window at 0. While
    // memory lasts, the orphan is kept (zero-window probes go on).
    let a = w.open(true);
    w.run(Duration::from_secs(5), |_| false);
    assert_eq!(w.reason(a), None);
    let orphan = w.server_conn(a).expect("the orphan is kept");
    assert_eq!(orphan.state(), State::FinWait1);
    assert!(orphan.send_queue() > 150 << 10, "{}", orphan.send_queue());
    assert_eq!(orphan.send_window(), 0);

    // B: a live connection whose reader is paused too, writing all it can:
    // memory runs out. At its next timer the orphan holding send data is
    // reset, not B.
    let b = w.open(true);
    let reset = w.run(Duration::from_secs(300), |w| w.reason(a).is_some());
    assert!(reset, "the orphan survived memory running out: {:?}", w.server.stats());
    assert_eq!(w.reason(a), Some(CloseReason::Reset));
    assert!(w.server_conn(a).is_none());
    assert_eq!(w.reason(b), None, "the live connection was reset");
    assert_eq!(w.server_conn(b).map(|c| c.state()), Some(State::Established));

    // B's reader comes back: B completes, byte for byte.
    w.resume(b);
    assert!(w.run(Duration::from_secs(120), |w| w.reason(b).is_some()));
    assert_eq!(w.reader.finished[&b], (1 << 20, CloseReason::Normal));
    assert_eq!(w.reader.corrupt, 0);
    let s = *w.server.stats();
    assert_eq!((s.orphans_reset_memory, s.orphans_reset, s.orphans), (1, 0, 0), "{s:?}");
    w.run(Duration::from_millis(100), |_| false);
    assert_eq!(w.server.stats().send_buffered, 0);
    w.audit();
}

#[test]
fn a_close_while_memory_is_out_resets_at_once() {
    let mut cfg = World::server_config();
    cfg.memory_limit = 256 << 10;
    cfg.tcp.send_buffer = 256 << 10;
    let plans = vec![Plan { bytes: 64 << 10, end: End::Hold }, Plan { bytes: 1 << 20, end: End::Shutdown }, Plan { bytes: 2 << 10, end: End::Hold }];
    let mut w = World::new(cfg, plans);
    // C queues 64 KiB and waits; then B uses up the rest of memory.
    let c = w.open(true);
    let b = w.open(true);
    w.run(Duration::from_secs(2), |_| false);
    assert!(w.server_conn(c).unwrap().send_queue() > FLOOR);
    let held = w.server_send_held();
    assert!(held + FLOOR >= 256 << 10, "memory never ran out: {held}");
    // D holds little (2 KiB, delivered): it may still close gracefully.
    let d = w.open(false);
    w.run(Duration::from_millis(200), |_| false);
    assert!(w.server_conn(d).unwrap().send_queue() <= FLOOR);
    let did = w.writer.ids[&d];
    w.server.with_conn(did, |conn| conn.close());
    assert!(w.run(Duration::from_secs(5), |w| w.reason(d).is_some()));
    assert_eq!(w.reader.finished[&d], (2 << 10, CloseReason::Normal));
    // Closing C now would orphan it with its data while memory is out:
    // Linux's tcp_close resets it instead (tcp_check_oom).
    let cid = w.writer.ids[&c];
    w.server.with_conn(cid, |conn| conn.close());
    w.run(Duration::from_millis(50), |_| false);
    assert_eq!(w.reason(c), Some(CloseReason::Reset), "closed into an orphan with memory exhausted");
    assert_eq!(w.reason(b), None);
    let s = *w.server.stats();
    assert_eq!((s.orphans_reset_memory, s.orphans_reset), (1, 0), "{s:?}");
    w.audit();
}

/// Send data that has used up the memory does not starve a receive side: a
/// connection whose application leaves data unread may still hold 4 KiB
/// received (Linux's tcp_rmem[0]), and acknowledges it.
#[test]
fn send_memory_never_starves_a_receive_side() {
    let mut cfg = World::server_config();
    cfg.memory_limit = 256 << 10;
    cfg.tcp.send_buffer = 256 << 10;
    let plans = vec![Plan { bytes: 1 << 20, end: End::Shutdown }, Plan { bytes: 0, end: End::Hold }];
    let mut w = World::new(cfg, plans);
    let b = w.open(true);
    w.run(Duration::from_secs(1), |_| false);
    // Top B up to the last byte (what its ACKs freed during its last call
    // was not yet offered to it): memory is out.
    let bid = w.writer.ids[&b];
    w.server.with_conn(bid, |c| c.send(&[0; 16 << 10]).unwrap());
    assert_eq!(w.server_send_held(), 256 << 10, "memory is not out");
    // F sends 8 KiB, which the server application does not read.
    w.reader.send_bytes = 8 << 10;
    let f = w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    let fport = w.client.connection(f).unwrap().local().port();
    w.writer.unread.insert(fport);
    w.ports.push(fport);
    w.ids.push(f);
    w.run(Duration::from_secs(2), |_| false);
    let held = w.server_conn(fport).expect("accepted").recv_queue();
    assert!(held > 0 && held <= 4096, "held {held} of the 8 KiB received");
    let client = w.client.connection(f).unwrap();
    assert_eq!(client.send_queue(), (8 << 10) - held, "what the server holds is acknowledged");
    assert!(w.server.stats().recv_buffered as usize <= 256 << 10);
    assert_eq!(w.reason(b), None);
    w.audit();
}
