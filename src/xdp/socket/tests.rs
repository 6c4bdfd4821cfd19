//! `XskQueue`'s frame ownership and ring logic over the fake kernel
//! (`fake.rs`): no root, no socket.

use std::collections::VecDeque;

use super::*;
use crate::xdp::fake::{FakeConfig, FakeRings, COPY_MODE_BATCH};

type Queue = XskQueue<FakeRings>;

fn queue(cfg: FakeConfig) -> Queue {
    queue_for(cfg, cfg.frame_size as usize)
}

/// A queue that sends frames of up to `max_frame` bytes: chains when that
/// is more than a frame (then `cfg.sg` must be on, as `open` binds it).
fn queue_for(cfg: FakeConfig, max_frame: usize) -> Queue {
    assert_eq!(max_frame > cfg.frame_size as usize, cfg.sg);
    let (rings, descs) = FakeRings::new(cfg);
    XskQueue::new(rings, descs, cfg.ring_size, 0, max_frame)
}

/// splitmix64: small, seeded, good enough to pick steps.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    /// 1..=max random bytes.
    fn payload(&mut self, max: usize) -> Vec<u8> {
        let len = 1 + self.below(max);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Every frame of the UMEM is in exactly one place, and `frames()` says
/// how many are where.
fn audit(q: &mut Queue, cfg: FakeConfig) {
    let p = q.umem.rings.kernel.places();
    let mut all: Vec<u64> = q.free.iter().map(|f| f.desc().addr).collect();
    for place in [&p.fill, &p.pool, &p.rx, &p.tx, &p.sending, &p.comp] {
        all.extend(place);
    }
    all.sort_unstable();
    let every: Vec<u64> = (0..u64::from(cfg.frames)).map(|i| i * u64::from(cfg.frame_size)).collect();
    assert_eq!(all, every, "a frame was lost or duplicated: {p:?}");
    let c = q.frames();
    assert!(c.ok(), "{c:?}");
    assert_eq!(c.total, cfg.frames as usize);
    assert_eq!(c.fill, p.fill.len() + p.pool.len(), "{c:?} {p:?}");
    assert_eq!(c.rx, p.rx.len(), "{c:?} {p:?}");
    assert_eq!(c.tx, p.tx.len() + p.sending.len(), "{c:?} {p:?}");
    assert_eq!(c.completion, p.comp.len(), "{c:?} {p:?}");
    assert_eq!(c.free, q.free.len());
    assert_eq!(c.held, 0);
}

/// Sends `payload` through `send_with`.
fn send(q: &mut Queue, payload: &[u8]) -> Option<bool> {
    q.send_with(|buf| {
        buf[..payload.len()].copy_from_slice(payload);
        Some(payload.len())
    })
}

/// Everything `recv` hands over, copied.
fn recv_all(q: &mut Queue, max: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let n = q.recv(max, |f| got.push(f.to_vec()));
    assert_eq!(n, got.len());
    got
}

/// Random rounds of the wire delivering, recv, send_with, flush, the
/// driver sending and completing on its own, and need_wakeup flipping.
/// After every step each frame is in exactly one place; at the end every
/// payload arrived intact and in order, both ways.
fn random_rounds(seed: u64, cfg: FakeConfig, steps: usize) {
    random_rounds_up_to(seed, cfg, cfg.frame_size as usize, steps)
}

/// `random_rounds` with frames of up to `max_frame` bytes both ways:
/// chains, with `cfg.sg`.
fn random_rounds_up_to(seed: u64, cfg: FakeConfig, max_frame: usize, steps: usize) {
    let mut rng = Rng(seed);
    let mut q = queue_for(cfg, max_frame);
    let fs = max_frame;
    let mut rx_expected: VecDeque<Vec<u8>> = VecDeque::new();
    let mut tx_expected: Vec<Vec<u8>> = Vec::new();
    let mut wire_checked = 0;
    let (mut received, mut queued_none) = (0usize, 0usize);
    for step in 0..steps {
        match rng.below(100) {
            0..=24 => {
                for _ in 0..rng.below(cfg.ring_size as usize * 2) {
                    let p = rng.payload(fs);
                    if q.umem.rings.kernel.receive(&p) {
                        rx_expected.push_back(p);
                    }
                }
            }
            25..=44 => {
                let max = rng.below(80);
                let got = recv_all(&mut q, max);
                assert!(got.len() <= max.min(RX_BATCH));
                for g in got {
                    assert_eq!(Some(g), rx_expected.pop_front(), "seed {seed} step {step}: RX payload");
                    received += 1;
                }
            }
            45..=74 => {
                for _ in 0..rng.below(40) {
                    let p = rng.payload(fs);
                    let nothing = rng.chance(10);
                    let mut called = false;
                    let r = q.send_with(|buf| {
                        called = true;
                        if nothing {
                            return None;
                        }
                        buf[..p.len()].copy_from_slice(&p);
                        Some(p.len())
                    });
                    match r {
                        Some(true) => tx_expected.push(p),
                        Some(false) => assert!(nothing),
                        None => {
                            assert!(!called, "send_with wrote a frame it could not queue");
                            queued_none += 1;
                            break;
                        }
                    }
                }
            }
            75..=89 => q.flush(),
            90..=94 => {
                let n = rng.below(COPY_MODE_BATCH * 2);
                q.umem.rings.kernel.send(n);
            }
            95..=97 => {
                let n = rng.below(COPY_MODE_BATCH * 2);
                q.umem.rings.kernel.complete(n);
            }
            _ => {
                let (fill, tx) = (rng.chance(50), rng.chance(50));
                q.umem.rings.kernel.set_need_wakeup(fill, tx);
            }
        }
        audit(&mut q, cfg);
        let wire = &q.umem.rings.kernel.wire;
        assert_eq!(wire[wire_checked..], tx_expected[wire_checked..wire.len()], "seed {seed} step {step}: TX payload");
        wire_checked = wire.len();
    }
    // Drain: everything queued goes out and comes back, everything
    // received is delivered.
    q.umem.rings.kernel.set_need_wakeup(true, true);
    for _ in 0..1000 {
        q.umem.rings.kernel.send(usize::MAX);
        q.umem.rings.kernel.complete(usize::MAX);
        q.flush();
        for g in recv_all(&mut q, RX_BATCH) {
            assert_eq!(Some(g), rx_expected.pop_front());
            received += 1;
        }
        if q.tx_in_flight == 0 && rx_expected.is_empty() {
            break;
        }
    }
    audit(&mut q, cfg);
    assert!(rx_expected.is_empty());
    assert_eq!(q.umem.rings.kernel.wire, tx_expected, "seed {seed}: TX payloads");
    let c = q.frames();
    assert_eq!((c.rx, c.tx, c.completion), (0, 0, 0));
    assert_eq!(c.fill + c.free, c.total);
    // The run went through full rings and empty free lists, not only the easy paths.
    assert!(received > steps / 8 && tx_expected.len() > steps / 8, "seed {seed}: {received} received, {} sent", tx_expected.len());
    assert!(queued_none > 0, "seed {seed}: never ran out of TX slots or frames");
    let k = &q.umem.rings.kernel;
    assert_eq!(k.split_chains, 0, "seed {seed}: a chain went on the TX ring in parts");
    if cfg.sg {
        // Chains both ways, some of them as long as the largest frame needs.
        let longest = max_frame.div_ceil(cfg.frame_size as usize);
        assert_eq!(k.longest_chain, longest, "seed {seed}");
        let s = q.stats();
        assert!(s.rx_chains > steps as u64 / 20 && s.tx_chains > steps as u64 / 20, "seed {seed}: {s:?}");
        assert_eq!(s.rx_chains_dropped, 0);
    }
}

#[test]
fn random_rounds_copy_mode_never_lose_or_duplicate_frames() {
    for seed in 1..=4 {
        let cfg = FakeConfig { start: u32::MAX - 1000 + seed as u32 * 77, ..FakeConfig::default() };
        random_rounds(seed, cfg, 5000);
    }
}

#[test]
fn random_rounds_with_late_completions_never_lose_or_duplicate_frames() {
    for seed in 11..=14 {
        let cfg = FakeConfig { deferred_completion: true, start: u32::MAX - 300, ..FakeConfig::default() };
        random_rounds(seed, cfg, 5000);
    }
}

#[test]
fn random_rounds_driver_sends_never_lose_or_duplicate_frames() {
    // Zero-copy-like: kicks only schedule, the driver sends when it runs.
    for seed in 21..=24 {
        let cfg = FakeConfig { copy_mode: false, frames: 40, ring_size: 8, start: u32::MAX - 5, ..FakeConfig::default() };
        random_rounds(seed, cfg, 5000);
    }
}

#[test]
fn full_tx_ring_returns_none_and_keeps_the_frame() {
    let cfg = FakeConfig { ring_size: 8, ..FakeConfig::default() };
    let mut q = queue(cfg);
    let free = q.frames().free;
    for i in 0..8u8 {
        assert_eq!(send(&mut q, &[i; 60]), Some(true));
    }
    let mut called = false;
    let r = q.send_with(|buf| {
        called = true;
        buf[0] = 9;
        Some(1)
    });
    assert_eq!(r, None);
    assert!(!called, "the frame would have been written and dropped");
    let c = q.frames();
    assert_eq!((c.free, c.tx), (free - 8, 8));
    audit(&mut q, cfg);
    q.flush();
    assert_eq!(q.frames().free, free);
    assert_eq!(send(&mut q, &[8; 60]), Some(true));
    q.flush();
    let wire = &q.umem.rings.kernel.wire;
    assert_eq!(wire.len(), 9);
    assert!(wire.iter().enumerate().all(|(i, f)| f[..] == [i as u8; 60][..]));
    audit(&mut q, cfg);
}

#[test]
fn no_free_frame_returns_none_and_counts() {
    let cfg = FakeConfig { frames: 8, ring_size: 16, deferred_completion: true, ..FakeConfig::default() };
    let mut q = queue(cfg);
    // Half the frames went to the fill ring, the rest are free.
    assert_eq!(q.frames().free, 4);
    for _ in 0..4 {
        assert_eq!(send(&mut q, b"x"), Some(true));
    }
    assert_eq!(send(&mut q, b"x"), None);
    assert_eq!(q.stats().tx_no_frame, 1);
    audit(&mut q, cfg);
}

#[test]
fn send_with_nothing_to_send_keeps_the_frame() {
    let cfg = FakeConfig::default();
    let mut q = queue(cfg);
    let before = q.frames();
    assert_eq!(q.send_with(|_| None), Some(false));
    assert_eq!(q.send_with(|_| Some(0)), Some(false));
    assert_eq!(q.frames(), before);
    q.flush();
    assert!(q.umem.rings.kernel.wire.is_empty());
    audit(&mut q, cfg);
}

#[test]
fn one_flush_drains_a_burst_over_32_with_several_kicks() {
    let cfg = FakeConfig { frames: 1024, ring_size: 256, ..FakeConfig::default() };
    let mut q = queue(cfg);
    let free = q.frames().free;
    for i in 0..100u32 {
        assert_eq!(send(&mut q, &i.to_be_bytes()), Some(true));
    }
    q.flush();
    // 32 + 32 + 32 + 4.
    assert_eq!(q.umem.rings.kernel.kicks, 4);
    assert_eq!(q.stats().kicks, 4);
    assert_eq!(q.umem.rings.kernel.wire.len(), 100);
    let c = q.frames();
    assert_eq!((c.tx, c.completion, c.free), (0, 0, free));
    audit(&mut q, cfg);

    // A full ring: eight kicks.
    for i in 0..256u32 {
        assert_eq!(send(&mut q, &i.to_be_bytes()), Some(true));
    }
    assert_eq!(send(&mut q, b"no room"), None);
    q.flush();
    assert_eq!(q.umem.rings.kernel.kicks, 12);
    assert_eq!(q.umem.rings.kernel.wire.len(), 356);
    assert_eq!(q.frames().free, free);
    audit(&mut q, cfg);
}

#[test]
fn flush_stops_kicking_when_the_kernel_takes_nothing() {
    // Zero-copy-like: a kick schedules the driver and the ring does not
    // move during the call, so one kick per flush.
    let cfg = FakeConfig { copy_mode: false, ring_size: 64, frames: 256, ..FakeConfig::default() };
    let mut q = queue(cfg);
    q.umem.rings.kernel.set_need_wakeup(true, true);
    for _ in 0..50 {
        send(&mut q, b"frame").unwrap();
    }
    q.flush();
    assert_eq!(q.umem.rings.kernel.kicks, 1);
    assert!(q.umem.rings.kernel.wire.is_empty());
    // Without need_wakeup set, no kick at all.
    q.umem.rings.kernel.set_need_wakeup(true, false);
    q.flush();
    assert_eq!(q.umem.rings.kernel.kicks, 1);
    q.umem.rings.kernel.send(usize::MAX);
    q.flush();
    assert_eq!(q.umem.rings.kernel.wire.len(), 50);
    assert_eq!(q.frames().tx_in_flight(), 0);
    audit(&mut q, cfg);
}

#[test]
fn completions_return_frames_to_the_free_list() {
    let cfg = FakeConfig { deferred_completion: true, ..FakeConfig::default() };
    let mut q = queue(cfg);
    let free = q.frames().free;
    for _ in 0..10 {
        send(&mut q, b"payload").unwrap();
    }
    q.flush();
    assert_eq!(q.umem.rings.kernel.wire.len(), 10);
    let c = q.frames();
    assert_eq!((c.tx, c.completion, c.free), (10, 0, free - 10));
    q.umem.rings.kernel.complete(4);
    let c = q.frames();
    assert_eq!((c.tx, c.completion, c.free), (6, 4, free - 10));
    audit(&mut q, cfg);
    q.flush();
    let c = q.frames();
    assert_eq!((c.tx, c.completion, c.free), (6, 0, free - 6));
    q.umem.rings.kernel.complete(6);
    q.flush();
    let c = q.frames();
    assert_eq!((c.tx, c.completion, c.free), (0, 0, free));
    audit(&mut q, cfg);
}

#[test]
fn ring_indices_wrap_around() {
    // Four-slot RX/TX rings whose indices start just below u32::MAX: both
    // the slot index and the u32 index itself wrap, many times over.
    let start = u32::MAX - 2;
    let cfg = FakeConfig { frames: 16, ring_size: 4, start, ..FakeConfig::default() };
    let mut q = queue(cfg);
    let mut rng = Rng(7);
    let mut sent = Vec::new();
    for _ in 0..500 {
        let burst: Vec<Vec<u8>> = (0..1 + rng.below(4)).map(|_| rng.payload(cfg.frame_size as usize)).collect();
        for p in &burst {
            assert!(q.umem.rings.kernel.receive(p));
        }
        assert_eq!(recv_all(&mut q, 64), burst);
        for p in &burst {
            assert_eq!(send(&mut q, p), Some(true));
            sent.push(p.clone());
        }
        q.flush();
        audit(&mut q, cfg);
    }
    let rx_index = q.umem.rings.kernel.rx_producer();
    assert!(rx_index < start && rx_index > 500, "RX index {rx_index} did not wrap");
    assert_eq!(q.umem.rings.kernel.wire, sent);
}

#[test]
fn payloads_arrive_intact_both_ways() {
    let cfg = FakeConfig { frames: 32, frame_size: 2048, ring_size: 8, ..FakeConfig::default() };
    let mut q = queue(cfg);
    // Longest first, so shorter frames land on frames holding old bytes:
    // recv must show exactly the received length.
    let lens = [2048usize, 1500, 1, 60, 2047, 7, 1024, 2];
    let mut rng = Rng(99);
    for round in 0..4 {
        let rx: Vec<Vec<u8>> = lens.iter().map(|&n| (0..n).map(|_| rng.next() as u8).collect()).collect();
        for p in &rx {
            assert!(q.umem.rings.kernel.receive(p), "round {round}");
        }
        assert_eq!(recv_all(&mut q, 64), rx);
        // Echo them back, written in place by send_with.
        let before = q.umem.rings.kernel.wire.len();
        for p in &rx {
            assert_eq!(send(&mut q, p), Some(true));
        }
        q.flush();
        assert_eq!(q.umem.rings.kernel.wire[before..], rx[..]);
        audit(&mut q, cfg);
    }
}

#[test]
fn recv_gives_frames_back_to_the_fill_ring_and_wakes_it_when_asked() {
    let cfg = FakeConfig::default();
    let mut q = queue(cfg);
    let posted = q.frames().fill;
    assert_eq!(posted, cfg.ring_size as usize);
    for _ in 0..5 {
        assert!(q.umem.rings.kernel.receive(b"hello"));
    }
    let c = q.frames();
    assert_eq!((c.fill, c.rx), (posted - 5, 5));
    assert_eq!(recv_all(&mut q, 3).len(), 3);
    assert_eq!(q.umem.rings.fill_wakeups, 1);
    let c = q.frames();
    assert_eq!((c.fill, c.rx), (posted - 2, 2));
    q.umem.rings.kernel.set_need_wakeup(false, true);
    assert_eq!(recv_all(&mut q, 64).len(), 2);
    assert_eq!(q.umem.rings.fill_wakeups, 1);
    assert_eq!(q.frames().fill, posted);
    assert_eq!(q.stats().rx_frames, 5);
    audit(&mut q, cfg);
}

#[test]
fn an_empty_fill_ring_drops_in_the_kernel_and_loses_no_frame() {
    let cfg = FakeConfig { frames: 64, ring_size: 8, ..FakeConfig::default() };
    let mut q = queue(cfg);
    // 8 frames are posted: the 9th of a burst finds the fill ring empty.
    for _ in 0..8 {
        assert!(q.umem.rings.kernel.receive(b"x"));
    }
    assert!(!q.umem.rings.kernel.receive(b"x"));
    assert_eq!(q.umem.rings.kernel.fill_ring_empty, 1);
    audit(&mut q, cfg);
    assert_eq!(recv_all(&mut q, 1), vec![b"x".to_vec()]);
    assert!(q.umem.rings.kernel.receive(b"y"));
    audit(&mut q, cfg);
    assert_eq!(recv_all(&mut q, 64).len(), 8);
    assert_eq!(q.frames().fill, 8);
    audit(&mut q, cfg);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "UMEM frames do not add up")]
