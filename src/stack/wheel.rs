//! A hashed timer wheel for connection deadlines.
//!
//! One slot per millisecond tick, 4096 slots (about 4 s per revolution);
//! entries further out wait in their slot for later revolutions. Each
//! connection keeps at most a couple of entries: a deadline that moves later
//! (the RTO restarting on every ACK) is not rescheduled; the early entry
//! fires, the shard sees the connection is not due yet, and schedules the new
//! deadline then (as Linux does with its timers).

use crate::time::Instant;

const SLOTS: usize = 4096;
const TICK_NS: u64 = 1_000_000;

#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<(u32, u64)>>,
    /// The tick up to which everything has been expired.
    cursor: u64,
    len: usize,
}

impl Default for TimerWheel {
    fn default() -> Self {
        TimerWheel::new()
    }
}

impl TimerWheel {
    pub fn new() -> Self {
        TimerWheel { slots: (0..SLOTS).map(|_| Vec::new()).collect(), cursor: 0, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `id` at `at` (rounded up to the next tick).
    pub fn schedule(&mut self, id: u32, at: Instant) {
        let ns = at.as_nanos();
        let tick = ns.div_ceil(TICK_NS).max(self.cursor);
        self.slots[(tick % SLOTS as u64) as usize].push((id, tick));
        self.len += 1;
    }

    /// Moves the wheel to `now`, appending every id whose tick has come.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<u32>) {
        let now_tick = now.as_nanos() / TICK_NS;
        if now_tick < self.cursor {
            return;
        }
        // A full revolution visits every slot once; more is never needed.
        let last = now_tick.min(self.cursor + SLOTS as u64 - 1);
        for tick in self.cursor..=last {
            let slot = &mut self.slots[(tick % SLOTS as u64) as usize];
            let before = slot.len();
            slot.retain(|&(id, t)| {
                if t <= now_tick {
                    out.push(id);
                    false
                } else {
                    true
                }
            });
            self.len -= before - slot.len();
        }
        self.cursor = now_tick + 1;
    }

    /// The earliest scheduled instant (tick resolution), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let mut best = u64::MAX;
        for k in 0..SLOTS as u64 {
            let tick = self.cursor + k;
            if let Some(&(_, t)) = self.slots[(tick % SLOTS as u64) as usize].iter().min_by_key(|e| e.1) {
                best = best.min(t);
                if t == tick {
                    break; // nothing can be earlier than this slot's own tick
                }
            }
        }
        (best != u64::MAX).then(|| Instant::from_nanos(best.saturating_mul(TICK_NS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn fires_in_order_across_revolutions() {
        let mut w = TimerWheel::new();
        let t0 = Instant::from_secs(100);
        w.expire(t0, &mut Vec::new());
        w.schedule(1, t0 + Duration::from_millis(5));
        w.schedule(2, t0 + Duration::from_secs(60)); // many revolutions out
        w.schedule(3, t0 + Duration::from_micros(1500)); // rounds up to 2 ms
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_millis(2)));
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_millis(1), &mut out);
        assert!(out.is_empty());
        w.expire(t0 + Duration::from_millis(5), &mut out);
        assert_eq!(out, vec![3, 1]);
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(60)));
        out.clear();
        w.expire(t0 + Duration::from_secs(30), &mut out);
        assert!(out.is_empty(), "not due after half a minute");
        w.expire(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out, vec![2]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_at_the_next_tick() {
        let mut w = TimerWheel::new();
        w.expire(Instant::from_secs(10), &mut Vec::new());
        w.schedule(7, Instant::from_secs(1));
        assert_eq!(w.next_deadline(), Some(Instant::from_secs(10) + Duration::from_millis(1)));
        let mut out = Vec::new();
        w.expire(Instant::from_secs(10) + Duration::from_millis(1), &mut out);
        assert_eq!(out, vec![7]);
    }
}
