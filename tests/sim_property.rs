//! Randomized property tests of two xdptcp hosts on the simulated network.
//!
//! 1. `random_calls_under_random_faults` (proptest): random application
//!    calls on both ends under random faults. The engine never panics, never
//!    delivers corrupted, reordered or duplicated bytes, and every connection
//!    ends CLOSED once both ends have closed.
//!
//! 2. Seeded scenarios (`seeded_scenarios`, `long_seeded_run`,
//!    `awaiting_fixes`): each seed draws a whole scenario. Both ends' configs
//!    independently (receive buffers from a few hundred bytes to 1 GiB, so
//!    window scales 0–14 on each side; send buffers; MSS; SACK, timestamps,
//!    Nagle, congestion control), a link per direction (loss, reordering,
//!    duplication, corruption, bandwidth and queue, and loss of pure ACKs and
//!    window updates only), and an application per end: how much it writes
//!    and how (chunk size, pacing, `send` or `send_with`), how it reads (at
//!    once, or rate-limited in bursts down to a byte, with stalls of up to
//!    40 s during which windows fill and close), and how it ends (half-close
//!    and read to EOF, close right after queueing its last data — with the
//!    data still unsent — or abort).
//!
//!    Some receivers are put under pressure: a small buffer, or a large one
//!    with a window scale of 7–14 on a host whose receive memory (a shard's
//!    `memory_limit`, `Network::set_rx_memory`) is nearly spent, a reader
//!    slower than its sender, and stalls while data flows.
//!
//!    Checked: every byte read is the right byte (in order, intact, once);
//!    nothing is read that was not written; and liveness: within a bounded
//!    virtual time every connection reaches CLOSED with a stated reason. A
//!    connection still open at the bound, or with nothing left to happen, is
//!    a failure. In a "clean" scenario (nobody aborts, and nobody closes
//!    while its peer still sends) every byte must be delivered both ways and
//!    both ends must close normally (or, once everything arrived, one end
//!    reset after TIME_WAIT outlived the retransmissions of a last FIN whose
//!    ACKs were lost); elsewhere, two normal closes must still mean every
//!    byte was delivered. Zero-window probes must back off (`ProbeWatch`).
//!    And the default seed set must keep reaching zero windows, windows
//!    below the MSS, full receive buffers, closes with data unsent, pure-ACK
//!    loss and different window scales (each in at least 5 % of cases).
//!
//!    Seeds that fail today for known engine bugs are listed, by bug, in
//!    `AWAITING_FIXES_SEEDS` (with the triage) and run by the ignored
//!    `awaiting_fixes`; every other seed of the default set must pass.
//!
//!    Replay one seed with `PROP_SEED=<seed> cargo test --no-default-features
//!    --test sim_property -- --ignored replay --nocapture`; it prints the
//!    scenario and a trace of both connections. A long run:
//!    `PROP_CASES=20000 cargo test --release --no-default-features --test
//!    sim_property -- --ignored long_seeded_run --nocapture` (`PROP_START`
//!    moves the first seed).

mod common;

use common::*;
use proptest::prelude::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::{ConnId, Network};
use xdptcp::sim::{Rng, RxLimits};
use xdptcp::tcp::{Algorithm, CloseReason, Config, Event, Keepalive, Shutdown, State, Timer};
use xdptcp::time::{Duration, Instant};

// ---- 1. random calls (proptest) ------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Send { side: usize, len: u16 },
    /// `send_with`: straight into a frame when the data can go at once.
    SendWith { side: usize, len: u16 },
    Read { side: usize, max: u16 },
    Shutdown { side: usize },
    Close { side: usize },
    Abort { side: usize },
    Wait { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..20_000u16).prop_map(|(side, len)| Op::Send { side, len }),
        3 => (0..2usize, 1..4_000u16).prop_map(|(side, len)| Op::SendWith { side, len }),
        4 => (0..2usize, 1..30_000u16).prop_map(|(side, max)| Op::Read { side, max }),
        1 => (0..2usize).prop_map(|side| Op::Shutdown { side }),
        1 => (0..2usize).prop_map(|side| Op::Close { side }),
        1 => (0..2usize).prop_map(|side| Op::Abort { side }),
        4 => (1..500u16).prop_map(|ms| Op::Wait { ms }),
    ]
}

struct End {
    id: ConnId,
    seed: u64,
    written: u64,
    read: u64,
}

fn read_some(net: &mut Network, end: &mut End, peer_seed: u64, max: usize) -> Result<(), TestCaseError> {
    let mut conn = net.conn_mut(end.id);
    let (a, b) = conn.recv_slices();
    let n = (a.len() + b.len()).min(max);
    for (k, &byte) in a.iter().chain(b.iter()).take(n).enumerate() {
        let at = end.read + k as u64;
        prop_assert_eq!(byte, pattern(peer_seed, at), "corrupt, reordered or duplicated byte at offset {}", at);
    }
    end.read += n as u64;
    conn.consume(n);
    Ok(())
}

