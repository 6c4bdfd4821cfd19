//! Segment arrival: RFC 9293 §3.10.7, with RFC 5961, RFC 7323, RFC 2018,
//! RFC 6675 and RFC 6582 folded in at the points where they apply.

use super::*;
use crate::tcp::rack::{self, ProbeOutcome};
use crate::time::Duration;

/// RFC 7323 §5.5: TS.Recent older than 24 days is no longer trusted for PAWS.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);
/// RFC 5681 §3.2 / RFC 6675 §2: DupThresh.
const DUP_THRESH: u8 = 3;

impl Connection {
    /// RFC 9293 §3.10.7.3: SYN-SENT.
    pub(super) fn handle_syn_sent(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let flags = seg.flags;
        // First: the ACK must cover our SYN and nothing we never sent. If
        // not, RFC 9293 §3.10.7.3: send <SEQ=SEG.ACK><CTL=RST> (unless the
        // segment is itself a RST) and drop the segment. This is what clears
        // a half-open connection a peer still holds on this 4-tuple (e.g. we
        // restarted): its RFC 5961 challenge ACK draws our RST, and our next
        // SYN finds no connection.
        if flags.ack() && (seg.ack <= self.iss || seg.ack > self.snd_max) {
            if !flags.rst() {
                self.rst_seq = seg.ack;
                self.flags |= F_RST_REPLY;
            }
            return;
        }
        // Second: a RST is only believed with an acceptable ACK.
        if flags.rst() {
            if flags.ack() {
                self.enter_closed(CloseReason::Refused);
            }
            return;
        }
        if !flags.syn() {
            return;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        // The right edge our SYN advertised was relative to an ISN we did
        // not know yet: restart it here, so the next segment computes the
        // window from the buffer (RFC 9293 §3.8.6).
        self.rcv_adv = self.rcv_nxt;
        self.last_rx = now;
        self.take_syn_options(seg, now);
        // RFC 7323 §2.2: the window of a SYN segment is never scaled.
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        if flags.ack() {
            self.take_ack_of_syn(now, seg.ack);
            self.state = State::Established;
            self.events |= EV_CONNECTED;
            self.flags |= F_ACK_NOW;
            self.arm_keepalive(now);
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 8): answer with SYN-ACK
            // carrying our original ISS.
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
    }

    /// Our SYN was acknowledged.
    fn take_ack_of_syn(&mut self, now: Instant, ack: SeqNumber) {
        if self.flags & F_TIMED != 0 && self.retries == 0 {
            self.rtt.on_sample(now - self.rtt_sent_at);
        }
        self.flags &= !F_TIMED;
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        self.recover = ack;
        self.retries = 0;
        self.rtt.reset_backoff();
        self.timers.clear(Timer::Retransmit);
        if self.snd_max > self.snd_una {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
    }

    fn challenge_ack(&mut self, now: Instant) {
        // RFC 5961 §7: rate-limit challenge ACKs.
        if now - self.challenge_window >= Duration::from_secs(1) {
            self.challenge_window = now;
            self.challenge_count = 0;
        }
        if u32::from(self.challenge_count) < self.config.challenge_ack_limit {
            self.challenge_count = self.challenge_count.saturating_add(1);
            self.stats.challenge_acks = self.stats.challenge_acks.wrapping_add(1);
            self.flags |= F_ACK_NOW;
        }
    }

    /// The duplicate ACK that answers an unacceptable segment (out of
    /// window, PAWS-rejected, or arriving in TIME_WAIT), at most one per
    /// `Config::invalid_ack_interval` unless the segment carries data or a
    /// FIN without SYN: those are not part of an ACK loop and the sender
    /// needs the answer (Linux's tcp_oow_rate_limited).
    fn ack_invalid(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if seg.segment_len() > 0 && !seg.flags.syn() {
            self.flags |= F_ACK_NOW;
            return;
        }
        if self.flags & F_OOW_ACKED != 0 && now.saturating_duration_since(self.last_oow_ack) < self.config.invalid_ack_interval {
            self.stats.invalid_acks_limited = self.stats.invalid_acks_limited.wrapping_add(1);
            return;
        }
        self.flags |= F_OOW_ACKED | F_ACK_NOW;
        self.last_oow_ack = now;
    }

    /// The receive window we promised: segments inside it are acceptable.
    fn rcv_wnd(&self) -> usize {
        self.rcv_adv - self.rcv_nxt
    }

    /// RFC 9293 §3.10.7.4 for SYN-RECEIVED and every synchronized state.
    pub(super) fn handle_synchronizing<'p>(&mut self, now: Instant, seg: &TcpRepr<'p>) -> &'p [u8] {
        let flags = seg.flags;

        if self.state == State::TimeWait {
            // RFC 1337: RSTs are ignored in TIME_WAIT (TIME-WAIT assassination).
            if flags.rst() {
                return &[];
            }
            // The only legitimate arrival is a retransmitted FIN: ACK it and
            // restart the 2×MSL timer. Anything else gets an ACK too.
            if flags.fin() {
                self.timers.set(Timer::Close, now + 2 * self.config.msl);
            }
            self.ack_invalid(now, seg);
            return &[];
        }

        if self.state == State::SynReceived && flags.syn() && !flags.ack() && seg.seq == self.irs {
            // The peer did not get our SYN-ACK and resent its SYN: resend ours.
            self.snd_nxt = self.iss;
            return &[];
        }

        // RFC 7323 §5.3 R1: PAWS. RSTs are exempt (§5.3 and RFC 5961).
        let mut disordered = false;
        if self.flags & F_TS_OK != 0 && !flags.rst() {
            if let Some(ts) = seg.options.timestamp {
                let behind = self.ts_recent.wrapping_sub(ts.tsval) as i32;
                if behind > 0 && now - self.ts_recent_age < PAWS_IDLE {
                    if self.is_disordered_ack(seg, behind as u32) {
                        disordered = true;
                        self.stats.disordered_acks = self.stats.disordered_acks.wrapping_add(1);
                    } else {
                        self.stats.out_of_window = self.stats.out_of_window.wrapping_add(1);
                        self.ack_invalid(now, seg);
                        return &[];
                    }
                }
            }
        }

        // First check: sequence number acceptability (RFC 9293 §3.10.7.4 table).
        let seg_len = seg.segment_len();
        let wnd = self.rcv_wnd();
        let in_window = |seq: SeqNumber| seq >= self.rcv_nxt && seq < self.rcv_nxt + wnd;
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => in_window(seg.seq),
            // RFC 9293 §3.10.7.4: at a zero window no segment is acceptable,
            // "but special allowance should be made to accept valid ACKs,
            // URGs, and RSTs". One that reaches RCV.NXT (a probe, or data
            // sent before the peer saw the window close) is taken for its
            // ACK and window; its text is trimmed off below (Linux
            // tcp_sequence and tcp_data_queue). Otherwise two ends whose
            // windows are both closed ignore each other's ACKs for ever.
            (_, 0) => seg.seq <= self.rcv_nxt && seg.seq + seg_len > self.rcv_nxt,
            (_, _) => in_window(seg.seq) || in_window(seg.seq + (seg_len - 1)),
        };

