//! The hand-off between workers: a frame that matches no connection on the
//! core that received it goes straight to the core that owns its tuple
//! (`Verdict::Forward { core }`), which handles it as the last hop.
//!
//! One lane per ordered pair of workers (from, to), each used by one
//! producer thread and one consumer thread. A lane is a fixed set of
//! preallocated buffers moving between two bounded lock-free queues:
//! `free` (empty buffers, the producer's to take) and `full` (filled ones
//! with their lengths, in the order they were sent, the consumer's to
//! take). Sending copies the frame into a free buffer; receiving lends the
//! filled buffer to the caller and puts it back on `free`. Buffers only
//! move, so nothing is allocated per frame and a lane's memory is fixed
//! when it is made: `slots × frame_len` bytes.
//!
//! When a lane has no free buffer (the owner is slower than the flood) or
//! the frame is longer than a buffer, the frame is dropped and counted
//! ([`Handoff::drops`]): a peer flooding unmatched segments costs bounded
//! memory and, at worst, the segments TCP would retransmit anyway.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

/// Buffers per lane by default: a few RX batches' worth.
pub const SLOTS: usize = 256;
/// Bytes per buffer by default: a full frame at MTU 1500.
pub const FRAME_LEN: usize = 1514;

/// One (from, to) lane: buffers free for the producer and full ones for
/// the consumer. Every buffer is on exactly one of the two queues, or in
/// the hands of the one thread that took it.
struct Lane {
    free: ArrayQueue<Box<[u8]>>,
    full: ArrayQueue<(Box<[u8]>, usize)>,
}

impl Lane {
    fn new(slots: usize, frame_len: usize) -> Lane {
        let free = ArrayQueue::new(slots.max(1));
        for _ in 0..slots.max(1) {
            let _ = free.push(vec![0u8; frame_len].into_boxed_slice());
        }
        Lane { free, full: ArrayQueue::new(slots.max(1)) }
    }
}

/// How a worker reaches the others: one outgoing lane per other worker
/// and one incoming lane from each.
pub struct Handoff {
    /// Lanes to each worker by index (none to this one).
    out: Vec<Option<Arc<Lane>>>,
    /// Lanes from the other workers.
    inbox: Vec<Arc<Lane>>,
    /// Workers in all.
    pub workers: u8,
    drops: u64,
    sent: u64,
}

impl Handoff {
    /// The hand-offs of `n` workers with the default lanes ([`SLOTS`]
    /// buffers of [`FRAME_LEN`] bytes): one `Handoff` per worker, in order.
    pub fn ring(n: usize) -> Vec<Handoff> {
        Handoff::ring_sized(n, SLOTS, FRAME_LEN)
    }

    /// The hand-offs of `n` workers, each lane `slots` buffers of
    /// `frame_len` bytes (at least the link's MTU + 14, or longer frames
    /// are dropped). Allocates every lane now: `n × (n − 1)` of them.
    pub fn ring_sized(n: usize, slots: usize, frame_len: usize) -> Vec<Handoff> {
        // lanes[from][to]
        let lanes: Vec<Vec<Option<Arc<Lane>>>> =
            (0..n).map(|from| (0..n).map(|to| (from != to).then(|| Arc::new(Lane::new(slots, frame_len)))).collect()).collect();
        (0..n)
            .map(|i| Handoff {
                out: lanes[i].clone(),
                inbox: (0..n).filter_map(|from| lanes[from][i].clone()).collect(),
                workers: n as u8,
                drops: 0,
                sent: 0,
            })
            .collect()
    }

    /// Copies `frame` into a free buffer of the lane to `core`. False, and
    /// counted as a drop, if that lane has no free buffer or the frame does
    /// not fit one; false, uncounted, if there is no such core (or it is
    /// this one).
    pub fn send(&mut self, core: u16, frame: &[u8]) -> bool {
        let Some(Some(lane)) = self.out.get(usize::from(core)) else { return false };
        let Some(mut buf) = lane.free.pop() else {
            self.drops += 1;
            return false;
        };
        if frame.len() > buf.len() {
            let _ = lane.free.push(buf);
            self.drops += 1;
            return false;
        }
        buf[..frame.len()].copy_from_slice(frame);
        // Cannot fail: a lane's queues each hold every one of its buffers.
        if let Err((buf, _)) = lane.full.push((buf, frame.len())) {
            let _ = lane.free.push(buf);
            self.drops += 1;
            return false;
        }
        self.sent += 1;
        true
    }

