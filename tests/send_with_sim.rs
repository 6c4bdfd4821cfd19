//! `Conn::send_with` on shards over simulated links, with TX frames lent
//! during every receive (`Shard::handle_frame_tx` over a `TxBatch`, `sim::LinkFrames`):
//! the application's bytes written straight into frames arrive intact and
//! in order, under loss too (retransmitted from the send buffer); mixed
//! with `send`; and through the send buffer when the window is closed or
//! no frame is free.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::apps::Echo;
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::sim::LinkFrames;
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::CloseReason;
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::EthernetAddress;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const FRAME: usize = 2048;

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(29) ^ (i >> 10)) as u8
}

/// Sends `total` bytes of a pattern with `send_with` (or, with `mix`, every
/// other call with `send`), whenever it may (connected, writable, data
/// in); checks the echo; half-closes once everything is sent.
#[derive(Default)]
struct Pumper {
    total: usize,
    chunk: usize,
    mix: bool,
    calls: usize,
    sent: usize,
    /// Bytes that went through `send` (not `send_with`).
    plain: usize,
    received: usize,
    corrupt: bool,
    shut: bool,
    closed: Option<CloseReason>,
    id: Option<ConnId>,
}

impl Pumper {
    fn new(total: usize, chunk: usize, mix: bool) -> Self {
        Pumper { total, chunk, mix, ..Default::default() }
    }

    fn pump(&mut self, c: &mut Conn<'_, ()>) {
        if self.total == 0 {
            return; // driven by the test instead
        }
        while self.sent < self.total {
            let want = (self.total - self.sent).min(self.chunk);
            let start = self.sent;
            self.calls += 1;
            let n = if self.mix && self.calls % 2 == 0 {
                let chunk: Vec<u8> = (start..start + want).map(byte).collect();
                let n = c.send(&chunk).unwrap_or(0);
                self.plain += n;
                n
            } else {
                c.send_with(want, |buf| {
                    assert!(buf.len() <= want);
                    for (k, b) in buf.iter_mut().enumerate() {
                        *b = byte(start + k);
                    }
                    buf.len()
                })
                .unwrap_or(0)
            };
            self.sent += n;
            if n == 0 {
                return;
            }
        }
        if !self.shut {
            self.shut = true;
            c.shutdown();
        }
    }
}

impl App for Pumper {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.id = Some(c.id());
        self.pump(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        self.pump(c);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        for (k, &b) in data.iter().enumerate() {
            self.corrupt |= b != byte(self.received + k);
        }
        self.received += data.len();
        self.pump(c);
        data.len()
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
    fn on_closed(&mut self, _id: ConnId, _s: (), reason: CloseReason) {
        self.closed = Some(reason);
    }
}

/// Reads nothing while `paused` (its window closes), then everything.
#[derive(Default)]
struct Lazy {
    paused: bool,
    received: usize,
    corrupt: bool,
    id: Option<ConnId>,
}

impl App for Lazy {
    type State = ();
    fn on_accept(&mut self, c: &mut Conn<'_, ()>) {
        self.id = Some(c.id());
    }
    fn on_data(&mut self, _c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        if self.paused {
            return 0;
        }
        for (k, &b) in data.iter().enumerate() {
            self.corrupt |= b != byte(self.received + k);
        }
        self.received += data.len();
        data.len()
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
}

struct World<S: App, C: App> {
    now: Instant,
    server: Shard<S>,
    client: Shard<C>,
    sapp: S,
    capp: C,
    to_server: Link,
    to_client: Link,
    /// TX frames each side may take per received frame.
    server_frames: usize,
    client_frames: usize,
    buf: Vec<u8>,
}

fn config(mac: u8, ip: Ipv4Addr) -> StackConfig {
    StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, mac]), ip, 24)
}

