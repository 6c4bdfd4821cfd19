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
    /// New data leaves with nothing in flight, `idle` after the last data
    /// segment (Linux's CA_EVENT_TX_START). CUBIC moves its epoch past the
    /// idle time (RFC 9438 §5.8).
    fn on_tx_start(&mut self, _now: Instant, _idle: Duration) {}
    /// RFC 5681 §4.1: the sender was idle for `idle`, longer than `rto`;
    /// the window restarts (see [`restart_window`]).
    fn restart_after_idle(&mut self, idle: Duration, rto: Duration);
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
    fn on_tx_start(&mut self, now: Instant, idle: Duration) {
        dispatch!(self, c => c.on_tx_start(now, idle))
    }
    fn restart_after_idle(&mut self, idle: Duration, rto: Duration) {
        dispatch!(self, c => c.restart_after_idle(idle, rto))
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

/// RFC 5681 §4.1's restart window after `idle` (longer than `rto`), as
/// Linux's tcp_cwnd_restart computes it: ssthresh keeps at least 3/4 of
/// the window (tcp_current_ssthresh), and the window halves once per RTO
/// of idleness beyond the first, down to RW = min(IW, cwnd). Returns the
/// new (cwnd, ssthresh).
pub fn restart_window(cwnd: usize, ssthresh: usize, iw: usize, idle: Duration, rto: Duration) -> (usize, usize) {
    let ssthresh = ssthresh.max(cwnd / 2 + cwnd / 4);
    let restart = iw.min(cwnd);
    let mut window = cwnd;
    let mut left = idle.saturating_sub(rto);
    while !left.is_zero() && window > restart && !rto.is_zero() {
        window /= 2;
        left = left.saturating_sub(rto);
    }
    (window.max(restart), ssthresh)
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
    fn restart_halves_per_rto_down_to_the_initial_window() {
        let rto = Duration::from_millis(200);
        let ms = Duration::from_millis;
        // A halving for each started RTO of idleness beyond the first.
        assert_eq!(restart_window(80_000, MAX_CWND, 10_000, ms(250), rto), (40_000, MAX_CWND));
        assert_eq!(restart_window(80_000, MAX_CWND, 10_000, ms(400), rto), (40_000, MAX_CWND));
        assert_eq!(restart_window(80_000, MAX_CWND, 10_000, ms(500), rto), (20_000, MAX_CWND));
        assert_eq!(restart_window(80_000, 30_000, 10_000, Duration::from_secs(60), rto), (10_000, 60_000));
        // A window below the initial window is not raised.
        assert_eq!(restart_window(4_000, 8_000, 10_000, Duration::from_secs(60), rto), (4_000, 8_000));
    }

    #[test]
    fn iw10() {
        assert_eq!(initial_window(1460, 10), 14_600);
        assert_eq!(initial_window(536, 10), 5360);
        assert_eq!(initial_window(8960, 10), 17_920);
        assert_eq!(initial_window(1000, 4), 4000);
    }
}