    /// Hands every frame waiting for this worker to `f`, lane by lane, each
    /// lane in the order it was sent, and frees its buffer. Returns how many.
    pub fn recv(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        for lane in &self.inbox {
            while let Some((buf, len)) = lane.full.pop() {
                f(&buf[..len]);
                n += 1;
                let _ = lane.free.push(buf);
            }
        }
        n
    }

    /// Frames dropped because a lane was full or the frame too long.
    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// Frames handed to another worker.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u32) -> Vec<u8> {
        let mut f = i.to_be_bytes().to_vec();
        f.resize(4 + (i as usize % 9), i as u8);
        f
    }

    #[test]
    fn frames_arrive_in_order_at_the_owner_only() {
        let mut hs = Handoff::ring_sized(3, 8, 64);
        for i in 0..5 {
            assert!(hs[0].send(2, &frame(i)));
        }
        assert!(!hs[0].send(0, &frame(9)), "no lane to itself");
        assert!(!hs[0].send(7, &frame(9)), "no such worker");
        let mut got = Vec::new();
        assert_eq!(hs[1].recv(|f| got.push(f.to_vec())), 0);
        assert_eq!(hs[2].recv(|f| got.push(f.to_vec())), 5);
        assert_eq!(got, (0..5).map(frame).collect::<Vec<_>>());
        assert_eq!((hs[0].sent(), hs[0].drops()), (5, 0));
    }

    #[test]
    fn a_full_lane_drops_and_counts_and_keeps_what_it_had() {
        let mut hs = Handoff::ring_sized(2, 4, 64);
        let sent: Vec<bool> = (0..7).map(|i| hs[1].send(0, &frame(i))).collect();
        assert_eq!(sent, [true, true, true, true, false, false, false]);
        assert_eq!(hs[1].drops(), 3);
        let mut got = Vec::new();
        hs[0].recv(|f| got.push(f.to_vec()));
        assert_eq!(got, (0..4).map(frame).collect::<Vec<_>>());
        // The buffers are back: the lane takes frames again.
        assert!(hs[1].send(0, &frame(7)));
        assert_eq!(hs[1].drops(), 3);
    }

    #[test]
    fn a_frame_longer_than_a_buffer_is_dropped_and_counted() {
        let mut hs = Handoff::ring_sized(2, 4, 16);
        assert!(hs[0].send(1, &[1; 16]));
        assert!(!hs[0].send(1, &[2; 17]));
        assert_eq!(hs[0].drops(), 1);
        let mut lens = Vec::new();
        hs[1].recv(|f| lens.push(f.len()));
        assert_eq!(lens, [16]);
    }

    #[test]
    fn lanes_wrap_around_many_times_in_order() {
        let mut hs = Handoff::ring_sized(2, 3, 32);
        let (mut next_sent, mut next_got) = (0u32, 0u32);
        for round in 0..1000u32 {
            for _ in 0..(1 + round % 3) {
                assert!(hs[0].send(1, &frame(next_sent)));
                next_sent += 1;
            }
            hs[1].recv(|f| {
                assert_eq!(f, &frame(next_got)[..]);
                next_got += 1;
            });
        }
        assert_eq!(next_got, next_sent);
        assert_eq!(hs[0].drops(), 0);
    }

    #[test]
    fn two_threads_flood_one_lane_without_loss_beyond_the_counted_drops() {
        let mut hs = Handoff::ring_sized(2, 16, 32);
        let mut consumer = hs.pop().unwrap();
        let mut producer = hs.pop().unwrap();
        const N: u32 = 100_000;
        let t = std::thread::spawn(move || {
            for i in 0..N {
                producer.send(1, &frame(i));
            }
            producer
        });
        let mut got = Vec::new();
        let mut last: Option<u32> = None;
        let mut take = |consumer: &mut Handoff, got: &mut Vec<u32>| {
            consumer.recv(|f| {
                let i = u32::from_be_bytes(f[..4].try_into().unwrap());
                assert_eq!(f, &frame(i)[..]);
                assert!(last.is_none_or(|l| i > l), "out of order");
                last = Some(i);
                got.push(i);
            })
        };
        while !t.is_finished() {
            take(&mut consumer, &mut got);
        }
        let producer = t.join().unwrap();
        take(&mut consumer, &mut got);
        assert_eq!(got.len() as u64 + producer.drops(), u64::from(N));
        assert_eq!(producer.sent(), got.len() as u64);
    }
}