impl<S: App, C: App> World<S, C> {
    fn new(server: StackConfig, client: StackConfig, sapp: S, capp: C, link: LinkConfig, seed: u64) -> Self {
        let mut server: Shard<S> = Shard::new(server, [1; 16]);
        server.listen(7);
        server.announce();
        let client: Shard<C> = Shard::new(client, [2; 16]);
        World {
            now: Instant::from_secs(1),
            server,
            client,
            sapp,
            capp,
            to_server: Link::new(link.clone(), seed),
            to_client: Link::new(link, seed + 100),
            server_frames: usize::MAX,
            client_frames: usize::MAX,
            buf: vec![0; FRAME],
        }
    }

    fn connect(&mut self) {
        self.client.connect(self.now, SocketAddrV4::new(SERVER, 7)).unwrap();
    }

    /// One turn, as a worker runs it: pending frames out, then the next
    /// arrivals (with TX frames lent) and timers.
    fn step(&mut self) -> bool {
        let now = self.now;
        while let Some(n) = self.server.poll_transmit(now, &mut self.buf) {
            self.to_client.send(now, self.buf[..n].to_vec());
        }
        while let Some(n) = self.client.poll_transmit(now, &mut self.buf) {
            self.to_server.send(now, self.buf[..n].to_vec());
        }
        let next = [self.to_server.next_delivery(), self.to_client.next_delivery(), self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(f) = self.to_server.recv(now) {
            let mut tx = LinkFrames::new(&mut self.to_client, now, FRAME, self.server_frames);
            self.server.handle_frame_tx(now, &f, &mut self.sapp, true, tx.batch());
            tx.flush();
        }
        while let Some(f) = self.to_client.recv(now) {
            let mut tx = LinkFrames::new(&mut self.to_server, now, FRAME, self.client_frames);
            self.client.handle_frame_tx(now, &f, &mut self.capp, true, tx.batch());
            tx.flush();
        }
        self.server.handle_timeout(now, &mut self.sapp);
        self.client.handle_timeout(now, &mut self.capp);
        true
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            if !self.step() {
                break;
            }
        }
        done(self)
    }
}

fn retransmits<A: App>(s: &Shard<A>) -> u64 {
    s.stats().retired_retransmits + s.connections().map(|(_, c)| u64::from(c.stats().retransmits)).sum::<u64>()
}

/// Both ends use `send_with` with frames lent (the client its pump, the
/// echo server its `on_data`): everything comes back intact and in order,
/// with and without loss, and most of it went straight into frames.
#[test]
fn send_with_direct_path_delivers_in_order_under_loss() {
    for (seed, loss) in [(1u64, 0.0), (2, 0.01), (3, 0.03), (4, 0.05)] {
        let total = 1 << 20;
        let mut ccfg = config(2, CLIENT);
        // A small send buffer: the pump runs often, on ACKs, when nothing
        // unsent is queued, so its writes can go straight out.
        ccfg.tcp.send_buffer = 16 << 10;
        // A receive window far below what is echoed: answers sent at once
        // do not grow it, the updates after them must (or it closes).
        let mut scfg = config(1, SERVER);
        scfg.tcp.recv_buffer = 64 << 10;
        let link = LinkConfig::ideal(Duration::from_micros(300)).with_loss(loss);
        let mut w = World::new(scfg, ccfg, Echo, Pumper::new(total, 3000, false), link, seed);
        w.connect();
        let start = w.now;
        assert!(w.run_until(Duration::from_secs(300), |w| w.capp.closed.is_some() && w.server.connections().count() == 0), "loss {loss}: stuck");
        eprintln!("loss {loss}: done in {:?}", w.now - start);
        if loss == 0.0 {
            // 1 MiB over a 0.6 ms round trip, 16 KiB at a time: no stall.
            assert!(w.now - start < Duration::from_secs(1), "took {:?}", w.now - start);
        }
        let (c, s) = (w.client.stats(), w.server.stats());
        eprintln!(
            "loss {loss}: client direct {} buffered {}, server direct {} buffered {}, retransmits {} / {}",
            c.send_with_direct_bytes,
            c.send_with_buffered_bytes,
            s.send_with_direct_bytes,
            s.send_with_buffered_bytes,
            retransmits(&w.client),
            retransmits(&w.server)
        );
        assert_eq!(w.capp.received, total, "loss {loss}");
        assert!(!w.capp.corrupt, "loss {loss}: echo corrupted");
        assert_eq!(w.capp.closed, Some(CloseReason::Normal), "loss {loss}");
        // Every byte was written by send_with, one way or the other.
        assert_eq!(c.send_with_direct_bytes + c.send_with_buffered_bytes, total as u64, "loss {loss}");
        assert_eq!(s.send_with_direct_bytes + s.send_with_buffered_bytes, total as u64, "loss {loss}");
        if loss == 0.0 {
            // The echo answers each segment at once, straight into a frame;
            // the client's pump finds its small buffer drained on most ACKs.
            assert_eq!(s.send_with_direct_bytes, total as u64, "server {s:?}");
            assert!(c.send_with_direct_bytes > (total / 2) as u64, "client {c:?}");
        } else {
            // After a loss, data queues behind the retransmissions (halved
            // windows): it goes through the buffer until the queue drains.
            assert!(c.send_with_direct_bytes > 0 && s.send_with_direct_bytes > 0, "loss {loss}: client {c:?} server {s:?}");

            assert!(retransmits(&w.client) > 0 && retransmits(&w.server) > 0, "loss {loss}: nothing was retransmitted");
        }
    }
}

