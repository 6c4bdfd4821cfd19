//! RACK-TLP (RFC 8985): the connection-wide state of time-based loss
//! detection (RACK) and of the tail loss probe (TLP). The per-segment
//! transmit times live in the [`Scoreboard`](crate::tcp::scoreboard::Scoreboard).
//!
//! RACK deems a segment lost once a segment sent after it has been
//! delivered and a reordering window has passed on top of the round trip;
//! this also finds lost retransmissions, which duplicate ACKs cannot. TLP
//! sends one probe when ACKs stop coming for two round trips, so a loss at
//! the tail of a flight draws SACK feedback instead of waiting for the RTO.

use crate::tcp::scoreboard::Span;
use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// RFC 8985 §6.2 step 4: recoveries without D-SACK before a widened
/// reordering window shrinks back.
const REO_WND_PERSIST: u8 = 16;
/// RFC 6675 §2 DupThresh.
const DUP_THRESH: usize = 3;

// Flags.
const HAS_DELIVERED: u8 = 1; // RACK.xmit_ts / RACK.end_seq are set
const REORDERING_SEEN: u8 = 2; // RACK.reordering_seen
const DSACK_ROUND: u8 = 4; // RACK.dsack_round is set
const TLP_OUT: u8 = 8; // TLP.end_seq is set: a probe is unacknowledged
const TLP_RETRANS: u8 = 16; // TLP.is_retrans

/// What an ACK says about the outstanding loss probe (RFC 8985 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// No probe outstanding, or this ACK does not settle it yet.
    Pending,
    /// The probe is settled and nothing was lost.
    NoLoss,
    /// The probe (a retransmission) repaired a loss: the congestion
    /// controller must respond once.
    Repaired,
}

/// RACK and TLP state (RFC 8985 §5.2, §7).
#[derive(Clone, Debug)]
pub struct Rack {
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent data known delivered.
    xmit: Instant,
    end: SeqNumber,
    /// RACK.rtt: the round trip of that data, in microseconds.
    rtt_us: u32,
    /// RACK.fack: the highest sequence delivered.
    fack: SeqNumber,
    /// RACK.dsack_round: SND.NXT when the reordering window last grew.
    dsack_round: SeqNumber,
    /// TLP.end_seq: SND.NXT after the loss probe.
    tlp_end: SeqNumber,
    reo_wnd_mult: u8,
    reo_wnd_persist: u8,
    flags: u8,
}

impl Rack {
    pub fn new(snd_una: SeqNumber) -> Self {
        Rack {
            xmit: Instant::ZERO,
            end: snd_una,
            rtt_us: 0,
            fack: snd_una,
            dsack_round: snd_una,
            tlp_end: snd_una,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            flags: 0,
        }
    }

    /// RFC 8985 §6.2 steps 2 and 3 for one span newly delivered, SACKed or
    /// cumulatively acknowledged. `fack_before` is RACK.fack before this
    /// ACK (so the order spans are seen in does not matter); `echo_ms` the
    /// ACK's timestamp echo mapped to our clock, in milliseconds.
    pub fn on_delivered(&mut self, now: Instant, span: &Span, fack_before: SeqNumber, min_rtt: Duration, echo_ms: Option<u32>) {
        // Step 3: data delivered below data delivered before, never resent,
        // was reordered by the network.
        if span.end > self.fack {
            self.fack = span.end;
        } else if span.end < fack_before && !span.is_retransmitted() {
            self.flags |= REORDERING_SEEN;
        }
        // Step 2: skip a resent span when the ACK may be for an earlier copy.
        let rtt = now - span.sent;
        if span.is_retransmitted() {
            let echo_older = echo_ms.is_some_and(|e| (e.wrapping_sub(span.sent.as_millis() as u32) as i32) < 0);
            if echo_older || rtt < min_rtt {
                return;
            }
        }
        let newer = self.flags & HAS_DELIVERED == 0 || span.sent > self.xmit || (span.sent == self.xmit && span.end > self.end);
        if newer {
            self.flags |= HAS_DELIVERED;
            self.xmit = span.sent;
            self.end = span.end;
            self.rtt_us = rtt.as_micros().min(u128::from(u32::MAX)) as u32;
        }
    }

