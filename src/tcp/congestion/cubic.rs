//! CUBIC (RFC 9438), the default, as in Linux.
//!
//! The window is a cubic function of the time since the last reduction,
//! concave up to the previous maximum W_max and convex beyond it, with a
//! Reno-friendly floor W_est. Windows are tracked in segments as `f64`;
//! this runs once per ACK, not per byte.

use super::{initial_window, restart_window, slow_start_increase, Controller, MAX_CWND};
use crate::time::{Duration, Instant};

/// RFC 9438 §4.1: C = 0.4, β_cubic = 0.7.
const C: f64 = 0.4;
const BETA: f64 = 0.7;
/// RFC 9438 §4.3: α_cubic = 3(1 − β)/(1 + β).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

#[derive(Clone, Debug)]
pub struct Cubic {
    /// cwnd in bytes, fractional so small per-ACK increments accumulate.
    cwnd: f64,
    ssthresh: usize,
    /// u32 beside `iw_segments`: the controller is 8 bytes smaller.
    mss: u32,
    iw_segments: u32,
    /// W_max in segments (§4.2), and the previous one for fast convergence (§4.7).
    w_max: f64,
    w_last_max: f64,
    /// K in seconds (§4.2).
    k: f64,
    /// W_est in segments (§4.3).
    w_est: f64,
    epoch_start: Option<Instant>,
    /// cwnd and ssthresh before the last congestion event, for `undo`.
    prior: (u32, u32),
}

impl Cubic {
    pub fn new(mss: usize, iw_segments: u32) -> Self {
        Cubic {
            cwnd: initial_window(mss, iw_segments) as f64,
            ssthresh: MAX_CWND,
            mss: mss.min(u32::MAX as usize) as u32,
            iw_segments,
            w_max: 0.0,
            w_last_max: 0.0,
            k: 0.0,
            w_est: 0.0,
            epoch_start: None,
            prior: (0, 0),
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd / f64::from(self.mss)
    }

    /// W_cubic(t) in segments (§4.2 eq. 1).
    pub fn w_cubic(&self, t: f64) -> f64 {
        C * (t - self.k).powi(3) + self.w_max
    }

    pub fn w_max(&self) -> f64 {
        self.w_max
    }
    pub fn k(&self) -> f64 {
        self.k
    }

    /// §4.6 and §4.7: remember W_max (lowered by fast convergence) and cut.
    fn reduce(&mut self) {
        let cwnd = self.segments();
        self.w_max = if cwnd < self.w_last_max { cwnd * (1.0 + BETA) / 2.0 } else { cwnd };
        self.w_last_max = cwnd;
        self.ssthresh = ((self.cwnd * BETA) as usize).max(2 * self.mss as usize);
        self.epoch_start = None;
    }
}

impl Controller for Cubic {
    fn window(&self) -> usize {
        self.cwnd as usize
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, now: Instant, acked: usize, srtt: Duration, cwnd_limited: bool) {
        if !cwnd_limited {
            return;
        }
        if (self.cwnd as usize) < self.ssthresh {
            self.cwnd = (self.cwnd + slow_start_increase(acked, self.mss as usize) as f64).min(MAX_CWND as f64);
            return;
        }
        let mss = f64::from(self.mss);
        let cwnd = self.segments();
        let fresh = self.epoch_start.is_none();
        let start = *self.epoch_start.get_or_insert(now);
        if fresh {
            // §4.2: K = cbrt((W_max − cwnd_epoch) / C); a window already at or
            // above W_max (no reduction yet) makes it the new plateau, K = 0.
            if self.w_max <= cwnd {
                self.w_max = cwnd;
            }
            self.k = ((self.w_max - cwnd) / C).cbrt();
            // §4.3: W_est starts at the window of the epoch.
            self.w_est = cwnd;
        }
        let t = (now - start).as_secs_f64();
        let rtt = srtt.as_secs_f64();
        // §4.3: Reno-friendly estimate; α becomes 1 once W_est reaches W_max.
        let alpha = if self.w_est >= self.w_max { 1.0 } else { ALPHA };
        self.w_est += alpha * (acked as f64 / mss) / cwnd;
        let w_cubic = self.w_cubic(t);
        let new = if w_cubic < self.w_est {
            // §4.3: the Reno-friendly region.
            self.w_est
        } else {
            // §4.4/§4.5: aim at W_cubic(t + RTT), clamped to [cwnd, 1.5·cwnd].
            let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * (acked as f64 / mss)
        };
        self.cwnd = (new.max(cwnd) * mss).min(MAX_CWND as f64);
    }

    fn on_congestion_event(&mut self, _now: Instant, _in_flight: usize) {
        self.prior = (self.cwnd as u32, self.ssthresh.min(u32::MAX as usize) as u32);
        self.reduce();
        self.cwnd = self.ssthresh as f64;
    }

    fn on_recovery_exit(&mut self, _now: Instant, _in_flight: usize) {
        self.cwnd = self.cwnd.max(self.ssthresh as f64).min(self.ssthresh as f64);
    }

    fn undo(&mut self) {
        // The window returns; the cubic curve restarts from it at the next
        // ACK (a window at or above W_max becomes the new plateau).
        let (cwnd, ssthresh) = self.prior;
        self.cwnd = self.cwnd.max(f64::from(cwnd));
        self.ssthresh = self.ssthresh.max(ssthresh as usize);
        self.epoch_start = None;
    }

    fn on_retransmit_timeout(&mut self, _now: Instant, _in_flight: usize) {
        // §4.8: reduce as for a congestion event, then restart from one segment.
        self.reduce();
        self.cwnd = f64::from(self.mss);
        self.w_est = 0.0;
    }

