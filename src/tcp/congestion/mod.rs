//! Congestion control behind a trait, dispatched through an enum so the hot
//! path has no `Box<dyn>`.
//!
//! The connection owns loss detection and recovery (RFC 6675's pipe
//! algorithm); a controller only decides the window: how it grows on ACKs
//! (slow start and congestion avoidance with RFC 3465 byte counting) and how
//! it shrinks on a congestion event or a retransmission timeout.

pub mod cubic;
pub mod new_reno;

pub use cubic::Cubic;
pub use new_reno::NewReno;

use crate::time::{Duration, Instant};

/// Upper bound on cwnd, far above any real window, to keep arithmetic safe.
pub const MAX_CWND: usize = 1 << 30;
/// RFC 3465 §2.2: L, the slow-start increase limit per ACK, in segments.
const ABC_LIMIT: usize = 2;

pub trait Controller {
    /// cwnd, in bytes.
    fn window(&self) -> usize;
    fn ssthresh(&self) -> usize;
    fn in_slow_start(&self) -> bool {
        self.window() < self.ssthresh()
    }
    /// New data acknowledged outside fast recovery. `cwnd_limited` is false
    /// when the sender did not use its window (then it does not grow).
    fn on_ack(&mut self, now: Instant, acked: usize, srtt: Duration, cwnd_limited: bool);
    /// Loss detected by duplicate ACKs or SACK: fast recovery starts.
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize);
    /// Fast recovery ended with a full ACK.
    fn on_recovery_exit(&mut self, now: Instant, in_flight: usize);
    /// The last congestion event proved spurious (RFC 3522 detection): the
    /// window and threshold from before it return (RFC 4015 §2's response,
    /// as Linux restores them).
    fn undo(&mut self);
    /// The retransmission timer expired.
    fn on_retransmit_timeout(&mut self, now: Instant, in_flight: usize);
    /// The sender's MSS after option negotiation.
    fn set_mss(&mut self, mss: usize);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    NewReno,
    #[default]
    Cubic,
}

#[derive(Clone, Debug)]
pub enum AnyController {
    NewReno(NewReno),
    Cubic(Cubic),
}

impl AnyController {
    pub fn new(algorithm: Algorithm, mss: usize, initial_window_segments: u32) -> Self {
        match algorithm {
            Algorithm::NewReno => AnyController::NewReno(NewReno::new(mss, initial_window_segments)),
            Algorithm::Cubic => AnyController::Cubic(Cubic::new(mss, initial_window_segments)),
        }
    }
    pub fn algorithm(&self) -> Algorithm {
        match self {
            AnyController::NewReno(_) => Algorithm::NewReno,
            AnyController::Cubic(_) => Algorithm::Cubic,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyController::NewReno($c) => $e,
            AnyController::Cubic($c) => $e,
        }
    };
}

impl Controller for AnyController {
    #[inline]
    fn window(&self) -> usize {
        dispatch!(self, c => c.window())
    }
    #[inline]
    fn ssthresh(&self) -> usize {
        dispatch!(self, c => c.ssthresh())
    }
    #[inline]
    fn on_ack(&mut self, now: Instant, acked: usize, srtt: Duration, cwnd_limited: bool) {
        dispatch!(self, c => c.on_ack(now, acked, srtt, cwnd_limited))
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize) {
        dispatch!(self, c => c.on_congestion_event(now, in_flight))
    }
    fn on_recovery_exit(&mut self, now: Instant, in_flight: usize) {
        dispatch!(self, c => c.on_recovery_exit(now, in_flight))
    }
    fn undo(&mut self) {
        dispatch!(self, c => c.undo())
    }
    fn on_retransmit_timeout(&mut self, now: Instant, in_flight: usize) {
        dispatch!(self, c => c.on_retransmit_timeout(now, in_flight))
    }
    fn set_mss(&mut self, mss: usize) {
        dispatch!(self, c => c.set_mss(mss))
    }
}

/// RFC 6928 §2 (IW10) generalised: `segments` × MSS, and for 10 segments
/// min(10·MSS, max(2·MSS, 14600)).
pub fn initial_window(mss: usize, segments: u32) -> usize {
    let segments = segments.max(1) as usize;
    if segments == 10 {
        (10 * mss).min((2 * mss).max(14_600))
    } else {
        segments * mss
    }
}

/// RFC 3465 §2.2 slow start: grow by the bytes acknowledged, at most L·SMSS.
pub(crate) fn slow_start_increase(acked: usize, mss: usize) -> usize {
    acked.min(ABC_LIMIT * mss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_dispatch_is_small() {
        assert!(core::mem::size_of::<AnyController>() <= 96, "{}", core::mem::size_of::<AnyController>());
        let c = AnyController::new(Algorithm::default(), 1460, 10);
        assert_eq!(c.algorithm(), Algorithm::Cubic);
        assert_eq!(c.window(), 14_600);
    }

    #[test]
    fn iw10() {
        assert_eq!(initial_window(1460, 10), 14_600);
        assert_eq!(initial_window(536, 10), 5360);
        assert_eq!(initial_window(8960, 10), 17_920);
        assert_eq!(initial_window(1000, 4), 4000);
    }
}
