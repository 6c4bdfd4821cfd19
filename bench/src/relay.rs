//! The impairment relay: this kernel has no netem, so frames between the
//! stack and its peer go through a middle namespace whose relay forwards
//! them between two interfaces over AF_XDP, doing to them what a bad
//! network would.
//!
//! ```text
//!   stack ns ──veth── relay ns [a ⇄ relay ⇄ b] ──veth── peer ns
//! ```
//!
//! Each direction is a [`Link`]: a frame that comes in is lost, duplicated
//! or corrupted by chance, waits in a rate-limited queue of bounded length
//! (tail drop), and is then held for the delay ± jitter; a reordered frame
//! skips the delay and overtakes the frames ahead of it (netem's
//! semantics). The link is pure logic over a virtual clock and a seeded
//! RNG, so it is unit-tested here; [`run`] moves real frames through two.

use std::collections::{BinaryHeap, VecDeque};
use std::cmp::Reverse;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xdptcp::wire::is_pure_ack;
use xdptcp::xdp::{QueueConfig, SteerProgram, XdpMode, XskQueue};

/// What a link does to frames. Probabilities are fractions in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairments {
    pub delay: Duration,
    /// Each frame's delay is `delay` ± up to `jitter`, uniformly.
    pub jitter: Duration,
    pub loss: f64,
    /// A reordered frame is sent without the delay, ahead of earlier ones.
    pub reorder: f64,
    pub duplicate: f64,
    /// A corrupted frame has one bit flipped past its Ethernet header, where
    /// the IPv4 or TCP checksum must catch it.
    pub corrupt: f64,
    /// Pure ACKs lost, on top of `loss`: TCP segments over IPv4 with ACK
    /// set, no SYN, FIN or RST, and no payload. These carry the window
    /// updates and cumulative ACKs whose loss a sender must survive.
    pub ack_loss: f64,
    /// Bits per second; 0 for no limit.
    pub rate_bps: u64,
    /// Frames waiting for the rate limit at most; beyond it, tail drop.
    pub queue: usize,
}

impl Default for Impairments {
    fn default() -> Self {
        Impairments { delay: Duration::ZERO, jitter: Duration::ZERO, loss: 0.0, reorder: 0.0, duplicate: 0.0, corrupt: 0.0, ack_loss: 0.0, rate_bps: 0, queue: 1000 }
    }
}

/// What a link did, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub frames_in: u64,
    pub lost: u64,
    /// Of `lost`, the pure ACKs lost to `ack_loss`.
    pub acks_lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    pub queue_drops: u64,
    pub frames_out: u64,
    /// Still held (delayed, or waiting for a TX slot) when the relay stopped.
    pub in_flight: u64,
}

/// SplitMix64: small, fast, and the same sequence for the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Ethernet header: corruption starts past it, so a frame still reaches
/// the host it was meant for and the checksums there must notice.
const ETH: usize = 14;

/// One direction of the relay. Time is nanoseconds on any monotonic clock.
#[derive(Debug)]
pub struct Link {
    cfg: Impairments,
    rng: Rng,
    /// When the rate limiter has finished sending what it holds.
    busy_until: u64,
    /// Departure times of the frames in the rate limiter's queue.
    queued: VecDeque<u64>,
    /// Frames in flight, by (release time, arrival order).
    held: BinaryHeap<Reverse<(u64, u64, Held)>>,
    seq: u64,
    stats: LinkStats,
}

/// A frame in flight; ordered by nothing (the heap orders by time, seq).
#[derive(Debug)]
struct Held(Vec<u8>);

impl PartialEq for Held {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Link {
    pub fn new(cfg: Impairments, seed: u64) -> Link {
        Link { cfg, rng: Rng::new(seed), busy_until: 0, queued: VecDeque::new(), held: BinaryHeap::new(), seq: 0, stats: LinkStats::default() }
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Frames in flight.
    pub fn in_flight(&self) -> usize {
        self.held.len()
    }

    /// A frame arrives at `now`.
    pub fn push(&mut self, now: u64, frame: Vec<u8>) {
        self.stats.frames_in += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        // Drawn only for pure ACKs, so the other impairments' choices are
        // the same with or without it.
        if self.cfg.ack_loss > 0.0 && is_pure_ack(&frame) && self.rng.chance(self.cfg.ack_loss) {
            self.stats.lost += 1;
            self.stats.acks_lost += 1;
            return;
        }
        if self.rng.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            self.enqueue(now, frame.clone());
        }
        self.enqueue(now, frame);
    }

