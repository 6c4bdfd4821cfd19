//! Segment departure: what to send next, and writing it into the caller's buffer.

use super::*;
use crate::wire::{SackBlocks, TcpFlags, TcpOptions, TcpPacket, TcpTimestamp};

/// Where the next segment's sequence space comes from.
struct Plan {
    seq: SeqNumber,
    /// Payload bytes, taken from the send buffer at `seq`.
    len: usize,
    flags: TcpFlags,
    retransmit: bool,
    /// A tail loss probe (RFC 8985 §7.3).
    probe: bool,
}

/// A TCP header with every option we send fits in 60 bytes.
pub const MAX_HEADER: usize = 60;

impl Connection {
    /// Writes the next segment to send into `buf` (TCP header, options and
    /// payload, checksummed over the IPv4 pseudo-header) and returns its
    /// length, or `None` when there is nothing to send.
    ///
    /// `buf` should hold at least `MAX_HEADER + mss()` bytes; a smaller buffer
    /// gets a smaller segment.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < MAX_HEADER {
            return None;
        }
        if self.flags & F_SEND_RST != 0 {
            self.flags &= !F_SEND_RST;
            let seq = self.snd_max;
            return Some(self.emit(now, buf, seq, 0, TcpFlags::RST | TcpFlags::ACK, false));
        }
        if self.flags & F_RST_REPLY != 0 {
            // RFC 9293 §3.10.7.3: <SEQ=SEG.ACK><CTL=RST>, no ACK; the
            // connection stays in SYN-SENT.
            self.flags &= !F_RST_REPLY;
            if self.state == State::SynSent {
                let seq = self.rst_seq;
                return Some(self.emit(now, buf, seq, 0, TcpFlags::RST, false));
            }
        }
        let plan = match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent => self.plan_syn(TcpFlags::SYN),
            State::SynReceived => self.plan_syn(TcpFlags::SYN | TcpFlags::ACK),
            _ => self.plan_data(now, buf.len().saturating_sub(self.data_header_len())),
        };
        if let Some(plan) = plan {
            return Some(self.send_plan(now, buf, plan));
        }
        if self.flags & F_PROBE != 0 {
            self.flags &= !F_PROBE;
            // The persist (or keepalive) timer fired: new data as far as the
            // peer's window allows, if it has room (Linux tcp_write_wakeup).
            if let Some(plan) = self.plan_wakeup(buf.len().saturating_sub(self.data_header_len())) {
                return Some(self.send_plan(now, buf, plan));
            }
            // Zero-window and keepalive probes: an old sequence number forces
            // the peer to answer with an ACK showing its window (RFC 1122
            // §4.2.3.6; Linux's tcp_xmit_probe_skb).
            let seq = self.snd_una - 1;
            return Some(self.emit(now, buf, seq, 0, TcpFlags::ACK, false));
        }
        if self.flags & F_ACK_NOW != 0 {
            // A pure ACK carries the highest sequence number sent: anything
            // older may lie below the peer's RCV.NXT, and an unacceptable
            // segment's ACK field is ignored (RFC 9293 §3.10.7.4).
            let seq = if self.state.is_synchronized() { self.snd_max } else { self.snd_nxt.max(self.snd_una) };
            return Some(self.emit(now, buf, seq, 0, TcpFlags::ACK, false));
        }
        None
    }

    /// How many bytes of new data [`Connection::transmit_with`] would let
    /// the application write now (at most `max_len`), and the congestion
    /// window's room; `None` when it would decline and the data should go
    /// through the send buffer instead.
    ///
    /// It declines unless new data is exactly what `poll_transmit` would
    /// send next: ESTABLISHED or CLOSE-WAIT, nothing unsent queued ahead, no
    /// loss recovery, RST or loss probe pending, Nagle not holding data
    /// back, room in the peer's window, the congestion window and the send
    /// buffer (which keeps a copy for retransmission). As `plan_data`, a
    /// segment the windows would cut below what the application offers
    /// waits in the buffer unless it is at least half the largest window
    /// seen (sender SWS avoidance, RFC 1122 §4.2.3.4).
    fn direct_limits(&self, max_len: usize) -> Option<(usize, usize)> {
        if !matches!(self.state, State::Established | State::CloseWait)
            || self.flags & (F_FIN_QUEUED | F_SEND_RST | F_LOSS_PROBE | F_RXT_UNA | F_DIRECT_OVER_BUDGET) != 0
            || self.recovery != Recovery::None
            || self.unsent_data() > 0
            || (self.config.nagle && self.snd_max != self.snd_una)
        {
            return None;
        }
        let want = max_len.min(usize::from(self.smss)).min(self.send_room());
        if want == 0 {
            return None;
        }
        let wnd_room = (self.snd_una + self.snd_wnd as usize) - self.snd_nxt;
        let limited_transmit = if self.flags & F_SACK_OK == 0 { usize::from(self.dupacks.min(2)) * usize::from(self.smss) } else { 0 };
        let cwnd_room = (self.cc.window() + limited_transmit).saturating_sub(self.pipe());
        let net = wnd_room.min(cwnd_room);
        let half_window = self.max_snd_wnd > 0 && net as u32 >= self.max_snd_wnd / 2;
        if net == 0 || (net < want && !half_window) {
            return None;
        }
        Some((want.min(net), cwnd_room))
    }

    /// Whether [`Connection::transmit_with`] would send now (see there).
    pub fn can_transmit_with(&self, max_len: usize) -> bool {
        self.direct_limits(max_len).is_some()
    }

    /// Sends new data that `f` writes in place: the application's bytes go
    /// straight into the segment being built in `buf` (a TX frame, after
    /// the room for the link and IPv4 headers), and from there into the
    /// send buffer, which keeps them for retransmission. `f` gets up to
    /// `max_len` bytes (one segment at most) and returns how many it wrote.
    ///
    /// The segment is accounted exactly as `poll_transmit` would account
    /// it (SND.NXT, RTT sampling, the scoreboard, the retransmission and
    /// loss-probe timers, the ACK it carries). During a direct delivery
    /// (from `on_data`) it acknowledges the data being delivered and offers
    /// no new window (see `advertise_window`).
    ///
    /// Returns `None`, without calling `f`, when new data cannot go now (see
    /// `can_transmit_with`) or `buf` has no room for it; the caller then
    /// queues the data instead. Otherwise `Some((segment length, payload
    /// length))`; a payload of 0 means `f` wrote nothing and `buf` holds no
    /// segment.
    pub fn transmit_with(&mut self, now: Instant, buf: &mut [u8], max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Option<(usize, usize)> {
        let (room, cwnd_room) = self.direct_limits(max_len)?;
        let flags = TcpFlags::ACK | TcpFlags::PSH;
        let options = self.segment_options(now, flags);
        let header_len = header_len(&options);
        let room = room.min(buf.len().saturating_sub(header_len));
        if room == 0 {
            return None;
        }
        let n = f(&mut buf[header_len..header_len + room]).min(room);
        if n == 0 {
            return Some((0, 0));
        }
        // The one copy: the send buffer keeps the bytes for retransmission.
        let kept = self.tx.push(&buf[header_len..header_len + n]);
        debug_assert_eq!(kept, n, "direct_limits checked the send buffer's room");
        self.spend_budget(kept, false);
        if cwnd_room <= n {
            self.flags |= F_CWND_LIMITED;
        }
        let seq = self.snd_nxt;
        let total = self.finish_segment(buf, seq, n, flags, options);
        self.account_sent(now, Plan { seq, len: n, flags, retransmit: false, probe: false });
        Some((total, n))
    }

    fn plan_syn(&mut self, flags: TcpFlags) -> Option<Plan> {
        if self.snd_nxt != self.iss {
            return None; // already sent; the retransmission timer resets snd_nxt
        }
        let retransmit = self.snd_max != self.iss;
        Some(Plan { seq: self.iss, len: 0, flags, retransmit, probe: false })
    }

    /// The header length of our next data segment: timestamps and SACK
    /// blocks are the only options after the handshake.
    fn data_header_len(&self) -> usize {
        let ts = self.flags & F_TS_OK != 0;
        let blocks = if self.flags & F_SACK_OK != 0 {
            (self.ooo.range_count() + usize::from(self.flags & F_DSACK != 0)).min(if ts { 3 } else { 4 })
        } else {
            0
        };
        20 + if ts { 12 } else { 0 } + if blocks > 0 { 4 + 8 * blocks } else { 0 }
    }

    /// Sequence space not yet sent.
    pub(super) fn unsent_data(&self) -> usize {
        self.tx_end() - self.snd_nxt
    }

    fn fin_pending(&self) -> bool {
        self.flags & F_FIN_QUEUED != 0 && self.snd_max <= self.tx_end()
    }

    /// Bytes the network holds by our estimate (RFC 6675 §4 SetPipe).
    fn pipe(&self) -> usize {
        let flight = self.snd_max - self.snd_una;
        if self.flags & F_SACK_OK != 0 || self.recovery == Recovery::Timeout {
            // From the scoreboard's marks. Outside recovery, SACKed data
            // makes room for new data (RFC 6675 §5 step 3, limited transmit).
            return self.sacks.pipe(self.snd_una, self.snd_max);
        }
        match self.recovery {
            // Without SACK, each duplicate ACK says a segment left the network.
            Recovery::Fast => flight.saturating_sub(usize::from(self.dupacks) * usize::from(self.smss)),
            _ => flight,
        }
    }

    /// The next data to resend, if any: what the scoreboard deems lost, first
    /// the lowest (RFC 6675 §4 NextSeg rule 1, RFC 8985, RFC 6298 §5.4 after
    /// a timeout); without SACK in fast recovery, the segment at SND.UNA
    /// (RFC 6582).
    fn next_retransmit(&self, max_len: usize) -> Option<(SeqNumber, usize)> {
        if self.recovery == Recovery::None || self.snd_una >= self.snd_max {
            return None;
        }
        let mss = usize::from(self.smss).min(max_len).max(1);
        if self.recovery == Recovery::Fast && self.flags & F_SACK_OK == 0 {
            let limit = self.recover.min(self.snd_max);
            if self.flags & F_RXT_UNA == 0 || self.snd_una >= limit {
                return None;
            }
            return Some((self.snd_una, (limit - self.snd_una).min(mss)));
        }
        self.sacks.next_lost(mss)
    }

    /// RFC 8985 §7.3: the loss probe. New data if there is any and the peer's
    /// window takes it (cwnd notwithstanding), else the highest segment sent
    /// again.
    fn plan_loss_probe(&self, mss: usize) -> Option<Plan> {
        let unsent = self.unsent_data();
        let wnd_room = (self.snd_una + self.snd_wnd as usize) - self.snd_nxt;
        if unsent > 0 && wnd_room > 0 {
            let len = unsent.min(mss).min(wnd_room);
            let mut flags = TcpFlags::ACK;
            if len == unsent {
                flags |= TcpFlags::PSH;
                if self.fin_pending() {
                    flags |= TcpFlags::FIN;
                }
            }
            return Some(Plan { seq: self.snd_nxt, len, flags, retransmit: false, probe: true });
        }
        if self.snd_max == self.snd_una {
            return None;
        }
        let tx_end = self.tx_end();
        let fin_sent = self.flags & F_FIN_QUEUED != 0 && self.snd_max > tx_end;
        let data_end = if fin_sent { tx_end } else { self.snd_max };
        let seq = (data_end - mss).max(self.snd_una);
        let plan = self.retransmit_plan(seq, data_end - seq);
        (plan.len > 0 || plan.flags.fin()).then_some(Plan { probe: true, ..plan })
    }

    /// What to send now in a synchronized state, or `None`.
    fn plan_data(&mut self, now: Instant, room: usize) -> Option<Plan> {
        if matches!(self.state, State::TimeWait) {
            return None;
        }
        let mss = usize::from(self.smss).min(room).max(1);
        if self.flags & F_LOSS_PROBE != 0 {
            self.flags &= !F_LOSS_PROBE;
            if self.recovery == Recovery::None {
                if let Some(plan) = self.plan_loss_probe(mss) {
                    return Some(plan);
                }
            }
        }
        let cwnd = self.cc.window();
        let pipe = self.pipe();

        // Loss recovery first (RFC 6675 §5 step (C): only while pipe < cwnd,
        // except the first retransmission, which goes regardless).
        let first = self.flags & F_RXT_UNA != 0;
        if first || pipe < cwnd {
            let next = self.next_retransmit(room);
            self.flags &= !F_RXT_UNA;
            if let Some((seq, len)) = next {
                return Some(self.retransmit_plan(seq, len));
            }
        }

        // New data, within the peer's window and the congestion window.
        // RFC 3042 limited transmit: without SACK, the first two duplicate
        // ACKs each let one more segment beyond cwnd go (with SACK, the
        // pipe already counts what they SACKed).
        let unsent = self.unsent_data();
        let wnd_edge = self.snd_una + self.snd_wnd as usize;
        let wnd_room = wnd_edge - self.snd_nxt;
        let limited_transmit = if self.recovery == Recovery::None && self.flags & F_SACK_OK == 0 {
            usize::from(self.dupacks.min(2)) * usize::from(self.smss)
        } else {
            0
        };
        let cwnd_room = (cwnd + limited_transmit).saturating_sub(pipe);
        let fin = self.fin_pending();
        if unsent > 0 {
            let len = unsent.min(mss).min(wnd_room).min(cwnd_room);
            if len == 0 {
                if cwnd_room == 0 {
                    self.flags |= F_CWND_LIMITED;
                } else {
                    // RFC 9293 §3.8.6.1: a zero window: the persist timer will probe.
                    self.check_probe_timer(now);
                }
                return None;
            }
            // RFC 1122 §4.2.3.4 sender SWS avoidance, with Nagle (RFC 896)
            // when enabled: send a short segment only if it is all we have and
            // Nagle allows it, or it is at least half the largest window seen.
            let full = len == mss;
            let all = len == unsent;
            let nagle_ok = !self.config.nagle || self.snd_max == self.snd_una;
            let half_window = len as u32 >= self.max_snd_wnd / 2 && self.max_snd_wnd > 0;
            if !(full || (all && nagle_ok) || half_window) {
                if len < mss && cwnd_room < mss {
                    self.flags |= F_CWND_LIMITED;
                }
                // A window too small to use, and maybe nothing in flight:
                // without a timer, a lost window update would stall us.
                self.check_probe_timer(now);
                return None;
            }
            if cwnd_room <= len {
                self.flags |= F_CWND_LIMITED;
            }
            let mut flags = TcpFlags::ACK;
            if all {
                flags |= TcpFlags::PSH;
                if fin {
                    flags |= TcpFlags::FIN;
                }
            }
            return Some(Plan { seq: self.snd_nxt, len, flags, retransmit: false, probe: false });
        }
        if fin && self.snd_nxt == self.tx_end() {
            return Some(Plan { seq: self.snd_nxt, len: 0, flags: TcpFlags::ACK | TcpFlags::FIN, retransmit: false, probe: false });
        }
        None
    }

    /// RFC 1122 §4.2.3.4 and RFC 9293 §3.8.6.2.1: data waits and nothing
    /// is in flight, so no retransmission timer runs: the persist timer
    /// (which is also the SWS override timer) does, whatever the window,
    /// zero or too small to use (Linux tcp_check_probe_timer).
    fn check_probe_timer(&mut self, now: Instant) {
        if self.snd_max == self.snd_una && !self.timers.is_set(Timer::Persist) {
            self.arm_persist(now);
        }
    }

    /// When the persist or keepalive timer fired: new data as far as the
    /// peer's window allows, whatever sender SWS avoidance, Nagle or the
    /// congestion window say (the override of RFC 1122 §4.2.3.4; Linux
    /// tcp_write_wakeup); `None` when the window has no room.
    fn plan_wakeup(&self, room: usize) -> Option<Plan> {
        if !self.state.is_synchronized() || self.state == State::TimeWait {
            return None;
        }
        let unsent = self.unsent_data();
        let wnd_room = (self.snd_una + self.snd_wnd as usize) - self.snd_nxt;
        if unsent == 0 || wnd_room == 0 {
            return None;
        }
        let len = unsent.min(usize::from(self.smss).min(room).max(1)).min(wnd_room);
        let mut flags = TcpFlags::ACK;
        if len == unsent {
            flags |= TcpFlags::PSH;
            if self.fin_pending() {
                flags |= TcpFlags::FIN;
            }
        }
        Some(Plan { seq: self.snd_nxt, len, flags, retransmit: false, probe: false })
    }

    fn retransmit_plan(&self, seq: SeqNumber, len: usize) -> Plan {
        let tx_end = self.tx_end();
        let data_end = (seq + len).min(tx_end);
        let data = data_end - seq;
        let mut flags = TcpFlags::ACK;
        // The FIN rides on the segment that reaches it.
        if self.flags & F_FIN_QUEUED != 0 && seq + data == tx_end && self.snd_max > tx_end {
            flags |= TcpFlags::FIN;
        }
        Plan { seq, len: data, flags, retransmit: true, probe: false }
    }

    fn send_plan(&mut self, now: Instant, buf: &mut [u8], plan: Plan) -> usize {
        let n = self.emit(now, buf, plan.seq, plan.len, plan.flags, true);
        self.account_sent(now, plan);
        n
    }

    /// The bookkeeping of a segment sent: SND.NXT and SND.MAX, the
    /// scoreboard, RTT timing, the retransmission and loss-probe timers.
    fn account_sent(&mut self, now: Instant, plan: Plan) {
        let end = plan.seq + plan.len + plan.flags.syn() as usize + plan.flags.fin() as usize;
        let new_data = end > self.snd_max;
        if self.snd_una == self.snd_max && end > plan.seq {
            // A flight starts: the user timeout runs from here.
            self.progress_at = now;
        }
        if plan.retransmit {
            self.stats.retransmits = self.stats.retransmits.wrapping_add(1);
            self.flags &= !F_TIMED;
            if self.flags & (F_UNDO | F_UNDO_STAMPED) == F_UNDO {
                self.flags |= F_UNDO_STAMPED;
                self.undo_stamp = now.as_millis() as u32;
            }
        }
        if self.state.is_synchronized() && (plan.len > 0 || plan.flags.fin()) {
            self.on_data_sent(now, new_data && !plan.retransmit);
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if self.state.is_synchronized() {
            self.sacks.on_transmit(plan.seq, end, now, plan.retransmit);
        }
        if new_data {
            // New sequence space: time it if nothing is being timed (RFC 6298 §3).
            if self.flags & F_TIMED == 0 && !plan.retransmit {
                self.flags |= F_TIMED;
                self.rtt_seq = plan.seq;
                self.rtt_sent_at = now;
            }
            self.snd_max = end;
        }
        // RFC 6298 §5.1: the timer runs whenever data is outstanding; the
        // persist timer is not needed then.
        if end > plan.seq && self.state.is_synchronized() {
            self.timers.clear(Timer::Persist);
            self.persist_backoff = 0;
        }
        if !self.timers.is_set(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if plan.probe {
            self.stats.loss_probes = self.stats.loss_probes.wrapping_add(1);
            self.rack.on_probe_sent(self.snd_max, plan.retransmit);
        } else if new_data && !plan.retransmit {
            // RFC 8985 §7.2: new data restarts the probe timer.
            self.arm_loss_probe(now);
        }
    }

    /// A segment with data (or FIN) leaves; `fresh` if it is new data. With
    /// nothing in flight, the sender was idle since `last_send`: CUBIC's
    /// epoch skips the idle time (RFC 9438 §5.8, Linux CA_EVENT_TX_START),
    /// and after more than an RTO the window restarts (RFC 5681 §4.1,
    /// Linux's tcp_slow_start_after_idle). The segment that ends the idle
    /// period was already allowed by the old window; the rest follow the
    /// restarted one.
    fn on_data_sent(&mut self, now: Instant, fresh: bool) {
        if fresh && self.snd_una == self.snd_max && self.flags & F_DATA_SENT != 0 {
            let idle = now.saturating_duration_since(self.last_send);
            self.cc.on_tx_start(now, idle);
            let rto = self.rtt.rto();
            if self.config.slow_start_after_idle && idle > rto {
                self.cc.restart_after_idle(idle, rto);
            }
        }
        self.flags |= F_DATA_SENT;
        self.last_send = now;
    }

    /// The window to advertise, with receiver SWS avoidance (RFC 1122
    /// §4.2.3.3); the right edge never moves left (RFC 9293 §3.8.6.2.2).
    ///
    /// The shard's window budget caps growth, as Linux's memory pressure
    /// caps `rcv_ssthresh` (tcp_clamp_window): an edge already advertised
    /// beyond it stays where it is, only new space is withheld.
    fn advertise_window(&mut self) -> u16 {
        if self.flags & F_DIRECT_PENDING != 0 {
            // A segment sent during a direct delivery (`transmit_with` from
            // the callback): the receive buffer does not hold yet what the
            // application will leave unread, so no new space is offered;
            // the edge already advertised stands (it covered this data).
            self.flags |= F_WINDOW_HELD;
            let wnd = self.rcv_adv - self.rcv_nxt;
            return (wnd >> self.rcv_wscale).min(u16::MAX as usize) as u16;
        }
        self.flags &= !F_WINDOW_HELD;
        let free = self.rx.limit() - self.rx.len();
        // RFC 1122 §4.2.3.3: the right edge moves only by at least
        // min(buffer / 2, MSS); a closed window too reopens only by that
        // much (Linux __tcp_select_window), not by whatever a read freed.
        let threshold = (self.rx.limit() / 2).min(usize::from(self.smss));
        // A new right edge is one the window field carries exactly: at most
        // 65 535 units (RFC 7323 §2.3; unscaled, RFC 9293 §3.1), rounded
        // down to the scale's unit (Linux __tcp_select_window). RCV.ADV is
        // thus never beyond an edge the peer was told.
        let max = usize::from(u16::MAX) << self.rcv_wscale;
        let unit_mask = !((1usize << self.rcv_wscale) - 1);
        let grown = |adv: SeqNumber, room: usize| {
            let candidate = self.rcv_nxt + (room.min(max) & unit_mask);
            if candidate > adv && candidate - adv >= threshold {
                candidate
            } else {
                adv
            }
        };
        let clamp = self.budget_window as usize;
        let adv = grown(self.rcv_adv, free.min(clamp));
        if free > clamp && grown(self.rcv_adv, free) > adv {
            self.stats.window_clamped = self.stats.window_clamped.wrapping_add(1);
        }
        self.rcv_adv = adv;
        let wnd = self.rcv_adv - self.rcv_nxt;
        let field = (wnd >> self.rcv_wscale).min(u16::MAX as usize);
        field as u16
    }

    /// After a direct delivery during which a segment went out without
    /// growing the window (see `advertise_window`): if the window the peer
    /// now sees is at most half of what it could be, send an update, as a
    /// read that frees that much would (Linux's rule in tcp_cleanup_rbuf).
    /// Otherwise an echo that answers every segment at once would shrink
    /// the peer's window with each one until it closed.
    pub(super) fn window_update_after_held(&mut self) {
        if self.flags & F_WINDOW_HELD == 0 {
            return;
        }
        self.flags &= !F_WINDOW_HELD;
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            return;
        }
        let advertised = self.rcv_adv - self.rcv_nxt;
        let offer = (self.rx.limit() - self.rx.len()).min(self.budget_window as usize);
        if offer >= 2 * advertised && offer - advertised >= usize::from(self.smss) {
            self.flags |= F_ACK_NOW;
        }
    }

    /// Sends a window update when reading opened the window enough to matter.
    pub(super) fn maybe_window_update(&mut self) {
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            return;
        }
        let limit = self.rx.limit();
        let free = limit - self.rx.len();
        let advertised = self.rcv_adv - self.rcv_nxt;
        let threshold = (limit / 2).min(usize::from(self.smss) * 2);
        if advertised < threshold && free >= 2 * advertised.max(1) && free >= usize::from(self.smss) {
            self.flags |= F_ACK_NOW;
        }
    }

    /// Builds the SACK blocks: a D-SACK first (RFC 2883 §4), then the most
    /// recent range (RFC 2018 §4).
    fn sack_blocks(&self, max: usize) -> SackBlocks {
        let mut blocks = SackBlocks::new();
        if self.flags & F_SACK_OK == 0 || max == 0 {
            return blocks;
        }
        if self.flags & F_DSACK != 0 {
            blocks.push(self.dsack.0, self.dsack.1);
        }
        if self.ooo.is_empty() {
            return blocks;
        }
        // RFC 2018 §4: the range holding the latest arrival first, then
        // the most recently reported ones, then any other (lowest first);
        // no range twice.
        let dsack = blocks.len();
        let recent = self.recent_sacks.iter().filter_map(|off| self.ooo.iter().find(|&(o, l)| o <= off && off < o + l));
        for (o, l) in recent.chain(self.ooo.iter()) {
            if blocks.len() >= max {
                break;
            }
            let (left, right) = (self.rcv_nxt + o, self.rcv_nxt + (o + l));
            if !blocks.as_slice()[dsack..].contains(&(left, right)) {
                blocks.push(left, right);
            }
        }
        blocks
    }

    /// The options of our next segment with `flags`: timestamps, the SYN's
    /// options, SACK blocks.
    fn segment_options(&self, now: Instant, flags: TcpFlags) -> TcpOptions {
        let syn = flags.syn();
        let mut options = TcpOptions::default();
        let ts_on = if syn { self.config.timestamps && (self.state == State::SynSent || self.flags & F_TS_OK != 0) } else { self.flags & F_TS_OK != 0 };
        if ts_on {
            let tsval = self.ts_offset.wrapping_add(now.as_millis() as u32);
            options.timestamp = Some(TcpTimestamp { tsval, tsecr: if flags.ack() { self.ts_recent } else { 0 } });
        }
        if syn {
            options.mss = Some(self.config.mss);
            let offer_ws = self.config.window_scaling && (self.state == State::SynSent || self.flags & F_WS_OK != 0);
            if offer_ws {
                options.window_scale = Some(self.rcv_wscale);
            }
            options.sack_permitted = self.config.sack && (self.state == State::SynSent || self.flags & F_SACK_OK != 0);
        } else if !flags.rst() {
            options.sack_blocks = self.sack_blocks(if ts_on { 3 } else { 4 });
        }
        options
    }

    /// Writes one segment. Every segment but a SYN carries our ACK.
    fn emit(&mut self, now: Instant, buf: &mut [u8], seq: SeqNumber, len: usize, flags: TcpFlags, with_payload: bool) -> usize {
        let options = self.segment_options(now, flags);
        let header_len = header_len(&options);
        let room = buf.len().saturating_sub(header_len);
        let len = if with_payload { len.min(room) } else { 0 };
        if len > 0 {
            let offset = seq - self.tx_seq;
            let (a, b) = self.tx.slices_at(offset, len);
            buf[header_len..header_len + a.len()].copy_from_slice(a);
            buf[header_len + a.len()..header_len + a.len() + b.len()].copy_from_slice(b);
        }
        self.finish_segment(buf, seq, len, flags, options)
    }

    /// Writes the header of a segment whose `len` payload bytes are already
    /// in place after it (`options` from `segment_options`), checksums it,
    /// and notes the ACK it carries. Returns the segment's length.
    fn finish_segment(&mut self, buf: &mut [u8], seq: SeqNumber, len: usize, flags: TcpFlags, options: TcpOptions) -> usize {
        let syn = flags.syn();
        let window = if syn {
            // RFC 7323 §2.2: a SYN's window is never scaled.
            let free = (self.rx.limit() - self.rx.len()).min(u16::MAX as usize);
            let clamp = self.budget_window as usize;
            if free > clamp {
                self.stats.window_clamped = self.stats.window_clamped.wrapping_add(1);
            }
            let wnd = free.min(clamp);
            self.rcv_adv = self.rcv_adv.max(self.rcv_nxt + wnd);
            (self.rcv_adv - self.rcv_nxt).min(u16::MAX as usize) as u16
        } else if flags.rst() {
            0
        } else {
            self.advertise_window()
        };
        let ack_flag = flags.ack();
        let repr = TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ack: if ack_flag { self.rcv_nxt } else { SeqNumber(0) },
            flags,
            window,
            urgent: 0,
            options,
            payload: &[],
        };
        let header_len = repr.header_len();
        repr.emit_header(&mut buf[..header_len]);
        let total = header_len + len;
        TcpPacket::new_unchecked(&mut buf[..total]).fill_checksum(*self.local.ip(), *self.remote.ip());

        self.stats.segs_out = self.stats.segs_out.wrapping_add(1);
        if ack_flag {
            self.flags &= !(F_ACK_NOW | F_DSACK);
            self.unacked_segs = 0;
            self.last_ack_sent = self.rcv_nxt;
            self.timers.clear(Timer::DelayedAck);
        }
        total
    }
}

/// The length of a TCP header carrying `options`.
fn header_len(options: &TcpOptions) -> usize {
    crate::wire::tcp::HEADER_LEN + options.len()
}
