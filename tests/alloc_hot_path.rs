//! The established-connection hot path allocates nothing per packet.
//!
//! A counting global allocator counts every allocation (and reallocation)
//! made on this test's own thread while a flag is set. Two real `Shard`s
//! talk in memory: the frames one writes with `poll_transmit(now, buf)` are
//! fed to the other's `handle_frame(now, frame, app)`, under a virtual
//! clock that also drives `handle_timeout`. After the handshake and a
//! warm-up (windows open, buffers at their working size, and a whole
//! revolution of the shard's timer wheel), each workload runs for at least
//! 100,000 segments with counting on, and must make no allocation at all.
//!
//! The shard's timer wheel keeps its entries in a pool of reused nodes
//! (src/stack/wheel.rs), and a connection's buffers are taken from and
//! given back to a per-thread pool by size (src/tcp/ring.rs), so a send
//! buffer that drains every flight and regrows costs no allocation either.
//! On a failure the message carries the backtraces of the first
//! allocations seen, which say where they come from.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

use xdptcp::app::{App, Conn};
use xdptcp::apps::Http;
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::EthernetAddress;

struct Counting;

thread_local! {
    /// Counting is on for this thread.
    static ON: Cell<bool> = const { Cell::new(false) };
    /// Inside the hook (capturing a backtrace allocates: not counted).
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static FREES: Cell<u64> = const { Cell::new(0) };
}

/// Backtraces of the first allocations counted (resolved when reported).
static TRACES: Mutex<Vec<std::backtrace::Backtrace>> = Mutex::new(Vec::new());
const TRACES_KEPT: usize = 64;

fn counting() -> bool {
    ON.try_with(Cell::get).unwrap_or(false) && !IN_HOOK.try_with(Cell::get).unwrap_or(true)
}

fn note_alloc() {
    if !counting() {
        return;
    }
    ALLOCS.with(|c| c.set(c.get() + 1));
    IN_HOOK.with(|h| h.set(true));
    if let Ok(mut traces) = TRACES.lock() {
        if traces.len() < TRACES_KEPT {
            traces.push(std::backtrace::Backtrace::force_capture());
        }
    }
    IN_HOOK.with(|h| h.set(false));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// hook only touches thread-locals without destructors (and, guarded
// against re-entry, a mutex-held Vec).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            FREES.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What a measured run allocated.
struct Counted {
    allocs: u64,
    frees: u64,
    /// The first allocations' backtraces, cut to the stack's and this
    /// test's frames.
    traces: Vec<String>,
}

/// One measurement at a time, so that the backtraces kept are its own.
static MEASURING: Mutex<()> = Mutex::new(());

/// Runs `f` with counting on; returns its result and what it allocated.
fn measured<R>(f: impl FnOnce() -> R) -> (R, Counted) {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    TRACES.lock().unwrap().clear();
    ALLOCS.with(|c| c.set(0));
    FREES.with(|c| c.set(0));
    ON.with(|c| c.set(true));
    let r = f();
    ON.with(|c| c.set(false));
    let traces = std::mem::take(&mut *TRACES.lock().unwrap()).iter().map(|t| ours(&t.to_string())).collect();
    (r, Counted { allocs: ALLOCS.with(Cell::get), frees: FREES.with(Cell::get), traces })
}

/// The frames of a backtrace in the stack and this test, with their
/// source lines.
fn ours(trace: &str) -> String {
    let lines: Vec<&str> = trace.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let frame = l.trim_start().split_once(": ").map_or("", |(_, f)| f);
        if frame.starts_with("xdptcp::") || frame.starts_with("<xdptcp::") || frame.starts_with("alloc_hot_path::") {
            out.push(l.trim().to_string());
            if let Some(at) = lines.get(i + 1).filter(|n| n.trim_start().starts_with("at ")) {
                out.push(format!("    {}", at.trim()));
            }
        }
    }
    out.join("\n")
}

/// No allocation at all in at least 100,000 segments.
fn assert_none(what: &str, segments: u64, c: &Counted) {
    assert!(segments >= 100_000, "{what}: only {segments} segments measured");
    assert_eq!(
        c.allocs,
        0,
        "{what}: {} allocations ({} frees) in {segments} segments; the first ones:\n{}",
        c.allocs,
        c.frees,
        c.traces.iter().take(3).cloned().collect::<Vec<_>>().join("\n----\n")
    );
}

const MSG: [u8; 64] = [0x5a; 64];
const CHUNK: [u8; 16384] = [0xa5; 16384];