    /// The most recently sent delivered data: (RACK.xmit_ts, RACK.end_seq).
    pub fn latest(&self) -> Option<(Instant, SeqNumber)> {
        (self.flags & HAS_DELIVERED != 0).then_some((self.xmit, self.end))
    }
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.rtt_us))
    }
    pub fn fack(&self) -> SeqNumber {
        self.fack
    }
    pub fn reordering_seen(&self) -> bool {
        self.flags & REORDERING_SEEN != 0
    }
    pub fn reo_wnd_mult(&self) -> u8 {
        self.reo_wnd_mult
    }

    /// RFC 8985 §6.2 step 4, the D-SACK half: one D-SACK per round trip
    /// widens the reordering window by another min_RTT/4.
    pub fn on_ack(&mut self, snd_una: SeqNumber, snd_nxt: SeqNumber, dsack: bool) {
        if self.flags & DSACK_ROUND != 0 && snd_una >= self.dsack_round {
            self.flags &= !DSACK_ROUND;
        }
        if self.flags & DSACK_ROUND == 0 && dsack {
            self.flags |= DSACK_ROUND;
            self.dsack_round = snd_nxt;
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// RFC 8985 §6.2 step 4: after 16 recoveries without D-SACK the
    /// reordering window returns to min_RTT/4.
    pub fn on_recovery_exit(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
        }
    }

    /// RFC 8985 §6.2 step 4, RACK.reo_wnd. Until reordering is seen, none is
    /// allowed in recovery or once DupThresh segments are SACKed, so RACK
    /// is at least as quick as the DupThresh rule.
    pub fn reo_wnd(&self, in_recovery: bool, sacked_segments: usize, min_rtt: Duration, srtt: Duration) -> Duration {
        if !self.reordering_seen() && (in_recovery || sacked_segments >= DUP_THRESH) {
            return Duration::ZERO;
        }
        (min_rtt / 4).saturating_mul(u32::from(self.reo_wnd_mult)).min(srtt)
    }

    // ---- tail loss probe ------------------------------------------------

    pub fn probe_outstanding(&self) -> bool {
        self.flags & TLP_OUT != 0
    }

    /// A loss probe went out; SND.NXT is now `end` (RFC 8985 §7.3).
    pub fn on_probe_sent(&mut self, end: SeqNumber, retransmission: bool) {
        self.flags |= TLP_OUT;
        self.flags &= !TLP_RETRANS;
        if retransmission {
            self.flags |= TLP_RETRANS;
        }
        self.tlp_end = end;
    }

    /// The probe no longer matters (a timeout, or fast recovery took over).
    pub fn clear_probe(&mut self) {
        self.flags &= !(TLP_OUT | TLP_RETRANS);
    }

    /// RFC 8985 §7.4.2: did the probe repair a loss? `dsack` is the ACK's
    /// D-SACK block; `news` whether the ACK advanced SND.UNA, SACKed new
    /// data, carried data or changed the window.
    pub fn on_probe_ack(&mut self, ack: SeqNumber, dsack: Option<(SeqNumber, SeqNumber)>, mss: usize, news: bool) -> ProbeOutcome {
        if self.flags & TLP_OUT == 0 || ack < self.tlp_end {
            return ProbeOutcome::Pending;
        }
        if self.flags & TLP_RETRANS == 0 {
            // A probe of new data: any loss it revealed is RACK's to find.
            self.clear_probe();
            return ProbeOutcome::NoLoss;
        }
        if dsack.is_some_and(|(l, r)| r > self.tlp_end - mss && l < self.tlp_end) {
            // The peer got the probe as a duplicate: the original arrived.
            self.clear_probe();
            return ProbeOutcome::NoLoss;
        }
        if ack > self.tlp_end {
            self.clear_probe();
            return ProbeOutcome::Repaired;
        }
        if !news {
            // A pure duplicate ACK after the ACK of the tail: both copies arrived.
            self.clear_probe();
            return ProbeOutcome::NoLoss;
        }
        ProbeOutcome::Pending
    }
}

