//! The connection's timers: a table indexed by enum, whose next deadline is the
//! minimum, and what happens when each one fires.

use super::*;

/// One entry per timer a connection can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// RFC 6298 retransmission (also SYN and SYN-ACK retransmission).
    Retransmit = 0,
    /// RFC 5681 §4.2 delayed ACK.
    DelayedAck = 1,
    /// RFC 9293 §3.8.6.1 zero-window probing, and the RFC 1122 §4.2.3.4
    /// override of a window too small to use.
    Persist = 2,
    /// RFC 1122 §4.2.3.6 keepalive.
    Keepalive = 3,
    /// TIME_WAIT's 2×MSL, or the FIN_WAIT_2 timeout of a closed connection.
    Close = 4,
    /// RFC 8985 §6.2 RACK reordering timer: data sent before delivered data
    /// becomes lost once its reordering window has passed.
    Reorder = 5,
    /// RFC 8985 §7.2 tail loss probe (PTO).
    LossProbe = 6,
}

const COUNT: usize = 7;
const UNSET: u64 = u64::MAX;

/// Deadlines in nanoseconds; `UNSET` when a timer is stopped.
#[derive(Clone, Debug)]
pub(super) struct Timers([u64; COUNT]);

impl Default for Timers {
    fn default() -> Self {
        Timers([UNSET; COUNT])
    }
}

impl Timers {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = at.as_nanos().min(UNSET - 1);
    }
    pub(super) fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = UNSET;
    }
    pub(super) fn clear_all(&mut self) {
        self.0 = [UNSET; COUNT];
    }
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        let at = self.0[timer as usize];
        (at != UNSET).then(|| Instant::from_nanos(at))
    }
    pub(super) fn is_set(&self, timer: Timer) -> bool {
        self.0[timer as usize] != UNSET
    }
    fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.0[timer as usize] <= now.as_nanos()
    }
    fn next(&self) -> Option<Instant> {
        let at = *self.0.iter().min().unwrap_or(&UNSET);
        (at != UNSET).then(|| Instant::from_nanos(at))
    }
}