/// Either end of a workload: sends 64 bytes per 64 received (and the first
/// 64 once connected, as the client), or streams without end, and counts
/// what arrives.
#[derive(Default)]
struct Peer {
    /// Request/response: send `MSG` on connecting and per `MSG` received.
    rr_client: bool,
    /// Request/response: answer each `MSG` with one.
    rr_server: bool,
    /// Bulk: keep the send buffer full.
    stream: bool,
    got: usize,
    answers: u64,
    received: u64,
}

impl Peer {
    fn fill(&self, c: &mut Conn<'_, ()>) {
        if self.stream {
            while matches!(c.send(&CHUNK), Ok(n) if n == CHUNK.len()) {}
        }
    }
}

impl App for Peer {
    type State = ();
    fn on_accept(&mut self, c: &mut Conn<'_, ()>) {
        self.fill(c);
    }
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        if self.rr_client {
            let _ = c.send(&MSG);
        }
        self.fill(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        self.fill(c);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        self.received += data.len() as u64;
        if self.rr_client || self.rr_server {
            self.got += data.len();
            while self.got >= MSG.len() {
                self.got -= MSG.len();
                self.answers += 1;
                assert_eq!(c.send(&MSG), Ok(MSG.len()), "64 bytes always fit");
            }
        }
        data.len()
    }
}

/// A shard's configuration at `ip`, with buffers of `(receive, send)` bytes.
fn config(mac: u8, ip: Ipv4Addr, buffers: (usize, usize)) -> StackConfig {
    let mut cfg = StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, mac]), ip, 24);
    (cfg.tcp.recv_buffer, cfg.tcp.send_buffer) = buffers;
    cfg
}

/// Two shards joined back to back, and their applications.
struct Pair<C: App, S: App> {
    now: Instant,
    client: Shard<C>,
    capp: C,
    server: Shard<S>,
    sapp: S,
    buf: Vec<u8>,
}

/// Virtual time the warm-up covers: more than a revolution of the timer
/// wheel (4096 one-millisecond slots).
const WARM_UP: Duration = Duration::from_millis(4200);

impl<C: App, S: App> Pair<C, S> {
    /// Connected, each side with buffers of `(receive, send)` bytes.
    fn new(capp: C, sapp: S, port: u16, buffers: (usize, usize)) -> Self {
        let sip = Ipv4Addr::new(198, 18, 0, 1);
        let client = Shard::new(config(1, Ipv4Addr::new(198, 18, 0, 100), buffers), [1; 16]);
        let mut server = Shard::new(config(2, sip, buffers), [2; 16]);
        server.listen(port);
        let mut p = Pair { now: Instant::from_secs(1), client, capp, server, sapp, buf: vec![0u8; 2048] };
        p.client.connect(p.now, SocketAddrV4::new(sip, port)).expect("connect");
        for _ in 0..10 {
            p.step();
        }
        assert_eq!(p.client.open_connections(), 1, "established");
        assert_eq!(p.server.open_connections(), 1, "established");
        p
    }

    /// Moves every pending frame both ways once; time advances 5 µs.
    fn step(&mut self) {
        self.step_by(Duration::from_micros(5));
    }

    fn step_by(&mut self, dt: Duration) {
        self.now += dt;
        self.client.handle_timeout(self.now, &mut self.capp);
        while let Some(n) = self.client.poll_transmit(self.now, &mut self.buf) {
            self.server.handle_frame(self.now, &self.buf[..n], &mut self.sapp);
        }
        self.server.handle_timeout(self.now, &mut self.sapp);
        while let Some(n) = self.server.poll_transmit(self.now, &mut self.buf) {
            self.client.handle_frame(self.now, &self.buf[..n], &mut self.capp);
        }
    }

    /// Segments both shards have taken in.
    fn segments_in(&self) -> u64 {
        self.client.stats().segments_in + self.server.stats().segments_in
    }

    /// Runs for `WARM_UP` of virtual time, then for `segments` more.
    fn warm_up(&mut self, segments: u64) {
        let end = self.now + WARM_UP;
        while self.now < end {
            self.step();
        }
        self.run(segments);
    }

    /// Steps until `segments` more segments were taken in (both shards).
    fn run(&mut self, segments: u64) -> u64 {
        let start = self.segments_in();
        while self.segments_in() - start < segments {
            self.step();
        }
        self.segments_in() - start
    }
}

