//! The neighbour cache: IPv4 → MAC with expiry, plus frames waiting for a
//! resolution (bounded), and the ARP requests to (re)send. The frames are
//! whatever the shard keeps them in (`T`: a slot of its control arena), so
//! waiting copies nothing into fresh buffers.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::wire::EthernetAddress;

/// Frames kept per unresolved neighbour, as Linux's `unres_qlen` bounds them.
pub const PENDING_LIMIT: usize = 64;

struct Pending<T> {
    frames: VecDeque<T>,
    next_request: Instant,
    tries: u32,
}

pub struct NeighborCache<T> {
    entries: HashMap<Ipv4Addr, (EthernetAddress, Instant)>,
    pending: HashMap<Ipv4Addr, Pending<T>>,
    timeout: Duration,
    retry: Duration,
    max_tries: u32,
    /// When expired entries are next swept out (lookups ignore them anyway).
    next_sweep: Instant,
    /// The last successful lookup: most frames go to the neighbour the
    /// previous one went to (the gateway, or a busy peer), and hashing the
    /// address for every frame showed in profiles.
    last: std::cell::Cell<Option<(Ipv4Addr, EthernetAddress, Instant)>>,
}

/// How often expired entries are removed: `tick` runs every loop iteration,
/// and walking the table each time would cost the busy loop for nothing.
const SWEEP: Duration = Duration::from_secs(1);

/// What the shard must do after `tick`.
#[derive(Debug)]
pub struct ArpWork<T> {
    /// Neighbours to send an ARP request for.
    pub requests: Vec<Ipv4Addr>,
    /// Frames dropped because a neighbour never answered (to be freed).
    pub dropped: Vec<T>,
}

impl<T> NeighborCache<T> {
    pub fn new(timeout: Duration, retry: Duration, max_tries: u32) -> Self {
        NeighborCache { entries: HashMap::new(), pending: HashMap::new(), timeout, retry, max_tries, next_sweep: Instant::ZERO, last: std::cell::Cell::new(None) }
    }

    pub fn lookup(&self, now: Instant, ip: Ipv4Addr) -> Option<EthernetAddress> {
        if let Some((last_ip, mac, exp)) = self.last.get() {
            if last_ip == ip && exp > now {
                return Some(mac);
            }
        }
        let (mac, exp) = self.entries.get(&ip).filter(|(_, exp)| *exp > now).copied()?;
        self.last.set(Some((ip, mac, exp)));
        Some(mac)
    }

    /// Records a mapping; returns frames that were waiting for it.
    pub fn learn(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) -> VecDeque<T> {
        self.entries.insert(ip, (mac, now + self.timeout));
        self.last.set(None);
        self.pending.remove(&ip).map(|p| p.frames).unwrap_or_default()
    }

    /// The neighbour was heard from: its entry lives at least another half
    /// `timeout` (and at most a whole one). Cheap while the entry is young
    /// (no hashing), since it runs for every frame.
    pub fn confirm(&mut self, now: Instant, ip: Ipv4Addr) {
        let half = self.timeout / 2;
        if let Some((last_ip, _, exp)) = self.last.get() {
            if last_ip == ip && exp > now + half {
                return;
            }
        }
        if let Some((mac, exp)) = self.entries.get_mut(&ip) {
            *exp = now + self.timeout;
            self.last.set(Some((ip, *mac, *exp)));
        }
    }

    pub fn knows(&self, ip: Ipv4Addr) -> bool {
        self.entries.contains_key(&ip)
    }

    /// Queues a frame for an unresolved neighbour; true if a request should
    /// go out now (the first frame for it). Beyond the limit the oldest
    /// frame is dropped and returned.
    pub fn queue(&mut self, now: Instant, ip: Ipv4Addr, frame: T) -> (bool, Option<T>) {
        let retry = self.retry;
        let mut fresh = false;
        let p = self.pending.entry(ip).or_insert_with(|| {
            fresh = true;
            Pending { frames: VecDeque::new(), next_request: now + retry, tries: 1 }
        });
        p.frames.push_back(frame);
        let dropped = if p.frames.len() > PENDING_LIMIT { p.frames.pop_front() } else { None };
        (fresh, dropped)
    }