impl Connection {
    /// The next instant at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The deadline of one timer (for tests and `ss -i`).
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    /// Runs every timer that has expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(Timer::Close, now) {
            self.timers.clear(Timer::Close);
            match self.state {
                // RFC 9293 §3.10.8: TIME_WAIT expired, delete the TCB.
                State::TimeWait => self.enter_closed(CloseReason::Normal),
                // Linux's tcp_fin_timeout for orphaned FIN_WAIT_2: give up quietly.
                State::FinWait2 => self.enter_closed(CloseReason::TimedOut),
                _ => {}
            }
            if self.state == State::Closed {
                return;
            }
        }
        if self.timers.expired(Timer::Reorder, now) {
            self.timers.clear(Timer::Reorder);
            self.detect_losses(now);
        }
        // The probe goes first: when it was due with the RTO (the PTO never
        // runs past it), it stands in for the RTO, which restarts from now.
        if self.timers.expired(Timer::LossProbe, now) {
            self.timers.clear(Timer::LossProbe);
            self.on_loss_probe_timeout(now);
        }
        if self.timers.expired(Timer::Retransmit, now) {
            self.timers.clear(Timer::Retransmit);
            self.on_retransmit_timeout(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.timers.expired(Timer::DelayedAck, now) {
            self.timers.clear(Timer::DelayedAck);
            self.flags |= F_ACK_NOW;
        }
        if self.timers.expired(Timer::Persist, now) {
            self.timers.clear(Timer::Persist);
            self.on_persist_timeout(now);
        }
        if self.timers.expired(Timer::Keepalive, now) {
            self.timers.clear(Timer::Keepalive);
            self.on_keepalive_timeout(now);
        }
    }

    /// RFC 6298 §5.4–5.7 and RFC 5681 §3.1 on expiry of the retransmission timer.
    fn on_retransmit_timeout(&mut self, now: Instant) {
        let limit = match self.state {
            State::SynSent => self.config.syn_retries,
            State::SynReceived => self.config.synack_retries,
            // An orphan gets fewer (Linux tcp_orphan_retries).
            _ if self.flags & F_APP_CLOSED != 0 => self.config.max_retries.min(self.config.orphan_retries),
            _ => self.config.max_retries,
        };
        // Linux tcp_retransmit_timer: at a zero window our retransmissions
        // probe the window, and a peer that keeps answering them (ACKs
        // showing the window still closed) is alive: they back off but do
        // not count towards the retransmission limit, and the connection
        // ends only if the peer falls silent for twice the RTO cap
        // (tcp_rtx_probe0_timed_out). An orphan gets no such grace.
        let probing_window = self.state.is_synchronized() && self.snd_wnd == 0 && self.flags & F_APP_CLOSED == 0;
        let give_up = match self.user_deadline() {
            // RFC 5482 user timeout (Linux TCP_USER_TIMEOUT): time alone
            // decides, in place of max_retries; an orphan keeps its bound.
            Some(deadline) if self.state.is_synchronized() => {
                now >= deadline || (self.flags & F_APP_CLOSED != 0 && u32::from(self.retries) >= limit)
            }
            _ if probing_window => now - self.last_rx > 2 * self.config.max_rto,
            _ => u32::from(self.retries) >= limit,
        };
        if give_up {
            // Give up: tell the peer with a RST (except for an unanswered SYN,
            // which has no peer state to reset) and report the timeout.
            if self.state != State::SynSent {
                self.flags |= F_SEND_RST;
            }
            self.enter_closed(CloseReason::TimedOut);
            return;
        }
        if !probing_window {
            self.retries = self.retries.saturating_add(1);
        }
        self.stats.timeouts = self.stats.timeouts.wrapping_add(1);
        self.rtt.on_backoff(); // §5.5
        self.flags &= !F_TIMED; // Karn: a retransmitted segment is never timed

        if self.state.is_synchronized() && self.snd_max > self.snd_una {
            let in_flight = self.snd_max - self.snd_una;
            // Only the first timeout of an episode reduces the window (RFC 5681 §3.1:
            // ssthresh is not reduced again by further back-offs of the same segment).
            if self.recovery != Recovery::Timeout || self.retries == 1 {
                self.cc.on_retransmit_timeout(now, in_flight);
            }
            self.recovery = Recovery::Timeout;
            self.recover = self.snd_max;
            self.dupacks = 0;
            // SACKed data is kept unless the receiver reneged (RFC 2018 §8):
            // an ACK that stopped at SACKed data shows it did (Linux's
            // tcp_check_sack_reneging), and a second timeout for the same
            // data forgets it in case it did. Either way SND.UNA's segment
            // is resent first (RFC 2018 §8, RFC 6298 §5.4).
            let renege = self.retries > 1 || self.sacks.is_sacked(self.snd_una);
            let marked = if self.rack_on() {
                // RFC 8985 §6.3: SND.UNA's segment, and whatever has been out
                // for RACK.rtt + RACK.reo_wnd; the rest may still arrive.
                let wait = self.rack.rtt() + self.reo_wnd();
                self.sacks.rack_mark_on_timeout(now, wait, renege)
            } else {
                // RFC 6675 §5.1: every un-SACKed segment counts as lost and
                // is resent from SND.UNA on.
                self.sacks.mark_all_lost(renege)
            };
            self.stats.lost_retransmits = self.stats.lost_retransmits.wrapping_add(marked.retransmissions);
            // RFC 6298 §5.4: the earliest unacknowledged segment goes now,
            // whatever the window.
            self.flags |= F_RXT_UNA;
            self.flags &= !(F_LOSS_PROBE | F_UNDO | F_UNDO_STAMPED);
            self.rack.clear_probe();
            self.timers.clear(Timer::LossProbe);
            self.timers.clear(Timer::Reorder);
        }
        if !self.state.is_synchronized() {
            // Resend the SYN or SYN-ACK.
            self.snd_nxt = self.snd_una;
        }
        // In synchronized states SND.NXT stays where it is (as in Linux):
        // the timeout recovery above resends from SND.UNA through HighRxt,
        // and our ACKs keep a sequence number the peer finds acceptable.
        let mut at = now + self.rtt.rto();
        if let (Some(deadline), true) = (self.user_deadline(), self.state.is_synchronized()) {
            // Expire on time (Linux tcp_clamp_rto_to_user_timeout).
            at = at.min(deadline);
        }
        self.timers.set(Timer::Retransmit, at);
    }

    /// When the user timeout (if any) runs out: `user_timeout` after the
    /// send side's last progress.
    pub(super) fn user_deadline(&self) -> Option<Instant> {
        self.config.user_timeout.map(|timeout| self.progress_at + timeout)
    }

    /// Zero-window probe (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17), or the
    /// SWS override of a window too small to use (RFC 1122 §4.2.3.4): data
    /// waits and nothing is in flight. `poll_transmit` sends what the window
    /// allows, else the probe.
    ///
    /// As Linux's tcp_probe_timer: the probes back off (`persist_backoff`)
    /// whether or not they are answered, and a peer that answers each one,
    /// window still closed, is kept for as long as it does (RFC 1122
    /// §4.2.2.17); `max_retries` probes in a row left unanswered end the
    /// connection, and `orphan_retries` probes end an orphan's.
    fn on_persist_timeout(&mut self, now: Instant) {
        if self.unsent_data() > 0 && self.snd_max == self.snd_una && self.state.is_synchronized() {
            if self.snd_una + self.snd_wnd as usize <= self.snd_nxt {
                // An orphan is not kept for ever by a peer that answers with
                // a closed window: orphan_retries probes, answered or not
                // (Linux tcp_probe_timer for a dead socket).
                let orphan_done = self.flags & F_APP_CLOSED != 0 && u32::from(self.persist_backoff) >= self.config.orphan_retries;
                // The user timeout runs from the first probe (Linux
                // icsk_probes_tstamp), whatever the answers.
                let user_done = self.persist_backoff > 0 && self.user_deadline().is_some_and(|deadline| now >= deadline);
                if orphan_done || user_done || u32::from(self.probes) >= self.config.max_retries {
                    self.flags |= F_SEND_RST;
                    self.enter_closed(CloseReason::TimedOut);
                    return;
                }
                if self.persist_backoff == 0 {
                    self.progress_at = now;
                }
                self.probes = self.probes.saturating_add(1);
                self.persist_backoff = self.persist_backoff.saturating_add(1);
            }
            self.flags |= F_PROBE;
            self.arm_persist(now);
        } else {
            self.probes = 0;
            self.persist_backoff = 0;
        }
    }

    /// The persist interval: the RTO (at least the minimum), doubled for
    /// each zero-window probe sent, up to the RTO cap (Linux
    /// tcp_probe0_when with TCP_RTO_MAX).
    pub(super) fn arm_persist(&mut self, now: Instant) {
        let base = self.rtt.rto().max(self.config.min_rto);
        let shift = u32::from(self.persist_backoff.min(16));
        let interval = base.saturating_mul(1 << shift).min(self.config.max_rto.max(base));
        let mut at = now + interval;
        if self.persist_backoff > 0 {
            if let Some(deadline) = self.user_deadline() {
                // Expire on time (Linux tcp_clamp_probe0_to_user_timeout).
                at = at.min(deadline);
            }
        }
        self.timers.set(Timer::Persist, at);
    }

    /// RFC 1122 §4.2.3.6: probe an idle connection; drop it after
    /// `probes` unanswered probes.
    fn on_keepalive_timeout(&mut self, now: Instant) {
        let Some(ka) = self.config.keepalive else { return };
        // Every synchronized state but TIME_WAIT, as Linux's
        // tcp_keepalive_timer: a timer that fires in FIN-WAIT-1, CLOSING or
        // LAST-ACK is deferred, not dropped, so it still watches the
        // FIN-WAIT-2 that may follow.
        if !self.state.is_synchronized() || self.state == State::TimeWait {
            return;
        }
        // Not idle: data (or a FIN) is in flight or waits to be sent, and
        // the retransmission or persist timer watches it.
        if self.snd_max != self.snd_una || self.unsent_data() > 0 {
            self.timers.set(Timer::Keepalive, now + ka.time);
            return;
        }
        let idle = now - self.last_rx;
        if idle < ka.time {
            self.timers.set(Timer::Keepalive, self.last_rx + ka.time);
            return;
        }
        if u32::from(self.probes) >= ka.probes {
            self.flags |= F_SEND_RST;
            self.enter_closed(CloseReason::TimedOut);
            return;
        }
        self.probes = self.probes.saturating_add(1);
        self.flags |= F_PROBE;
        self.timers.set(Timer::Keepalive, now + ka.interval);
    }

    pub(super) fn arm_keepalive(&mut self, now: Instant) {
        match self.config.keepalive {
            Some(ka) if self.state.is_synchronized() => self.timers.set(Timer::Keepalive, now + ka.time),
            _ => self.timers.clear(Timer::Keepalive),
        }
    }
}