/// A segment written straight into a frame and lost on the way is
/// retransmitted from the send buffer.
#[test]
fn a_lost_direct_segment_is_retransmitted_from_the_send_buffer() {
    let link = LinkConfig::ideal(Duration::from_micros(300));
    let mut w = World::new(config(1, SERVER), config(2, CLIENT), Lazy::default(), Pumper::new(0, 1000, false), link, 9);
    w.connect();
    assert!(w.run_until(Duration::from_secs(5), |w| w.sapp.id.is_some() && w.capp.id.is_some()));
    let id = w.capp.id.unwrap();
    w.to_server.config_mut().loss = 1.0;
    let mut tx = LinkFrames::new(&mut w.to_server, w.now, FRAME, 4);
    let n = w.client.with_conn_tx(w.now, id, tx.batch(), |c| c.send_with(1000, |buf| {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = byte(k);
        }
        buf.len()
    }));
    assert_eq!(n, Some(Ok(1000)));
    assert_eq!(tx.flush(), 1, "the segment went straight into a frame");
    drop(tx);
    assert_eq!(w.client.stats().send_with_direct_bytes, 1000);
    assert_eq!(w.to_server.stats().lost, 1);
    w.to_server.config_mut().loss = 0.0;
    assert!(w.run_until(Duration::from_secs(10), |w| w.sapp.received == 1000));
    assert!(!w.sapp.corrupt);
    let c = w.client.connection(id).unwrap().stats();
    assert!(c.retransmits + c.loss_probes >= 1, "{c:?}");
}

/// `send` and `send_with` interleaved on one connection keep their order.
#[test]
fn send_and_send_with_mix_in_order() {
    for (seed, loss) in [(5u64, 0.0), (6, 0.02)] {
        let total = 512 << 10;
        let mut ccfg = config(2, CLIENT);
        ccfg.tcp.send_buffer = 16 << 10;
        let link = LinkConfig::ideal(Duration::from_micros(300)).with_loss(loss);
        let mut w = World::new(config(1, SERVER), ccfg, Echo, Pumper::new(total, 1500, true), link, seed);
        w.connect();
        assert!(w.run_until(Duration::from_secs(300), |w| w.capp.closed.is_some()), "loss {loss}: stuck");
        assert_eq!(w.capp.received, total);
        assert!(!w.capp.corrupt, "loss {loss}: corrupted");
        let c = w.client.stats();
        assert!(w.capp.plain > 0 && c.send_with_direct_bytes > 0, "loss {loss}: {c:?}, plain {}", w.capp.plain);
        assert_eq!(c.send_with_direct_bytes + c.send_with_buffered_bytes + w.capp.plain as u64, total as u64);
    }
}

