//! xdptcp itself as the load generator's client: one worker on queue 0 of an
//! interface, driving the workload from the worker loop (`run_worker_with`)
//! and the application callbacks. No sockets, no syscalls per message.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::host::{rx_queue_count, secret};
use xdptcp::stack::StackConfig;
use xdptcp::xdp::{not_root, rss_steering};
use xdptcp::runtime::{run_worker_with, Handoff};
use xdptcp::stack::Shard;
use xdptcp::tcp::CloseReason;
use xdptcp::xdp::{QueueConfig, SteerProgram, XdpMode, XskQueue};

use crate::kernel::Progress;
use crate::load::{Direction, Flow, Meter, Outcome, Pacer, Probe, Spec, Workload};

static FILL: [u8; 16384] = [0x5a; 16384];

/// Where the xdptcp client lives.
#[derive(Debug, Clone)]
pub struct XdpClient {
    pub iface: String,
    /// `ADDR[/LEN]`: the first of the client's addresses.
    pub ip: String,
    /// How many consecutive addresses, for more than 64k connections.
    pub addresses: u32,
    pub mode: XdpMode,
    pub core: Option<usize>,
}

#[derive(Default)]
pub struct FlowState {
    flow: Flow,
    started: Option<Instant>,
    connected: bool,
    done: bool,
    /// crr: the slot was given back when the response arrived, as a
    /// kernel client's close() returns at once; the close runs on.
    released: bool,
}

struct Load {
    spec: Spec,
    meter: Meter,
    progress: Arc<Progress>,
    /// Connections counted against the workload's count: opened, and not
    /// yet closed (crr: not yet answered).
    opened: usize,
    established: usize,
    completed: u64,
    /// Established connections, for open-loop sends.
    ready: Vec<ConnId>,
    cursor: usize,
    all_open_at: Option<Instant>,
}

impl Load {
    fn fill(&mut self, c: &mut Conn<'_, FlowState>) {
        let now = Instant::now();
        loop {
            let w = c.send(&FILL).unwrap_or(0);
            self.meter.bytes(now, w);
            if w < FILL.len() {
                return;
            }
        }
    }
}

/// Queues pending request bytes into the send buffer.
fn flush(c: &mut Conn<'_, FlowState>) {
    while c.state().flow.unsent > 0 {
        let n = c.state().flow.unsent.min(FILL.len());
        let w = c.send(&FILL[..n]).unwrap_or(0);
        c.state().flow.unsent -= w;
        if w < n {
            return;
        }
    }
}

impl App for Load {
    type State = FlowState;

    fn on_connected(&mut self, c: &mut Conn<'_, FlowState>) {
        let now = Instant::now();
        self.established += 1;
        c.state().connected = true;
        let msg = self.spec.msg_bytes;
        match self.spec.workload {
            Workload::Stream if self.spec.direction == Direction::Up => self.fill(c),
            Workload::Rr if self.spec.rate.is_none() => c.state().flow.request(now, msg),
            Workload::Rr => self.ready.push(c.id()),
            Workload::Crr => {
                let at = c.state().started.unwrap_or(now);
                c.state().flow.request(at, msg);
            }
            _ => {}
        }
        flush(c);
    }

    fn on_data(&mut self, c: &mut Conn<'_, FlowState>, data: &[u8]) -> usize {
        let now = Instant::now();
        let msg = self.spec.msg_bytes;
        match self.spec.workload {
            Workload::Stream => self.meter.bytes(now, data.len()),
            Workload::Rr => {
                let done = c.state().flow.receive(now, data.len(), msg, &mut self.meter);
                if self.spec.rate.is_none() && done > 0 {
                    for _ in 0..done {
                        c.state().flow.request(now, msg);
                    }
                    flush(c);
                }
            }
            Workload::Crr => {
                if c.state().flow.receive(now, data.len(), msg, &mut self.meter) > 0 {
                    self.completed += 1;
                    self.opened -= 1;
                    c.state().done = true;
                    c.state().released = true;
                    c.close();
                }
            }
            Workload::Hold => {}
        }
        data.len()
    }

    fn on_writable(&mut self, c: &mut Conn<'_, FlowState>) {
        if self.spec.workload == Workload::Stream && self.spec.direction == Direction::Up {
            self.fill(c);
        } else {
            flush(c);
        }
    }

