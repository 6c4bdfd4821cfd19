//! Loss detection and the start of recovery: RFC 8985 RACK-TLP over the
//! scoreboard when SACK is on (and `Config::rack_tlp`), RFC 6675's
//! DupThresh rule otherwise; fast recovery (RFC 6675 §5, RFC 6582) starts
//! once anything is deemed lost, with one congestion response per episode.

use super::*;
use crate::time::Duration;

/// The PTO allows this much beyond 2·SRTT when more than one segment is in
/// flight, for timer and ACK-clock granularity (Linux's TCP_TIMEOUT_MIN).
const PTO_SLACK: Duration = Duration::from_millis(2);
/// RFC 8985 §7.2: the PTO before any RTT sample.
const PTO_UNSAMPLED: Duration = Duration::from_secs(1);

impl Connection {
    /// RACK-TLP runs on connections that negotiated SACK, when configured.
    pub(super) fn rack_on(&self) -> bool {
        self.config.rack_tlp && self.flags & F_SACK_OK != 0
    }

    /// RACK.reo_wnd for the present state (RFC 8985 §6.2 step 4).
    pub(super) fn reo_wnd(&self) -> Duration {
        let srtt = self.rtt.srtt().unwrap_or(Duration::ZERO);
        let min_rtt = self.rtt.min_rtt().unwrap_or(Duration::ZERO);
        let sacked_segments = self.sacks.sacked_bytes() / usize::from(self.smss).max(1);
        self.rack.reo_wnd(self.recovery != Recovery::None, sacked_segments, min_rtt, srtt)
    }

    /// Loss detection, after an ACK or when the reordering timer fires:
    /// RACK (RFC 8985 §6.2 step 5, arming the timer for what is not overdue
    /// yet), or RFC 6675's IsLost once in recovery. Fast recovery starts as
    /// soon as anything is deemed lost.
    pub(super) fn detect_losses(&mut self, now: Instant) {
        if !self.state.is_synchronized() || self.snd_una == self.snd_max {
            self.timers.clear(Timer::Reorder);
            return;
        }
        if self.rack_on() {
            self.timers.clear(Timer::Reorder);
            if let Some((sent, end)) = self.rack.latest() {
                let wait = self.rack.rtt() + self.reo_wnd();
                let marked = self.sacks.rack_detect(now, sent, end, wait);
                self.stats.lost_retransmits = self.stats.lost_retransmits.wrapping_add(marked.retransmissions);
                if let Some(left) = marked.wait {
                    self.timers.set(Timer::Reorder, now + left);
                }
            }
        } else if self.flags & F_SACK_OK != 0 && self.recovery != Recovery::None {
            self.sacks.mark_lost_by_sacks(usize::from(self.smss));
        }
        if self.recovery == Recovery::None && self.sacks.has_lost() {
            let flight = self.snd_max - self.snd_una;
            self.enter_fast_recovery(now, flight);
        }
    }

    /// RFC 6675 §5 step 4 / RFC 6582 §3.2 step 2: fast recovery starts,
    /// until everything sent so far is acknowledged; the window is reduced
    /// once for the whole episode.
    pub(super) fn enter_fast_recovery(&mut self, now: Instant, flight: usize) {
        self.recovery = Recovery::Fast;
        self.stats.recoveries = self.stats.recoveries.wrapping_add(1);
        self.recover = self.snd_max;
        // The first retransmission goes whatever the pipe (RFC 6675 (4.2)).
        self.flags |= F_RXT_UNA | F_UNDO;
        self.flags &= !(F_TIMED | F_LOSS_PROBE | F_UNDO_STAMPED);
        self.rack.clear_probe();
        self.timers.clear(Timer::LossProbe);
        if self.flags & F_SACK_OK != 0 && !self.rack_on() {
            // RFC 6675 (4.2): the segment at SND.UNA is resent first, lost by
            // IsLost or only by DupThresh.
            let mss = usize::from(self.smss);
            let end = self.sacks.next_sacked_at_or_after(self.snd_una).unwrap_or(self.snd_max).min(self.snd_una + mss).min(self.snd_max);
            self.sacks.mark_lost(self.snd_una, end);
            self.sacks.mark_lost_by_sacks(mss);
        }
        self.cc.on_congestion_event(now, flight);
    }

    /// RFC 3522 (Eifel detection) at the end of fast recovery: if the ACK
    /// that ends it echoes a TSval from before the first retransmission,
    /// the receiver got the originals and every retransmission was
    /// needless; so was the reduction, which is undone (RFC 4015).
    /// Without any retransmission the same holds.
    pub(super) fn undo_if_spurious(&mut self, echo_ms: Option<u32>) {
        let stamped = self.flags & F_UNDO_STAMPED != 0;
        let spurious = self.flags & F_UNDO != 0 && (!stamped || echo_ms.is_some_and(|e| (e.wrapping_sub(self.undo_stamp) as i32) < 0));
        self.flags &= !(F_UNDO | F_UNDO_STAMPED);
        if spurious {
            self.cc.undo();
            self.stats.undos = self.stats.undos.wrapping_add(1);
        }
    }

    /// RFC 8985 §7.2: (re)arms the probe timeout after new data goes out or
    /// an ACK advances SND.UNA, unless in recovery or a probe is already
    /// out. PTO = 2·SRTT, plus WCDelAckT when a single segment is in flight
    /// (its ACK may be delayed), never past the RTO.
    pub(super) fn arm_loss_probe(&mut self, now: Instant) {
        let flight = self.snd_max - self.snd_una;
        let open = matches!(self.state, State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck);
        if !self.rack_on() || !open || flight == 0 || self.recovery != Recovery::None || self.rack.probe_outstanding() {
            self.timers.clear(Timer::LossProbe);
            return;
        }
        let pto = match self.rtt.srtt() {
            Some(srtt) => 2 * srtt + if flight <= usize::from(self.smss) { self.config.tlp_delayed_ack } else { PTO_SLACK },
            None => PTO_UNSAMPLED,
        };
        let mut at = now + pto;
        if let Some(rto) = self.timers.get(Timer::Retransmit) {
            at = at.min(rto);
        }
        self.timers.set(Timer::LossProbe, at);
    }

    /// RFC 8985 §7.3: the PTO expired; a probe goes at the next
    /// `poll_transmit`, and the RTO (not the PTO) runs again from now.
    pub(super) fn on_loss_probe_timeout(&mut self, now: Instant) {
        if !self.rack_on() || self.recovery != Recovery::None || self.snd_max == self.snd_una || self.rack.probe_outstanding() {
            return;
        }
        if !matches!(self.state, State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck) {
            return;
        }
        self.flags |= F_LOSS_PROBE;
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }
}