fn a_frame_completed_twice_trips_the_debug_check() {
    let cfg = FakeConfig { deferred_completion: true, ..FakeConfig::default() };
    let mut q = queue(cfg);
    send(&mut q, b"one").unwrap();
    q.flush();
    let addr = q.free[0].desc().addr;
    q.umem.rings.kernel.complete(1);
    q.umem.rings.kernel.bogus_completion(addr);
    q.flush();
}

/// Owned frames: replies are written into lent TX frames while the
/// received frame is still held and read, which stays intact; when frames
/// run out no frame is lent; no frame is lost or duplicated.
#[test]
fn replies_in_place_while_reading() {
    let cfg = FakeConfig { frames: 48, ring_size: 16, start: u32::MAX - 20, ..FakeConfig::default() };
    let mut rng = Rng(77);
    let mut q = queue(cfg);
    let fs = cfg.frame_size as usize;
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let (mut refused, mut seen) = (0, 0);
    for round in 0..200 {
        let mut expected: VecDeque<Vec<u8>> = VecDeque::new();
        for _ in 0..rng.below(20) {
            let p = rng.payload(fs);
            if q.umem.rings.kernel.receive(&p) {
                expected.push_back(p);
            }
        }
        let mut rx = Vec::new();
        q.recv_frames(RX_BATCH, &mut rx);
        for frame in rx {
            let want = expected.pop_front().expect("a frame we put on the wire");
            assert_eq!(q.rx_bytes(&frame), &want[..], "round {round}: RX payload");
            let reply: Vec<u8> = q.rx_bytes(&frame).iter().rev().map(|b| b ^ 0x5a).collect();
            match q.lend_tx() {
                Some(mut tx) => {
                    tx.as_mut()[..reply.len()].copy_from_slice(&reply);
                    assert!(q.submit(tx, reply.len()), "a lent frame always goes");
                    replies.push(reply);
                }
                None => refused += 1,
            }
            // Writing the reply left the received frame as it was.
            assert_eq!(q.rx_bytes(&frame), &want[..], "round {round}: RX frame changed under a TX write");
            assert!(q.frames().held >= 1 && q.frames().ok());
            q.release(frame);
            seen += 1;
        }
        assert!(expected.is_empty());
        audit(&mut q, cfg);
        if rng.chance(50) {
            q.umem.rings.kernel.send(rng.below(COPY_MODE_BATCH));
            q.umem.rings.kernel.complete(rng.below(COPY_MODE_BATCH));
            q.flush();
            audit(&mut q, cfg);
        }
    }
    q.umem.rings.kernel.set_need_wakeup(true, true);
    for _ in 0..100 {
        q.umem.rings.kernel.send(usize::MAX);
        q.umem.rings.kernel.complete(usize::MAX);
        q.flush();
    }
    audit(&mut q, cfg);
    assert_eq!(q.umem.rings.kernel.wire, replies);
    assert!(seen > 500 && replies.len() > 100 && refused > 0, "seen {seen}, sent {}, refused {refused}", replies.len());
}