    fn on_peer_closed(&mut self, c: &mut Conn<'_, FlowState>) {
        if !c.state().done {
            self.meter.error();
            c.state().done = true;
        }
        c.close();
    }

    fn on_closed(&mut self, id: ConnId, state: FlowState, reason: CloseReason) {
        if !state.released {
            self.opened -= 1;
        }
        if state.connected {
            self.established -= 1;
        }
        if !state.done {
            log::debug!("connection closed early: {reason:?}");
            self.meter.error();
        }
        if self.spec.workload == Workload::Rr && self.spec.rate.is_some() {
            self.ready.retain(|&r| r != id);
        }
    }
}

/// The stack configuration for `iface` owning `ip`, `ADDR[/LEN]` (/24
/// when no length is given), as the bench's `--ip` flags give it.
pub fn stack_config(iface: &str, ip: &str, gateway: Option<Ipv4Addr>) -> Result<StackConfig, String> {
    let (addr, prefix) = match ip.split_once('/') {
        Some((a, l)) => (a, l.parse().map_err(|e| format!("--ip /{l}: {e}"))?),
        None => (ip, 24),
    };
    let addr = addr.parse().map_err(|e| format!("--ip {addr}: {e}"))?;
    xdptcp::host::stack_config(iface, addr, prefix, gateway).map_err(|e| e.to_string())
}