/// With the peer's window closed, `send_with` writes into the send buffer
/// (no frame is taken); once the peer reads, that data follows in order.
/// The same when no TX frame is free.
#[test]
fn send_with_falls_back_to_the_send_buffer() {
    let mut scfg = config(1, SERVER);
    scfg.tcp.recv_buffer = 32 << 10;
    let link = LinkConfig::ideal(Duration::from_micros(300));
    let lazy = Lazy { paused: true, ..Default::default() };
    let mut w = World::new(scfg, config(2, CLIENT), lazy, Pumper::new(0, 1000, false), link, 10);
    w.connect();
    assert!(w.run_until(Duration::from_secs(5), |w| w.sapp.id.is_some() && w.capp.id.is_some()));
    let id = w.capp.id.unwrap();
    let write = |w: &mut World<Lazy, Pumper>, frames: usize, at: usize, len: usize| {
        let now = w.now;
        let mut tx = LinkFrames::new(&mut w.to_server, now, FRAME, frames);
        let n = w.client.with_conn_tx(now, id, tx.batch(), |c| {
            c.send_with(len, |buf| {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = byte(at + k);
                }
                buf.len()
            })
        });
        (n.unwrap().unwrap(), tx.flush())
    };
    // Open window, nothing queued: straight out, at most one segment.
    let mss = w.client.connection(id).unwrap().mss();
    let (n, frames) = write(&mut w, 8, 0, 4000);
    assert_eq!((n, frames), (mss, 1));
    let mut at = n;
    // No TX frame free: into the send buffer.
    let (n, frames) = write(&mut w, 0, at, 1000);
    assert_eq!((n, frames), (1000, 0));
    at += n;
    assert_eq!(w.client.stats().send_with_buffered_bytes, 1000);
    // Fill exactly what is left of the peer's window (it reads nothing),
    // through the send buffer.
    assert!(w.run_until(Duration::from_secs(5), |w| w.client.connection(id).unwrap().send_queue() == 0));
    let mut left = w.client.connection(id).unwrap().send_window();
    assert!(left > 0 && left < 32 << 10, "window {left}");
    while left > 0 {
        let n = w.client.with_conn(id, |c| c.send_with(left, |buf| {
            for (k, b) in buf.iter_mut().enumerate() {
                *b = byte(at + k);
            }
            buf.len()
        }));
        let n = n.unwrap().unwrap();
        assert!(n > 0);
        at += n;
        left -= n;
    }
    assert!(w.run_until(Duration::from_secs(5), |w| w.client.connection(id).unwrap().send_queue() == 0));
    assert_eq!(w.client.connection(id).unwrap().send_window(), 0, "the peer's window is closed");
    // Window closed: buffered, no frame taken, nothing sent.
    let direct = w.client.stats().send_with_direct_bytes;
    let buffered = w.client.stats().send_with_buffered_bytes;
    let (n, frames) = write(&mut w, 8, at, 3000);
    assert_eq!((n, frames), (3000, 0));
    at += n;
    assert_eq!(w.client.stats().send_with_direct_bytes, direct);
    assert_eq!(w.client.stats().send_with_buffered_bytes, buffered + 3000);
    // The peer reads: everything arrives, in order.
    w.sapp.paused = false;
    let sid = w.sapp.id.unwrap();
    let now = w.now;
    w.server.resume_reading(now, sid, &mut w.sapp);
    assert!(w.run_until(Duration::from_secs(30), |w| w.sapp.received == at), "received {} of {at}", w.sapp.received);
    assert!(!w.sapp.corrupt);
}