fn run(seed: u64, link: LinkConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = Config { max_retries: 8, ..Config::default() };
    let mut net = Network::pair(config.clone(), config, link.clone(), link, seed);
    let (client, server) = establish(&mut net, 44000);
    let mut ends = [End { id: client, seed: seed ^ 1, written: 0, read: 0 }, End { id: server, seed: seed ^ 2, written: 0, read: 0 }];
    let seeds = [ends[0].seed, ends[1].seed];
    let mut buf = vec![0u8; 20_000];
    for op in ops {
        match op {
            Op::Send { side, len } => {
                let e = &mut ends[side];
                let n = len as usize;
                fill(e.seed, e.written, &mut buf[..n]);
                if let Ok(w) = net.conn_mut(e.id).send(&buf[..n]) {
                    e.written += w as u64;
                }
            }
            Op::SendWith { side, len } => {
                let e = &mut ends[side];
                let (seed, at) = (e.seed, e.written);
                if let Ok((w, _)) = net.send_with(e.id, len as usize, |buf| {
                    fill(seed, at, buf);
                    buf.len()
                }) {
                    e.written += w as u64;
                }
            }
            Op::Read { side, max } => read_some(&mut net, &mut ends[side], seeds[1 - side], max as usize)?,
            Op::Shutdown { side } => net.conn_mut(ends[side].id).shutdown(Shutdown::Write),
            Op::Close { side } => net.conn_mut(ends[side].id).close(),
            Op::Abort { side } => net.conn_mut(ends[side].id).abort(),
            Op::Wait { ms } => {
                net.run_until(Duration::from_millis(ms as u64), |_| false);
            }
        }
        for e in &mut ends {
            while net.conn_mut(e.id).poll_event().is_some() {}
        }
    }
    // Both applications read what is left and close; everything must wind
    // down to CLOSED (TIME_WAIT included) in bounded virtual time.
    let mut closed = [false, false];
    let done = net.run_until(Duration::from_secs(1800), |net| {
        for side in 0..2 {
            let _ = read_some(net, &mut ends[side], seeds[1 - side], usize::MAX);
            if !closed[side] {
                closed[side] = true;
                net.conn_mut(ends[side].id).close();
            }
            while net.conn_mut(ends[side].id).poll_event().is_some() {}
        }
        net.conns(0).chain(net.conns(1)).all(|(_, c)| c.state() == State::Closed)
    });
    let states: Vec<_> = net.conns(0).chain(net.conns(1)).map(|(_, c)| c.state()).collect();
    prop_assert!(done, "connections did not all close: {:?}", states);
    for side in 0..2 {
        prop_assert!(ends[side].read <= ends[1 - side].written, "read more than was written");
    }
    // Never lose a byte: when both ends closed gracefully, everything each
    // wrote was read by the other.
    let reasons = [net.conn(client).close_reason(), net.conn(server).close_reason()];
    if reasons == [CloseReason::Normal, CloseReason::Normal] {
        for side in 0..2 {
            prop_assert_eq!(ends[side].read, ends[1 - side].written, "bytes lost despite a graceful close");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_under_random_faults(
        seed in any::<u64>(),
        loss in 0.0..0.15f64,
        reorder in 0.0..0.2f64,
        dup in 0.0..0.1f64,
        corrupt in 0.0..0.05f64,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut link = lossy(2, loss, reorder, dup);
        link.corrupt = corrupt;
        run(seed, link, ops)?;
    }
}

// ---- 2. seeded scenarios ----------------------------------------------------

/// How an application ends its side of the connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// Half-close once everything is queued, read to EOF, then close.
    Shutdown,
    /// `close()` as soon as the last byte is queued, most of it unsent; no
    /// reads after that (data arriving later resets the connection).
    CloseAfterWrite,
    /// `abort()` this long after the start, whatever is going on.
    AbortAt(Duration),
}

/// One end's application.
#[derive(Debug, Clone)]
struct AppPlan {
    /// Bytes to write in all.
    total: u64,
    /// Bytes per write call.
    chunk: usize,
    /// Pause after each chunk that went in whole (zero: write as fast as
    /// the send buffer takes it).
    write_gap: Duration,
    /// Writing starts this long after the start.
    start_delay: Duration,
    /// `send_with` (written in place, straight into a frame when it can go
    /// at once) instead of `send`.
    send_with: bool,
    ending: Ending,
    /// Bytes per second the reader takes at most; `None` reads at once.
    read_rate: Option<u64>,
    /// At most this much per read call (and the rate limiter's burst).
    read_burst: usize,
    /// (start, length) from the start: the reader takes nothing meanwhile.
    /// Stalls may overlap.
    stalls: Vec<(Duration, Duration)>,
}

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    /// Host 0 (the client) and host 1 (the server).
    configs: [Config; 2],
    /// Link 0→1 and link 1→0.
    links: [LinkConfig; 2],
    apps: [AppPlan; 2],
    /// Each host's receive-memory limit over its connections, like a
    /// shard's (`Network::set_rx_memory`): windows clamped below the buffer.
    rx_memory: [Option<RxLimits>; 2],
    /// Nobody aborts and nobody closes while its peer still writes: every
    /// byte must arrive and both ends must close normally.
    clean: bool,
}

/// Log-uniform in [lo, hi].
fn log_uniform(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    let (l, h) = ((lo.max(1)) as f64, (hi.max(lo).max(1)) as f64);
    let v = (l.ln() + rng.next_f64() * (h.ln() - l.ln())).exp();
    (v as u64).clamp(lo, hi)
}

fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.gen_bool(p)
}

fn millis(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_micros(log_uniform(rng, lo * 1000, hi * 1000))
}

/// A receive buffer: a small one (a few hundred bytes to 16 KiB, no
/// scaling needed) or one whose window scale is uniform in 0–14.
fn recv_buffer(rng: &mut Rng) -> usize {
    if chance(rng, 0.4) {
        return log_uniform(rng, 200, 16 * 1024) as usize;
    }
    let shift = rng.gen_range(0..15) as u32;
    let (lo, hi) = if shift == 0 { (16 * 1024, 65_535u64) } else { ((65_535u64 << (shift - 1)) + 1, 65_535u64 << shift) };
    rng.gen_range(lo..hi + 1) as usize
}

fn host_config(rng: &mut Rng, keepalive: bool) -> Config {
    let mss = match rng.gen_range(0..10) {
        0..=6 => 1460,
        7 => 536,
        _ => rng.gen_range(200..1461) as u16,
    };
    Config {
        mss,
        recv_buffer: recv_buffer(rng),
        send_buffer: if chance(rng, 0.3) { 4 << 20 } else { log_uniform(rng, 256, 4 << 20) as usize },
        window_scaling: chance(rng, 0.9),
        timestamps: chance(rng, 0.8),
        sack: chance(rng, 0.8),
        nagle: chance(rng, 0.2),
        congestion: if chance(rng, 0.5) { Algorithm::Cubic } else { Algorithm::NewReno },
        rack_tlp: chance(rng, 0.7),
        // Linux's tcp_retries2: a legitimate give-up under these faults
        // would take a run of 16 lost retransmissions (or their ACKs).
        max_retries: 15,
        // Longer than any reader's stalls, so that a slow reader's peer is
        // not closed from FIN_WAIT_2 under it.
        fin_timeout: Duration::from_secs(1200),
        // With an abort in the scenario, the peer may wait for a FIN that
        // never comes if the RST is lost: keepalive finds it out.
        keepalive: keepalive.then_some(Keepalive { time: Duration::from_secs(20), interval: Duration::from_secs(5), probes: 5 }),
        ..Config::default()
    }
}

fn link_config(rng: &mut Rng) -> LinkConfig {
    let latency = Duration::from_micros(log_uniform(rng, 50, 40_000));
    let mut link = if chance(rng, 0.2) {
        LinkConfig::netem(latency, latency / 4)
    } else {
        let mut l = LinkConfig::ideal(latency);
        if chance(rng, 0.3) {
            l.jitter = latency / 2;
        }
        l
    };
    if chance(rng, 0.6) {
        let bps = log_uniform(rng, 1_000_000, 1_000_000_000);
        let queue = if chance(rng, 0.5) { log_uniform(rng, 16 * 1024, 1 << 20) as usize } else { usize::MAX };
        link = link.with_bandwidth(bps, queue);
    }
    if chance(rng, 0.7) {
        link.loss = rng.next_f64() * 0.1;
    }
    if chance(rng, 0.5) {
        let delay = latency * rng.gen_range(1..4) as u32;
        link = link.with_reorder(rng.next_f64() * 0.1, delay);
    }
    if chance(rng, 0.3) {
        link.duplicate = rng.next_f64() * 0.05;
    }
    if chance(rng, 0.2) {
        link.corrupt = rng.next_f64() * 0.02;
    }
    // Up to 40 %: with ordinary loss on top, about half of all ACKs. More
    // and a run of sixteen lost ACKs (a legitimate give-up after
    // `max_retries`) stops being rare enough to call a failure a bug.
    link.ack_loss = match rng.gen_range(0..10) {
        0..=3 => 0.0,
        4..=6 => rng.next_f64() * 0.2,
        _ => 0.2 + rng.next_f64() * 0.2,
    };
    link
}