    fn enqueue(&mut self, now: u64, mut frame: Vec<u8>) {
        if frame.len() > ETH && self.rng.chance(self.cfg.corrupt) {
            self.stats.corrupted += 1;
            let at = ETH + self.rng.below((frame.len() - ETH) as u64) as usize;
            frame[at] ^= 1 << self.rng.below(8);
        }
        // The rate limiter: a FIFO that sends one frame after another at
        // the configured rate, holding at most `queue` frames.
        let mut depart = now;
        if let Some(rate) = std::num::NonZeroU64::new(self.cfg.rate_bps) {
            while self.queued.front().is_some_and(|&t| t <= now) {
                self.queued.pop_front();
            }
            if self.queued.len() >= self.cfg.queue {
                self.stats.queue_drops += 1;
                return;
            }
            let wire = (frame.len() as u64 + 24) * 8; // preamble, FCS and gap as on Ethernet
            let cost = wire.saturating_mul(1_000_000_000) / rate;
            depart = self.busy_until.max(now) + cost;
            self.busy_until = depart;
            self.queued.push_back(depart);
        }
        let release = if self.rng.chance(self.cfg.reorder) {
            self.stats.reordered += 1;
            depart
        } else {
            depart + self.delay()
        };
        self.seq += 1;
        self.held.push(Reverse((release, self.seq, Held(frame))));
    }

    fn delay(&mut self) -> u64 {
        let base = self.cfg.delay.as_nanos() as u64;
        let jitter = self.cfg.jitter.as_nanos() as u64;
        if jitter == 0 {
            return base;
        }
        // Uniform in [base - jitter, base + jitter], never negative.
        (base + self.rng.below(2 * jitter + 1)).saturating_sub(jitter)
    }

    /// The next frame due at `now`, if any.
    pub fn pop(&mut self, now: u64) -> Option<Vec<u8>> {
        match self.held.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {}
            _ => return None,
        }
        let Reverse((_, _, Held(frame))) = self.held.pop()?;
        self.stats.frames_out += 1;
        Some(frame)
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<u64> {
        self.held.peek().map(|Reverse((at, _, _))| *at)
    }
}

/// Forwards frames between `a` and `b` (queue 0 of each, which the relay
/// owns entirely) through one [`Link`] per direction, until `stop` is set
/// or `duration` passes. Returns (a→b, b→a).
#[allow(clippy::too_many_arguments)]
pub fn run(a: &str, b: &str, cfg: Impairments, seed: u64, mode: XdpMode, core: Option<usize>, duration: Option<Duration>, stop: &AtomicBool) -> Result<(LinkStats, LinkStats), String> {
    if xdptcp::xdp::not_root() {
        return Err("the relay needs CAP_NET_ADMIN and CAP_BPF: run as root".into());
    }
    let open = |iface: &str| -> Result<(SteerProgram, XskQueue), String> {
        let mut program = SteerProgram::attach_all(iface, mode).map_err(|e| e.to_string())?;
        // Frames as large as the link carries (chains above one UMEM frame).
        let mtu = xdptcp::host::iface_mtu(iface).map_err(|e| e.to_string())? as u32;
        let queue = XskQueue::open(iface, 0, QueueConfig::for_mtu(mtu)).map_err(|e| e.to_string())?;
        program.register(0, queue.fd()).map_err(|e| e.to_string())?;
        Ok((program, queue))
    };
    let (_pa, mut qa) = open(a)?;
    let (_pb, mut qb) = open(b)?;
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let mut ab = Link::new(cfg, seed);
    let mut ba = Link::new(cfg, seed ^ 0x5eed_5eed_5eed_5eed);
    // Frames due but not yet taken by a full TX ring, in order.
    let (mut out_b, mut out_a): (VecDeque<Vec<u8>>, VecDeque<Vec<u8>>) = (VecDeque::new(), VecDeque::new());
    let start = Instant::now();
    let nanos = || start.elapsed().as_nanos() as u64;
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
        let now = nanos();
        let got = qa.recv(64, |f| ab.push(now, f.to_vec())) + qb.recv(64, |f| ba.push(now, f.to_vec()));
        while let Some(f) = ab.pop(now) {
            out_b.push_back(f);
        }
        while let Some(f) = ba.pop(now) {
            out_a.push_back(f);
        }
        let sent = transmit(&mut qb, &mut out_b) + transmit(&mut qa, &mut out_a);
        qa.flush();
        qb.flush();
        if got + sent > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle > 1000 && out_a.is_empty() && out_b.is_empty() {
            // Nothing moving: sleep briefly, never past the next due frame.
            let next = [ab.next_due(), ba.next_due()].into_iter().flatten().min();
            let nap = next.map(|t| t.saturating_sub(nanos())).unwrap_or(1_000_000).min(200_000);
            std::thread::sleep(Duration::from_nanos(nap.max(20_000)));
        }
    }
    let mut stats = (ab.stats(), ba.stats());
    stats.0.in_flight = (ab.in_flight() + out_b.len()) as u64;
    stats.0.frames_out -= out_b.len() as u64;
    stats.1.in_flight = (ba.in_flight() + out_a.len()) as u64;
    stats.1.frames_out -= out_a.len() as u64;
    Ok(stats)
}

