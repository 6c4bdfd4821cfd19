//! RTT estimation and the retransmission timeout (RFC 6298).
//!
//! Karn's rule (never sample a retransmitted segment) is the caller's job.
//! Durations are kept in microseconds in `u32`s to keep the state small.

use crate::time::Duration;

/// RFC 6298 §4: clock granularity G.
const GRANULARITY_US: u32 = 1000;

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt_us: u32,
    rttvar_us: u32,
    rto_us: u32,
    min_rto_us: u32,
    max_rto_us: u32,
    latest_us: u32,
    min_rtt_us: u32,
    backoff: u8,
    has_sample: bool,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl RttEstimator {
    /// RFC 6298 §2.1: before any sample, RTO = `initial_rto` (1 s).
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt_us: 0,
            rttvar_us: 0,
            rto_us: us(initial_rto),
            min_rto_us: us(min_rto),
            max_rto_us: us(max_rto).max(us(min_rto)),
            latest_us: 0,
            min_rtt_us: u32::MAX,
            backoff: 0,
            has_sample: false,
        }
    }

    /// Takes one RTT measurement (RFC 6298 §2.2, §2.3).
    pub fn on_sample(&mut self, rtt: Duration) {
        let r = us(rtt);
        self.latest_us = r;
        self.min_rtt_us = self.min_rtt_us.min(r);
        if !self.has_sample {
            // §2.2: SRTT = R, RTTVAR = R/2.
            self.srtt_us = r;
            self.rttvar_us = r / 2;
            self.has_sample = true;
        } else {
            // §2.3: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT − R'|; SRTT = 7/8 SRTT + 1/8 R'.
            let delta = self.srtt_us.abs_diff(r);
            self.rttvar_us = ((3 * u64::from(self.rttvar_us) + u64::from(delta)) / 4) as u32;
            self.srtt_us = ((7 * u64::from(self.srtt_us) + u64::from(r)) / 8) as u32;
        }
        // §2.3/§2.4: RTO = SRTT + max(G, 4·RTTVAR), at least the minimum; §2.5: at most the maximum.
        let rto = u64::from(self.srtt_us) + u64::from(GRANULARITY_US.max(self.rttvar_us.saturating_mul(4)));
        self.rto_us = rto.clamp(u64::from(self.min_rto_us), u64::from(self.max_rto_us)) as u32;
    }

    /// The timeout to arm now, with exponential backoff (§5.5), capped.
    pub fn rto(&self) -> Duration {
        let base = u64::from(self.rto_us);
        let backed = base.checked_shl(u32::from(self.backoff)).unwrap_or(u64::MAX);
        Duration::from_micros(backed.min(u64::from(self.max_rto_us)))
    }

    /// §5.5: the timer expired; double the timeout.
    pub fn on_backoff(&mut self) {
        self.backoff = self.backoff.saturating_add(1).min(32);
    }

    /// New data was acknowledged: the backoff no longer applies.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    pub fn backoff_count(&self) -> u32 {
        u32::from(self.backoff)
    }
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.has_sample.then(|| Duration::from_micros(u64::from(self.srtt_us)))
    }
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(u64::from(self.rttvar_us))
    }
    pub fn min_rtt(&self) -> Option<Duration> {
        self.has_sample.then(|| Duration::from_micros(u64::from(self.min_rtt_us)))
    }
    pub fn latest(&self) -> Option<Duration> {
        self.has_sample.then(|| Duration::from_micros(u64::from(self.latest_us)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(Duration::from_secs(1), Duration::from_millis(200), Duration::from_secs(120))
    }

    #[test]
    fn initial_and_first_samples_follow_rfc6298() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.on_sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        assert_eq!(e.rto(), Duration::from_millis(300)); // 100 + 4·50
        e.on_sample(Duration::from_millis(200));
        // RTTVAR = 3/4·50 + 1/4·100 = 62.5; SRTT = 7/8·100 + 1/8·200 = 112.5
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(362_500));
    }

    #[test]
    fn minimum_and_backoff() {
        let mut e = est();
        e.on_sample(Duration::from_micros(50));
        assert_eq!(e.rto(), Duration::from_millis(200), "floored at the minimum");
        e.on_backoff();
        assert_eq!(e.rto(), Duration::from_millis(400));
        for _ in 0..20 {
            e.on_backoff();
        }
        assert_eq!(e.rto(), Duration::from_secs(120), "capped");
        e.reset_backoff();
        assert_eq!(e.rto(), Duration::from_millis(200));
        assert!(core::mem::size_of::<RttEstimator>() <= 40);
    }
}