fn app_plan(rng: &mut Rng) -> AppPlan {
    let total = if chance(rng, 0.2) { 0 } else { log_uniform(rng, 1, 300_000) };
    let chunk = log_uniform(rng, 1, 64 * 1024) as usize;
    let write_gap = if chance(rng, 0.6) { Duration::ZERO } else { millis(rng, 1, 2000) };
    let start_delay = if chance(rng, 0.5) { Duration::ZERO } else { millis(rng, 1, 5000) };
    let send_with = chance(rng, 0.3);
    let ending = if chance(rng, 0.25) { Ending::CloseAfterWrite } else { Ending::Shutdown };
    let read_burst = match rng.gen_range(0..10) {
        0..=2 => log_uniform(rng, 1, 64),
        3..=6 => log_uniform(rng, 64, 4096),
        _ => log_uniform(rng, 4096, 1 << 20),
    } as usize;
    let read_rate = if chance(rng, 0.4) { None } else { Some(log_uniform(rng, 2_000, 50_000_000)) };
    let stalls = (0..rng.gen_range(0..5))
        .map(|_| (Duration::from_micros(rng.gen_range(0..30_000_000)), millis(rng, 10, 40_000)))
        .collect();
    AppPlan { total, chunk, write_gap, start_delay, send_with, ending, read_rate, read_burst, stalls }
}

impl Scenario {
    fn from_seed(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let abort = chance(&mut rng, 0.15);
        let mut configs = [host_config(&mut rng, abort), host_config(&mut rng, abort)];
        let links = [link_config(&mut rng), link_config(&mut rng)];
        let mut apps = [app_plan(&mut rng), app_plan(&mut rng)];
        for side in 0..2 {
            // Mostly, a side that closes right after writing has a peer that
            // writes nothing: one direction, closed with data unsent.
            if apps[side].ending == Ending::CloseAfterWrite && chance(&mut rng, 0.7) {
                apps[1 - side].total = 0;
            }
        }
        let mut rx_memory = [None, None];
        // Receivers under pressure: a buffer that fills (a small one, or a
        // large one with a window scale of 7 or more whose host's memory is
        // nearly spent, so that the window is below one unit of the
        // scale), a reader slower than the sender, stalls while data flows.
        for side in 0..2 {
            if !chance(&mut rng, 0.35) {
                continue;
            }
            let cap = log_uniform(&mut rng, 200, 64 * 1024) as usize;
            if chance(&mut rng, 0.4) {
                let shift = rng.gen_range(7..15) as u32;
                configs[side].recv_buffer = (65_535usize << (shift - 1)) + 1;
                configs[side].window_scaling = true;
                let memory = cap.max(1024);
                // Out-of-order data may take a part of it, as in a shard
                // (64 MiB of 1 GiB by default). Now and then all of it:
                // see `AWAITING_FIXES_SEEDS`.
                let reassembly = if chance(&mut rng, 0.1) { memory } else { memory / rng.gen_range(2..17) as usize };
                rx_memory[side] = Some(RxLimits { memory, reassembly });
            } else {
                configs[side].recv_buffer = cap;
            }
            let peer_total = apps[1 - side].total.max(log_uniform(&mut rng, 4 * cap as u64, 300_000));
            apps[1 - side].total = peer_total;
            if apps[1 - side].ending == Ending::CloseAfterWrite && chance(&mut rng, 0.7) {
                // The orphan case: the sender closes with its data unsent
                // while this receiver holds the window shut.
                apps[side].total = 0;
            }
            let app = &mut apps[side];
            if app.ending == Ending::CloseAfterWrite {
                app.ending = Ending::Shutdown; // it reads to EOF
            }
            app.read_rate = Some(log_uniform(&mut rng, 2_000, 2_000_000));
            app.stalls = (0..rng.gen_range(1..5))
                .map(|_| (Duration::from_micros(rng.gen_range(0..10_000_000)), millis(&mut rng, 100, 40_000)))
                .collect();
        }
        if abort {
            let side = rng.gen_range(0..2) as usize;
            apps[side].ending = Ending::AbortAt(Duration::from_micros(rng.gen_range(0..60_000_000)));
        }
        for side in 0..2 {
            // A writer's pauses leave it time to write everything within
            // about two minutes, and a reader's rate to read what its peer
            // writes: what is slower is the network's doing.
            let app = &mut apps[side];
            if !app.write_gap.is_zero() {
                let chunks_allowed = (Duration::from_secs(120).as_micros() / app.write_gap.as_micros()).max(1) as u64;
                app.chunk = app.chunk.max(app.total.div_ceil(chunks_allowed) as usize);
            }
            let peer_total = apps[1 - side].total;
            if let Some(rate) = apps[side].read_rate.as_mut() {
                *rate = (*rate).max(peer_total / 120).max(1);
            }
        }
        let clean = (0..2).all(|s| match apps[s].ending {
            Ending::Shutdown => true,
            Ending::CloseAfterWrite => apps[1 - s].total == 0,
            Ending::AbortAt(_) => false,
        });
        Scenario { seed, configs, links, apps, rx_memory, clean }
    }
}

/// A running application at one end.
struct App {
    plan: AppPlan,
    id: ConnId,
    /// Its stream's pattern seed, and its peer's.
    seed: u64,
    peer_seed: u64,
    written: u64,
    read: u64,
    next_write: Instant,
    /// shutdown(), close() or abort() was called for the ending.
    ended: bool,
    /// close() or abort() was called: no more reads.
    closed: bool,
    peer_closed: bool,
    reason: Option<CloseReason>,
    /// The rate limiter: bytes the reader may take now, as of `refilled`.
    tokens: f64,
    refilled: Instant,
    /// The pattern check failed: (offset, got, expected).
    corrupt: Option<(u64, u8, u8)>,
    /// Bytes not yet sent when the application closed.
    unsent_at_close: usize,
}

impl App {
    fn new(plan: AppPlan, id: ConnId, seed: u64, peer_seed: u64, start: Instant) -> App {
        let next_write = start + plan.start_delay;
        let tokens = plan.read_burst as f64;
        App { plan, id, seed, peer_seed, written: 0, read: 0, next_write, ended: false, closed: false, peer_closed: false, reason: None, tokens, refilled: start, corrupt: None, unsent_at_close: 0 }
    }

    fn stalled_until(&self, start: Instant, now: Instant) -> Option<Instant> {
        self.plan.stalls.iter().map(|&(at, len)| (start + at, start + at + len)).filter(|&(from, to)| from <= now && now < to).map(|(_, to)| to).max()
    }

