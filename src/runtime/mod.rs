//! The workers: one per queue, pinned to a core, each running a
//! run-to-completion loop over its own shard. No locks on the way.
//!
//! Per iteration: take an RX batch and run it through the shard (callbacks
//! included, lent the free TX frames so that `Conn::send_with` writes
//! replies straight into them), fire due timers, write every pending frame
//! straight into free TX frames, kick, and take back completed frames. Busy-polls while traffic
//! flows; after a stretch of idle iterations it sleeps in poll() until the
//! next timer or packet, so an idle stack costs almost no CPU.

pub mod host;

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam::channel::{Receiver, Sender};

use crate::app::App;
use crate::stack::{ShardStats, TxBatch, Verdict};
use crate::xdp::{QueueStats, XskRings, XskTx};
use crate::sim::pcap::PcapSink;
use crate::stack::Shard;
use crate::time::{Duration, Instant};
use crate::xdp::XskQueue;

/// Monotonic time since the worker started, as the engine's `Instant`.
pub struct Clock(std::time::Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(std::time::Instant::now())
    }
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.0.elapsed().as_nanos() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// RX frames taken per iteration.
pub const BATCH: usize = 64;
/// Idle iterations before sleeping in poll().
const SPIN: u32 = 2000;
/// Longest sleep, so stop requests are noticed.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// How long a stopping worker waits for its connections to close
/// gracefully before resetting the rest.
pub const DRAIN: Duration = Duration::from_secs(2);

pub type Capture = PcapSink<std::io::BufWriter<std::fs::File>>;

/// One connection, as `xdptcp ss` shows it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub state: &'static str,
    pub local: std::net::SocketAddrV4,
    pub remote: std::net::SocketAddrV4,
    pub send_q: usize,
    pub recv_q: usize,
    pub cwnd: usize,
    pub srtt_us: Option<u64>,
    pub rto_ms: u64,
    pub mss: usize,
    pub retransmits: u32,
}

/// A worker's counters, as `xdptcp stats` shows them.
#[derive(Debug, Clone, Copy)]
pub struct WorkerStats {
    pub queue: u32,
    pub shard: ShardStats,
    pub xsk: QueueStats,
    pub connections: usize,
    pub time_wait: usize,
    /// Where the queue's UMEM frames are.
    pub frames: crate::xdp::FrameCounts,
    /// Loss recovery over every connection, live or retired.
    pub retransmits: u64,
    pub timeouts: u64,
    pub recoveries: u64,
    pub loss_probes: u64,
    pub undos: u64,
    pub syn_cookies_sent: u64,
    pub syn_cookies_validated: u64,
    /// The AF_XDP socket runs in zero-copy mode (else copy), as the kernel
    /// reports it (XDP_OPTIONS).
    pub zero_copy: bool,
    /// How the queue's UMEM and socket were set up.
    pub umem: crate::xdp::UmemInfo,
    /// What the kernel counted on the socket (drops before the stack).
    pub kernel: crate::xdp::KernelStats,
}

/// A frame passed to the core that owns it.
pub type Handed = Vec<u8>;

/// How a worker reaches the others: a frame matching no connection here
/// goes straight to the core that owns its tuple (`Verdict::Forward`),
/// which handles it as the last hop.
pub struct Handoff {
    pub inbox: Receiver<Handed>,
    /// One sender per core, by index (none for this one).
    pub peers: Vec<Option<Sender<Handed>>>,
    pub workers: u8,
}

impl Handoff {
    /// The hand-offs of `n` workers: one `Handoff` per worker, in order.
    pub fn ring(n: usize) -> Vec<Handoff> {
        let chans: Vec<_> = (0..n).map(|_| crossbeam::channel::unbounded::<Handed>()).collect();
        (0..n)
            .map(|i| Handoff {
                inbox: chans[i].1.clone(),
                peers: (0..n).map(|j| (j != i).then(|| chans[j].0.clone())).collect(),
                workers: n as u8,
            })
            .collect()
    }

    fn send(&self, core: u16, frame: Handed) {
        if let Some(Some(peer)) = self.peers.get(usize::from(core)) {
            let _ = peer.send(frame);
        }
    }
}

