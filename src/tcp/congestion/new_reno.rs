//! NewReno (RFC 5681, RFC 6582) window management, with RFC 3465
//! byte counting. Fast-recovery mechanics live in the connection.

use super::{initial_window, restart_window, slow_start_increase, Controller, MAX_CWND};
use crate::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    mss: usize,
    iw_segments: u32,
    /// Bytes acknowledged since cwnd last grew in congestion avoidance.
    ca_acked: usize,
    /// cwnd and ssthresh before the last congestion event, for `undo`.
    prior: (u32, u32),
}

impl NewReno {
    pub fn new(mss: usize, iw_segments: u32) -> Self {
        NewReno { cwnd: initial_window(mss, iw_segments), ssthresh: MAX_CWND, mss, iw_segments, ca_acked: 0, prior: (0, 0) }
    }
}

impl Controller for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, _now: Instant, acked: usize, _srtt: Duration, cwnd_limited: bool) {
        if !cwnd_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 eq. 2 with RFC 3465 L = 2.
            self.cwnd = (self.cwnd + slow_start_increase(acked, self.mss)).min(MAX_CWND);
        } else {
            // RFC 5681 §3.1 eq. 3 by byte counting (RFC 3465 §2.1): one SMSS
            // per cwnd of data acknowledged.
            self.ca_acked += acked;
            if self.ca_acked >= self.cwnd {
                self.ca_acked -= self.cwnd;
                self.cwnd = (self.cwnd + self.mss).min(MAX_CWND);
            }
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize) {
        self.prior = (self.cwnd as u32, self.ssthresh.min(u32::MAX as usize) as u32);
        // RFC 5681 §3.2 step 2, eq. 4; RFC 6582 keeps cwnd at ssthresh
        // during recovery (no inflation: the connection counts the pipe).
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.ca_acked = 0;
    }

    fn on_recovery_exit(&mut self, _now: Instant, _in_flight: usize) {
        // RFC 6582 §3.2 step 3 deflates to ssthresh; the connection paces by
        // the pipe, so no burst follows (Linux does the same at the end of
        // its window reduction).
        self.cwnd = self.ssthresh;
    }

    fn undo(&mut self) {
        let (cwnd, ssthresh) = self.prior;
        self.cwnd = self.cwnd.max(cwnd as usize);
        self.ssthresh = self.ssthresh.max(ssthresh as usize);
    }

    fn on_retransmit_timeout(&mut self, _now: Instant, in_flight: usize) {
        // RFC 5681 §3.1 eq. 4 and the one-segment loss window.
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.ca_acked = 0;
    }

    fn restart_after_idle(&mut self, idle: Duration, rto: Duration) {
        let iw = initial_window(self.mss, self.iw_segments);
        (self.cwnd, self.ssthresh) = restart_window(self.cwnd, self.ssthresh, iw, idle, rto);
        self.ca_acked = 0;
    }

    fn set_mss(&mut self, mss: usize) {
        let fresh = self.cwnd == initial_window(self.mss, self.iw_segments);
        self.mss = mss.max(1);
        if fresh {
            self.cwnd = initial_window(self.mss, self.iw_segments);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    fn ack_window(c: &mut NewReno, seg: usize) {
        let n = c.window() / seg;
        for _ in 0..n {
            c.on_ack(Instant::ZERO, seg, Duration::from_millis(10), true);
        }
    }

    #[test]
    fn slow_start_doubles_per_window() {
        let mut c = NewReno::new(MSS, 10);
        assert_eq!(c.window(), 10 * MSS);
        ack_window(&mut c, MSS);
        assert_eq!(c.window(), 20 * MSS);
        ack_window(&mut c, MSS);
        assert_eq!(c.window(), 40 * MSS);
    }

    #[test]
    fn abc_limits_stretch_acks() {
        let mut c = NewReno::new(MSS, 10);
        c.on_ack(Instant::ZERO, 8 * MSS, Duration::ZERO, true);
        assert_eq!(c.window(), 12 * MSS, "at most 2 SMSS per ACK");
        c.on_ack(Instant::ZERO, 8 * MSS, Duration::ZERO, false);
        assert_eq!(c.window(), 12 * MSS, "not cwnd-limited: no growth");
    }

    #[test]
    fn congestion_avoidance_and_reductions() {
        let mut c = NewReno::new(MSS, 10);
        c.on_congestion_event(Instant::ZERO, 40 * MSS);
        assert_eq!((c.ssthresh(), c.window()), (20 * MSS, 20 * MSS));
        ack_window(&mut c, MSS);
        assert_eq!(c.window(), 21 * MSS, "one SMSS per window");
        c.on_retransmit_timeout(Instant::ZERO, 21 * MSS);
        assert_eq!((c.window(), c.ssthresh()), (MSS, 10 * MSS + MSS / 2));
        c.on_congestion_event(Instant::ZERO, MSS);
        assert_eq!(c.ssthresh(), 2 * MSS, "floor of 2 SMSS");
    }

    #[test]
    fn undo_restores_the_window() {
        let mut c = NewReno::new(MSS, 10);
        ack_window(&mut c, MSS);
        c.on_congestion_event(Instant::ZERO, 20 * MSS);
        assert_eq!(c.window(), 10 * MSS);
        c.undo();
        assert_eq!((c.window(), c.ssthresh()), (20 * MSS, MAX_CWND));
    }
}
