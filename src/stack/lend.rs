//! The shard's side of the one-way send path over a [`TxBatch`]: thin
//! adapters over the `TxFrames` interface, until the shard fills lent
//! batches natively. They keep the signatures the runtime is written
//! against.

use crate::app::App;
use crate::time::Instant;

use super::batch::TxBatch;
use super::send::TxFrames;
use super::{Shard, Verdict};

/// A lent batch, seen as the `TxFrames` the shard's receive path takes.
struct Lent<'a, F>(&'a mut TxBatch<F>);

impl<F: AsMut<[u8]>> TxFrames for Lent<'_, F> {
    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        self.0.fill(f)
    }
}

impl<A: App> Shard<A> {
    /// [`Shard::handle_frame_checked`] with TX frames lent: control frames
    /// and `Conn::send_with` during the callbacks may fill them.
    pub fn handle_frame_lent<F: AsMut<[u8]>>(&mut self, now: Instant, frame: &[u8], app: &mut A, last_hop: bool, tx: &mut TxBatch<F>) -> Verdict {
        self.handle_frame_inner(now, frame, app, last_hop, Some(&mut Lent(tx)))
    }

    /// Fills free frames of `tx` with what there is to send, until nothing
    /// is left or no frame is free. Returns how many it filled.
    pub fn poll_transmit_into<F: AsMut<[u8]>>(&mut self, now: Instant, tx: &mut TxBatch<F>) -> usize {
        let mut n = 0;
        while self.wants_transmit() {
            let mut wrote = false;
            let free = tx.fill(|buf| {
                let k = self.poll_transmit(now, buf).unwrap_or(0);
                wrote = k > 0;
                k
            });
            if !free || !wrote {
                break;
            }
            n += 1;
        }
        n
    }
}