    /// Reads what the plan allows now.
    fn read(&mut self, net: &mut Network, start: Instant) {
        if self.closed || self.corrupt.is_some() || self.stalled_until(start, net.now()).is_some() {
            return;
        }
        let now = net.now();
        let burst = self.plan.read_burst.max(1);
        if let Some(rate) = self.plan.read_rate {
            let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + dt * rate as f64).min(burst as f64);
        }
        self.refilled = now;
        loop {
            let mut conn = net.conn_mut(self.id);
            let (a, b) = conn.recv_slices();
            let avail = a.len() + b.len();
            let allowed = if self.plan.read_rate.is_some() { self.tokens as usize } else { usize::MAX };
            let n = avail.min(burst).min(allowed);
            if n == 0 {
                return;
            }
            for (k, &byte) in a.iter().chain(b.iter()).take(n).enumerate() {
                let at = self.read + k as u64;
                let want = pattern(self.peer_seed, at);
                if byte != want {
                    self.corrupt = Some((at, byte, want));
                    return;
                }
            }
            conn.consume(n);
            self.read += n as u64;
            if self.plan.read_rate.is_some() {
                self.tokens -= n as f64;
            }
        }
    }

    /// Writes what the plan allows now, and ends when it says.
    fn write(&mut self, net: &mut Network, start: Instant, buf: &mut [u8]) {
        let now = net.now();
        if let Ending::AbortAt(at) = self.plan.ending {
            if !self.ended && now >= start + at {
                self.ended = true;
                self.closed = true;
                net.conn_mut(self.id).abort();
                return;
            }
        }
        if self.ended {
            return;
        }
        while self.written < self.plan.total && now >= self.next_write {
            let n = ((self.plan.total - self.written) as usize).min(self.plan.chunk).min(buf.len());
            let w = if self.plan.send_with {
                let (seed, at) = (self.seed, self.written);
                net.send_with(self.id, n, |b| {
                    fill(seed, at, b);
                    b.len()
                })
                .map(|(w, _)| w)
            } else {
                fill(self.seed, self.written, &mut buf[..n]);
                net.conn_mut(self.id).send(&buf[..n])
            };
            let Ok(w) = w else { return };
            self.written += w as u64;
            if w < n {
                return; // the send buffer is full: again after the next step
            }
            if !self.plan.write_gap.is_zero() {
                self.next_write = now + self.plan.write_gap;
            }
        }
        if self.written == self.plan.total && now >= self.next_write {
            match self.plan.ending {
                Ending::Shutdown => {
                    self.ended = true;
                    net.conn_mut(self.id).shutdown(Shutdown::Write);
                }
                Ending::CloseAfterWrite => {
                    self.ended = true;
                    self.closed = true;
                    let c = net.conn(self.id);
                    self.unsent_at_close = c.send_queue().saturating_sub(c.snd_nxt() - c.snd_una());
                    net.conn_mut(self.id).close();
                }
                Ending::AbortAt(_) => {}
            }
        }
    }

    /// Events, and the close that follows EOF after a half-close.
    fn events(&mut self, net: &mut Network) {
        while let Some(ev) = net.conn_mut(self.id).poll_event() {
            match ev {
                Event::PeerClosed => self.peer_closed = true,
                Event::Closed(reason) => self.reason = Some(reason),
                _ => {}
            }
        }
        let conn = net.conn(self.id);
        if self.ended && !self.closed && self.plan.ending == Ending::Shutdown && (self.peer_closed || conn.state() == State::Closed) && conn.recv_queue() == 0 {
            self.closed = true;
            net.conn_mut(self.id).close();
        }
    }

    /// When this application next wants to act, if not at the next event.
    fn next_wake(&self, net: &Network, start: Instant) -> Option<Instant> {
        let now = net.now();
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Ending::AbortAt(t) = self.plan.ending {
            if !self.ended {
                at(start + t);
            }
        }
        if !self.ended && self.next_write > now {
            at(self.next_write);
        }
        if !self.closed && self.corrupt.is_none() {
            let conn = net.conn(self.id);
            let avail = conn.recv_queue();
            // Stalls still to come matter only once they start.
            for &(from, _) in &self.plan.stalls {
                if start + from > now {
                    at(start + from);
                }
            }
            if avail > 0 {
                if let Some(end) = self.stalled_until(start, now) {
                    at(end);
                } else if let Some(rate) = self.plan.read_rate {
                    let want = avail.min(self.plan.read_burst.max(1)) as f64;
                    let need = (want - self.tokens).max(1.0);
                    at(now + Duration::from_secs_f64(need / rate as f64).max(Duration::from_micros(1)));
                }
            }
        }
        wake
    }
}

/// Virtual time within which every connection must have closed: the
/// applications' plans take a few minutes at most, TIME_WAIT one more, and
/// a connection timing out legitimately (15 backed-off retransmissions) the
/// rest.
const BOUND: Duration = Duration::from_secs(45 * 60);

/// No progress for this long (nothing read, nothing acknowledged) and a
/// failure report shows the state as it was then.
const STUCK: Duration = Duration::from_secs(20);

/// Watches one sender's zero-window periods: its data waits, nothing is in
/// flight, and the window it knows is 0. Its probes are counted where they
/// arrive (`HostStats::probes_in`: no payload, SEG.SEQ = RCV.NXT − 1).
/// RFC 9293 §3.8.6.1 and RFC 1122 §4.2.2.17: the probe interval backs off
/// exponentially (to the RTO cap, as Linux does), so a period of T seconds
/// holds about log2(T / RTO) probes, plus one per cap interval.
#[derive(Default)]
struct ProbeWatch {
    /// (since, the probes the peer's host had seen then).
    period: Option<(Instant, u64)>,
}

impl ProbeWatch {
    fn zero_window(c: &xdptcp::tcp::Connection) -> bool {
        let unsent = c.send_queue().saturating_sub(c.snd_nxt() - c.snd_una());
        c.state().is_synchronized() && c.state() != State::TimeWait && c.send_window() == 0 && unsent > 0 && c.bytes_in_flight() == 0
    }

    /// After each step; a report if a period just ended with too many probes.
    fn watch(&mut self, net: &Network, id: ConnId, peer: ConnId) -> Option<String> {
        match (self.period, Self::zero_window(net.conn(id))) {
            (None, true) => {
                self.period = Some((net.now(), net.host(peer.host).stats.probes_in));
                None
            }
            (Some(_), false) => self.finish(net, peer),
            _ => None,
        }
    }

    fn finish(&mut self, net: &Network, peer: ConnId) -> Option<String> {
        let (since, seen) = self.period.take()?;
        let t = net.now().saturating_duration_since(since).as_secs_f64();
        let probes = net.host(peer.host).stats.probes_in - seen;
        let allowed = 3.0 + (t / 0.2).max(1.0).log2() + t / 30.0;
        (probes as f64 > allowed).then(|| format!("{probes} zero-window probes arrived in {t:.1} s (backing off, at most {allowed:.0})"))
    }
}

