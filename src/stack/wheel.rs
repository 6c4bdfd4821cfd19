//! A hashed timer wheel for connection deadlines.
//!
//! One slot per millisecond tick, 4096 slots (about 4 s per revolution);
//! entries further out wait in their slot for later revolutions. Each
//! connection keeps at most a couple of entries: a deadline that moves later
//! (the RTO restarting on every ACK) is not rescheduled; the early entry
//! fires, the shard sees the connection is not due yet, and schedules the new
//! deadline then (as Linux does with its timers).
//!
//! Entries live in one pool of nodes, each slot a list threaded through it
//! (head and tail, so a slot fires in the order it was filled), and freed
//! nodes are reused: once the pool has grown to the most entries ever
//! scheduled at once, scheduling and expiring allocate nothing. The
//! earliest deadline is cached, so `next_deadline` scans the slots only
//! after the cached one fired.

use std::cell::Cell;

use crate::time::Instant;

const SLOTS: usize = 4096;
const TICK_NS: u64 = 1_000_000;
/// No node: the end of a list.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    id: u32,
    tick: u64,
    next: u32,
}

#[derive(Debug)]
pub struct TimerWheel {
    nodes: Vec<Node>,
    /// First node of the free list.
    free: u32,
    /// Each slot's first and last node.
    heads: Box<[u32]>,
    tails: Box<[u32]>,
    /// The tick up to which everything has been expired.
    cursor: u64,
    len: usize,
    /// The earliest tick scheduled, when known (`None`: scan for it).
    earliest: Cell<Option<u64>>,
}

impl Default for TimerWheel {
    fn default() -> Self {
        TimerWheel::new()
    }
}

impl TimerWheel {
    pub fn new() -> Self {
        TimerWheel {
            nodes: Vec::new(),
            free: NIL,
            heads: vec![NIL; SLOTS].into_boxed_slice(),
            tails: vec![NIL; SLOTS].into_boxed_slice(),
            cursor: 0,
            len: 0,
            earliest: Cell::new(None),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `id` at `at` (rounded up to the next tick).
    pub fn schedule(&mut self, id: u32, at: Instant) {
        let tick = at.as_nanos().div_ceil(TICK_NS).max(self.cursor);
        let node = Node { id, tick, next: NIL };
        let n = if self.free != NIL {
            let n = self.free;
            self.free = self.nodes[n as usize].next;
            self.nodes[n as usize] = node;
            n
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        };
        let slot = (tick % SLOTS as u64) as usize;
        match self.tails[slot] {
            NIL => self.heads[slot] = n,
            tail => self.nodes[tail as usize].next = n,
        }
        self.tails[slot] = n;
        if self.len == 0 {
            self.earliest.set(Some(tick));
        } else if let Some(e) = self.earliest.get() {
            self.earliest.set(Some(e.min(tick)));
        }
        self.len += 1;
    }

    /// Moves the wheel to `now`, appending every id whose tick has come.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<u32>) {
        let now_tick = now.as_nanos() / TICK_NS;
        if now_tick < self.cursor {
            return;
        }
        if self.len > 0 && self.earliest.get().is_none_or(|e| e <= now_tick) {
            // A full revolution visits every slot once; more is never needed.
            let last = now_tick.min(self.cursor + SLOTS as u64 - 1);
            for tick in self.cursor..=last {
                self.expire_slot((tick % SLOTS as u64) as usize, now_tick, out);
            }
            self.earliest.set(None);
        }
        self.cursor = now_tick + 1;
    }

    /// Unlinks the slot's nodes due by `now_tick`, in order.
    fn expire_slot(&mut self, slot: usize, now_tick: u64, out: &mut Vec<u32>) {
        let mut prev = NIL;
        let mut n = self.heads[slot];
        while n != NIL {
            let Node { id, tick, next } = self.nodes[n as usize];
            if tick <= now_tick {
                out.push(id);
                match prev {
                    NIL => self.heads[slot] = next,
                    p => self.nodes[p as usize].next = next,
                }
                if self.tails[slot] == n {
                    self.tails[slot] = prev;
                }
                self.nodes[n as usize].next = self.free;
                self.free = n;
                self.len -= 1;
            } else {
                prev = n;
            }
            n = next;
        }
    }

    /// The earliest scheduled instant (tick resolution), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let best = match self.earliest.get() {
            Some(e) => e,
            None => {
                let e = self.scan();
                self.earliest.set(Some(e));
                e
            }
        };
        Some(Instant::from_nanos(best.saturating_mul(TICK_NS)))
    }

    /// The earliest tick over every slot, from the cursor on.
    fn scan(&self) -> u64 {
        let mut best = u64::MAX;
        for k in 0..SLOTS as u64 {
            let tick = self.cursor + k;
            let mut n = self.heads[(tick % SLOTS as u64) as usize];
            let mut slot_min = u64::MAX;
            while n != NIL {
                slot_min = slot_min.min(self.nodes[n as usize].tick);
                n = self.nodes[n as usize].next;
            }
            best = best.min(slot_min);
            if slot_min == tick {
                break; // nothing can be earlier than this slot's own tick
            }
        }
        best
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

    #[test]
    fn nodes_are_reused_and_slots_fire_in_the_order_they_were_filled() {
        let mut w = TimerWheel::new();
        let mut out = Vec::new();
        let mut t = Instant::from_secs(1);
        // Ten seconds of three timers per millisecond: every slot used more than twice.
        for _ in 0..10_000 {
            for id in 0..3 {
                w.schedule(id, t + Duration::from_millis(2));
            }
            t = t + Duration::from_millis(1);
            out.clear();
            w.expire(t, &mut out);
        }
        assert!(w.nodes.len() <= 6, "the pool holds what is scheduled at once, not {}", w.nodes.len());
        // Due at t + 1 ms: the last three. One more, a slot later.
        w.schedule(5, t + Duration::from_millis(2));
        assert_eq!(w.next_deadline(), Some(t + Duration::from_millis(1)));
        out.clear();
        w.expire(t + Duration::from_millis(2), &mut out);
        assert_eq!(out, vec![0, 1, 2, 5], "oldest slot first, each in order");
        assert!(w.is_empty() && w.next_deadline().is_none());
    }
}