/// Requests the control thread sends a worker; answered between batches,
/// so the data path never takes a lock.
pub enum Control {
    Stats(Sender<WorkerStats>),
    Connections(Sender<Vec<ConnInfo>>),
}

fn answer<A: App>(req: Control, shard: &Shard<A>, queue: &mut XskQueue) {
    match req {
        Control::Stats(reply) => {
            let (mut sent, mut valid) = (0u64, 0u64);
            let s = shard.stats();
            let (mut rtx, mut rto, mut rec, mut tlp, mut undo) =
                (s.retired_retransmits, s.retired_timeouts, s.retired_recoveries, s.retired_loss_probes, s.retired_undos);
            for (_, c) in shard.connections() {
                let c = c.stats();
                rtx += u64::from(c.retransmits);
                rto += u64::from(c.timeouts);
                rec += u64::from(c.recoveries);
                tlp += u64::from(c.loss_probes);
                undo += u64::from(c.undos);
            }
            for l in shard.listeners() {
                sent += l.stats().cookies_sent;
                valid += l.stats().cookies_validated;
            }
            let _ = reply.send(WorkerStats {
                queue: queue.queue_id(),
                shard: *shard.stats(),
                xsk: queue.stats(),
                connections: shard.connections().count(),
                time_wait: shard.time_wait_count(),
                frames: queue.frames(),
                retransmits: rtx,
                timeouts: rto,
                recoveries: rec,
                loss_probes: tlp,
                undos: undo,
                syn_cookies_sent: sent,
                syn_cookies_validated: valid,
                zero_copy: queue.zero_copy().unwrap_or(false),
                umem: queue.umem_info(),
                kernel: queue.kernel_stats().unwrap_or_default(),
            });
        }
        Control::Connections(reply) => {
            let list = shard
                .connections()
                .map(|(_, c)| ConnInfo {
                    state: c.state().name(),
                    local: c.local(),
                    remote: c.remote(),
                    send_q: c.send_queue(),
                    recv_q: c.recv_queue(),
                    cwnd: c.cwnd(),
                    srtt_us: c.rtt().srtt().map(|d| d.as_micros() as u64),
                    rto_ms: c.rtt().rto().as_millis() as u64,
                    mss: c.mss(),
                    retransmits: c.stats().retransmits,
                })
                .collect();
            let _ = reply.send(list);
        }
    }
}

/// Runs one worker until `stop` is set. Returns the shard and app so the
/// caller can report and shut down cleanly.
pub fn run_worker<A: App>(
    shard: Shard<A>,
    app: A,
    queue: XskQueue,
    stop: &AtomicBool,
    pcap: Option<Capture>,
    control: Receiver<Control>,
    handoff: Handoff,
) -> (Shard<A>, A, XskQueue) {
    run_worker_with(shard, app, queue, stop, pcap, control, handoff, |_, _, _| None)
}