/// What one scenario did.
#[derive(Debug, Default)]
struct Outcome {
    /// Why it failed, if it did.
    failure: Option<String>,
    /// A one-line description of the stuck state.
    symptom: String,
    /// The known bug it points to (see `AWAITING_FIXES_SEEDS`), or
    /// "unclassified".
    class: &'static str,
    delivered: u64,
    acks_lost: u64,
    virtual_time: Duration,
    reasons: [Option<CloseReason>; 2],
    coverage: Coverage,
    /// An orphan gave up after its retries (see `run_scenario`).
    orphan_gave_up: bool,
}

/// Which of the paths under test a scenario reached, so that the seed sets
/// can be shown (and checked) to reach them.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    /// A sender with data waiting saw a zero window.
    zero_window: bool,
    /// A sender with data waiting saw a window below its MSS.
    small_window: bool,
    /// A receive buffer filled up: nothing of the window was left.
    receiver_full: bool,
    /// An application closed with data still unsent.
    closed_unsent: bool,
    /// Pure ACKs were lost.
    acks_lost: bool,
    /// The two ends used different window scales.
    scales_differ: bool,
}

impl Coverage {
    fn sample(&mut self, net: &Network, apps: &[App; 2]) {
        for app in apps {
            let c = net.conn(app.id);
            if !c.state().is_synchronized() {
                continue;
            }
            let unsent = c.send_queue().saturating_sub(c.snd_nxt() - c.snd_una());
            if unsent > 0 && c.send_window() == 0 {
                self.zero_window = true;
            }
            if unsent > 0 && c.send_window() > 0 && c.send_window() < c.mss() {
                self.small_window = true;
            }
            if c.recv_window() == 0 && c.recv_queue() > 0 {
                self.receiver_full = true;
            }
        }
    }
}

fn fmt_timer(conn: &xdptcp::tcp::Connection, now: Instant) -> String {
    let names = [
        (Timer::Retransmit, "rto"),
        (Timer::Persist, "persist"),
        (Timer::DelayedAck, "delack"),
        (Timer::Keepalive, "keepalive"),
        (Timer::Close, "close"),
        (Timer::Reorder, "reorder"),
        (Timer::LossProbe, "tlp"),
    ];
    let set: Vec<String> = names
        .iter()
        .filter_map(|&(t, name)| conn.timer(t).map(|at| format!("{name}+{:.3}s", at.saturating_duration_since(now).as_secs_f64())))
        .collect();
    if set.is_empty() { "no timer".into() } else { set.join(",") }
}

/// One connection's state, for a failure report.
fn describe(net: &Network, app: &App, name: &str) -> String {
    let c = net.conn(app.id);
    let now = net.now();
    let in_flight = c.bytes_in_flight();
    let sent = c.snd_nxt() - c.snd_una();
    let unsent = c.send_queue().saturating_sub(sent);
    format!(
        "{name}: {} reason {:?} | una {} nxt {} rcv_nxt {} | app wrote {}/{} read {} ended {} closed {} peer_closed {} | send-q {} unsent {} in-flight {} snd_wnd {} mss {} cwnd {} | recv-q {} rcv_wnd {} ooo {} | wscale (peer, ours) {:?} | {} | timeouts {} rexmits {} segs in/out {}/{}",
        c.state().name(),
        app.reason,
        c.snd_una() - c.iss(),
        c.snd_nxt() - c.iss(),
        c.rcv_nxt().0,
        app.written,
        app.plan.total,
        app.read,
        app.ended,
        app.closed,
        app.peer_closed,
        c.send_queue(),
        unsent,
        in_flight,
        c.send_window(),
        c.mss(),
        c.cwnd(),
        c.recv_queue(),
        c.recv_window(),
        c.ooo_queue(),
        c.window_scales(),
        fmt_timer(c, now),
        c.stats().timeouts,
        c.stats().retransmits,
        c.stats().segs_in,
        c.stats().segs_out,
    )
}

/// A guess at why a connection is stuck, from its state and its peer's.
fn symptom(net: &Network, apps: &[App; 2]) -> String {
    let mut out = Vec::new();
    for side in 0..2 {
        let c = net.conn(apps[side].id);
        let p = net.conn(apps[1 - side].id);
        let who = if side == 0 { "client" } else { "server" };
        if c.state() == State::Closed {
            out.push(format!("{who} CLOSED {:?}", c.close_reason()));
            continue;
        }
        let sent = c.snd_nxt() - c.snd_una();
        let unsent = c.send_queue().saturating_sub(sent);
        let nothing_in_flight = c.bytes_in_flight() == 0;
        let persist = c.timer(Timer::Persist).is_some();
        let rto = c.timer(Timer::Retransmit).is_some();
        let s = if unsent > 0 && nothing_in_flight && !persist && !rto {
            if c.send_window() == 0 {
                format!("{who} {}: zero window, unsent data, no timer", c.state().name())
            } else if c.send_window() < c.mss() {
                format!("{who} {}: small window {} < mss, unsent data, nothing in flight, no timer", c.state().name(), c.send_window())
            } else {
                format!("{who} {}: window {} open, unsent data, nothing in flight, no timer", c.state().name(), c.send_window())
            }
        } else if unsent > 0 && nothing_in_flight && persist && c.send_window() == 0 && p.recv_window() > 0 {
            format!("{who} {}: sees window 0, peer thinks it offered {} (rcv_adv ahead of the field)", c.state().name(), p.recv_window())
        } else if unsent > 0 && nothing_in_flight && persist && c.send_window() == 0 {
            format!("{who} {}: zero window probing, peer recv-q {} rcv_wnd {}", c.state().name(), p.recv_queue(), p.recv_window())
        } else if unsent > 0 && nothing_in_flight && persist {
            format!("{who} {}: persist armed with window {}", c.state().name(), c.send_window())
        } else if !nothing_in_flight && rto {
            format!("{who} {}: retransmitting, {} timeouts", c.state().name(), c.stats().timeouts)
        } else if c.timer(Timer::Close).is_none() && c.poll_timeout().is_none() {
            format!("{who} {}: idle, no timer", c.state().name())
        } else {
            format!("{who} {}: {}", c.state().name(), fmt_timer(c, net.now()))
        };
        out.push(s);
    }
    out.join("; ")
}

