//! The kernel's TCP as client and server: non-blocking sockets, epoll (via
//! mio), one thread per core, each pinned.
//!
//! The server speaks the same protocols as `xdptcp serve`: `echo` sends
//! back what it receives and closes after the peer's FIN once everything
//! has been echoed; `discard` reads and drops; `source` sends without end.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::load::{Direction, Flow, Meter, Outcome, Pacer, Probe, Spec, Workload};

/// What a server does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerApp {
    Echo,
    Discard,
    Source,
}

/// Bytes every client and server writes: content does not matter here,
/// `xdptcp connect` and the veth tests verify content.
static FILL: [u8; 65536] = [0x5a; 65536];

const LISTENER: Token = Token(usize::MAX);

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

// ---- server ---------------------------------------------------------------

struct ServerConn {
    stream: TcpStream,
    /// Echo bytes the socket would not take yet.
    backlog: Vec<u8>,
    peer_closed: bool,
}

/// Runs the kernel server until `stop`: `threads` threads, each with its own
/// SO_REUSEPORT listener on `addr`, pinned to `cores[i]` when given.
pub fn serve(addr: SocketAddr, app: ServerApp, threads: usize, cores: &[usize], stop: Arc<AtomicBool>) -> Result<(), String> {
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        let listener = reuseport_listener(addr)?;
        let stop = stop.clone();
        let core = cores.get(i).copied();
        handles.push(std::thread::spawn(move || {
            pin(core);
            if let Err(e) = serve_thread(listener, app, &stop) {
                eprintln!("xdptcp-bench server: {e}");
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn reuseport_listener(addr: SocketAddr) -> Result<TcpListener, String> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|e| e.to_string())?;
    s.set_reuse_address(true).map_err(|e| e.to_string())?;
    s.set_reuse_port(true).map_err(|e| e.to_string())?;
    s.bind(&addr.into()).map_err(|e| format!("bind {addr}: {e}"))?;
    s.listen(4096).map_err(|e| e.to_string())?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(TcpListener::from_std(s.into()))
}

fn serve_thread(mut listener: TcpListener, app: ServerApp, stop: &AtomicBool) -> std::io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<ServerConn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            poll.registry().register(&mut stream, Token(entry.key()), Interest::READABLE | Interest::WRITABLE)?;
                            entry.insert(ServerConn { stream, backlog: Vec::new(), peer_closed: false });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // EMFILE and friends: stop accepting for this round.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let Some(c) = conns.get_mut(key) else { continue };
            let keep = serve_event(c, app, &mut buf);
            if !keep {
                let mut c = conns.remove(key);
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
    Ok(())
}

/// Handles readiness on one server connection; false when it is finished.
fn serve_event(c: &mut ServerConn, app: ServerApp, buf: &mut [u8]) -> bool {
    if app == ServerApp::Source && !fill(&mut c.stream) {
        return false;
    }
    // Echo: drain what the socket refused earlier before reading more.
    if !c.backlog.is_empty() {
        match write_some(&mut c.stream, &c.backlog) {
            Some(n) => {
                c.backlog.drain(..n);
            }
            None => return false,
        }
        if !c.backlog.is_empty() {
            return true; // the next writable event continues
        }
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => {
                c.peer_closed = true;
                break;
            }
            Ok(n) => {
                if app == ServerApp::Echo {
                    let w = match write_some(&mut c.stream, &buf[..n]) {
                        Some(w) => w,
                        None => return false,
                    };
                    if w < n {
                        c.backlog.extend_from_slice(&buf[w..n]);
                        return true;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    !(c.peer_closed && c.backlog.is_empty())
}

/// Writes as much of `data` as the socket takes; None on error.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> Option<usize> {
    let mut done = 0;
    while done < data.len() {
        match stream.write(&data[done..]) {
            Ok(0) => return None,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    Some(done)
}

/// Writes filler until the socket refuses; false on error.
fn fill(stream: &mut TcpStream) -> bool {
    loop {
        match stream.write(&FILL) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

// ---- client ---------------------------------------------------------------

struct ClientConn {
    stream: TcpStream,
    flow: Flow,
    started: Instant,
    connected: bool,
}

/// Progress shared with the reporting thread.
#[derive(Default)]
pub struct Progress {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub conns: AtomicU64,
}

/// Runs the workload against `server` with `threads` pinned threads, each
/// owning its share of the connections (`hold` uses one thread, so `probe`
/// sees every connection).
pub fn run_client(spec: &Spec, server: SocketAddr, threads: usize, cores: &[usize], progress: Arc<Progress>, probe: Probe) -> (Meter, Outcome) {
    let start = Instant::now();
    let threads = if spec.workload == Workload::Hold { 1 } else { threads.clamp(1, spec.conns.max(1)) };
    let mut handles = Vec::new();
    for i in 0..threads {
        let mut s = spec.clone();
        s.conns = spec.conns / threads + usize::from(i < spec.conns % threads);
        s.rate = spec.rate.map(|r| r / threads as f64);
        s.concurrency = (spec.concurrency / threads).max(1);
        let core = cores.get(i).copied();
        let progress = progress.clone();
        let probe = probe.clone();
        handles.push(std::thread::spawn(move || {
            pin(core);
            Client::new(s, server, start, progress).run(&probe)
        }));
    }
    let mut meter = Meter::new(start, spec);
    let mut out = Outcome::default();
    for h in handles {
        if let Ok((m, o)) = h.join() {
            meter.merge(&m);
            out.conns += o.conns;
            out.server_bytes_per_conn = out.server_bytes_per_conn.or(o.server_bytes_per_conn);
            out.open_seconds = match (out.open_seconds, o.open_seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        } else {
            meter.error();
        }
    }
    out.bytes = meter.bytes;
    out.ops = meter.ops;
    out.errors = meter.errors;
    out.seconds = spec.duration.as_secs_f64();
    (meter, out)
}

struct Client {
    spec: Spec,
    server: SocketAddr,
    poll: Poll,
    conns: Slab<ClientConn>,
    meter: Meter,
    progress: Arc<Progress>,
    established: usize,
    /// Connections opened and not yet finished (crr), or opened at all (hold).
    opened: usize,
    completed: u64,
    /// Round-robin cursor for open-loop sends.
    cursor: usize,
    all_open_at: Option<Instant>,
}

impl Client {
    fn new(spec: Spec, server: SocketAddr, start: Instant, progress: Arc<Progress>) -> Client {
        let meter = Meter::new(start, &spec);
        Client {
            spec,
            server,
            poll: Poll::new().expect("epoll"),
            conns: Slab::new(),
            meter,
            progress,
            established: 0,
            opened: 0,
            completed: 0,
            cursor: 0,
            all_open_at: None,
        }
    }

    fn run(mut self, probe: &Probe) -> (Meter, Outcome) {
        let start = self.meter.start;
        let mut pacer = self.spec.rate.map(|r| Pacer::new(self.meter.measure_from.min(start + Duration::from_millis(200)), r));
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 65536];
        let hold = self.spec.workload == Workload::Hold;
        loop {
            let now = Instant::now();
            if self.meter.done(now) {
                break;
            }
            self.open_more(now);
            if hold && self.all_open_at.is_none() && self.established >= self.spec.conns {
                // Everything is open: hold for the measured duration from now.
                self.all_open_at = Some(now);
                self.meter.measure_to = now + self.spec.duration;
            }
            if let Some(p) = pacer.as_mut() {
                while let Some(at) = p.due(now) {
                    self.send_paced(at);
                }
            }
            let timeout = match &pacer {
                Some(p) => p.next().saturating_duration_since(Instant::now()).min(Duration::from_millis(10)),
                None => Duration::from_millis(10),
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    self.meter.error();
                    break;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                let key = ev.token().0;
                if !self.conns.contains(key) {
                    continue;
                }
                if !self.on_ready(key, now, &mut buf) {
                    let mut c = self.conns.remove(key);
                    let _ = self.poll.registry().deregister(&mut c.stream);
                    if c.connected {
                        self.established -= 1;
                    }
                    self.opened -= 1;
                }
            }
            self.progress.ops.store(self.meter.ops, Ordering::Relaxed);
            self.progress.bytes.store(self.meter.bytes, Ordering::Relaxed);
            self.progress.conns.store(self.established as u64, Ordering::Relaxed);
        }
        let mut server_bytes_per_conn = None;
        if hold {
            // Connections that did not survive the hold are errors.
            self.meter.errors += self.spec.conns.saturating_sub(self.established) as u64;
            server_bytes_per_conn = probe(self.established);
        }
        let out = Outcome {
            conns: if hold { self.established as u64 } else { self.completed },
            open_seconds: self.all_open_at.map(|t| (t - start).as_secs_f64()),
            server_bytes_per_conn,
            ..Outcome::default()
        };
        (self.meter, out)
    }

    /// Opens connections up to the workload's count (crr: its concurrency;
    /// hold: with at most `concurrency` handshakes in flight).
    fn open_more(&mut self, now: Instant) {
        let limit = match self.spec.workload {
            Workload::Hold => (self.established + self.spec.concurrency).min(self.spec.conns),
            _ => self.spec.conns,
        };
        while self.opened < limit {
            match TcpStream::connect(self.server) {
                Ok(mut stream) => {
                    let entry = self.conns.vacant_entry();
                    if self.poll.registry().register(&mut stream, Token(entry.key()), Interest::READABLE | Interest::WRITABLE).is_err() {
                        self.meter.error();
                        return;
                    }
                    entry.insert(ClientConn { stream, flow: Flow::default(), started: now, connected: false });
                    self.opened += 1;
                }
                Err(_) => {
                    // Out of ports or descriptors: count it, try again later.
                    self.meter.error();
                    return;
                }
            }
        }
    }

    fn send_paced(&mut self, at: Instant) {
        let n = self.conns.len();
        if n == 0 {
            return;
        }
        // Next connected connection, round robin over the slab's keys.
        for _ in 0..self.conns.capacity().max(1) {
            self.cursor = (self.cursor + 1) % self.conns.capacity().max(1);
            let key = self.cursor;
            if let Some(c) = self.conns.get_mut(key) {
                if c.connected {
                    c.flow.request(at, self.spec.msg_bytes);
                    if flush(c).is_none() {
                        self.meter.error();
                    }
                    return;
                }
            }
        }
    }

    /// Handles readiness; false when the connection is finished.
    fn on_ready(&mut self, key: usize, now: Instant, buf: &mut [u8]) -> bool {
        let spec = &self.spec;
        let c = self.conns.get_mut(key).expect("checked");
        if !c.connected {
            match c.stream.take_error() {
                Ok(None) => {}
                _ => {
                    self.meter.error();
                    return false;
                }
            }
            if c.stream.peer_addr().is_err() {
                return true; // still connecting
            }
            c.connected = true;
            self.established += 1;
            let _ = c.stream.set_nodelay(true);
            match spec.workload {
                Workload::Rr if spec.rate.is_none() => c.flow.request(now, spec.msg_bytes),
                Workload::Crr => c.flow.request(c.started, spec.msg_bytes),
                _ => {}
            }
        }
        // Writes first: requests, or the stream.
        if spec.workload == Workload::Stream && spec.direction == Direction::Up {
            loop {
                match c.stream.write(&FILL) {
                    Ok(n) => self.meter.bytes(now, n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.meter.error();
                        return false;
                    }
                }
            }
        } else if c.flow.unsent > 0 && flush(c).is_none() {
            self.meter.error();
            return false;
        }
        loop {
            match c.stream.read(buf) {
                Ok(0) => {
                    // The server closed: only expected once crr is done.
                    self.meter.error();
                    return false;
                }
                Ok(n) => match spec.workload {
                    Workload::Stream => self.meter.bytes(now, n),
                    Workload::Rr => {
                        let done = c.flow.receive(now, n, spec.msg_bytes, &mut self.meter);
                        if spec.rate.is_none() {
                            for _ in 0..done {
                                c.flow.request(now, spec.msg_bytes);
                            }
                            if done > 0 && flush(c).is_none() {
                                self.meter.error();
                                return false;
                            }
                        }
                    }
                    Workload::Crr => {
                        if c.flow.receive(now, n, spec.msg_bytes, &mut self.meter) > 0 {
                            self.completed += 1;
                            return false; // closed by the drop; a new one opens
                        }
                    }
                    Workload::Hold => {}
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.meter.error();
                    return false;
                }
            }
        }
    }
}

/// Writes pending request bytes; None on error.
fn flush(c: &mut ClientConn) -> Option<()> {
    while c.flow.unsent > 0 {
        let n = c.flow.unsent.min(FILL.len());
        let w = write_some(&mut c.stream, &FILL[..n])?;
        c.flow.unsent -= w;
        if w < n {
            break;
        }
    }
    Some(())
}
