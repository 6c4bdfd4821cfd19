//! TX frames lent by the runtime to the shard, one loop iteration at a time.
//!
//! The send path runs one way: the runtime takes free frames from its UMEM
//! and [`TxBatch::lend`]s them before it hands the shard an RX batch; the
//! shard (its control frames, the engine's segments, the application's
//! `Conn::send_with`) writes whole Ethernet frames into them with
//! [`TxBatch::fill`]; afterwards the runtime takes the filled ones with
//! [`TxBatch::drain_filled`] and submits them to its TX ring. The shard
//! never calls back into the runtime, and at every line one party owns each
//! frame: lent frames belong to the batch, drained ones to the runtime.
//!
//! `F` is whatever the runtime's frames are (a UMEM frame in the datapath, a
//! `Vec<u8>` in the simulator and tests); the shard only needs its bytes.
//! The batch's two lists keep their capacity, so lending and filling
//! allocate nothing once they have grown to the batch size.

/// Free frames lent to the shard and the frames it filled.
#[derive(Debug)]
pub struct TxBatch<F> {
    free: Vec<F>,
    filled: Vec<(F, usize)>,
}

impl<F> Default for TxBatch<F> {
    fn default() -> Self {
        TxBatch { free: Vec::new(), filled: Vec::new() }
    }
}

impl<F: AsMut<[u8]>> TxBatch<F> {
    /// A batch with room for `frames` lent frames (and as many filled ones)
    /// before either list grows.
    pub fn with_capacity(frames: usize) -> Self {
        TxBatch { free: Vec::with_capacity(frames), filled: Vec::with_capacity(frames) }
    }

    /// Lends one free frame to the shard.
    pub fn lend(&mut self, frame: F) {
        self.free.push(frame);
    }

    /// Free frames the shard may still fill.
    pub fn free_len(&self) -> usize {
        self.free.len()
    }

    /// Frames filled and not drained yet.
    pub fn filled_len(&self) -> usize {
        self.filled.len()
    }

    /// Lets `f` write one whole Ethernet frame into a free frame. If `f`
    /// returns a length above 0 the frame is kept as filled (to be sent
    /// with that length), else it stays free. Returns false, without
    /// calling `f`, when no frame is free.
    pub fn fill(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> bool {
        let Some(mut frame) = self.free.pop() else { return false };
        let n = f(frame.as_mut());
        if n > 0 {
            self.filled.push((frame, n));
        } else {
            self.free.push(frame);
        }
        true
    }

    /// The filled frames with their lengths, in the order they were filled:
    /// the runtime submits them.
    pub fn drain_filled(&mut self) -> std::vec::Drain<'_, (F, usize)> {
        self.filled.drain(..)
    }

    /// The frames still free, for the runtime to take back.
    pub fn drain_free(&mut self) -> std::vec::Drain<'_, F> {
        self.free.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_keeps_written_frames_in_order_and_returns_unused_ones() {
        let mut b: TxBatch<Vec<u8>> = TxBatch::with_capacity(4);
        assert!(!b.fill(|_| unreachable!("no frame lent")));
        b.lend(vec![0; 64]);
        b.lend(vec![0; 64]);
        assert!(b.fill(|buf| {
            buf[0] = 1;
            10
        }));
        assert!(b.fill(|_| 0), "a frame was free, even if nothing was written");
        assert_eq!((b.free_len(), b.filled_len()), (1, 1));
        assert!(b.fill(|buf| {
            buf[0] = 2;
            20
        }));
        assert!(!b.fill(|_| 1));
        let out: Vec<(u8, usize)> = b.drain_filled().map(|(f, n)| (f[0], n)).collect();
        assert_eq!(out, vec![(1, 10), (2, 20)]);
        assert_eq!(b.drain_free().count(), 0);
    }
}