/// The default buffers, 4 MiB each way.
const DEFAULT_BUFFERS: (usize, usize) = (4 << 20, 4 << 20);
/// A receive window well below the sender's buffer, as a path or a
/// receiver limits a bulk transfer: the send buffer never drains.
const SMALL_WINDOW: (usize, usize) = (256 << 10, 4 << 20);
/// A send buffer that the window outgrows: each flight drains it.
const SMALL_SEND_BUFFER: (usize, usize) = (4 << 20, 256 << 10);

/// 64-byte requests, each answered with 64 bytes from `on_data`.
fn rr() -> (u64, Counted) {
    let server = Peer { rr_server: true, ..Peer::default() };
    let mut p = Pair::new(Peer { rr_client: true, ..Peer::default() }, server, 7, DEFAULT_BUFFERS);
    p.warm_up(10_000);
    let before = p.capp.answers;
    let (segments, counted) = measured(|| p.run(100_000));
    assert!(p.capp.answers - before >= 40_000, "rounds: {}", p.capp.answers - before);
    // Every request answered; the last one sent may still be on its way.
    assert!(p.sapp.answers == p.capp.answers || p.sapp.answers == p.capp.answers + 1, "{} answered, {} back", p.sapp.answers, p.capp.answers);
    (segments, counted)
}

#[test]
fn request_response_allocates_nothing() {
    let (segments, counted) = rr();
    assert_none("rr 64 B", segments, &counted);
}

/// Bulk from the client (and from the server too with `both`), with
/// buffers of `(receive, send)` bytes; the bytes each way after warming up.
fn bulk(both: bool, buffers: (usize, usize)) -> ((u64, Counted), u64, u64) {
    let server = Peer { stream: both, ..Peer::default() };
    let mut p = Pair::new(Peer { stream: true, ..Peer::default() }, server, 9, buffers);
    // At one window per 5 µs step the wheel hardly turns: a warm-up in
    // segments, not a revolution.
    p.run(200_000);
    let (c0, s0) = (p.capp.received, p.sapp.received);
    let measured = measured(|| p.run(if both { 200_000 } else { 100_000 }));
    (measured, p.sapp.received - s0, p.capp.received - c0)
}

#[test]
fn bulk_one_way_allocates_nothing() {
    let ((segments, counted), to_server, _) = bulk(false, SMALL_WINDOW);
    assert_none("bulk client to server", segments, &counted);
    // The server's segments are ACKs; at least a third of all are data.
    assert!(to_server >= 30_000 * 1400, "bytes: {to_server}");
}

#[test]
fn bulk_both_ways_allocates_nothing() {
    let ((segments, counted), to_server, to_client) = bulk(true, SMALL_WINDOW);
    assert_none("bulk both ways", segments, &counted);
    assert!(to_client >= 50_000 * 1400, "to the client: {to_client}");
    assert!(to_server >= 50_000 * 1400, "to the server: {to_server}");
}

#[test]
fn bulk_with_a_send_buffer_the_window_outgrows_allocates_nothing() {
    let ((segments, counted), to_server, to_client) = bulk(true, SMALL_SEND_BUFFER);
    assert_none("bulk both ways, send buffers of 256 KiB", segments, &counted);
    assert!(to_client >= 50_000 * 1400 && to_server >= 50_000 * 1400, "{to_client} {to_server}");
}

/// HTTP/1.1 keep-alive requests against the http app, one at a time.
#[derive(Default)]
struct Get {
    got: usize,
    responses: u64,
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: alloc-test\r\nAccept: */*\r\n\r\n";

impl App for Get {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        let _ = c.send(GET);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        self.got += data.len();
        // Head (keep-alive) and body: a fixed length.
        let whole = RESPONSE_LEN;
        while self.got >= whole {
            self.got -= whole;
            self.responses += 1;
            let _ = c.send(GET);
        }
        data.len()
    }
}

const RESPONSE_LEN: usize =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: keep-alive\r\n\r\n".len() + xdptcp::apps::HTTP_BODY.len();

/// Keep-alive GETs against the http app, one at a time.
fn http() -> (u64, Counted) {
    let mut p = Pair::new(Get::default(), Http, 80, DEFAULT_BUFFERS);
    p.warm_up(10_000);
    let before = p.capp.responses;
    let (segments, counted) = measured(|| p.run(100_000));
    assert!(p.capp.responses - before >= 40_000, "responses: {}", p.capp.responses - before);
    (segments, counted)
}

#[test]
fn http_keep_alive_allocates_nothing() {
    let (segments, counted) = http();
    assert_none("http keep-alive", segments, &counted);
}