        // Second check: RST, per RFC 5961 §3.2.
        if flags.rst() {
            if seg.seq == self.rcv_nxt {
                self.enter_closed(CloseReason::Reset);
            } else if acceptable || in_window(seg.seq) {
                self.challenge_ack(now);
            }
            return &[];
        }

        if !acceptable {
            // Out of window (or a pure duplicate): ACK and drop.
            if seg.seq + seg_len <= self.rcv_nxt && seg_len > 0 {
                self.stats.dup_segments = self.stats.dup_segments.wrapping_add(1);
                self.report_duplicate(seg.seq, seg.seq + seg.payload.len());
            } else {
                self.stats.out_of_window = self.stats.out_of_window.wrapping_add(1);
            }
            self.ack_invalid(now, seg);
            return &[];
        }

        // Fourth check: a SYN in a synchronized state gets a challenge ACK
        // (RFC 5961 §4.2), whatever its sequence number.
        if flags.syn() {
            self.challenge_ack(now);
            return &[];
        }

        // Fifth check: the ACK field.
        if !flags.ack() {
            return &[];
        }

        // RFC 7323 §4.3: TS.Recent follows the segment that covers Last.ACK.sent.
        if let (true, Some(ts)) = (self.flags & F_TS_OK != 0, seg.options.timestamp) {
            if seg.seq <= self.last_ack_sent && (ts.tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                self.ts_recent = ts.tsval;
                self.ts_recent_age = now;
            }
        }
        self.last_rx = now;
        self.probes = 0;