    /// Whether `tick` has anything to do at `now` (checked every loop turn;
    /// `tick` itself is not that cheap).
    #[inline]
    pub fn due(&self, now: Instant) -> bool {
        !self.pending.is_empty() || now >= self.next_sweep
    }

    /// Retries and gives up on pending resolutions; forgets expired entries.
    pub fn tick(&mut self, now: Instant) -> ArpWork<T> {
        let mut work = ArpWork { requests: Vec::new(), dropped: Vec::new() };
        let (retry, max) = (self.retry, self.max_tries);
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP;
            self.entries.retain(|_, (_, exp)| *exp > now);
        }
        if self.pending.is_empty() {
            return work;
        }
        self.pending.retain(|ip, p| {
            if p.next_request > now {
                return true;
            }
            if p.tries >= max {
                work.dropped.extend(p.frames.drain(..));
                return false;
            }
            p.tries += 1;
            p.next_request = now + retry;
            work.requests.push(*ip);
            true
        });
        work
    }

    /// The next instant `tick` has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.next_request).min()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn cache() -> NeighborCache<u32> {
        NeighborCache::new(Duration::from_secs(60), Duration::from_secs(1), 3)
    }

    #[test]
    fn entries_expire_unless_the_neighbour_is_heard_from() {
        let t0 = Instant::from_secs(10);
        let mut quiet = cache();
        quiet.learn(t0, IP, MAC);
        assert_eq!(quiet.lookup(t0 + Duration::from_secs(59), IP), Some(MAC));
        assert_eq!(quiet.lookup(t0 + Duration::from_secs(61), IP), None);

        let mut busy = cache();
        busy.learn(t0, IP, MAC);
        // Heard from every 10 s: never expires, though the memo of the last
        // lookup says nothing of it.
        for k in 1..=20u64 {
            let now = t0 + Duration::from_secs(10 * k);
            assert_eq!(busy.lookup(now, IP), Some(MAC), "at {k}0 s");
            busy.confirm(now, IP);
        }
        // Then silence: kept at least half a timeout after the last
        // confirmation, gone a timeout after it.
        let last = t0 + Duration::from_secs(200);
        assert_eq!(busy.lookup(last + Duration::from_secs(29), IP), Some(MAC));
        assert_eq!(busy.lookup(last + Duration::from_secs(61), IP), None);
    }

    #[test]
    fn confirming_an_unknown_neighbour_learns_nothing() {
        let mut c = cache();
        c.confirm(Instant::from_secs(1), IP);
        assert_eq!(c.lookup(Instant::from_secs(1), IP), None);
        assert!(!c.knows(IP));
    }

    #[test]
    fn waiting_frames_are_bounded_handed_back_on_resolution_or_dropped_after_the_tries() {
        let t0 = Instant::from_secs(1);
        let mut c = cache();
        assert_eq!(c.queue(t0, IP, 0), (true, None), "the first frame asks for a request");
        for k in 1..PENDING_LIMIT as u32 {
            assert_eq!(c.queue(t0, IP, k), (false, None));
        }
        assert_eq!(c.queue(t0, IP, 999), (false, Some(0)), "the oldest goes beyond the limit");
        let waiting: Vec<u32> = c.learn(t0, IP, MAC).into_iter().collect();
        assert_eq!(waiting.len(), PENDING_LIMIT);
        assert_eq!((waiting[0], waiting[PENDING_LIMIT - 1]), (1, 999));

        let other = Ipv4Addr::new(198, 18, 0, 3);
        c.queue(t0, other, 7);
        let mut retries = 0;
        let mut dropped = Vec::new();
        for s in 2..=5 {
            let work = c.tick(Instant::from_secs(s));
            retries += work.requests.len();
            dropped.extend(work.dropped);
        }
        assert_eq!((retries, dropped), (2, vec![7]), "three tries in all, then the frame is handed back");
    }
}