/// [`run_worker`], with `driver` called once per iteration outside any
/// connection callback. A client opens connections and paces its sends
/// there (through [`Shard::connect`] and [`Shard::with_conn`]); it returns
/// when it next wants to run, so an idle worker wakes up in time.
#[allow(clippy::too_many_arguments)]
pub fn run_worker_with<A: App>(
    mut shard: Shard<A>,
    mut app: A,
    mut queue: XskQueue,
    stop: &AtomicBool,
    mut pcap: Option<Capture>,
    control: Receiver<Control>,
    handoff: Handoff,
    mut driver: impl FnMut(Instant, &mut Shard<A>, &mut A) -> Option<Instant>,
) -> (Shard<A>, A, XskQueue) {
    let clock = Clock::new();
    let mut idle = 0u32;
    let alone = handoff.workers <= 1;
    let mut forward: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut lent = Lent::new();
    shard.announce();
    // Shutdown: when `stop` is raised, connections are closed gracefully
    // and the loop runs on until they finish, for at most DRAIN; whatever
    // is still open then is reset.
    let mut drain_until: Option<Instant> = None;
    let mut aborted = false;
    loop {
        let now = clock.now();
        match drain_until {
            None if stop.load(Ordering::Relaxed) => {
                shard.close_all();
                drain_until = Some(now + DRAIN);
            }
            Some(until) if shard.open_connections() == 0 && !shard.wants_transmit() => {
                let _ = until;
                break;
            }
            Some(until) if now >= until => {
                if !aborted {
                    shard.abort_all();
                    aborted = true;
                } else if !shard.wants_transmit() || now >= until + MAX_SLEEP {
                    break;
                }
            }
            _ => {}
        }
        // Timers and the driver first, so that nothing stands between
        // receiving a frame and sending what it caused.
        shard.handle_timeout(now, &mut app);
        let wake = driver(now, &mut shard, &mut app);
        // Frames other cores could not place: ours, or the next core's turn.
        let mut handed = 0;
        let mut sent = 0;
        while let Ok(frame) = handoff.inbox.try_recv() {
            handed += 1;
            shard.count_handoff_in();
            shard.handle_frame_tx(now, &frame, &mut app, true, &mut lent.batch);
            sent += lent.submit(&mut queue.tx(), &mut pcap, now);
        }
        queue.busy_poll();
        let got = queue.recv_with_tx(BATCH, |frame, tx| {
            if let Some(p) = pcap.as_mut() {
                let _ = p.write(now, frame);
            }
            // Free TX frames lent for the callbacks' `Conn::send_with`.
            let verdict = shard.handle_frame_tx(now, frame, &mut app, alone, &mut lent.batch);
            sent += lent.submit(tx, &mut pcap, now);
            if let Verdict::Forward { core } = verdict {
                // Counted by the shard; copied, since the frame goes back to the kernel.
                forward.push((core, frame.to_vec()));
            }
        });
        for (core, frame) in forward.drain(..) {
            handoff.send(core, frame);
        }
        let got = got + handed;
        while shard.wants_transmit() {
            let Some(true) = queue.send_with(|buf| {
                let n = shard.poll_transmit(now, buf)?;
                if let Some(p) = pcap.as_mut() {
                    let _ = p.write(now, &buf[..n]);
                }
                Some(n)
            }) else {
                break;
            };
            sent += 1;
        }
        queue.flush();
        while let Ok(req) = control.try_recv() {
            answer(req, &shard, &mut queue);
        }
        if got == 0 && sent == 0 {
            idle += 1;
            if idle > SPIN {
                let next = match (shard.poll_timeout(), wake) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let wait = next.map(|t| t.saturating_duration_since(clock.now())).unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
                queue.wait(wait);
            }
        } else {
            idle = 0;
        }
    }
    (shard, app, queue)
}

/// TX frames lent to the shard during a receive, for the callbacks'
/// `Conn::send_with`: scratch frames (allocated once), whose filled ones
/// are copied into free UMEM frames and queued (and captured) after each
/// received frame. A stopgap until the loop lends UMEM frames themselves;
/// a frame filled when no TX slot is free is lost (and retransmitted by
/// TCP).
struct Lent {
    batch: TxBatch<Vec<u8>>,
    filled: Vec<(Vec<u8>, usize)>,
}

/// Scratch frames lent per received frame.
const LENT: usize = 8;

impl Lent {
    fn new() -> Self {
        let mut batch = TxBatch::with_capacity(LENT);
        for _ in 0..LENT {
            batch.lend(vec![0u8; 2048]);
        }
        Lent { batch, filled: Vec::with_capacity(LENT) }
    }

    /// Queues the frames filled; returns how many were queued.
    fn submit(&mut self, tx: &mut XskTx<'_, XskRings>, pcap: &mut Option<Capture>, now: Instant) -> usize {
        self.filled.extend(self.batch.drain_filled());
        let mut sent = 0;
        for (frame, n) in self.filled.drain(..) {
            let queued = tx.send_with(|buf| {
                let n = n.min(buf.len());
                buf[..n].copy_from_slice(&frame[..n]);
                if let Some(p) = pcap.as_mut() {
                    let _ = p.write(now, &buf[..n]);
                }
                Some(n)
            });
            sent += usize::from(queued == Some(true));
            self.batch.lend(frame);
        }
        sent
    }
}