fn transmit(queue: &mut XskQueue, out: &mut VecDeque<Vec<u8>>) -> usize {
    let mut sent = 0;
    while let Some(f) = out.front() {
        let len = f.len();
        match queue.send_with(|buf| {
            let n = len.min(buf.len());
            buf[..n].copy_from_slice(&f[..n]);
            Some(n)
        }) {
            Some(true) => {
                out.pop_front();
                sent += 1;
            }
            _ => break,
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A 100-byte frame tagged `n` twice, so a corrupted tag shows.
    fn frame(n: u32) -> Vec<u8> {
        let mut f = vec![0u8; 100];
        f[ETH..ETH + 4].copy_from_slice(&n.to_be_bytes());
        f[96..].copy_from_slice(&n.to_be_bytes());
        f
    }

    fn tag(f: &[u8]) -> Option<u32> {
        let a = u32::from_be_bytes(f[ETH..ETH + 4].try_into().unwrap());
        let b = u32::from_be_bytes(f[f.len() - 4..].try_into().unwrap());
        (a == b).then_some(a)
    }

    fn id(f: &[u8]) -> u32 {
        tag(f).expect("an uncorrupted frame")
    }

    /// Pushes `n` frames, one every `gap` ns, and drains until empty.
    fn drive(link: &mut Link, n: u32, gap: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut now = 0;
        for i in 0..n {
            link.push(now, frame(i));
            while let Some(f) = link.pop(now) {
                out.push((now, f));
            }
            now += gap;
        }
        while let Some(at) = link.next_due() {
            now = now.max(at);
            while let Some(f) = link.pop(now) {
                out.push((now, f));
            }
        }
        out
    }

    #[test]
    fn a_clean_link_delivers_everything_in_order_after_the_delay() {
        let mut link = Link::new(Impairments { delay: Duration::from_millis(5), ..Default::default() }, 1);
        let out = drive(&mut link, 1000, 10_000);
        assert_eq!(out.len(), 1000);
        for (i, (at, f)) in out.iter().enumerate() {
            assert_eq!(id(f), i as u32);
            assert_eq!(*at, i as u64 * 10_000 + 5 * MS);
        }
        assert_eq!(link.stats().frames_out, 1000);
    }

    #[test]
    fn impairments_happen_at_their_rates_and_every_frame_is_accounted_for() {
        let cfg = Impairments { delay: Duration::from_millis(5), jitter: Duration::from_millis(2), loss: 0.10, reorder: 0.10, duplicate: 0.05, corrupt: 0.01, ..Default::default() };
        let mut link = Link::new(cfg, 42);
        let n = 100_000;
        let out = drive(&mut link, n, 20_000);
        let s = link.stats();
        let rate = |x: u64| x as f64 / n as f64;
        assert!((rate(s.lost) - 0.10).abs() < 0.01, "{s:?}");
        assert!((rate(s.duplicated) - 0.045).abs() < 0.01, "{s:?}"); // 5 % of the 90 % kept
        assert!((rate(s.corrupted) - 0.0095).abs() < 0.003, "{s:?}");
        assert!(s.reordered > 0);
        // In = out + lost − duplicated: nothing vanishes unaccounted.
        assert_eq!(s.frames_in + s.duplicated, s.frames_out + s.lost + s.queue_drops);
        assert_eq!(out.len() as u64, s.frames_out);
        // Delays stay within 5 ± 2 ms, or ~0 for the reordered ones.
        let mut late = 0;
        for (at, f) in &out {
            let Some(n) = tag(f) else { continue };
            let sent = n as u64 * 20_000;
            let d = at - sent;
            assert!(d <= 7 * MS, "frame {n} delayed {d} ns");
            if d >= 3 * MS {
                late += 1;
            }
        }
        assert!(late as u64 > s.frames_out * 8 / 10);
        // Frames come out of order.
        let tags: Vec<u32> = out.iter().filter_map(|(_, f)| tag(f)).collect();
        let inversions = tags.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(inversions > 1000, "{inversions}");
    }

    #[test]
    fn corruption_flips_exactly_one_bit_past_the_ethernet_header() {
        let mut link = Link::new(Impairments { corrupt: 1.0, ..Default::default() }, 7);
        for i in 0..1000 {
            link.push(0, frame(i));
            let got = link.pop(0).unwrap();
            let want = frame(i);
            let diff: u32 = got.iter().zip(&want).map(|(a, b)| (a ^ b).count_ones()).sum();
            assert_eq!(diff, 1);
            assert_eq!(got[..ETH], want[..ETH]);
        }
    }

    #[test]
    fn the_rate_limit_paces_frames_and_a_full_queue_drops_the_tail() {
        // 100 Mbit/s, 1000-byte frames: (1000 + 24) × 8 bits = 81.92 µs each.
        let cfg = Impairments { rate_bps: 100_000_000, queue: 10, ..Default::default() };
        let mut link = Link::new(cfg, 3);
        for i in 0..50 {
            let mut f = frame(i);
            f.splice(ETH + 4..ETH + 4, vec![0; 900]);
            link.push(0, f);
        }
        let s = link.stats();
        assert_eq!(s.queue_drops, 40);
        let mut times = Vec::new();
        let mut now = 0;
        while let Some(at) = link.next_due() {
            now = now.max(at);
            while let Some(f) = link.pop(now) {
                times.push((now, id(&f)));
            }
        }
        assert_eq!(times.len(), 10);
        for (k, (at, i)) in times.iter().enumerate() {
            assert_eq!(*i, k as u32);
            assert_eq!(*at, (k as u64 + 1) * 81_920);
        }
        // Once the queue drains, frames are taken again.
        link.push(now, frame(99));
        assert_eq!(link.stats().queue_drops, 40);
    }

    /// An Ethernet/IPv4/TCP frame with these TCP flags, `payload` bytes,
    /// and a 12-byte option block (as with timestamps).
    fn segment(flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; ETH + 20 + 32 + payload];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[ETH] = 0x45;
        f[ETH + 2..ETH + 4].copy_from_slice(&((20 + 32 + payload) as u16).to_be_bytes());
        f[ETH + 9] = 6;
        f[ETH + 20 + 12] = 8 << 4;
        f[ETH + 20 + 13] = flags;
        f
    }

    #[test]
    fn ack_loss_drops_only_pure_acks() {
        const ACK: u8 = 0x10;
        assert!(is_pure_ack(&segment(ACK, 0)));
        assert!(!is_pure_ack(&segment(ACK, 1)), "data");
        assert!(!is_pure_ack(&segment(ACK | 0x01, 0)), "FIN");
        assert!(!is_pure_ack(&segment(ACK | 0x02, 0)), "SYN-ACK");
        assert!(!is_pure_ack(&segment(ACK | 0x04, 0)), "RST");
        assert!(!is_pure_ack(&segment(0x02, 0)), "SYN");
        let mut udp = segment(ACK, 0);
        udp[ETH + 9] = 17;
        assert!(!is_pure_ack(&udp), "UDP");
        let mut arp = segment(ACK, 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!is_pure_ack(&arp), "ARP");
        for cut in 0..ETH + 20 + 14 {
            assert!(!is_pure_ack(&segment(ACK, 0)[..cut]), "truncated at {cut}");
        }

        let mut link = Link::new(Impairments { ack_loss: 0.3, ..Default::default() }, 5);
        let (mut acks_out, mut data_out) = (0, 0);
        for i in 0..10_000 {
            let f = if i % 2 == 0 { segment(ACK, 0) } else { segment(ACK, 100) };
            link.push(0, f);
            while let Some(f) = link.pop(0) {
                if is_pure_ack(&f) { acks_out += 1 } else { data_out += 1 }
            }
        }
        let s = link.stats();
        assert_eq!(data_out, 5000, "no data segment is lost");
        assert_eq!(s.acks_lost, s.lost);
        assert_eq!(acks_out + s.acks_lost, 5000);
        assert!((1300..1700).contains(&s.acks_lost), "{s:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let cfg = Impairments { delay: Duration::from_millis(1), jitter: Duration::from_millis(1), loss: 0.2, reorder: 0.2, duplicate: 0.1, corrupt: 0.1, ..Default::default() };
        let a = drive(&mut Link::new(cfg, 9), 5000, 1000);
        let b = drive(&mut Link::new(cfg, 9), 5000, 1000);
        assert_eq!(a, b);
        let c = drive(&mut Link::new(cfg, 10), 5000, 1000);
        assert_ne!(a, c);
    }
}