    fn on_tx_start(&mut self, now: Instant, idle: Duration) {
        // RFC 9438 §5.8: t must not include the idle period, or W_cubic(t)
        // would be far above the window when sending resumes. As Linux
        // (bictcp_cwnd_event), the epoch moves forward by it, never past now.
        if let Some(start) = self.epoch_start {
            self.epoch_start = Some((start + idle).min(now));
        }
    }

    fn restart_after_idle(&mut self, idle: Duration, rto: Duration) {
        let iw = initial_window(self.mss as usize, self.iw_segments);
        let (cwnd, ssthresh) = restart_window(self.cwnd as usize, self.ssthresh, iw, idle, rto);
        self.cwnd = cwnd as f64;
        self.ssthresh = ssthresh;
    }

    fn set_mss(&mut self, mss: usize) {
        let fresh = self.cwnd as usize == initial_window(self.mss as usize, self.iw_segments);
        self.mss = mss.clamp(1, u32::MAX as usize) as u32;
        if fresh {
            self.cwnd = initial_window(self.mss as usize, self.iw_segments) as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// Feeds one RTT's worth of ACKs (one per segment) at time `now`.
    fn rtt_of_acks(c: &mut Cubic, now: Instant, rtt: Duration) {
        let n = c.window() / MSS;
        for _ in 0..n {
            c.on_ack(now, MSS, rtt, true);
        }
    }

    #[test]
    fn reduces_to_beta_with_fast_convergence() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(Instant::ZERO, 100 * MSS);
        assert_eq!(c.window(), 70 * MSS);
        assert_eq!(c.w_max(), 100.0);
        // A second loss below the previous W_max lowers W_max further (§4.7).
        c.on_congestion_event(Instant::ZERO, 70 * MSS);
        assert_eq!(c.window(), 49 * MSS);
        assert!((c.w_max() - 70.0 * 0.85).abs() < 1e-9);
    }

    #[test]
    fn undo_restores_the_window() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(Instant::ZERO, 100 * MSS);
        assert_eq!(c.window(), 70 * MSS);
        c.undo();
        assert_eq!((c.window(), c.ssthresh()), (100 * MSS, MAX_CWND));
        // Growth goes on from the restored window.
        c.on_ack(Instant::ZERO, MSS, Duration::from_millis(10), true);
        assert!(c.window() >= 100 * MSS);
    }

    #[test]
    fn follows_the_cubic_curve_back_to_w_max() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(Instant::ZERO, 100 * MSS);
        let rtt = Duration::from_millis(100);
        let mut now = Instant::from_secs(1);
        c.on_ack(now, MSS, rtt, true); // epoch starts here
        let k = c.k();
        // K = cbrt(100 · 0.3 / 0.4) ≈ 4.217 s.
        assert!((k - (30.0f64 / 0.4).cbrt()).abs() < 1e-9, "K {k}");
        let mut samples = Vec::new();
        for _ in 0..100 {
            now += rtt;
            rtt_of_acks(&mut c, now, rtt);
            samples.push(c.window() / MSS);
        }
        // Concave approach: near W_max around t = K, growth slows there...
        let at_k = samples[(k * 10.0) as usize];
        assert!((95..=104).contains(&at_k), "cwnd at K = {at_k} segments ({samples:?})");
        let early = samples[5] - samples[0];
        let near_k = samples[(k * 10.0) as usize + 1] - samples[(k * 10.0) as usize - 4];
        assert!(near_k < early, "plateau near W_max: {early} vs {near_k}");
        // ...then convex growth beyond it.
        assert!(samples[99] > 130, "convex growth after K: {}", samples[99]);
    }

    #[test]
    fn reno_friendly_region_wins_at_small_rtt_and_window() {
        // With a tiny window and RTT, W_cubic grows slower than Reno would.
        let mut c = Cubic::new(MSS, 4);
        c.on_congestion_event(Instant::ZERO, 4 * MSS);
        let rtt = Duration::from_micros(100);
        let mut now = Instant::from_secs(1);
        for _ in 0..2000 {
            rtt_of_acks(&mut c, now, rtt);
            now += rtt;
        }
        // 0.2 s elapsed: the cubic term alone would barely have moved.
        let cubic_only = c.w_cubic(0.2);
        assert!(c.window() as f64 / MSS as f64 > cubic_only + 10.0, "{} vs cubic {cubic_only}", c.window());
    }

    #[test]
    fn idle_time_is_not_part_of_the_epoch() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(Instant::ZERO, 100 * MSS);
        let rtt = Duration::from_millis(100);
        let t0 = Instant::from_secs(1);
        c.on_ack(t0, MSS, rtt, true);
        let mut after_idle = c.clone();
        // Ten seconds of idle, then one round of ACKs: as if no time passed.
        after_idle.on_tx_start(t0 + Duration::from_secs(10), Duration::from_secs(10));
        rtt_of_acks(&mut c, t0 + rtt, rtt);
        rtt_of_acks(&mut after_idle, t0 + Duration::from_secs(10) + rtt, rtt);
        assert_eq!(c.window(), after_idle.window());
    }

    #[test]
    fn timeout_restarts_from_one_segment() {
        let mut c = Cubic::new(MSS, 10);
        c.on_retransmit_timeout(Instant::ZERO, 10 * MSS);
        assert_eq!(c.window(), MSS);
        assert_eq!(c.ssthresh(), 7 * MSS);
        c.on_ack(Instant::ZERO, MSS, Duration::from_millis(1), true);
        assert_eq!(c.window(), 2 * MSS, "slow start below ssthresh");
    }
}