// ---- multi-buffer (XDP_USE_SG) ----------------------------------------

/// Random rounds with frames of up to 4.5 frames' worth: chains both ways,
/// RX batches that end inside chains, a TX ring often too full for a
/// chain, indices that wrap.
#[test]
fn random_rounds_with_chains_never_lose_split_or_duplicate() {
    for seed in 31..=34 {
        let cfg = FakeConfig { sg: true, frames: 96, start: u32::MAX - 200 + seed as u32, ..FakeConfig::default() };
        random_rounds_up_to(seed, cfg, 256 * 4 + 128, 5000);
    }
    for seed in 35..=36 {
        let cfg = FakeConfig { sg: true, deferred_completion: true, frames: 96, ..FakeConfig::default() };
        random_rounds_up_to(seed, cfg, 256 * 3, 5000);
    }
    for seed in 37..=38 {
        let cfg = FakeConfig { sg: true, copy_mode: false, frames: 80, ring_size: 8, ..FakeConfig::default() };
        random_rounds_up_to(seed, cfg, 256 * 2 + 1, 5000);
    }
}

fn sg_cfg() -> FakeConfig {
    FakeConfig { sg: true, frames: 64, frame_size: 256, ring_size: 16, ..FakeConfig::default() }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn a_chain_split_across_rx_batches_is_handed_over_whole() {
    let cfg = sg_cfg();
    let mut q = queue_for(cfg, 1000);
    let big = pattern(1000, 1); // four frames: 256 + 256 + 256 + 232
    assert!(q.umem.rings.kernel.receive(&big));
    assert!(q.umem.rings.kernel.receive(b"small"));
    assert_eq!(q.frames().rx, 5);
    // The first batch ends two frames into the chain: nothing yet, and
    // those two frames are back on the fill ring already.
    assert!(recv_all(&mut q, 2).is_empty());
    let c = q.frames();
    assert_eq!((c.rx, c.fill), (3, cfg.ring_size as usize - 3));
    audit(&mut q, cfg);
    assert_eq!(recv_all(&mut q, 64), vec![big.clone(), b"small".to_vec()]);
    let s = q.stats();
    assert_eq!((s.rx_frames, s.rx_chains, s.rx_largest), (5, 1, 1000));
    audit(&mut q, cfg);
    // One descriptor at a time works too.
    assert!(q.umem.rings.kernel.receive(&big));
    for _ in 0..3 {
        assert!(recv_all(&mut q, 1).is_empty());
    }
    assert_eq!(recv_all(&mut q, 1), vec![big]);
    assert_eq!(q.frames().fill, cfg.ring_size as usize);
    audit(&mut q, cfg);
}

#[test]
fn a_single_frame_packet_is_handed_over_in_place() {
    let cfg = sg_cfg();
    let mut q = queue_for(cfg, 1000);
    assert!(q.umem.rings.kernel.receive(&pattern(256, 2)));
    assert!(q.umem.rings.kernel.receive(&pattern(257, 3)));
    let mut in_place = Vec::new();
    let umem = q.umem.rings.umem_range();
    q.recv(64, |f| in_place.push(umem.contains(&(f.as_ptr() as usize))));
    // A full frame is no chain: read where the kernel wrote it. The
    // 257-byte one is a chain, read from the scratch copy.
    assert_eq!(in_place, [true, false]);
    audit(&mut q, cfg);
}

#[test]
fn a_chain_waits_for_room_for_the_longest_chain_and_goes_out_whole() {
    // TX ring of 8; frames of up to 4 frames' worth, so a send needs 4 slots.
    let cfg = FakeConfig { ring_size: 8, deferred_completion: true, ..sg_cfg() };
    let mut q = queue_for(cfg, 256 * 4);
    for i in 0..5u8 {
        assert_eq!(send(&mut q, &[i; 60]), Some(true));
    }
    // Three slots left: no send, not even a small one, and `f` is not called.
    let mut called = false;
    assert_eq!(
        q.send_with(|_| {
            called = true;
            Some(1)
        }),
        None
    );
    assert!(!called);
    audit(&mut q, cfg);
    q.flush(); // the kernel takes all five off the ring
    let big = pattern(256 * 4, 9);
    assert_eq!(send(&mut q, &big), Some(true));
    assert_eq!(send(&mut q, &big[..300]), Some(true));
    let c = q.frames();
    assert_eq!(c.tx, 5 + 4 + 2);
    audit(&mut q, cfg);
    q.flush();
    let k = &q.umem.rings.kernel;
    assert_eq!(k.wire.len(), 7);
    assert_eq!(k.wire[5], big);
    assert_eq!(k.wire[6], big[..300]);
    assert_eq!((k.split_chains, k.longest_chain), (0, 4));
    let s = q.stats();
    assert_eq!((s.tx_frames, s.tx_chains, s.tx_largest), (11, 2, 1024));
    q.umem.rings.kernel.complete(usize::MAX);
    q.flush();
    assert_eq!(q.frames().tx_in_flight(), 0);
    audit(&mut q, cfg);
}

#[test]
fn a_chain_needs_free_frames_for_the_longest_chain() {
    // 16 frames: 8 on the fill ring, 8 free; chains of up to 3.
    let cfg = FakeConfig { frames: 16, ring_size: 16, deferred_completion: true, ..sg_cfg() };
    let mut q = queue_for(cfg, 700);
    assert_eq!(q.frames().free, 8);
    assert_eq!(send(&mut q, &pattern(700, 1)), Some(true));
    assert_eq!(send(&mut q, &pattern(600, 2)), Some(true));
    // Two free frames: not enough for a chain of three, whatever the size.
    assert_eq!(q.frames().free, 2);
    assert_eq!(send(&mut q, b"x"), None);
    assert_eq!(q.stats().tx_no_frame, 1);
    audit(&mut q, cfg);
    q.flush();
    q.umem.rings.kernel.complete(usize::MAX);
    q.flush();
    assert_eq!(send(&mut q, b"x"), Some(true));
    q.flush();
    assert_eq!(q.umem.rings.kernel.wire, vec![pattern(700, 1), pattern(600, 2), b"x".to_vec()]);
    audit(&mut q, cfg);
}

#[test]
fn an_overlong_rx_chain_is_dropped_and_the_next_packet_arrives() {
    let cfg = FakeConfig { sg: true, frames: 64, frame_size: 4096, ring_size: 32, ..FakeConfig::default() };
    let mut q = queue_for(cfg, 9014);
    let huge = pattern(RX_MAX + 1, 5); // 17 frames
    assert!(q.umem.rings.kernel.receive(&huge));
    assert!(q.umem.rings.kernel.receive(&pattern(9014, 6)));
    assert_eq!(recv_all(&mut q, 10), Vec::<Vec<u8>>::new());
    assert_eq!(recv_all(&mut q, 64), vec![pattern(9014, 6)]);
    let s = q.stats();
    assert_eq!((s.rx_chains_dropped, s.rx_chains), (1, 1));
    audit(&mut q, cfg);
}

#[test]
fn queue_config_follows_the_mtu() {
    let q = QueueConfig::for_mtu(1500);
    assert_eq!((q.frame_size, q.frame_capacity(), q.multi_buffer()), (2048, 1792, false));
    // The largest MTU whose frames fit one 2048-byte frame.
    assert!(!QueueConfig::for_mtu(1778).multi_buffer());
    // Above it, 4096-byte frames: one still holds a full frame up to MTU
    // 3826, chains beyond.
    let q = QueueConfig::for_mtu(1779);
    assert_eq!((q.frame_size, q.multi_buffer()), (4096, false));
    assert!(!QueueConfig::for_mtu(3826).multi_buffer());
    assert!(QueueConfig::for_mtu(3827).multi_buffer());
    let q = QueueConfig::for_mtu(9000);
    assert_eq!((q.frame_size, q.frame_capacity(), q.multi_buffer()), (4096, 3840, true));
    assert_eq!((9000 + 14usize).div_ceil(q.frame_capacity()), 3);
}

// ---- owned frames ------------------------------------------------------

/// Lent TX frames keep their TX ring slots: however many are lent, each
/// submits, and the ring never takes more than it has room for.
#[test]
fn lent_frames_keep_their_ring_slots_and_always_submit() {
    let cfg = FakeConfig { frames: 64, ring_size: 8, copy_mode: false, ..FakeConfig::default() };
    let mut q = queue(cfg);
    let mut lent = Vec::new();
    while let Some(tx) = q.lend_tx() {
        lent.push(tx);
    }
    assert_eq!(lent.len(), 8, "one per TX ring slot");
    assert_eq!(q.frames().held, 8);
    assert!(q.frames().ok());
    assert_eq!(q.send_with(|_| unreachable!("no slot left")), None);
    for (i, mut tx) in lent.into_iter().enumerate() {
        tx.as_mut()[0] = i as u8;
        assert!(q.submit(tx, 1 + i));
    }
    assert_eq!(q.frames().held, 0);
    q.umem.rings.kernel.send(usize::MAX);
    let wire: Vec<(u8, usize)> = q.umem.rings.kernel.wire.iter().map(|f| (f[0], f.len())).collect();
    assert_eq!(wire, (0..8).map(|i| (i as u8, 1 + i)).collect::<Vec<_>>());
    q.flush();
    audit(&mut q, cfg);
}

/// A lent frame given back, or submitted with length 0, is free again.
#[test]
fn given_back_frames_are_free_again() {
    let cfg = FakeConfig::default();
    let mut q = queue(cfg);
    let a = q.lend_tx().unwrap();
    let b = q.lend_tx().unwrap();
    assert_eq!(q.frames().held, 2);
    q.give_back(a);
    assert!(!q.submit(b, 0));
    assert!(q.umem.rings.kernel.wire.is_empty());
    audit(&mut q, cfg);
}

/// Received frames held past a `recv_frames` are counted as held, and go
/// back to the fill ring when released.
#[test]
fn held_rx_frames_are_counted_until_released() {
    let cfg = FakeConfig::default();
    let mut q = queue(cfg);
    for i in 0..5u8 {
        assert!(q.umem.rings.kernel.receive(&[i; 20]));
    }
    let mut rx = Vec::new();
    assert_eq!(q.recv_frames(RX_BATCH, &mut rx), 5);
    let c = q.frames();
    assert_eq!((c.held, c.ok()), (5, true));
    let fill_before = c.fill;
    let mut held = rx.split_off(2);
    for f in rx {
        q.release(f);
    }
    q.flush();
    assert_eq!((q.frames().held, q.frames().fill), (3, fill_before + 2));
    for (i, f) in held.drain(..).enumerate() {
        assert_eq!(q.rx_bytes(&f), &[2 + i as u8; 20]);
        q.release(f);
    }
    q.flush();
    audit(&mut q, cfg);
}

/// A frame of one queue given to another is refused, loudly.
#[test]
#[should_panic(expected = "a frame of another UMEM")]
fn a_frame_of_another_queue_is_refused() {
    let cfg = FakeConfig::default();
    let mut a = queue(cfg);
    let mut b = queue(cfg);
    let tx = a.lend_tx().unwrap();
    b.submit(tx, 10);
}

/// On a multi-buffer queue lent frames are scratch buffers of MTU + 14
/// bytes, each keeping room for the longest chain; submitted, they go out
/// whole, as chains where they need one.
#[test]
fn multi_buffer_lent_frames_go_out_as_chains() {
    let cfg = FakeConfig { frames: 64, ring_size: 16, copy_mode: false, ..sg_cfg() };
    let max = cfg.frame_size as usize * 3;
    let mut q = queue_for(cfg, max);
    let mut lent = Vec::new();
    while let Some(tx) = q.lend_tx() {
        lent.push(tx);
    }
    assert_eq!(lent.len(), 16 / 3, "each keeps three TX slots");
    assert!(lent.iter().all(|t| t.as_ref().len() == max));
    assert_eq!(q.frames().held, 0, "scratch frames hold no UMEM frame");
    let sent: Vec<Vec<u8>> = (0..lent.len()).map(|i| pattern(1 + i * (max - 1) / 4, i as u8)).collect();
    for (mut tx, p) in lent.into_iter().zip(&sent) {
        tx.as_mut()[..p.len()].copy_from_slice(p);
        assert!(q.submit(tx, p.len()));
    }
    q.umem.rings.kernel.send(usize::MAX);
    assert_eq!(q.umem.rings.kernel.wire, sent);
    assert_eq!(q.umem.rings.kernel.split_chains, 0);
    q.flush();
    audit(&mut q, cfg);
}

/// Received chains held past their batch use reassembly buffers; when all
/// are in use, further chains are dropped and counted, and single-frame
/// packets still arrive.
#[test]
fn chains_beyond_the_reassembly_buffers_are_dropped_and_counted() {
    let cfg = FakeConfig { frames: 512, ring_size: 256, ..sg_cfg() };
    let fs = cfg.frame_size as usize;
    let mut q = queue_for(cfg, fs * 2);
    let mut held = Vec::new();
    let mut kept = 0;
    for round in 0..4u8 {
        for k in 0..20u8 {
            assert!(q.umem.rings.kernel.receive(&pattern(fs + 10, round * 20 + k)));
        }
        let mut rx = Vec::new();
        while q.recv_frames(RX_BATCH, &mut rx) > 0 {}
        for f in &rx {
            assert_eq!(q.rx_bytes(f), &pattern(fs + 10, round * 20 + kept as u8 % 20)[..], "in order");
            kept += 1;
        }
        kept = 0;
        held.extend(rx);
    }
    let buffers = RX_BATCH / 2 + 2;
    assert_eq!(held.len(), buffers);
    assert_eq!(q.stats().rx_chains_dropped as usize, 80 - buffers);
    assert!(q.umem.rings.kernel.receive(b"small"));
    assert_eq!(recv_all(&mut q, RX_BATCH), vec![b"small".to_vec()]);
    for f in held {
        q.release(f);
    }
    assert!(q.umem.rings.kernel.receive(&pattern(fs + 1, 9)));
    assert_eq!(recv_all(&mut q, RX_BATCH), vec![pattern(fs + 1, 9)]);
    audit(&mut q, cfg);
}
