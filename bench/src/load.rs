//! What every client stack shares: the workload description, the
//! measurement window, request/response bookkeeping, open-loop pacing, and
//! the result record.
//!
//! The kernel client (`kernel.rs`) and the xdptcp client (`xdp.rs`) drive
//! connections their own way, but both feed these types, so a workload
//! means the same thing on either stack.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Bulk transfer over N connections.
    Stream,
    /// Request/response with M-byte messages over N persistent connections.
    Rr,
    /// Connect, one request/response, close.
    Crr,
    /// Open N connections and keep them.
    Hold,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Stream => "stream",
            Workload::Rr => "rr",
            Workload::Crr => "crr",
            Workload::Hold => "hold",
        }
    }
}

/// Which way a stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Client to server (the server runs `discard`).
    Up,
    /// Server to client (the server runs `source`).
    Down,
}

/// One run's workload, as given on the command line.
#[derive(Debug, Clone)]
pub struct Spec {
    pub workload: Workload,
    pub conns: usize,
    pub msg_bytes: usize,
    /// Open loop at this many requests per second over all connections;
    /// closed loop when `None`.
    pub rate: Option<f64>,
    pub direction: Direction,
    pub warmup: Duration,
    pub duration: Duration,
    /// `hold`: handshakes allowed in flight at once.
    pub concurrency: usize,
}

/// Latencies are recorded in nanoseconds, from 1 ns to 100 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Counts only what happens inside the measured window, after the warm-up.
pub struct Meter {
    pub start: Instant,
    pub measure_from: Instant,
    pub measure_to: Instant,
    pub latency: Histogram<u64>,
    pub bytes: u64,
    pub ops: u64,
    pub errors: u64,
}

impl Meter {
    pub fn new(start: Instant, spec: &Spec) -> Meter {
        Meter {
            start,
            measure_from: start + spec.warmup,
            measure_to: start + spec.warmup + spec.duration,
            latency: histogram(),
            bytes: 0,
            ops: 0,
            errors: 0,
        }
    }

    pub fn measuring(&self, now: Instant) -> bool {
        now >= self.measure_from && now < self.measure_to
    }

    pub fn done(&self, now: Instant) -> bool {
        now >= self.measure_to
    }

    pub fn bytes(&mut self, now: Instant, n: usize) {
        if self.measuring(now) {
            self.bytes += n as u64;
        }
    }

    /// One finished operation that began (or was meant to begin) at `since`.
    pub fn op(&mut self, now: Instant, since: Instant) {
        if self.measuring(now) {
            self.ops += 1;
            let ns = now.saturating_duration_since(since).as_nanos().max(1) as u64;
            let _ = self.latency.record(ns.min(self.latency.high()));
        }
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Adds another thread's meter to this one.
    pub fn merge(&mut self, other: &Meter) {
        let _ = self.latency.add(&other.latency);
        self.bytes += other.bytes;
        self.ops += other.ops;
        self.errors += other.errors;
    }
}

/// One connection's outstanding requests: when each was sent (or, open
/// loop, when it was meant to be sent), and how much of the current
/// response has arrived. Responses come back in order, `msg` bytes each.
#[derive(Debug, Default)]
pub struct Flow {
    pending: VecDeque<Instant>,
    received: usize,
    /// Request bytes not yet accepted by the stack.
    pub unsent: usize,
}

impl Flow {
    /// A request of `msg` bytes is due; `at` is its latency's start.
    pub fn request(&mut self, at: Instant, msg: usize) {
        self.pending.push_back(at);
        self.unsent += msg;
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// `n` response bytes arrived; completes whole responses and records
    /// their latencies. Returns how many completed.
    pub fn receive(&mut self, now: Instant, n: usize, msg: usize, meter: &mut Meter) -> usize {
        self.received += n;
        let mut done = 0;
        while self.received >= msg.max(1) {
            let Some(at) = self.pending.pop_front() else {
                // More bytes than we asked for: the server misbehaves.
                meter.error();
                self.received = 0;
                break;
            };
            self.received -= msg.max(1);
            meter.op(now, at);
            done += 1;
        }
        done
    }
}

/// Open-loop schedule: the intended send times of a fixed rate, so latency
/// is measured from when a request should have gone out, not from when a
/// late sender got round to it (coordinated omission, as wrk2 corrects it).
pub struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(start: Instant, rate: f64) -> Pacer {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        Pacer { interval, next: start }
    }

