//! A one-directional link: serialization at a bandwidth behind a tail-drop
//! queue, then propagation delay with jitter, and seeded faults: loss,
//! reordering, duplication and bit corruption.
//!
//! Jitter and reordering come in two models: by default jitter never
//! reorders and a reordered frame is held back; [`LinkConfig::netem`] is
//! Linux netem's, where every frame's delay is drawn independently (so
//! jitter alone reorders) and a reordered frame skips the delay.
//!
//! Every frame costs the same fixed number of random draws, whatever happens
//! to it, so a run replays exactly for a seed even if configurations differ
//! only in probabilities. [`LinkConfig::ack_loss`] draws from a stream of
//! its own, so setting it leaves every other fault where it was.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::rng::Rng;
use crate::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Extra uniform delay in [0, jitter]; never reorders by itself. With
    /// `jitter_reorders`, the delay is latency ± jitter instead.
    pub jitter: Duration,
    /// netem's jitter: each frame's delay is drawn on its own, uniform in
    /// [latency − jitter, latency + jitter], and frames overtake one another.
    pub jitter_reorders: bool,
    /// Serialization rate; `None` is infinitely fast.
    pub bandwidth_bps: Option<u64>,
    /// Tail-drop limit on bytes waiting to be serialized.
    pub queue_bytes: usize,
    pub loss: f64,
    /// Probability a frame is held back by `reorder_delay`, letting later frames pass.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// netem's reordering: a reordered frame skips the delay instead, and
    /// leaves ahead of the frames still in flight.
    pub reorder_skips_delay: bool,
    pub duplicate: f64,
    /// Probability one random bit of the frame is flipped.
    pub corrupt: f64,
    /// Larger frames are dropped (and counted).
    pub mtu: usize,
    /// Probability that a pure ACK is dropped: a TCP segment with no
    /// payload and no SYN, FIN or RST (ACKs, duplicate ACKs, window
    /// updates, zero-window and keepalive probes). Counted in
    /// [`LinkStats::acks_lost`], on top of `loss`, which drops any frame.
    pub ack_loss: f64,
}

impl LinkConfig {
    /// A perfect link with the given one-way latency.
    pub fn ideal(latency: Duration) -> LinkConfig {
        LinkConfig {
            latency,
            jitter: Duration::ZERO,
            jitter_reorders: false,
            bandwidth_bps: None,
            queue_bytes: usize::MAX,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: latency,
            reorder_skips_delay: false,
            duplicate: 0.0,
            corrupt: 0.0,
            mtu: 1514,
            ack_loss: 0.0,
        }
    }
    /// A link like `tc qdisc add … netem delay LATENCY JITTER`: each frame
    /// delayed latency ± jitter on its own draw, and with
    /// [`with_reorder`](Self::with_reorder) reordered frames sent at once.
    pub fn netem(latency: Duration, jitter: Duration) -> LinkConfig {
        LinkConfig { jitter, jitter_reorders: true, reorder_skips_delay: true, ..LinkConfig::ideal(latency) }
    }
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }
    pub fn with_reorder(mut self, p: f64, delay: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = delay;
        self
    }
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }
    pub fn with_corrupt(mut self, p: f64) -> Self {
        self.corrupt = p;
        self
    }
    /// Drops pure ACKs (see [`LinkConfig::ack_loss`]) with probability `p`.
    pub fn with_ack_loss(mut self, p: f64) -> Self {
        self.ack_loss = p;
        self
    }
    pub fn with_bandwidth(mut self, bps: u64, queue_bytes: usize) -> Self {
        self.bandwidth_bps = Some(bps);
        self.queue_bytes = queue_bytes;
        self
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub delivered: u64,
    pub bytes_delivered: u64,
    pub lost: u64,
    pub queue_dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    pub oversize: u64,
    /// Pure ACKs dropped by [`LinkConfig::ack_loss`] (not counted in `lost`).
    pub acks_lost: u64,
}

/// Whether an Ethernet frame carries a pure ACK (see [`crate::wire::is_pure_ack`]).
pub use crate::wire::is_pure_ack;

