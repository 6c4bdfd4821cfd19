//! TIME_WAIT policy: how many are held (`max_time_wait`, like Linux's
//! `tcp_max_tw_buckets`), and when an active open may take over a 4-tuple
//! still in TIME_WAIT (`tw_reuse`, like `tcp_tw_reuse`).

use crate::app::{App, ConnId};
use crate::tcp::State;
use crate::time::{Duration, Instant};

use super::Shard;

/// The count of connections held in TIME_WAIT, against its cap.
pub(super) struct TimeWait {
    held: usize,
    max: usize,
}

impl TimeWait {
    pub fn new(max: usize) -> Self {
        TimeWait { held: 0, max }
    }

    /// A connection enters TIME_WAIT: counted if the cap allows (true),
    /// else it must skip TIME_WAIT (false, not counted).
    pub fn admit(&mut self) -> bool {
        if self.held >= self.max {
            return false;
        }
        self.held += 1;
        true
    }

    /// A counted connection leaves TIME_WAIT.
    pub fn leave(&mut self) {
        debug_assert!(self.held > 0, "left TIME_WAIT uncounted");
        self.held -= 1;
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl<A: App> Shard<A> {
    /// `tcp_tw_reuse`: TIME_WAIT for over a second, protected by timestamps
    /// (PAWS rejects the old incarnation's segments).
    pub(super) fn can_reuse_time_wait(&self, now: Instant, id: ConnId) -> bool {
        let Some(e) = self.table.get(id) else { return true };
        if e.conn.state() == State::Closed {
            // Free unless the application is still owed its `on_closed`
            // (the next `handle_timeout` gives it, and frees the tuple).
            return !(e.announced || e.connecting);
        }
        if !self.cfg.tw_reuse || e.conn.state() != State::TimeWait || !e.conn.timestamps_enabled() {
            return false;
        }
        let entered = e.conn.timer(crate::tcp::Timer::Close).map(|end| end - 2 * self.tcp.msl);
        entered.is_some_and(|t| now - t >= Duration::from_secs(1))
    }

    /// TIME_WAIT bookkeeping. For the application a connection in TIME_WAIT
    /// is finished (as a closed socket is in Linux): it gets `on_closed` now.
    pub(super) fn account_time_wait(&mut self, now: Instant, id: ConnId, app: &mut A) {
        let Some(e) = self.table.get_mut(id) else { return };
        let tw = e.conn.state() == State::TimeWait;
        if tw && e.announced {
            e.announced = false;
            app.on_closed(id, std::mem::take(&mut e.state), crate::tcp::CloseReason::Normal);
        }
        if tw && !e.in_time_wait && !e.tw_skipped {
            if !self.time_wait.admit() {
                // tcp_max_tw_buckets: skip TIME_WAIT rather than hold more,
                // but only after our ACK of the peer's FIN has gone out (else
                // the peer sits in LAST_ACK resending its FIN).
                self.stats.time_wait_overflow += 1;
                e.tw_skipped = true;
                e.conn.end_time_wait(now);
                self.touch(id);
                return;
            }
            e.in_time_wait = true;
        } else if !tw && e.in_time_wait {
            e.in_time_wait = false;
            self.time_wait.leave();
        }
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_until_full_and_a_leave_makes_room() {
        let mut tw = TimeWait::new(2);
        assert!(tw.admit() && tw.admit());
        assert!(!tw.admit(), "over tcp_max_tw_buckets");
        assert_eq!(tw.held(), 2);
        tw.leave();
        assert!(tw.admit());
        assert_eq!(tw.held(), 2);
    }
}