/// The known engine bug a stuck state points to, if any (see
/// `AWAITING_FIXES_SEEDS`).
fn classify(sc: &Scenario, net: &Network, apps: &[App; 2]) -> Option<&'static str> {
    for (app, limits) in apps.iter().zip(sc.rx_memory) {
        let c = net.conn(app.id);
        if c.state() == State::Closed {
            continue;
        }
        let unsent = c.send_queue().saturating_sub(c.snd_nxt() - c.snd_una());
        let idle = c.bytes_in_flight() == 0 && c.timer(Timer::Persist).is_none() && c.timer(Timer::Retransmit).is_none();
        if unsent > 0 && idle && c.send_window() > 0 && c.send_window() < c.mss() {
            return Some(SMALL_WINDOW_NO_PERSIST);
        }
        if c.config().keepalive.is_some() && c.timer(Timer::Keepalive).is_none() && matches!(c.state(), State::Established | State::CloseWait | State::FinWait2) {
            return Some(KEEPALIVE_DROPPED);
        }
        if let Some(limits) = limits {
            if limits.reassembly >= limits.memory && c.ooo_queue() >= limits.memory {
                return Some(OOO_PINS_RX_MEMORY);
            }
        }
    }
    None
}

/// Runs one scenario to its end or to the bound.
fn run_scenario(sc: &Scenario, trace: bool) -> Outcome {
    let mut net = Network::pair(sc.configs[0].clone(), sc.configs[1].clone(), LinkConfig::ideal(Duration::from_millis(1)), LinkConfig::ideal(Duration::from_millis(1)), sc.seed);
    if let (true, Ok(path)) = (trace, std::env::var("PROP_PCAP")) {
        net.capture(path).expect("pcap file");
    }
    // The handshake on a clean link (what is under test starts after it),
    // then the scenario's faults.
    let (client, server) = establish(&mut net, 40000 + (sc.seed % 20000) as u16);
    *net.link_mut(0, 1).config_mut() = sc.links[0].clone();
    *net.link_mut(1, 0).config_mut() = sc.links[1].clone();
    for host in 0..2 {
        net.set_rx_memory(host, sc.rx_memory[host]);
    }
    let start = net.now();
    let seeds = [sc.seed.wrapping_mul(2) | 1, sc.seed.wrapping_mul(2).wrapping_add(2)];
    let mut apps = [App::new(sc.apps[0].clone(), client, seeds[0], seeds[1], start), App::new(sc.apps[1].clone(), server, seeds[1], seeds[0], start)];
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = start + BOUND;
    let mut last_progress = (start, (0u64, [State::Established; 2]));
    let mut failure = None;
    let mut last_trace = Instant::ZERO;
    let mut coverage = Coverage::default();
    let mut stuck: Option<String> = None;
    let mut probes = [ProbeWatch::default(), ProbeWatch::default()];
    let mut probe_failure: Option<String> = None;
    let mut class: Option<&'static str> = None;
    if let (Some((a, b)), Some((c, d))) = (net.conn(client).window_scales(), net.conn(server).window_scales()) {
        coverage.scales_differ = a != b || c != d;
    }
    loop {
        for app in apps.iter_mut() {
            app.write(&mut net, start, &mut buf);
            app.read(&mut net, start);
            app.events(&mut net);
        }
        // What the applications' calls made the connections send goes on
        // the links before anyone asks what happens next.
        net.flush();
        if let Some(app) = apps.iter().find(|a| a.corrupt.is_some()) {
            let (at, got, want) = app.corrupt.unwrap();
            failure = Some(format!("corrupt, reordered or duplicated byte at offset {at}: got {got:#04x}, want {want:#04x}"));
            break;
        }
        coverage.sample(&net, &apps);
        // Bytes read, and bytes and FINs acknowledged.
        let progress = (
            apps.iter().map(|a| a.read + (net.conn(a.id).snd_una() - net.conn(a.id).iss()) as u64).sum::<u64>(),
            [net.conn(apps[0].id).state(), net.conn(apps[1].id).state()],
        );
        if progress != last_progress.1 {
            last_progress = (net.now(), progress);
            stuck = None;
        } else if stuck.is_none() && net.now().saturating_duration_since(last_progress.0) >= STUCK {
            stuck = Some(format!(
                "stuck since t={:.3}s; at t={:.3}s:\n    {}\n    {}\n    symptom then: {}",
                last_progress.0.saturating_duration_since(start).as_secs_f64(),
                net.now().saturating_duration_since(start).as_secs_f64(),
                describe(&net, &apps[0], "client"),
                describe(&net, &apps[1], "server"),
                symptom(&net, &apps)
            ));
            class = class.or(classify(sc, &net, &apps));
        }
        if trace && net.now().saturating_duration_since(last_trace) >= Duration::from_millis(500) {
            last_trace = net.now();
            println!("t={:.3}s", net.now().saturating_duration_since(start).as_secs_f64());
            println!("  {}", describe(&net, &apps[0], "client"));
            println!("  {}", describe(&net, &apps[1], "server"));
        }
        let all_closed = net.conns(0).chain(net.conns(1)).all(|(_, c)| c.state() == State::Closed);
        let drained = apps.iter().all(|a| a.closed || net.conn(a.id).recv_queue() == 0);
        if all_closed && drained {
            break;
        }
        let wake = apps.iter().filter_map(|a| a.next_wake(&net, start)).min();
        let next = [wake, net.next_event()].into_iter().flatten().min();
        let Some(next) = next else {
            failure = Some("nothing left to happen, yet connections are open".into());
            break;
        };
        if next > deadline {
            let idle = net.now().saturating_duration_since(last_progress.0);
            failure = Some(if idle < Duration::from_secs(60) {
                format!("still open at the bound ({} s), though still progressing: too slow", BOUND.as_secs())
            } else {
                format!("still open at the bound ({} s), no progress for {} s", BOUND.as_secs(), idle.as_secs())
            });
            break;
        }
        net.advance_to(next);
        for (side, w) in probes.iter_mut().enumerate() {
            if let Some(f) = w.watch(&net, apps[side].id, apps[1 - side].id) {
                probe_failure.get_or_insert(format!("{}: {f}", if side == 0 { "client" } else { "server" }));
            }
        }
    }
    for (side, w) in probes.iter_mut().enumerate() {
        if let Some(f) = w.finish(&net, apps[1 - side].id) {
            probe_failure.get_or_insert(format!("{}: {f}", if side == 0 { "client" } else { "server" }));
        }
    }
    let mut out = Outcome {
        virtual_time: net.now().saturating_duration_since(start),
        delivered: apps[0].read + apps[1].read,
        acks_lost: net.link(0, 1).stats().acks_lost + net.link(1, 0).stats().acks_lost,
        ..Outcome::default()
    };
    for app in apps.iter_mut() {
        app.events(&mut net);
    }
    out.reasons = [apps[0].reason, apps[1].reason];
    coverage.closed_unsent = apps.iter().any(|a| a.unsent_at_close > 0);
    coverage.acks_lost = out.acks_lost > 0;
    out.coverage = coverage;
    if failure.is_none() {
        for side in 0..2 {
            if apps[side].read > apps[1 - side].written {
                failure = Some(format!("side {side} read {} bytes of {} written", apps[side].read, apps[1 - side].written));
            }
        }
    }
    if failure.is_none() {
        let both_normal = out.reasons == [Some(CloseReason::Normal); 2];
        // The one way a clean scenario may end otherwise, after every byte
        // arrived: the ACK of the last FIN is lost until TIME_WAIT expires
        // (each retransmitted FIN restarts it, but the backoff outgrows
        // 2×MSL), and the next retransmission meets a RST.
        let last_ack_lost = matches!(out.reasons, [Some(CloseReason::Normal), Some(CloseReason::Reset)] | [Some(CloseReason::Reset), Some(CloseReason::Normal)]);
        let all_delivered = (0..2).all(|s| apps[s].read == apps[1 - s].written);
        // And one way for it to end with bytes undelivered: an orphan (its
        // application closed with data still to send) gives up after
        // `Config::orphan_retries` (Linux's tcp_orphan_retries) because the
        // answers to its retransmissions or probes were lost, or its peer's
        // memory held its data back, and its RST resets the peer. A stated
        // reason within the bound; what did arrive was checked byte by byte.
        // Counted in the summary, as it ends a transfer early.
        // (Or the peer had already closed Normally, having read it all, and
        // only the ACKs of the orphan's last segments were lost.)
        out.orphan_gave_up = (0..2).any(|s| {
            apps[s].closed
                && out.reasons[s] == Some(CloseReason::TimedOut)
                && (out.reasons[1 - s] == Some(CloseReason::Reset) || (out.reasons[1 - s] == Some(CloseReason::Normal) && all_delivered))
        });
        if sc.clean && !(both_normal || (last_ack_lost && all_delivered) || out.orphan_gave_up) {
            failure = Some(format!("clean scenario closed with {:?}", out.reasons));
        } else if (sc.clean || both_normal) && !all_delivered && !out.orphan_gave_up {
            failure = Some(format!("bytes lost: client read {}/{}, server read {}/{}, closes {:?}", apps[0].read, apps[1].written, apps[1].read, apps[0].written, out.reasons));
        } else if sc.clean && (0..2).any(|s| apps[s].written != apps[s].plan.total) {
            failure = Some("a writer could not write its whole plan".into());
        }
    }
    let mut probe_symptom = None;
    if failure.is_none() && probe_failure.is_some() {
        failure = probe_failure.clone();
        probe_symptom = probe_failure;
        class = Some(PROBES_DO_NOT_BACK_OFF);
    }
    let class = class.or_else(|| classify(sc, &net, &apps));
    if let Some(why) = failure {
        out.symptom = symptom(&net, &apps);
        if let Some(stuck) = &stuck {
            // The state while it was stuck says more than the end does.
            out.symptom = stuck.rsplit("symptom then: ").next().unwrap_or_default().to_string();
        }
        if let Some(p) = probe_symptom {
            out.symptom = p;
        }
        out.class = class.unwrap_or("unclassified");
        out.failure = Some(format!(
            "seed {} [{}]: {why}\n  at t={:.3}s, last progress at t={:.3}s\n  {}\n  {}\n  links: 0→1 {:?}\n         1→0 {:?}\n  {}\n  symptom: {}",
            sc.seed,
            out.class,
            out.virtual_time.as_secs_f64(),
            last_progress.0.saturating_duration_since(start).as_secs_f64(),
            describe(&net, &apps[0], "client"),
            describe(&net, &apps[1], "server"),
            net.link(0, 1).stats(),
            net.link(1, 0).stats(),
            stuck.as_deref().unwrap_or("never stuck for long"),
            out.symptom,
        ));
    }
    out
}