/// Runs the workload against `server` from xdptcp on `client.iface`.
pub fn run_client(spec: &Spec, server: SocketAddrV4, client: &XdpClient, progress: Arc<Progress>, probe: Probe) -> Result<(Meter, Outcome), String> {
    if not_root() {
        return Err("--stack xdp needs CAP_NET_ADMIN and CAP_BPF: run as root".into());
    }
    let mut cfg = stack_config(&client.iface, &client.ip, None)?;
    cfg.addresses = client.addresses.max(1);
    // A load generator opens connections as fast as it can: every port, and
    // Linux's tcp_tw_reuse for ports in TIME_WAIT (the kernel client's
    // namespace gets the same settings from scripts/bench.sh).
    cfg.ephemeral_ports = (1024, 65535);
    cfg.tw_reuse = true;
    // The TIME_WAIT cap of the namespace we run in, as the kernel client
    // there gets it (net.ipv4.tcp_max_tw_buckets).
    if let Some(n) = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_tw_buckets").ok().and_then(|s| s.trim().parse().ok()) {
        cfg.max_time_wait = n;
    }
    // Room for the workload plus Linux's default TIME_WAIT cap (beyond which
    // connections skip TIME_WAIT, counted, as tcp_max_tw_buckets does).
    cfg.max_connections = spec.conns + cfg.max_time_wait + 4096;
    let queues = rx_queue_count(&client.iface).map_err(|e| e.to_string())?;
    if queues != 1 {
        return Err(format!(
            "--stack xdp runs one worker and needs a single-queue interface; {} has {queues} (ethtool -L {} rx 1 tx 1)",
            client.iface, client.iface
        ));
    }
    // One queue: replies land on it whatever the port, so no open relies
    // on a hand-off; the steering is read all the same, for the log.
    let (rss, line) = rss_steering(&client.iface);
    log::info!("{line}");
    cfg.rss = rss;
    cfg.single_queue = true;
    let mut program = SteerProgram::attach(&client.iface, cfg.ip, cfg.addresses, 0, client.mode).map_err(|e| e.to_string())?;
    // The interface's MTU: above one UMEM frame, multi-buffer AF_XDP.
    let queue = XskQueue::open(&client.iface, 0, QueueConfig::for_mtu(cfg.mtu as u32)).map_err(|e| e.to_string())?;
    program.register(0, queue.fd()).map_err(|e| e.to_string())?;
    if let Some(id) = client.core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let shard: Shard<Load> = Shard::new(cfg, secret());
    let start = Instant::now();
    let app = Load {
        spec: spec.clone(),
        meter: Meter::new(start, spec),
        progress,
        opened: 0,
        established: 0,
        completed: 0,
        ready: Vec::new(),
        cursor: 0,
        all_open_at: None,
    };
    let mut pacer = spec.rate.map(|r| Pacer::new(start + spec.warmup.min(Duration::from_millis(200)), r));
    let stop = AtomicBool::new(false);
    let (_ctl_tx, ctl_rx) = crossbeam::channel::unbounded();
    let handoff = Handoff::ring(1).pop().expect("one");
    let mut finishing: Option<Instant> = None;
    let mut server_bytes_per_conn = None;
    let mut held = 0usize;
    // Frames in and out at the window's start, and per second over it.
    let mut window_start: Option<(u64, u64)> = None;
    let mut frames_per_s = None;
    // The worker's clock, as a std Instant: no second clock read per loop.
    let mut origin: Option<Instant> = None;
    let (_shard, app, _queue) = run_worker_with(shard, app, queue, &stop, None, ctl_rx, handoff, |xnow, shard, app| {
        let since = Duration::from_nanos(xnow.as_nanos());
        let now = *origin.get_or_insert_with(|| Instant::now() - since) + since;
        if let Some(since) = finishing {
            // Resets are out (or we gave them a moment): stop.
            if now - since > Duration::from_millis(200) || shard.connections().next().is_none() {
                stop.store(true, Ordering::Relaxed);
            }
            return None;
        }
        if window_start.is_none() && app.meter.measuring(now) {
            window_start = Some((shard.stats().frames_in, shard.stats().frames_out));
        }
        if app.meter.done(now) {
            if let Some((fin, fout)) = window_start {
                let secs = (now - app.meter.measure_from).as_secs_f64().max(1e-9);
                frames_per_s = Some(((shard.stats().frames_in - fin) as f64 / secs, (shard.stats().frames_out - fout) as f64 / secs));
            }
            if app.spec.workload == Workload::Hold {
                held = app.established;
                server_bytes_per_conn = probe(held);
                app.meter.errors += app.spec.conns.saturating_sub(app.established) as u64;
            }
            // Leave no connection behind on the server: reset them all.
            let ids: Vec<ConnId> = shard.connections().map(|(id, _)| id).collect();
            for id in ids {
                shard.with_conn(id, |c| {
                    c.state().done = true;
                    c.abort();
                });
            }
            finishing = Some(now);
            return None;
        }
        let limit = match app.spec.workload {
            // Ramp up: the first SYNs wait for ARP, and a neighbour's queue
            // holds only so many frames (as in Linux).
            Workload::Hold => (app.established + app.spec.concurrency.min(4 * app.established.max(1))).min(app.spec.conns),
            _ => app.spec.conns,
        };
        while app.opened < limit {
            match shard.connect(xnow, server) {
                Ok(id) => {
                    app.opened += 1;
                    shard.with_conn(id, |c| c.state().started = Some(now));
                }
                Err(e) => {
                    log::debug!("connect: {e}");
                    app.meter.error();
                    break;
                }
            }
        }
        if app.spec.workload == Workload::Hold && app.all_open_at.is_none() && app.established >= app.spec.conns {
            app.all_open_at = Some(now);
            app.meter.measure_to = now + app.spec.duration;
        }
        let mut wake = None;
        if let Some(p) = pacer.as_mut() {
            while let Some(at) = p.due(now) {
                if app.ready.is_empty() {
                    continue;
                }
                app.cursor = (app.cursor + 1) % app.ready.len();
                let id = app.ready[app.cursor];
                let msg = app.spec.msg_bytes;
                shard.with_conn(id, |c| {
                    c.state().flow.request(at, msg);
                    flush(c);
                });
            }
            wake = Some(xnow + p.next().saturating_duration_since(now));
        }
        app.progress.ops.store(app.meter.ops, Ordering::Relaxed);
        app.progress.bytes.store(app.meter.bytes, Ordering::Relaxed);
        app.progress.conns.store(app.established as u64, Ordering::Relaxed);
        wake
    });
    drop(program);
    let hold = spec.workload == Workload::Hold;
    let out = Outcome {
        bytes: app.meter.bytes,
        ops: app.meter.ops,
        errors: app.meter.errors,
        conns: if hold { held as u64 } else { app.completed },
        seconds: spec.duration.as_secs_f64(),
        open_seconds: app.all_open_at.map(|t| (t - start).as_secs_f64()),
        server_bytes_per_conn,
        frames_per_s,
    };
    Ok((app.meter, out))
}
