//! The shard's memory: receive and send bytes held across its connections
//! (`memory_limit`, like Linux's `tcp_mem`), out-of-order bytes
//! (`reassembly_limit`), and the orphan limits.
//!
//! The totals live in [`ShardStats`] (`recv_buffered`, `ooo_buffered`,
//! `send_buffered`, `orphans`) and move by what each call into a connection
//! changed: `begin_call` hands the connection its budget ([`MemoryView`])
//! and snapshots it ([`RxSnapshot`]), `end_call` moves the totals by the
//! difference. O(1) per call, never a scan.

use crate::app::{App, ConnId};
use crate::tcp::{Connection, RxBudget, SEND_MEMORY_FLOOR};

use super::{Shard, ShardStats, RECV_MEMORY_FLOOR};

/// What a call into a connection may change in the shard's receive totals,
/// read before and after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RxSnapshot {
    held: usize,
    ooo: usize,
    /// Bytes in the send buffer.
    sent: usize,
    orphan: bool,
    ooo_dropped: u32,
    window_clamped: u32,
    mem_dropped: u32,
}

impl RxSnapshot {
    pub(super) fn of(c: &Connection) -> RxSnapshot {
        let s = c.stats();
        RxSnapshot {
            held: c.recv_held(),
            ooo: c.ooo_queue(),
            sent: c.send_queue(),
            orphan: c.is_orphan(),
            ooo_dropped: s.ooo_dropped,
            window_clamped: s.window_clamped,
            mem_dropped: s.mem_dropped,
        }
    }
}

/// The shard's memory totals, from which each connection's budget is cut.
#[derive(Debug, Clone, Copy)]
pub(super) struct MemoryView {
    pub limit: usize,
    pub pressure: usize,
    pub recv: usize,
    pub send: usize,
    pub reassembly: usize,
    pub mss: usize,
}

impl MemoryView {
    /// What `conn` may still use (see `RxBudget`): what is left of
    /// `memory_limit` after receive and send memory, to receive into or to
    /// queue for sending; but at least `RECV_MEMORY_FLOOR` of received data
    /// held when send memory is what used it up (and, in the engine,
    /// `SEND_MEMORY_FLOOR` of send data). `held`: the received bytes
    /// the connection holds.
    pub(super) fn budget(&self, held_here: usize) -> RxBudget {
        let held = self.recv + self.send;
        let shared = self.limit.saturating_sub(held);
        let floor = RECV_MEMORY_FLOOR.saturating_sub(held_here).min(self.limit.saturating_sub(self.recv));
        let memory = shared.max(floor);
        // Under pressure a window grows by at most 4 MSS, as Linux clamps
        // rcv_ssthresh to 4 * advmss (tcp_adjust_rcv_ssthresh); at the limit
        // (memory == 0) by nothing.
        let window = if held >= self.pressure { memory.min(4 * self.mss) } else { usize::MAX };
        RxBudget { reassembly: self.reassembly, memory, window, send: shared }
    }
}

impl<A: App> Shard<A> {
    /// The totals connection budgets are cut from (`MemoryView::budget`).
    pub(super) fn memory_view(&self) -> MemoryView {
        MemoryView {
            limit: self.cfg.memory_limit,
            pressure: self.cfg.memory_pressure(),
            recv: self.stats.recv_buffered as usize,
            send: self.stats.send_buffered as usize,
            reassembly: self.cfg.reassembly_limit.saturating_sub(self.stats.ooo_buffered as usize),
            mss: usize::from(self.tcp.mss),
        }
    }

    /// Receive and send memory together have reached `memory_limit`
    /// (Linux's `tcp_mem[2]`, as `tcp_out_of_memory` checks it), to within
    /// `SEND_MEMORY_FLOOR`: Linux counts that memory in 4 KiB pages.
    pub(super) fn out_of_memory(&self) -> bool {
        (self.stats.recv_buffered + self.stats.send_buffered) as usize + SEND_MEMORY_FLOOR > self.cfg.memory_limit
    }

    /// Before a call into a connection: hands it its budget and notes what
    /// the call may change, for `end_call`.
    pub(super) fn begin_call(&mut self, id: ConnId) -> Option<RxSnapshot> {
        let view = self.memory_view();
        let e = self.table.get_mut(id)?;
        e.conn.set_rx_budget(view.budget(e.conn.recv_held()));
        Some(RxSnapshot::of(&e.conn))
    }

    /// After a call into a connection: moves the totals and counters by
    /// what it changed (O(1), whatever the number of connections), and
    /// applies the orphan limits (`Shard::check_orphan`).
    pub(super) fn end_call(&mut self, id: ConnId, before: RxSnapshot) {
        let Some(e) = self.table.get(id) else {
            debug_assert!(false, "a connection vanished during a call");
            return;
        };
        let after = RxSnapshot::of(&e.conn);
        self.account(before, after);
        if after.orphan && !before.orphan {
            self.check_orphan(id, true, after);
        }
    }

