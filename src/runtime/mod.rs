//! The workers: one per queue, pinned to a core, each running a
//! run-to-completion loop over its own shard. No locks on the way.
//!
//! Per iteration: take an RX batch and run it through the shard (callbacks
//! included, lent the free TX frames so that `Conn::send_with` writes
//! replies straight into them), fire due timers, write every pending frame
//! straight into free TX frames, kick, and take back completed frames. Busy-polls while traffic
//! flows; after a stretch of idle iterations it sleeps in poll() until the
//! next timer or packet, so an idle stack costs almost no CPU.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam::channel::{Receiver, Sender};

use crate::app::App;
use crate::stack::{ShardStats, TxFrames, Verdict};
use crate::xdp::{QueueStats, XskRings, XskTx};
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
}

/// A frame passed between cores, with the number of cores that have seen it.
pub type Handed = (Vec<u8>, u8);

/// How a worker reaches the others: frames matching no connection here go
/// to the next core in a ring, until every core has seen them.
pub struct Handoff {
    pub inbox: Receiver<Handed>,
    pub next: Option<Sender<Handed>>,
    pub workers: u8,
}

impl Handoff {
    /// The ring for `n` workers: one `Handoff` per worker, in order.
    pub fn ring(n: usize) -> Vec<Handoff> {
        let chans: Vec<_> = (0..n).map(|_| crossbeam::channel::unbounded::<Handed>()).collect();
        (0..n)
            .map(|i| Handoff {
                inbox: chans[i].1.clone(),
                next: (n > 1).then(|| chans[(i + 1) % n].0.clone()),
                workers: n as u8,
            })
            .collect()
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
    let mut forward: Vec<Vec<u8>> = Vec::new();
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
        while let Ok((frame, seen)) = handoff.inbox.try_recv() {
            handed += 1;
            shard.count_handoff_in();
            let last = seen + 1 >= handoff.workers;
            let mut lent = Lent { tx: &mut queue.tx(), pcap: &mut pcap, now, sent: 0 };
            let verdict = shard.handle_frame_tx(now, &frame, &mut app, last, &mut lent);
            sent += lent.sent;
            if verdict == Verdict::Forward {
                if let Some(next) = &handoff.next {
                    let _ = next.send((frame, seen + 1));
                }
            }
        }
        queue.busy_poll();
        let got = queue.recv_with_tx(BATCH, |frame, tx| {
            if let Some(p) = pcap.as_mut() {
                let _ = p.write(now, frame);
            }
            // Free TX frames lent for the callbacks' `Conn::send_with`.
            let mut lent = Lent { tx, pcap: &mut pcap, now, sent: 0 };
            let verdict = shard.handle_frame_tx(now, frame, &mut app, alone, &mut lent);
            sent += lent.sent;
            if verdict == Verdict::Forward {
                // Counted by the shard; copied, since the frame goes back to the kernel.
                forward.push(frame.to_vec());
            }
        });
        if let Some(next) = &handoff.next {
            for frame in forward.drain(..) {
                let _ = next.send((frame, 1));
            }
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

/// A queue's free TX frames lent to the shard during a receive: frames the
/// callbacks write with `Conn::send_with` are queued at once (and captured).
struct Lent<'a, 'b> {
    tx: &'a mut XskTx<'b, XskRings>,
    pcap: &'a mut Option<Capture>,
    now: Instant,
    sent: usize,
}

impl TxFrames for Lent<'_, '_> {
    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let (pcap, now) = (&mut *self.pcap, self.now);
        let queued = self.tx.send_with(|buf| {
            let n = f(buf);
            if n == 0 {
                return None;
            }
            if let Some(p) = pcap.as_mut() {
                let _ = p.write(now, &buf[..n]);
            }
            Some(n)
        });
        self.sent += usize::from(queued == Some(true));
        queued.is_some()
    }
}