/// A sender whose peer offers a window below one MSS (and below half the
/// largest it offered) holds its data back (sender SWS avoidance, RFC 1122
/// §4.2.3.4) with nothing in flight and no timer: the persist timer is
/// armed only for a window of exactly 0. When the window update that
/// would release it is lost (pure-ACK loss) or never comes (a receiver
/// whose buffer is below one MSS sends updates only for a full MSS), the
/// connection waits forever. Issue 17 §1.1.
const SMALL_WINDOW_NO_PERSIST: &str = "small-window-no-persist (§1.1)";
/// Zero-window probes go out at the base RTO again and again: every ACK
/// answering one (window still 0) resets the probe count, so there is no
/// exponential backoff. Issue 17 §1.5.
const PROBES_DO_NOT_BACK_OFF: &str = "probes-do-not-back-off (§1.5)";
/// With a reassembly limit as large as the receive-memory limit,
/// out-of-order data can take all of the memory; the in-order segment
/// that would fill the gap is then refused (`mem_dropped`) every time it
/// is retransmitted, until the sender times out. Linux frees memory by
/// pruning the out-of-order queue (tcp_prune_ofo_queue) first.
const OOO_PINS_RX_MEMORY: &str = "ooo-pins-rx-memory";
/// The keepalive timer, when it fires in FIN-WAIT-1 (or CLOSING,
/// LAST-ACK), returns without re-arming itself (`on_keepalive_timeout`
/// accepts only ESTABLISHED, CLOSE-WAIT and FIN-WAIT-2). A half-closed
/// connection whose peer then vanished (its RST lost) waits in FIN-WAIT-2
/// with no timer at all, forever. Linux runs keepalive in every
/// synchronized state (tcp_keepalive_timer).
const KEEPALIVE_DROPPED: &str = "keepalive-dropped-outside-estab";

/// The seeds `cargo test` runs (about 7 s with the test profile).
const DEFAULT_SEEDS: std::ops::Range<u64> = 0..500;

/// Seeds that fail because of known engine bugs, grouped by the bug (the
/// class a failure report names). Excluded from `seeded_scenarios`; run by
/// the ignored `awaiting_fixes` test, which fails until every one passes.
/// A fix deletes its group here once `awaiting_fixes` shows its seeds
/// passing. Empty now.
///
/// History (issue 17): on seeds 0..20500, before the fixes, the classes
/// were
/// - §1.1 (348 of 0..3000, 2055 of 500..20500): data queued, nothing in
///   flight, a send window 0 < W < MSS and no timer; fixed by the persist
///   timer for any window too small to use;
/// - §1.5 (109 of 0..3000, 704 of 500..20500): zero-window probes at the
///   base RTO for ever (every ACK reset the count); fixed by the backoff kept
///   apart from the abort counter;
/// - `ooo-pins-rx-memory` (16 of 500..20500): out-of-order bytes held the
///   host's whole receive memory and every in-order retransmission was
///   refused; fixed by pruning the out-of-order queue (tcp_prune_ofo_queue);
/// - `keepalive-dropped-outside-estab` (2 of 500..20500): a keepalive timer
///   that fired in FIN-WAIT-1 was never armed again; fixed by keepalive in
///   every synchronized state.
///
/// The seeds of the default set that then still ended early (18, 20, 121,
/// 125 of 0..500) are orphans that gave up after `orphan_retries`, accepted
/// as such by `run_scenario` and counted in the summary.
const AWAITING_FIXES_SEEDS: &[(&str, &[u64])] = &[];

