//! The workers: one per queue, pinned to a core, each running a
//! run-to-completion loop over its own shard. No locks on the way.
//!
//! Per iteration, one way: lend the shard free TX frames from the UMEM (a
//! [`TxBatch`], topped up, kept across iterations while unfilled); fire due
//! timers; run the frames other cores handed over and the RX batch (owned
//! [`RxFrame`]s, released to the fill ring once the shard has seen them)
//! through the shard, whose control frames, engine and `Conn::send_with`
//! fill lent frames; let the shard fill more with whatever else it has to
//! send; submit the filled frames to the TX ring (captured there), kick,
//! and take back completed frames. The shard never calls back into the
//! runtime or `xdp`. Busy-polls while traffic
//! flows; after a stretch of idle iterations it sleeps in poll() until the
//! next timer or packet, so an idle stack costs almost no CPU.

pub mod handoff;

pub use handoff::Handoff;

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam::channel::{Receiver, Sender};

use crate::app::App;
use crate::stack::{ShardStats, TxBatch, Verdict};
use crate::xdp::{QueueStats, RxFrame, TxFrame};
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

pub use crate::capture::Capture;

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
    /// Frames for another core dropped because its hand-off lane from
    /// this one was full (or the frame longer than a lane's buffers).
    pub handoff_drops: u64,
}

/// Requests the control thread sends a worker; answered between batches,
/// so the data path never takes a lock.
pub enum Control {
    Stats(Sender<WorkerStats>),
    Connections(Sender<Vec<ConnInfo>>),
}

fn answer<A: App>(req: Control, shard: &Shard<A>, queue: &mut XskQueue, handoff: &Handoff) {
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
                handoff_drops: handoff.drops(),
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
    mut handoff: Handoff,
    mut driver: impl FnMut(Instant, &mut Shard<A>, &mut A) -> Option<Instant>,
) -> (Shard<A>, A, XskQueue) {
    let clock = Clock::new();
    let mut idle = 0u32;
    let alone = handoff.workers <= 1;
    // TX frames lent to the shard (kept across iterations while unfilled),
    // and the RX batch; both keep their capacity.
    let mut batch: TxBatch<TxFrame> = TxBatch::with_capacity(BATCH);
    let mut rx: Vec<RxFrame> = Vec::with_capacity(BATCH);
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
        lend(&mut queue, &mut batch);
        // Timers and the driver first, so that nothing stands between
        // receiving a frame and sending what it caused.
        shard.handle_timeout(now, &mut app);
        let wake = driver(now, &mut shard, &mut app);
        // Frames other cores could not place, ours to settle.
        let handed = handoff.recv(|frame| {
            shard.count_handoff_in();
            shard.handle_frame_tx(now, frame, &mut app, true, &mut batch);
        });
        queue.busy_poll();
        let got = queue.recv_frames(BATCH, &mut rx);
        let mut sent = 0;
        for frame in rx.drain(..) {
            let bytes = queue.rx_bytes(&frame);
            if let Some(p) = pcap.as_mut() {
                let _ = p.write(now, bytes);
            }
            let verdict = shard.handle_frame_tx(now, bytes, &mut app, alone, &mut batch);
            if let Verdict::Forward { core } = verdict {
                // Counted by the shard; copied into the owner's lane, since
                // the frame goes back to the kernel.
                handoff.send(core, bytes);
            }
            queue.release(frame);
            if batch.free_len() == 0 {
                sent += submit(&mut queue, &mut batch, &mut pcap, now);
                lend(&mut queue, &mut batch);
            }
        }
        let got = got + handed;
        sent += submit(&mut queue, &mut batch, &mut pcap, now);
        while shard.wants_transmit() {
            lend(&mut queue, &mut batch);
            let filled = shard.poll_transmit_into(now, &mut batch);
            sent += submit(&mut queue, &mut batch, &mut pcap, now);
            if filled == 0 || batch.free_len() > 0 {
                break; // nothing left to send, or no frame to send it in
            }
        }
        queue.flush();
        while let Ok(req) = control.try_recv() {
            answer(req, &shard, &mut queue, &handoff);
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
    // Lent frames go back to the queue, so that its accounting adds up.
    submit(&mut queue, &mut batch, &mut pcap, clock.now());
    for frame in batch.drain_free() {
        queue.give_back(frame);
    }
    (shard, app, queue)
}

/// Tops the lent frames up to a batch, as far as the queue has free
/// frames and TX ring room.
fn lend(queue: &mut XskQueue, batch: &mut TxBatch<TxFrame>) {
    while batch.free_len() < BATCH {
        let Some(frame) = queue.lend_tx() else { break };
        batch.lend(frame);
    }
}

/// Queues the frames the shard filled on the TX ring, in order, capturing
/// each. Returns how many were queued.
fn submit(queue: &mut XskQueue, batch: &mut TxBatch<TxFrame>, pcap: &mut Option<Capture>, now: Instant) -> usize {
    let mut sent = 0;
    for (frame, len) in batch.drain_filled() {
        if let Some(p) = pcap.as_mut() {
            let _ = p.write(now, &frame.as_ref()[..len]);
        }
        sent += usize::from(queue.submit(frame, len));
    }
    sent
}