    /// The intended time of the next request if it is due by `now`.
    pub fn due(&mut self, now: Instant) -> Option<Instant> {
        if self.next > now {
            return None;
        }
        let at = self.next;
        self.next += self.interval;
        Some(at)
    }

    pub fn next(&self) -> Instant {
        self.next
    }
}

/// CPU time used by a process, in seconds (utime + stime from
/// /proc/PID/stat, in USER_HZ ticks, 100 per second on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields restart after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The kernel's slab memory (where sockets live), in bytes.
pub fn slab_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("Slab:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a stack reports after a run, before it becomes a [`Record`].
#[derive(Debug, Default)]
pub struct Outcome {
    pub bytes: u64,
    pub ops: u64,
    pub errors: u64,
    /// Connections established (hold) or completed (crr).
    pub conns: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// hold: seconds it took to establish every connection.
    pub open_seconds: Option<f64>,
    /// hold: the server's memory per connection, from the probe.
    pub server_bytes_per_conn: Option<f64>,
    /// xdp: frames the client stack received and sent per second in the
    /// measured window.
    pub frames_per_s: Option<(f64, f64)>,
}

/// Measures the server's memory per connection at the end of a hold, given
/// the number of connections held.
pub type Probe = std::sync::Arc<dyn Fn(usize) -> Option<f64> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            workload: Workload::Rr,
            conns: 1,
            msg_bytes: 64,
            rate: None,
            direction: Direction::Up,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            concurrency: 1,
        }
    }

    #[test]
    fn meter_counts_only_inside_the_window() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0, &spec());
        m.bytes(t0, 100);
        m.op(t0 + Duration::from_millis(10), t0);
        m.bytes(t0 + Duration::from_millis(1500), 7);
        m.op(t0 + Duration::from_millis(1500), t0 + Duration::from_millis(1400));
        m.bytes(t0 + Duration::from_secs(3), 1000);
        assert_eq!(m.bytes, 7);
        assert_eq!(m.ops, 1);
        let p50 = m.latency.value_at_quantile(0.5);
        assert!((99_000_000..=101_000_000).contains(&p50), "{p50}");
        assert!(m.done(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn flow_completes_responses_in_order_across_partial_reads() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0 - Duration::from_secs(1), &spec());
        let mut f = Flow::default();
        f.request(t0, 64);
        f.request(t0 + Duration::from_micros(10), 64);
        assert_eq!(f.unsent, 128);
        let now = t0 + Duration::from_micros(50);
        assert_eq!(f.receive(now, 40, 64, &mut m), 0);
        assert_eq!(f.receive(now, 40, 64, &mut m), 1);
        assert_eq!(f.outstanding(), 1);
        assert_eq!(f.receive(now, 48, 64, &mut m), 1);
        assert_eq!(f.outstanding(), 0);
        assert_eq!(m.ops, 2);
        // 50 µs and 40 µs.
        assert_eq!(m.latency.max() / 1000, 50);
        assert_eq!(m.latency.min() / 1000, 40);
        // A response nobody asked for is an error.
        assert_eq!(f.receive(now, 64, 64, &mut m), 0);
        assert_eq!(m.errors, 1);
    }

    #[test]
    fn pacer_keeps_intended_times_when_the_sender_is_late() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 1000.0);
        // The sender wakes 3.5 ms late: three requests are overdue, each
        // with its own intended time, 1 ms apart.
        let late = t0 + Duration::from_micros(3500);
        let due: Vec<_> = std::iter::from_fn(|| p.due(late)).collect();
        assert_eq!(due.len(), 4);
        assert_eq!(due[3] - due[0], Duration::from_millis(3));
        assert_eq!(p.due(late), None);
    }

    #[test]
    fn proc_readers_see_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        assert!(slab_bytes().unwrap() > 0);
    }
}
