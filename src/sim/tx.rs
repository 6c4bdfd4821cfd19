//! TX frames for a shard in the simulator: what the runtime lends a shard
//! from its UMEM during a receive batch, here a [`TxBatch`] of scratch
//! frames whose filled ones go onto a link. Lets deterministic tests run
//! `Conn::send_with`'s direct path (application bytes written into the
//! frame), and its fallback when no frame is free (`budget`).

use crate::sim::link::Link;
use crate::stack::TxBatch;
use crate::time::Instant;

/// The most frames lent for one call: a runtime's TX batch.
pub const MAX_LENT: usize = 64;

/// Frames a shard fills during one call, sent on `link` at `now` by
/// [`LinkFrames::flush`] (or when dropped).
pub struct LinkFrames<'a> {
    link: &'a mut Link,
    now: Instant,
    batch: TxBatch<Vec<u8>>,
    /// Frames filled and sent.
    pub sent: usize,
}

impl<'a> LinkFrames<'a> {
    /// `budget` frames of `frame_size` bytes (a UMEM frame; 2048 in
    /// xdptcp), holding stale bytes as a UMEM frame does; at most
    /// [`MAX_LENT`] (`usize::MAX`: as many as a runtime lends).
    pub fn new(link: &'a mut Link, now: Instant, frame_size: usize, budget: usize) -> Self {
        let budget = budget.min(MAX_LENT);
        let mut batch = TxBatch::with_capacity(budget);
        for _ in 0..budget {
            batch.lend(vec![0xa5; frame_size]);
        }
        LinkFrames { link, now, batch, sent: 0 }
    }

    /// The batch to lend the shard (`Shard::handle_frame_tx`,
    /// `Shard::with_conn_tx`, `Shard::poll_transmit_into`).
    pub fn batch(&mut self) -> &mut TxBatch<Vec<u8>> {
        &mut self.batch
    }

    /// Sends the frames filled so far, in order; returns how many frames
    /// were sent in all.
    pub fn flush(&mut self) -> usize {
        for (mut frame, n) in self.batch.drain_filled() {
            frame.truncate(n);
            self.link.send(self.now, frame);
            self.sent += 1;
        }
        self.sent
    }
}

impl Drop for LinkFrames<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