fn awaiting_fixes_seeds() -> impl Iterator<Item = u64> {
    AWAITING_FIXES_SEEDS.iter().flat_map(|(_, seeds)| seeds.iter().copied())
}

/// What a set of scenarios did.
#[derive(Default)]
struct Summary {
    cases: u64,
    clean: u64,
    bytes: u64,
    acks_lost: u64,
    virtual_s: f64,
    /// Cases that reached each path (see `Coverage`).
    zero_window: u64,
    small_window: u64,
    receiver_full: u64,
    closed_unsent: u64,
    with_ack_loss: u64,
    scales_differ: u64,
    /// Orphans that gave up (see `Outcome::orphan_gave_up`).
    orphans_gave_up: u64,
    /// (seed, class, symptom, report).
    failures: Vec<(u64, &'static str, String, String)>,
}

impl Summary {
    fn run(seeds: impl Iterator<Item = u64>) -> Summary {
        let mut s = Summary::default();
        for seed in seeds {
            let sc = Scenario::from_seed(seed);
            let out = run_scenario(&sc, false);
            s.cases += 1;
            s.clean += sc.clean as u64;
            s.bytes += out.delivered;
            s.acks_lost += out.acks_lost;
            s.virtual_s += out.virtual_time.as_secs_f64();
            let c = out.coverage;
            s.zero_window += c.zero_window as u64;
            s.small_window += c.small_window as u64;
            s.receiver_full += c.receiver_full as u64;
            s.closed_unsent += c.closed_unsent as u64;
            s.with_ack_loss += c.acks_lost as u64;
            s.scales_differ += c.scales_differ as u64;
            s.orphans_gave_up += out.orphan_gave_up as u64;
            if let Some(f) = out.failure {
                s.failures.push((seed, out.class, out.symptom, f));
            }
        }
        s
    }

    fn print(&self, name: &str) {
        println!(
            "{name}: {} cases ({} clean), {} bytes delivered, {} pure ACKs dropped, {:.0} s virtual; reached: zero window {}, window < MSS {}, receive buffer full {}, closed with data unsent {}, ACK loss {}, window scales differ {}; {} orphans gave up after their retries; {} failures",
            self.cases,
            self.clean,
            self.bytes,
            self.acks_lost,
            self.virtual_s,
            self.zero_window,
            self.small_window,
            self.receiver_full,
            self.closed_unsent,
            self.with_ack_loss,
            self.scales_differ,
            self.orphans_gave_up,
            self.failures.len()
        );
        let mut groups: std::collections::BTreeMap<(&str, String), Vec<u64>> = Default::default();
        for (seed, class, symptom, _) in &self.failures {
            // By class, then by the symptom without its numbers.
            let key: String = symptom.chars().filter(|c| !c.is_ascii_digit()).collect();
            groups.entry((class, key)).or_default().push(*seed);
        }
        for ((class, key), seeds) in &groups {
            println!("  {} × {class} [{key}]: seeds {:?}", seeds.len(), &seeds[..seeds.len().min(40)]);
        }
        let mut by_class: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
        for (seed, class, _, _) in &self.failures {
            by_class.entry(class).or_default().push(*seed);
        }
        for (class, seeds) in &by_class {
            println!("  {class}: {} seeds {:?}", seeds.len(), seeds);
        }
    }

    fn assert_passed(&self) {
        let reports: Vec<&str> = self.failures.iter().map(|(_, _, _, f)| f.as_str()).collect();
        assert!(reports.is_empty(), "{} of {} scenarios failed:\n{}", reports.len(), self.cases, reports.join("\n"));
    }
}

#[test]
fn seeded_scenarios() {
    let s = Summary::run(DEFAULT_SEEDS.filter(|s| !awaiting_fixes_seeds().any(|a| a == *s)));
    s.print("seeded_scenarios");
    s.assert_passed();
    // The generators must keep reaching what they are for.
    for (what, n) in [
        ("a zero window", s.zero_window),
        ("a window below the MSS", s.small_window),
        ("a full receive buffer", s.receiver_full),
        ("a close with data unsent", s.closed_unsent),
        ("pure-ACK loss", s.with_ack_loss),
        ("different window scales", s.scales_differ),
    ] {
        assert!(n * 20 >= s.cases, "only {n} of {} scenarios reached {what}", s.cases);
    }
}

/// The known-bug seeds: fails until the engine fixes land.
#[test]
#[ignore]
fn awaiting_fixes() {
    let s = Summary::run(awaiting_fixes_seeds());
    s.print("awaiting_fixes");
    s.assert_passed();
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One seed, with its scenario and a trace every 500 ms of virtual time
/// (and a pcap file of the whole run if `PROP_PCAP` names one).
#[test]
#[ignore]
fn replay() {
    let seed = env_u64("PROP_SEED", 0);
    let sc = Scenario::from_seed(seed);
    println!("{sc:#?}");
    let out = run_scenario(&sc, true);
    println!("outcome: {:?} after {:.3}s, {} bytes, {:?}", out.reasons, out.virtual_time.as_secs_f64(), out.delivered, out.coverage);
    if let Some(f) = out.failure {
        panic!("{f}");
    }
}

/// `PROP_CASES` seeds from `PROP_START` (default: right after the default
/// set), with a summary: cases, bytes, what they reached, failures grouped
/// by symptom, and the first few failure reports.
#[test]
#[ignore]
fn long_seeded_run() {
    let cases = env_u64("PROP_CASES", 2000);
    let first = env_u64("PROP_START", DEFAULT_SEEDS.end);
    let started = std::time::Instant::now();
    let s = Summary::run(first..first + cases);
    s.print(&format!("long_seeded_run (seeds {first}..{})", first + cases));
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    for (_, _, _, f) in s.failures.iter().take(5) {
        println!("{f}");
    }
    assert!(s.failures.is_empty(), "{} of {cases} scenarios failed", s.failures.len());
}

/// `advance_to` stops at its deadline, between events, and a step there
/// finds the clock where it was left.
#[test]
fn advance_to_stops_between_events() {
    let mut net = Network::pair(config(), config(), LinkConfig::ideal(Duration::from_millis(10)), LinkConfig::ideal(Duration::from_millis(10)), 1);
    let (client, server) = establish(&mut net, 45000);
    let t0 = net.now();
    net.conn_mut(client).send(&[1, 2, 3]).unwrap();
    // The segment is on the link, due in 10 ms: at 5 ms nothing arrived.
    net.advance_to(t0 + Duration::from_millis(5));
    assert_eq!(net.now(), t0 + Duration::from_millis(5));
    assert_eq!(net.conn(server).recv_queue(), 0);
    net.advance_to(t0 + Duration::from_millis(10));
    assert_eq!(net.now(), t0 + Duration::from_millis(10));
    assert_eq!(net.conn(server).recv_queue(), 3);
}
