//! The stack's own cost of one 64-byte request/response round trip, without
//! I/O: two shards (an xdptcp client and the `echo` server) exchange
//! Ethernet frames in memory. Per round trip: the client parses the
//! response, its application sends the next request, the client emits it;
//! the server parses the request, echoes it and emits the response. What
//! AF_XDP adds on top (syscalls, the kernel's copies) is measured by
//! `xdptcp-bench frames ping` on a real link; the two together explain the
//! rr latency in bench/RESULTS.md.
//!
//! `crr_64B_connection` is the same for a whole connection: the client opens
//! it, sends 64 bytes, closes once they come back, and the server echoes and
//! closes after the client's FIN (seven frames, TIME_WAIT on the client).
//!
//! Run: `cargo bench -p xdptcp-bench --bench shard`.

use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdptcp::app::{App, Conn};
use xdptcp::apps::Echo;
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::EthernetAddress;

const MSG: [u8; 64] = [0x5a; 64];

/// Sends 64 bytes, and again each time 64 come back.
#[derive(Default)]
struct Ping {
    got: usize,
    round_trips: u64,
}

impl App for Ping {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        let _ = c.send(&MSG);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        self.got += data.len();
        while self.got >= MSG.len() {
            self.got -= MSG.len();
            self.round_trips += 1;
            let _ = c.send(&MSG);
        }
        data.len()
    }
}

struct World {
    now: Instant,
    client: Shard<Ping>,
    ping: Ping,
    server: Shard<Echo>,
    echo: Echo,
    buf: Vec<u8>,
}

impl World {
    fn new() -> World {
        let cip = Ipv4Addr::new(198, 18, 0, 100);
        let sip = Ipv4Addr::new(198, 18, 0, 1);
        let client = Shard::new(StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), cip, 24), [1; 16]);
        let mut server = Shard::new(StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), sip, 24), [2; 16]);
        server.listen(7);
        let mut w = World { now: Instant::from_secs(1), client, ping: Ping::default(), server, echo: Echo, buf: vec![0u8; 2048] };
        w.client.connect(w.now, SocketAddrV4::new(sip, 7)).expect("connect");
        while w.ping.round_trips < 10 {
            w.round_trip();
        }
        w
    }

    /// Moves every pending frame both ways once; time advances 5 µs.
    fn round_trip(&mut self) {
        self.now += Duration::from_micros(5);
        self.client.handle_timeout(self.now, &mut self.ping);
        while let Some(n) = self.client.poll_transmit(self.now, &mut self.buf) {
            self.server.handle_frame(self.now, &self.buf[..n], &mut self.echo);
        }
        self.server.handle_timeout(self.now, &mut self.echo);
        while let Some(n) = self.server.poll_transmit(self.now, &mut self.buf) {
            self.client.handle_frame(self.now, &self.buf[..n], &mut self.ping);
        }
    }
}

fn rr(c: &mut Criterion) {
    let mut w = World::new();
    let mut group = c.benchmark_group("shard");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rr_64B_round_trip", |b| {
        b.iter(|| {
            let before = w.ping.round_trips;
            w.round_trip();
            assert_eq!(w.ping.round_trips, before + 1, "one request and one response per round");
        })
    });
    group.finish();
}

/// Connects, sends 64 bytes, closes when they are back.
#[derive(Default)]
struct Once {
    got: usize,
    done: u64,
}

impl App for Once {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        let _ = c.send(&MSG);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        self.got += data.len();
        if self.got >= MSG.len() {
            self.got = 0;
            self.done += 1;
            c.close();
        }
        data.len()
    }
}

fn crr(c: &mut Criterion) {
    let cip = Ipv4Addr::new(198, 18, 0, 100);
    let sip = Ipv4Addr::new(198, 18, 0, 1);
    let mut ccfg = StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), cip, 24);
    // As the benchmark client runs: every port of 16 addresses.
    ccfg.addresses = 16;
    ccfg.ephemeral_ports = (1024, 65535);
    ccfg.tw_reuse = true;
    let mut client: Shard<Once> = Shard::new(ccfg, [1; 16]);
    let mut server: Shard<Echo> = Shard::new(StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), sip, 24), [2; 16]);
    server.listen(7);
    let (mut once, mut echo) = (Once::default(), Echo);
    let mut buf = vec![0u8; 2048];
    let mut now = Instant::from_secs(1);
    let remote = SocketAddrV4::new(sip, 7);
    let mut one = |now: &mut Instant| {
        let before = once.done;
        client.connect(*now, remote).expect("a free port");
        // Until the response is back and both FINs are acknowledged.
        for _ in 0..8 {
            *now += Duration::from_micros(3);
            client.handle_timeout(*now, &mut once);
            while let Some(n) = client.poll_transmit(*now, &mut buf) {
                server.handle_frame(*now, &buf[..n], &mut echo);
            }
            server.handle_timeout(*now, &mut echo);
            while let Some(n) = server.poll_transmit(*now, &mut buf) {
                client.handle_frame(*now, &buf[..n], &mut once);
            }
        }
        assert_eq!(once.done, before + 1);
    };
    for _ in 0..100 {
        one(&mut now);
    }
    let mut group = c.benchmark_group("shard");
    group.throughput(Throughput::Elements(1));
    group.bench_function("crr_64B_connection", |b| b.iter(|| one(&mut now)));
    group.finish();
}

criterion_group!(benches, rr, crr);
criterion_main!(benches);
