//! The workers: one per queue, pinned to a core, each running a
//! run-to-completion loop over its own shard. No locks on the way.
//!
//! Per iteration: take an RX batch and run it through the shard (callbacks
//! included), fire due timers, write every pending frame straight into free
//! TX frames, kick, and take back completed frames. Busy-polls while traffic
//! flows; after a stretch of idle iterations it sleeps in poll() until the
//! next timer or packet, so an idle stack costs almost no CPU.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::app::App;
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

pub type Capture = PcapSink<std::io::BufWriter<std::fs::File>>;

/// Runs one worker until `stop` is set. Returns the shard and app so the
/// caller can report and shut down cleanly.
pub fn run_worker<A: App>(mut shard: Shard<A>, mut app: A, mut queue: XskQueue, stop: &AtomicBool, mut pcap: Option<Capture>) -> (Shard<A>, A, XskQueue) {
    let clock = Clock::new();
    let mut idle = 0u32;
    shard.announce();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        let got = queue.recv(BATCH, |frame| {
            if let Some(p) = pcap.as_mut() {
                let _ = p.write(now, frame);
            }
            shard.handle_frame(now, frame, &mut app);
        });
        shard.handle_timeout(now, &mut app);
        let mut sent = 0;
        while let Some(true) = queue.send_with(|buf| {
            let n = shard.poll_transmit(now, buf)?;
            if let Some(p) = pcap.as_mut() {
                let _ = p.write(now, &buf[..n]);
            }
            Some(n)
        }) {
            sent += 1;
        }
        queue.flush();
        if got == 0 && sent == 0 {
            idle += 1;
            if idle > SPIN {
                let wait = shard.poll_timeout().map(|t| t.saturating_duration_since(clock.now())).unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
                queue.wait(wait);
            }
        } else {
            idle = 0;
        }
    }
    (shard, app, queue)
}