        if self.state == State::SynReceived {
            if seg.ack > self.snd_una && seg.ack <= self.snd_max {
                self.take_ack_of_syn(now, seg.ack);
                self.state = if self.flags & F_FIN_QUEUED != 0 { State::FinWait1 } else { State::Established };
                self.events |= EV_CONNECTED;
                self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.arm_keepalive(now);
            } else {
                // Not an ACK of our SYN-ACK: drop it (a RST would be allowed;
                // RFC 5961's more conservative ACK is used).
                self.challenge_ack(now);
                return &[];
            }
        }

        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA − MAX.SND.WND, SND.NXT].
        if seg.ack > self.snd_max || seg.ack < self.snd_una - self.max_snd_wnd as usize {
            self.challenge_ack(now);
            return &[];
        }
        self.process_ack(now, seg, disordered);
        if self.state == State::Closed {
            return &[];
        }

        // Seventh: segment text.
        let mut direct: &'p [u8] = &[];
        let mut seq = seg.seq;
        let mut payload = seg.payload;
        if !payload.is_empty() {
            if matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
                // Trim what we already have (RFC 9293 §3.10.7.4: duplicates
                // trimmed), before the check below: a retransmission of
                // bytes already received (say with the FIN after them) is
                // no new data.
                if seq < self.rcv_nxt {
                    let dup = (self.rcv_nxt - seq).min(payload.len());
                    self.report_duplicate(seq, seq + dup);
                    payload = &payload[dup..];
                    seq += dup;
                }
                if self.flags & F_APP_CLOSED != 0 && !payload.is_empty() {
                    // The application closed: nobody will read this new
                    // data. Reset, as Linux does for data to an orphaned
                    // socket (only when it lies beyond RCV.NXT).
                    self.flags |= F_SEND_RST;
                    self.enter_closed(CloseReason::Aborted);
                    return &[];
                }
                // Trim what lies beyond the window.
                let room = (self.rcv_nxt + wnd) - seq;
                if payload.len() > room {
                    if room == 0 {
                        // A zero window (see the acceptability test): the
                        // data is dropped, the peer hears at once that the
                        // window is still closed.
                        self.stats.out_of_window = self.stats.out_of_window.wrapping_add(1);
                        self.flags |= F_ACK_NOW;
                    }
                    payload = &payload[..room];
                }
                direct = self.take_text(now, seq, payload);
            } else {
                self.stats.out_of_window = self.stats.out_of_window.wrapping_add(1);
            }
        }

        // Eighth: FIN. It takes effect only once everything before it arrived.
        if flags.fin() {
            let fin_at = seg.seq + seg.payload.len();
            if fin_at <= self.rcv_nxt + wnd {
                self.fin_seq = fin_at;
                self.flags |= F_FIN_RECEIVED;
            }
        }
        // A direct delivery larger than the memory budget may be cut back in
        // `Delivery::complete` (see there): RCV.NXT is final only then, and so
        // that call takes the FIN. Otherwise the FIN counts now, before the
        // application sees the data, as always.
        if self.flags & F_DIRECT_PENDING != 0 && direct.len() > self.budget_memory as usize {
            self.flags |= F_DIRECT_OVER_BUDGET;
        } else {
            self.maybe_take_fin(now);
        }
        direct
    }

    /// RFC 7323 §5.3 leaves room to accept a segment that fails PAWS when
    /// it is harmless; like Linux (`tcp_disordered_ack`), a pure duplicate
    /// ACK at RCV.NXT that would not move the send window, with a TSval
    /// behind TS.Recent by at most one RTO (the peer's ticks taken as
    /// milliseconds), is a reordered ACK of this connection, not an old
    /// duplicate: its SACK blocks are news. Anything else still fails.
    fn is_disordered_ack(&self, seg: &TcpRepr<'_>, behind: u32) -> bool {
        let window = u32::from(seg.window) << self.snd_wscale;
        seg.flags.ack()
            && seg.segment_len() == 0
            && seg.seq == self.rcv_nxt
            && seg.ack == self.snd_una
            && seg.seq == self.snd_wl1
            && window <= self.snd_wnd
            && u128::from(behind) <= self.rtt.rto().as_millis()
    }

    /// RFC 9293 §3.10.7.4 fifth check, ESTABLISHED and later: SND.UNA,
    /// window, RTT, congestion control and loss recovery. A `disordered`
    /// ACK (see `is_disordered_ack`) leaves the window alone.
    fn process_ack(&mut self, now: Instant, seg: &TcpRepr<'_>, disordered: bool) {
        let ack = seg.ack;
        let una_before = self.snd_una;
        let flight_before = self.snd_max - self.snd_una;
        let blocks = if self.flags & F_SACK_OK != 0 { seg.options.sack_blocks.as_slice() } else { &[] };
        // RFC 2883: a D-SACK reports data received twice; it SACKs nothing new.
        let dsack = rack::dsack_block(blocks, ack);
        if dsack.is_some() {
            self.stats.dsacks = self.stats.dsacks.wrapping_add(1);
        }
        // RFC 8985 §6.2 steps 2–3 see every span this ACK delivers.
        let delivery = Delivery {
            now,
            fack_before: self.rack.fack(),
            min_rtt: self.rtt.min_rtt().unwrap_or(Duration::ZERO),
            // The echoed TSval on our clock, to tell which copy was ACKed.
            echo_ms: match (self.flags & F_TS_OK != 0, seg.options.timestamp) {
                (true, Some(ts)) => Some(ts.tsecr.wrapping_sub(self.ts_offset)),
                _ => None,
            },
        };
        let mut newly_sacked = 0;
        if !blocks.is_empty() {
            let fresh = if dsack.is_some() { &blocks[1..] } else { blocks };
            let rack = &mut self.rack;
            newly_sacked = self.sacks.sack(self.snd_una, self.snd_max, fresh, |span| delivery.apply(rack, span));
        }

        // Window update (RFC 9293 §3.10.7.4, SND.WL1/SND.WL2 rule).
        let window = u32::from(seg.window) << self.snd_wscale;
        let window_changed = window != self.snd_wnd;
        if !disordered && (self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack)) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if was_zero && window > 0 {
                // The window opened: probing is over (Linux tcp_ack_probe).
                self.timers.clear(Timer::Persist);
                self.probes = 0;
                self.persist_backoff = 0;
            }
        }

        if ack > self.snd_una {
            self.on_new_ack(now, ack, &delivery);
        } else if ack == self.snd_una && flight_before > 0 {
            // RFC 5681 §2 duplicate ACK; RFC 6675 §2 also counts an ACK that
            // SACKs new data.
            let classic = seg.payload.is_empty() && !seg.flags.fin() && !window_changed;
            if classic || newly_sacked > 0 {
                self.on_duplicate_ack(now, flight_before);
            }
        }

        if self.rack_on() {
            self.rack.on_ack(self.snd_una, self.snd_max, dsack.is_some());
        }
        // RFC 8985 §7.4: did an outstanding loss probe repair a loss?
        if self.rack.probe_outstanding() {
            let news = ack > una_before || newly_sacked > 0 || !seg.payload.is_empty() || window_changed;
            if self.rack.on_probe_ack(ack, dsack, usize::from(self.smss), news) == ProbeOutcome::Repaired && self.recovery == Recovery::None {
                // One loss, repaired: one congestion response, as for a
                // fast recovery that ended at once.
                self.stats.probe_recoveries = self.stats.probe_recoveries.wrapping_add(1);
                self.cc.on_congestion_event(now, flight_before);
                self.cc.on_recovery_exit(now, self.snd_max - self.snd_una);
            }
        }
        self.detect_losses(now);
        if self.snd_una > una_before {
            // RFC 8985 §7.2: an ACK of new data restarts the probe timer (and
            // a probe due but not yet sent is no longer needed).
            self.flags &= !F_LOSS_PROBE;
            self.arm_loss_probe(now);
        }

        // Our FIN acknowledged?
        if self.fin_acked() {
            match self.state {
                State::FinWait1 => {
                    self.state = State::FinWait2;
                    if self.flags & F_APP_CLOSED != 0 {
                        self.timers.set(Timer::Close, now + self.config.fin_timeout);
                    }
                }
                State::Closing => self.enter_time_wait(now),
                State::LastAck => self.enter_closed(CloseReason::Normal),
                _ => {}
            }
        }
    }

    pub(super) fn tx_end(&self) -> SeqNumber {
        self.tx_seq + self.tx.len()
    }

    /// True once the peer acknowledged our FIN.
    pub(super) fn fin_acked(&self) -> bool {
        self.flags & F_FIN_QUEUED != 0 && self.snd_una == self.tx_end() + 1
    }

    fn on_new_ack(&mut self, now: Instant, ack: SeqNumber, delivery: &Delivery) {
        let acked = ack - self.snd_una;
        self.snd_una = ack;
        self.progress_at = now;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        // Release acknowledged data from the send buffer.
        if ack > self.tx_seq {
            let n = (ack - self.tx_seq).min(self.tx.len());
            self.tx.consume(n);
            self.tx_seq += n;
            self.stats.bytes_acked += n as u64;
            if self.tx.is_empty() {
                self.tx.release();
            }
            if self.flags & F_WANT_WRITABLE != 0 && self.can_send() {
                self.flags &= !F_WANT_WRITABLE;
                self.events |= EV_WRITABLE;
            }
        }
        let rack = &mut self.rack;
        self.sacks.advance(ack, |span| delivery.apply(rack, span));

        // RFC 6298 §3 with Karn's rule: time one segment per flight, never a
        // retransmitted one (F_TIMED is cleared whenever we retransmit).
        if self.flags & F_TIMED != 0 && ack > self.rtt_seq {
            self.flags &= !F_TIMED;
            self.rtt.on_sample(now - self.rtt_sent_at);
        }
        self.retries = 0;
        self.rtt.reset_backoff();
        // RFC 6298 §5.2 and §5.3.
        if self.snd_una == self.snd_max {
            self.timers.clear(Timer::Retransmit);
        } else {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }

        let srtt = self.rtt.srtt().unwrap_or(Duration::from_millis(1));
        let cwnd_limited = self.flags & F_CWND_LIMITED != 0;
        match self.recovery {
            Recovery::None => {
                self.cc.on_ack(now, acked, srtt, cwnd_limited);
                self.dupacks = 0;
            }
            Recovery::Fast => {
                if ack >= self.recover {
                    // RFC 6582 §3.2 step 3: full acknowledgement ends recovery.
                    self.recovery = Recovery::None;
                    self.dupacks = 0;
                    self.cc.on_recovery_exit(now, self.snd_max - self.snd_una);
                    self.rack.on_recovery_exit();
                    self.undo_if_spurious(delivery.echo_ms);
                } else if self.flags & F_SACK_OK == 0 {
                    // RFC 6582 §3.2 step 4: a partial ACK means the next segment
                    // was lost too: retransmit it at once.
                    self.flags |= F_RXT_UNA;
                    self.dupacks = 0;
                }
            }
            Recovery::Timeout => {
                // Slow start goes on while the lost window is resent.
                self.cc.on_ack(now, acked, srtt, true);
                if ack >= self.recover {
                    self.recovery = Recovery::None;
                    self.dupacks = 0;
                    self.rack.on_recovery_exit();
                }
            }
        }
        self.flags &= !F_CWND_LIMITED;
    }

    fn on_duplicate_ack(&mut self, now: Instant, flight: usize) {
        self.dupacks = self.dupacks.saturating_add(1);
        if self.recovery != Recovery::None || self.rack_on() {
            // With RACK, time decides what is lost (RFC 8985 replaces the
            // DupThresh rule); see `detect_losses`.
            return;
        }
        // RFC 6675 §5: enter recovery on DupThresh duplicates, or as soon as
        // the scoreboard says the first segment is lost.
        let sack_says_lost = self.flags & F_SACK_OK != 0 && self.sacks.is_lost(self.snd_una, usize::from(self.smss));
        if self.dupacks < DUP_THRESH && !sack_says_lost {
            return;
        }
        // RFC 6582 §3.2 step 2: no new recovery until the previous one's
        // data is acknowledged (avoids multiple reductions per window).
        if self.snd_una < self.recover {
            return;
        }
        self.enter_fast_recovery(now, flight);
    }

    /// RFC 2883: data received twice is reported in a D-SACK block, first in
    /// the next ACK (the sender learns its retransmission or the network's
    /// duplicate was needless). Only the latest duplicate is kept.
    fn report_duplicate(&mut self, from: SeqNumber, to: SeqNumber) {
        if self.flags & F_SACK_OK != 0 && from < to {
            self.dsack = (from, to);
            self.flags |= F_DSACK;
        }
    }

    /// The out-of-order range holding `offset` is the one this ACK reports
    /// first (RFC 2018 §4).
    fn note_sacked(&mut self, offset: usize) {
        let ooo = &self.ooo;
        self.recent_sacks.note(offset, |a, b| ooo.iter().any(|(o, l)| o <= a && a < o + l && o <= b && b < o + l));
    }

    /// Stores in-window text that starts at `seq` (≥ RCV.NXT).
    fn take_text<'p>(&mut self, now: Instant, seq: SeqNumber, payload: &'p [u8]) -> &'p [u8] {
        if payload.is_empty() {
            return &[];
        }
        let offset = seq - self.rcv_nxt;
        self.stats.bytes_received += payload.len() as u64;
        if offset > 0 {
            // Out of order: keep it in the reassembly area (bounded by the
            // window, the assembler's range count and the shard's budgets)
            // and ACK at once, with SACK (RFC 5681 §4.2, RFC 2018 §4). Data
            // not kept is not SACKed, so the peer retransmits it.
            let end = offset + payload.len();
            let holding = self.ooo.iter().find(|&(o, l)| o <= offset && end <= o + l);
            if let Some((o, _)) = holding {
                // All of it is here already: a D-SACK, then the block holding it.
                self.report_duplicate(seq, seq + payload.len());
                self.note_sacked(o);
                self.flags |= F_ACK_NOW;
                return &[];
            }
            let fits = payload.len().min(self.rx.limit().saturating_sub(self.rx.len() + offset));
            let fresh = self.ooo.uncovered(offset, fits);
            let allowed = (self.budget_reassembly as usize).min(self.budget_memory as usize);
            let stored = fits > 0 && fresh <= allowed && {
                let written = self.rx.write_unallocated(offset, &payload[..fits]);
                written == fits && self.ooo.add(offset, written).is_ok()
            };
            if stored {
                self.spend_budget(fresh, true);
                self.note_sacked(offset);
            } else {
                self.stats.ooo_dropped = self.stats.ooo_dropped.wrapping_add(1);
            }
            self.flags |= F_ACK_NOW;
            return &[];
        }

        let mut filled_gap = !self.ooo.is_empty();
        if self.rx.is_empty() && !filled_gap {
            // Zero-copy: the application reads straight from the frame.
            self.rcv_nxt += payload.len();
            self.flags |= F_DIRECT_PENDING;
            self.delay_ack(now, payload.len());
            return payload;
        }

        // In-order data is buffered whatever the reassembly budget, but
        // within the shard's receive memory: at its limit the rest is not
        // stored (nor acknowledged) and comes again.
        let mut payload = payload;
        let mut fresh = if filled_gap { self.ooo.uncovered(0, payload.len()) } else { payload.len() };
        if fresh > self.budget_memory as usize && filled_gap {
            // Out-of-order data gives way first, highest ranges first
            // (Linux's tcp_prune_ofo_queue): the application waits for these
            // bytes, not for those. A renege the sender recovers from
            // (RFC 2018 §8); the shard sees the memory come back. A range
            // this segment overlaps may go too: the segment brings its
            // first bytes again.
            let freed = self.ooo.prune_back(fresh - self.budget_memory as usize);
            if freed > 0 {
                self.stats.ooo_pruned = self.stats.ooo_pruned.wrapping_add(1);
                let freed = freed.min(u32::MAX as usize) as u32;
                self.budget_memory = self.budget_memory.saturating_add(freed);
                self.budget_reassembly = self.budget_reassembly.saturating_add(freed);
                filled_gap = !self.ooo.is_empty();
                fresh = if filled_gap { self.ooo.uncovered(0, payload.len()) } else { payload.len() };
            }
        }
        if fresh > self.budget_memory as usize {
            payload = &payload[..self.budget_memory as usize];
            self.stats.mem_dropped = self.stats.mem_dropped.wrapping_add(1);
            self.flags |= F_ACK_NOW;
            if payload.is_empty() {
                return &[];
            }
        }
        let written = self.rx.write_unallocated(0, payload);
        let fresh = if filled_gap { self.ooo.uncovered(0, written) } else { written };
        self.spend_budget(fresh, false);
        let mut contiguous = written;
        if filled_gap {
            // The in-order bytes may join ranges that were waiting. With
            // the range table full they can fail to be added only if they
            // touch no range: then they are all that became contiguous.
            contiguous = if self.ooo.add(0, written).is_ok() {
                self.ooo.remove_front()
            } else {
                self.ooo.shift_down(written);
                written
            };
            if self.ooo.is_empty() {
                self.ooo.shrink();
            }
            self.recent_sacks.advance(contiguous);
            // RFC 5681 §4.2: ACK at once when a segment fills a gap.
            self.flags |= F_ACK_NOW;
        }
        self.rx.enqueue_unallocated(contiguous);
        self.rcv_nxt += contiguous;
        self.events |= EV_READABLE;
        self.delay_ack(now, written);
        &[]
    }

    /// RFC 5681 §4.2 / RFC 1122 §4.2.3.2: ACK at least every second
    /// full-sized segment, otherwise within the delayed-ACK timeout. "Full
    /// sized" is the largest segment the peer has sent (Linux's rcv_mss).
    fn delay_ack(&mut self, now: Instant, len: usize) {
        self.rcv_mss = self.rcv_mss.max(len.min(u16::MAX as usize) as u16);
        self.unacked_segs = self.unacked_segs.saturating_add(len as u32);
        if self.unacked_segs as usize >= 2 * usize::from(self.rcv_mss) {
            self.flags |= F_ACK_NOW;
        } else if !self.timers.is_set(Timer::DelayedAck) {
            self.timers.set(Timer::DelayedAck, now + self.config.delayed_ack);
        }
    }

    /// Processes a FIN once RCV.NXT reaches it (RFC 9293 §3.10.7.4 eighth check).
    pub(super) fn maybe_take_fin(&mut self, now: Instant) {
        if self.flags & F_FIN_RECEIVED == 0 || self.fin_seq != self.rcv_nxt {
            return;
        }
        self.flags &= !F_FIN_RECEIVED;
        self.rcv_nxt += 1;
        self.flags |= F_ACK_NOW;
        self.events |= EV_PEER_CLOSED;
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}

/// What an ACK tells RACK about each span it delivers (RFC 8985 §6.2).
pub(super) struct Delivery {
    now: Instant,
    /// RACK.fack before this ACK.
    fack_before: SeqNumber,
    min_rtt: Duration,
    /// The ACK's TSecr on our clock, in milliseconds.
    echo_ms: Option<u32>,
}

impl Delivery {
    fn apply(&self, rack: &mut crate::tcp::rack::Rack, span: &crate::tcp::scoreboard::Span) {
        rack.on_delivered(self.now, span, self.fack_before, self.min_rtt, self.echo_ms);
    }
}
