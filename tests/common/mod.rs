//! Helpers shared by the simulated-network and engine-script tests.
#![allow(dead_code)]

pub mod client;
pub mod shards;
pub mod script;

use std::hash::Hasher;

use siphasher::sip::SipHasher13;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::{ConnId, Network};
use xdptcp::tcp::{Config, Event, ListenerConfig, State};
use xdptcp::time::Duration;

pub const SERVER_PORT: u16 = 5001;

/// Byte `i` of the test stream for `seed`: cheap to make and to check anywhere.
pub fn pattern(seed: u64, i: u64) -> u8 {
    let x = (i.wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 29) as u8
}

pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern(seed, offset + k as u64);
    }
}

/// Hash of the first `len` bytes of a stream.
pub fn stream_hash(seed: u64, len: u64) -> u64 {
    let mut h = SipHasher13::new_with_keys(1, 2);
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill(seed, off, &mut buf[..n]);
        h.write(&buf[..n]);
        off += n as u64;
    }
    h.finish()
}

pub fn lossy(latency_ms: u64, loss: f64, reorder: f64, dup: f64) -> LinkConfig {
    let mut c = LinkConfig::ideal(Duration::from_millis(latency_ms));
    c.loss = loss;
    c.reorder = reorder;
    c.reorder_delay = Duration::from_millis(latency_ms.max(1));
    c.duplicate = dup;
    c.bandwidth_bps = Some(1_000_000_000);
    c
}

/// A client on host 0 connected to a listener on host 1; returns (client, server).
pub fn establish(net: &mut Network, client_port: u16) -> (ConnId, ConnId) {
    if !net.has_listener(1, SERVER_PORT) {
        net.listen(1, SERVER_PORT, ListenerConfig::default());
    }
    let remote = net.addr(1, SERVER_PORT);
    let client = net.connect(0, client_port, remote);
    let mut server = None;
    let ok = net.run_until(Duration::from_secs(120), |net| {
        if server.is_none() {
            server = net.accept(1, SERVER_PORT);
        }
        server.is_some() && net.conn(client).state() == State::Established
    });
    assert!(ok, "handshake did not complete: client {:?}", net.conn(client).state());
    (client, server.unwrap())
}

/// One direction of a bulk transfer, in progress.
pub struct Flow {
    pub from: ConnId,
    pub to: ConnId,
    pub seed: u64,
    pub total: u64,
    pub sent: u64,
    pub received: u64,
    pub hasher: SipHasher13,
    pub mismatch: Option<u64>,
    pub shut: bool,
    pub peer_closed: bool,
}

impl Flow {
    pub fn new(from: ConnId, to: ConnId, seed: u64, total: u64) -> Flow {
        Flow { from, to, seed, total, sent: 0, received: 0, hasher: SipHasher13::new_with_keys(1, 2), mismatch: None, shut: false, peer_closed: false }
    }

    /// Writes what fits, reads what arrived; call after every step.
    pub fn pump(&mut self, net: &mut Network) {
        let mut buf = [0u8; 16 * 1024];
        while self.sent < self.total {
            let n = (self.total - self.sent).min(buf.len() as u64) as usize;
            fill(self.seed, self.sent, &mut buf[..n]);
            let Ok(w) = net.conn_mut(self.from).send(&buf[..n]) else { break };
            self.sent += w as u64;
            if w < n {
                break;
            }
        }
        if self.sent == self.total && !self.shut {
            self.shut = true;
            net.conn_mut(self.from).shutdown(xdptcp::tcp::Shutdown::Write);
        }
        loop {
            let mut conn = net.conn_mut(self.to);
            let (a, b) = conn.recv_slices();
            if a.is_empty() {
                break;
            }
            let n = a.len() + b.len();
            for (k, &byte) in a.iter().chain(b.iter()).enumerate() {
                let at = self.received + k as u64;
                if self.mismatch.is_none() && byte != pattern(self.seed, at) {
                    self.mismatch = Some(at);
                }
            }
            self.hasher.write(a);
            self.hasher.write(b);
            self.received += n as u64;
            conn.consume(n);
        }
        while let Some(ev) = net.conn_mut(self.to).poll_event() {
            if ev == Event::PeerClosed {
                self.peer_closed = true;
            }
        }
    }

    pub fn done(&self) -> bool {
        self.peer_closed && self.received >= self.total
    }

    pub fn verify(&self) {
        assert_eq!(self.mismatch, None, "first corrupted byte");
        assert_eq!(self.received, self.total, "byte count");
        assert_eq!(self.hasher.clone().finish(), stream_hash(self.seed, self.total), "content hash");
    }
}

/// Result of one bulk transfer.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub secs: f64,
    pub retransmits: u32,
    pub goodput_mbps: f64,
}

/// Moves `bytes` from `from` to `to` (then FIN), verifying every byte.
pub fn bulk(net: &mut Network, from: ConnId, to: ConnId, bytes: u64, limit: Duration, seed: u64) -> Outcome {
    let start = net.now();
    let mut flow = Flow::new(from, to, seed, bytes);
    let ok = net.run_until(limit, |net| {
        flow.pump(net);
        flow.done()
    });
    let secs = (net.now() - start).as_secs_f64();
    assert!(
        ok,
        "transfer did not finish within {limit:?}: {} of {} bytes received after {secs:.1}s, sender {:?}, receiver {:?}",
        flow.received,
        bytes,
        net.conn(from).state(),
        net.conn(to).state()
    );
    flow.verify();
    Outcome { secs, retransmits: net.conn(from).stats().retransmits, goodput_mbps: bytes as f64 * 8.0 / secs.max(1e-9) / 1e6 }
}

pub fn config() -> Config {
    Config::default()
}