    /// Moves the totals and counters from one snapshot of a connection to a later one.
    pub(super) fn account(&mut self, before: RxSnapshot, after: RxSnapshot) {
        let s = &mut self.stats;
        s.recv_buffered = (s.recv_buffered + after.held as u64) - before.held as u64;
        s.ooo_buffered = (s.ooo_buffered + after.ooo as u64) - before.ooo as u64;
        s.send_buffered = (s.send_buffered + after.sent as u64) - before.sent as u64;
        s.orphans = (s.orphans + u64::from(after.orphan)) - u64::from(before.orphan);
        s.ooo_dropped += u64::from(after.ooo_dropped.wrapping_sub(before.ooo_dropped));
        s.window_clamped += u64::from(after.window_clamped.wrapping_sub(before.window_clamped));
        s.mem_dropped += u64::from(after.mem_dropped.wrapping_sub(before.mem_dropped));
    }

    /// An orphan after a call into it (`now` counted in the totals):
    /// reset it instead, as Linux's `tcp_check_oom` does, when it has just
    /// been orphaned beyond `max_orphans` (`tcp_too_many_orphans`, at
    /// close), or when memory is out and it holds more send data than any
    /// connection may always hold (`tcp_out_of_memory`: at close, and
    /// whenever one of its timers fires, as `tcp_out_of_resources` checks
    /// at the retransmission and probe timers: an orphan whose peer keeps
    /// acknowledging drains on). Only orphans are reset for memory:
    /// connections an application holds are cut short in what they may
    /// queue, never reset.
    pub(super) fn check_orphan(&mut self, id: ConnId, just_orphaned: bool, now: RxSnapshot) {
        let too_many = just_orphaned && self.stats.orphans > self.cfg.max_orphans as u64;
        let oom = !too_many && now.sent > SEND_MEMORY_FLOOR && self.out_of_memory();
        if !too_many && !oom {
            return;
        }
        let Some(e) = self.table.get_mut(id) else { return };
        e.conn.abort();
        let after = RxSnapshot::of(&e.conn);
        if too_many {
            self.stats.orphans_reset += 1;
        } else {
            self.stats.orphans_reset_memory += 1;
        }
        self.account(now, after);
        self.touch(id);
    }

    /// A connection leaves the table: what it held leaves the totals.
    pub(super) fn unaccount(stats: &mut ShardStats, conn: &Connection) {
        stats.recv_buffered -= conn.recv_held() as u64;
        stats.ooo_buffered -= conn.ooo_queue() as u64;
        stats.send_buffered -= conn.send_queue() as u64;
        stats.orphans -= u64::from(conn.is_orphan());
    }

    /// The receive bytes held, summed over every connection: (all, out of
    /// order). What `stats().recv_buffered` and `ooo_buffered` track without
    /// a scan; O(connections), for tests and audits.
    pub fn recount_buffered(&self) -> (u64, u64) {
        self.table.iter().fold((0, 0), |(h, o), (_, e)| (h + e.conn.recv_held() as u64, o + e.conn.ooo_queue() as u64))
    }

    /// Send-buffer bytes and orphans, summed over every connection: what
    /// `stats().send_buffered` and `orphans` track without a scan;
    /// O(connections), for tests and audits.
    pub fn recount_send(&self) -> (u64, u64) {
        self.table.iter().fold((0, 0), |(b, o), (_, e)| (b + e.conn.send_queue() as u64, o + u64::from(e.conn.is_orphan())))
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn view(recv: usize, send: usize) -> MemoryView {
        MemoryView { limit: 8 * MIB, pressure: 6 * MIB, recv, send, reassembly: MIB, mss: 1000 }
    }

    #[test]
    fn below_the_pressure_mark_windows_are_free_and_memory_is_what_is_left() {
        let b = view(MIB, MIB).budget(0);
        assert_eq!(b.memory, 6 * MIB);
        assert_eq!(b.send, 6 * MIB);
        assert_eq!(b.window, usize::MAX);
        assert_eq!(b.reassembly, MIB);
    }

    #[test]
    fn under_pressure_a_window_grows_by_at_most_four_mss() {
        let b = view(5 * MIB, 2 * MIB).budget(0);
        assert_eq!(b.memory, MIB);
        assert_eq!(b.window, 4000);
    }

    #[test]
    fn at_the_limit_send_data_leaves_each_connection_a_receive_floor() {
        // Send data used the memory up: 4 KiB may still be received, less
        // what this connection already holds.
        let b = view(0, 8 * MIB).budget(1000);
        assert_eq!(b.send, 0);
        assert_eq!(b.memory, RECV_MEMORY_FLOOR - 1000);
        assert_eq!(b.window, RECV_MEMORY_FLOOR - 1000);
        // Receive memory alone never exceeds the limit: no floor then.
        let b = view(8 * MIB, 0).budget(0);
        assert_eq!((b.memory, b.window), (0, 0));
    }
}