pub struct Link {
    config: LinkConfig,
    rng: Rng,
    /// The `ack_loss` draws, one per frame, apart from the other faults'.
    ack_rng: Rng,
    /// (delivery time, order) → frame.
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    /// When the transmitter finishes the frames already accepted.
    busy_until: Instant,
    /// Latest in-order delivery time, so jitter keeps FIFO order.
    last_delivery: Instant,
    stats: LinkStats,
}

impl Link {
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            rng: Rng::new(seed),
            ack_rng: Rng::new(seed ^ 0xa5c3_7e1d_0b9f_4286),
            queue: BinaryHeap::new(),
            order: 0,
            busy_until: Instant::ZERO,
            last_delivery: Instant::ZERO,
            stats: LinkStats::default(),
        }
    }

    pub fn config_mut(&mut self) -> &mut LinkConfig {
        &mut self.config
    }
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn serialization(&self, bytes: usize) -> Duration {
        match self.config.bandwidth_bps {
            Some(bps) if bps > 0 => Duration::from_nanos((bytes as u64 * 8).saturating_mul(1_000_000_000) / bps),
            _ => Duration::ZERO,
        }
    }

    /// Offers a frame to the link at `now`.
    pub fn send(&mut self, now: Instant, mut frame: Vec<u8>) {
        self.stats.sent += 1;
        // Fixed draws per frame: loss, corrupt (+ position), dup, reorder, jitter.
        let lost = self.rng.gen_bool(self.config.loss);
        let corrupt = self.rng.gen_bool(self.config.corrupt);
        let bit = self.rng.next_u64();
        let dup = self.rng.gen_bool(self.config.duplicate);
        let reorder = self.rng.gen_bool(self.config.reorder);
        let jitter_draw = self.rng.next_u64();
        let ack_lost = self.ack_rng.gen_bool(self.config.ack_loss) && is_pure_ack(&frame);

        if frame.len() > self.config.mtu {
            self.stats.oversize += 1;
            return;
        }
        // The queue holds what the transmitter has not finished yet.
        let backlog = self.busy_until.saturating_duration_since(now);
        let queued_bytes = match self.config.bandwidth_bps {
            Some(bps) if bps > 0 => (backlog.as_nanos() as u64).saturating_mul(bps) / 8_000_000_000,
            _ => 0,
        } as usize;
        if queued_bytes.saturating_add(frame.len()) > self.config.queue_bytes {
            self.stats.queue_dropped += 1;
            return;
        }
        let start = self.busy_until.max(now);
        let done = start + self.serialization(frame.len());
        self.busy_until = done;
        if lost {
            self.stats.lost += 1;
            return;
        }
        if ack_lost {
            self.stats.acks_lost += 1;
            return;
        }
        if corrupt && !frame.is_empty() {
            let pos = (bit % (frame.len() as u64 * 8)) as usize;
            frame[pos / 8] ^= 1 << (pos % 8);
            self.stats.corrupted += 1;
        }
        let jitter_ns = self.config.jitter.as_nanos() as u64;
        let mut at = if self.config.jitter_reorders {
            // Uniform in [latency − jitter, latency + jitter], never negative.
            let span = 2 * jitter_ns;
            let delay = self.config.latency + Duration::from_nanos(if span > 0 { jitter_draw % (span + 1) } else { 0 });
            done + delay.saturating_sub(self.config.jitter)
        } else {
            let jitter = if jitter_ns > 0 { Duration::from_nanos(jitter_draw % (jitter_ns + 1)) } else { Duration::ZERO };
            done + self.config.latency + jitter
        };
        if reorder {
            self.stats.reordered += 1;
            if self.config.reorder_skips_delay {
                at = done;
            } else {
                at += self.config.reorder_delay;
            }
        } else if !self.config.jitter_reorders {
            at = at.max(self.last_delivery);
            self.last_delivery = at;
        }
        if dup {
            self.stats.duplicated += 1;
            self.push(at, frame.clone());
        }
        self.push(at, frame);
    }

    fn push(&mut self, at: Instant, frame: Vec<u8>) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, frame)));
    }

    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next frame due at or before `now`.
    pub fn recv(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_delivery()? > now {
            return None;
        }
        let Reverse((_, _, frame)) = self.queue.pop()?;
        self.stats.delivered += 1;
        self.stats.bytes_delivered += frame.len() as u64;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(link: &mut Link) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = link.next_delivery() {
            let f = link.recv(t).unwrap();
            out.push((t, f));
        }
        out
    }

    fn frames(link: &mut Link, n: u32, gap: Duration) {
        let mut now = Instant::ZERO;
        for i in 0..n {
            link.send(now, i.to_be_bytes().repeat(25));
            now += gap;
        }
    }

    #[test]
    fn replays_exactly_for_a_seed() {
        let cfg = LinkConfig::ideal(Duration::from_millis(1)).with_loss(0.1).with_reorder(0.1, Duration::from_millis(2)).with_duplicate(0.1);
        let mut a = Link::new(cfg.clone(), 5);
        let mut b = Link::new(cfg, 5);
        frames(&mut a, 1000, Duration::from_micros(100));
        frames(&mut b, 1000, Duration::from_micros(100));
        assert_eq!(drain(&mut a), drain(&mut b));
    }

    #[test]
    fn loss_rate() {
        let mut l = Link::new(LinkConfig::ideal(Duration::ZERO).with_loss(0.05), 1);
        frames(&mut l, 100_000, Duration::from_micros(1));
        let lost = l.stats().lost;
        assert!((4_500..5_500).contains(&lost), "{lost}");
        assert_eq!(drain(&mut l).len() as u64, 100_000 - lost);
    }

    #[test]
    fn reordering_only_when_asked() {
        let id = |f: &Vec<u8>| u32::from_be_bytes(f[..4].try_into().unwrap());
        let mut calm = LinkConfig::ideal(Duration::from_millis(1));
        calm.jitter = Duration::from_millis(5);
        let mut l = Link::new(calm, 2);
        frames(&mut l, 1000, Duration::from_micros(10));
        let ids: Vec<u32> = drain(&mut l).iter().map(|(_, f)| id(f)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "jitter alone must not reorder");

        let mut l = Link::new(LinkConfig::ideal(Duration::from_millis(1)).with_reorder(0.1, Duration::from_millis(1)), 2);
        frames(&mut l, 1000, Duration::from_micros(10));
        let ids: Vec<u32> = drain(&mut l).iter().map(|(_, f)| id(f)).collect();
        assert!(ids.windows(2).any(|w| w[0] > w[1]), "reordering happens");
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn netem_jitter_reorders_within_its_bounds() {
        let id = |f: &Vec<u8>| u32::from_be_bytes(f[..4].try_into().unwrap());
        let (latency, jitter) = (Duration::from_millis(5), Duration::from_millis(2));
        let mut l = Link::new(LinkConfig::netem(latency, jitter), 6);
        frames(&mut l, 1000, Duration::from_micros(100));
        let out = drain(&mut l);
        assert_eq!(out.len(), 1000);
        let ids: Vec<u32> = out.iter().map(|(_, f)| id(f)).collect();
        assert!(ids.windows(2).any(|w| w[0] > w[1]), "jitter alone reorders");
        for (at, f) in &out {
            let sent = Instant::ZERO + Duration::from_micros(100) * id(f);
            let delay = *at - sent;
            assert!(delay >= latency - jitter && delay <= latency + jitter, "{delay:?}");
        }
        // netem's reordering: a reordered frame goes at once.
        let mut l = Link::new(LinkConfig::netem(latency, jitter).with_reorder(0.1, Duration::ZERO), 6);
        frames(&mut l, 1000, Duration::from_micros(100));
        let out = drain(&mut l);
        let fast = out.iter().filter(|(at, f)| *at == Instant::ZERO + Duration::from_micros(100) * id(f)).count() as u64;
        assert_eq!(fast, l.stats().reordered);
        assert!((60..140).contains(&fast), "{fast}");
    }

    #[test]
    fn duplication_and_corruption() {
        let mut l = Link::new(LinkConfig::ideal(Duration::ZERO).with_duplicate(0.5), 3);
        frames(&mut l, 1000, Duration::from_micros(1));
        assert_eq!(drain(&mut l).len() as u64, 1000 + l.stats().duplicated);
        assert!(l.stats().duplicated > 400);

        let mut l = Link::new(LinkConfig::ideal(Duration::ZERO).with_corrupt(1.0), 4);
        let frame = vec![0u8; 100];
        l.send(Instant::ZERO, frame.clone());
        let got = l.recv(Instant::ZERO).unwrap();
        let flipped: u32 = got.iter().zip(&frame).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(flipped, 1, "exactly one bit");
    }

    /// An Ethernet/IPv4/TCP frame with `flags` and `payload` bytes of data.
    fn tcp_frame(flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[23] = 6;
        f[14 + 20 + 12] = 5 << 4;
        f[14 + 20 + 13] = flags;
        f
    }

    #[test]
    fn ack_loss_drops_only_pure_acks() {
        const ACK: u8 = 0x10;
        assert!(is_pure_ack(&tcp_frame(ACK, 0)));
        assert!(!is_pure_ack(&tcp_frame(ACK, 1)), "data");
        assert!(!is_pure_ack(&tcp_frame(ACK | 0x01, 0)), "FIN");
        assert!(!is_pure_ack(&tcp_frame(0x02, 0)), "SYN");
        assert!(!is_pure_ack(&tcp_frame(ACK | 0x02, 0)), "SYN-ACK");
        assert!(!is_pure_ack(&tcp_frame(ACK | 0x04, 0)), "RST");
        assert!(!is_pure_ack(&[0u8; 100]), "not IPv4");

        let mut l = Link::new(LinkConfig::ideal(Duration::ZERO).with_ack_loss(0.3), 8);
        for i in 0..10_000 {
            let frame = if i % 2 == 0 { tcp_frame(ACK, 0) } else { tcp_frame(ACK, 100) };
            l.send(Instant::ZERO, frame);
        }
        let out = drain(&mut l);
        let acks_lost = l.stats().acks_lost;
        assert!((1_300..1_700).contains(&acks_lost), "{acks_lost}");
        assert_eq!(l.stats().lost, 0);
        assert_eq!(out.iter().filter(|(_, f)| f.len() > 54).count(), 5_000, "every data segment arrives");
        assert_eq!(out.len() as u64, 10_000 - acks_lost);
    }

    #[test]
    fn ack_loss_leaves_the_other_faults_alone() {
        // The same seed with and without ack_loss: the frames that are not
        // pure ACKs meet exactly the same fate.
        let cfg = LinkConfig::ideal(Duration::from_millis(1)).with_loss(0.1).with_reorder(0.1, Duration::from_millis(2)).with_duplicate(0.1);
        let run = |cfg: LinkConfig| {
            let mut l = Link::new(cfg, 9);
            for i in 0..2_000u32 {
                let mut f = tcp_frame(0x10, 4);
                f[54..58].copy_from_slice(&i.to_be_bytes());
                l.send(Instant::ZERO + Duration::from_micros(10) * i, f);
                l.send(Instant::ZERO + Duration::from_micros(10) * i, tcp_frame(0x10, 0));
            }
            drain(&mut l).into_iter().filter(|(_, f)| f.len() > 54).collect::<Vec<_>>()
        };
        assert_eq!(run(cfg.clone()), run(cfg.with_ack_loss(0.5)));
    }

    #[test]
    fn bandwidth_and_queue() {
        // 1000 frames of 1500 B at 12 Mbit/s: 1 ms each, 1 s in all.
        let mut l = Link::new(LinkConfig::ideal(Duration::ZERO).with_bandwidth(12_000_000, usize::MAX), 5);
        for _ in 0..1000 {
            l.send(Instant::ZERO, vec![0u8; 1500]);
        }
        let out = drain(&mut l);
        assert_eq!(out.last().unwrap().0, Instant::from_secs(1));
        // A 15 KB queue holds ten frames; the rest of a burst is dropped.
        let mut l = Link::new(LinkConfig::ideal(Duration::ZERO).with_bandwidth(12_000_000, 15_000), 5);
        for _ in 0..100 {
            l.send(Instant::ZERO, vec![0u8; 1500]);
        }
        assert_eq!(l.stats().queue_dropped, 90);
    }
}