/// RFC 2883 §4: the first SACK block reports a duplicate (a D-SACK) when
/// it lies below the cumulative ACK or inside the second block.
pub fn dsack_block(blocks: &[(SeqNumber, SeqNumber)], ack: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
    let &(l, r) = blocks.first()?;
    if r.diff(l) <= 0 {
        return None;
    }
    let inside_second = blocks.get(1).is_some_and(|&(l2, r2)| l2 <= l && r <= r2);
    (r <= ack || inside_second).then_some((l, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }
    fn span(start: u32, end: u32, sent_ms: u64, flags: u8) -> Span {
        Span { start: s(start), end: s(end), sent: Instant::from_millis(sent_ms), flags }
    }
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn tracks_the_most_recently_sent_delivery() {
        let mut r = Rack::new(s(0));
        let now = Instant::from_millis(50);
        r.on_delivered(now, &span(100, 200, 20, 0), s(0), MS, None);
        r.on_delivered(now, &span(0, 100, 10, 0), s(0), MS, None);
        assert_eq!(r.latest(), Some((Instant::from_millis(20), s(200))));
        assert_eq!(r.rtt(), 30 * MS);
        assert!(!r.reordering_seen(), "both in one ACK: order within it does not matter");
        assert_eq!(r.fack(), s(200));
        // Delivered below RACK.fack and never resent: reordering.
        r.on_delivered(now, &span(200, 300, 30, 0), s(200), MS, None);
        r.on_delivered(now, &span(150, 160, 5, 0), s(300), MS, None);
        assert!(r.reordering_seen());
    }

    #[test]
    fn ambiguous_retransmissions_are_not_sampled() {
        let mut r = Rack::new(s(0));
        let now = Instant::from_millis(100);
        let resent = span(0, 100, 90, crate::tcp::scoreboard::RETRANS);
        // The echo predates the retransmission: the ACK is for the original.
        r.on_delivered(now, &resent, s(0), MS, Some(50));
        assert_eq!(r.latest(), None);
        // Shorter than any round trip seen: the same.
        r.on_delivered(now, &resent, s(0), 20 * MS, Some(95));
        assert_eq!(r.latest(), None);
        r.on_delivered(now, &resent, s(0), 5 * MS, Some(95));
        assert_eq!(r.latest(), Some((Instant::from_millis(90), s(100))));
        assert!(!r.reordering_seen());
    }

    #[test]
    fn reordering_window_follows_rfc_8985() {
        let mut r = Rack::new(s(0));
        let (min_rtt, srtt) = (40 * MS, 50 * MS);
        assert_eq!(r.reo_wnd(false, 1, min_rtt, srtt), 10 * MS);
        assert_eq!(r.reo_wnd(false, 3, min_rtt, srtt), Duration::ZERO, "DupThresh SACKed, no reordering seen");
        assert_eq!(r.reo_wnd(true, 0, min_rtt, srtt), Duration::ZERO, "in recovery, no reordering seen");
        r.flags |= REORDERING_SEEN;
        assert_eq!(r.reo_wnd(true, 5, min_rtt, srtt), 10 * MS);
        // One widening per round trip with D-SACK, capped at SRTT.
        r.on_ack(s(0), s(1000), true);
        r.on_ack(s(500), s(1000), true);
        assert_eq!(r.reo_wnd(true, 5, min_rtt, srtt), 20 * MS);
        r.on_ack(s(1000), s(2000), true);
        r.on_ack(s(2000), s(3000), true);
        r.on_ack(s(3000), s(4000), true);
        r.on_ack(s(4000), s(5000), true);
        assert_eq!(r.reo_wnd(true, 5, min_rtt, srtt), srtt);
        for _ in 0..16 {
            r.on_recovery_exit();
        }
        assert_eq!(r.reo_wnd(true, 5, min_rtt, srtt), 10 * MS, "16 recoveries without D-SACK");
    }

    #[test]
    fn probe_outcomes() {
        let mss = 100;
        let mut r = Rack::new(s(0));
        r.on_probe_sent(s(1000), false);
        assert_eq!(r.on_probe_ack(s(900), None, mss, true), ProbeOutcome::Pending);
        assert_eq!(r.on_probe_ack(s(1000), None, mss, true), ProbeOutcome::NoLoss);
        assert!(!r.probe_outstanding());
        // A resent tail: the ACK of the tail is ambiguous until what follows.
        r.on_probe_sent(s(1000), true);
        assert_eq!(r.on_probe_ack(s(1000), None, mss, true), ProbeOutcome::Pending);
        assert_eq!(r.on_probe_ack(s(1000), Some((s(900), s(1000))), mss, false), ProbeOutcome::NoLoss);
        r.on_probe_sent(s(1000), true);
        assert_eq!(r.on_probe_ack(s(1000), None, mss, true), ProbeOutcome::Pending);
        assert_eq!(r.on_probe_ack(s(1000), None, mss, false), ProbeOutcome::NoLoss);
        r.on_probe_sent(s(1000), true);
        assert_eq!(r.on_probe_ack(s(1000), None, mss, true), ProbeOutcome::Pending);
        assert_eq!(r.on_probe_ack(s(1100), None, mss, true), ProbeOutcome::Repaired);
    }

    #[test]
    fn dsack_detection() {
        assert_eq!(dsack_block(&[(s(100), s(200))], s(300)), Some((s(100), s(200))), "below the ACK");
        assert_eq!(dsack_block(&[(s(500), s(600)), (s(400), s(700))], s(300)), Some((s(500), s(600))), "inside the second");
        assert_eq!(dsack_block(&[(s(500), s(600)), (s(700), s(800))], s(300)), None);
        assert_eq!(dsack_block(&[], s(300)), None);
    }
}
