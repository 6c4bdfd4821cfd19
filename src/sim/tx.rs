//! TX frames for a shard in the simulator: what the runtime lends a shard
//! from its UMEM during a receive batch, here a scratch frame whose
//! contents go straight onto a link. Lets deterministic tests run
//! `Conn::send_with`'s direct path (application bytes written into the
//! frame), and its fallback when no frame is free (`budget`).

use crate::sim::link::Link;
use crate::stack::TxFrames;
use crate::time::Instant;

/// Frames a shard writes during one call, each sent on `link` at `now`.
pub struct LinkFrames<'a> {
    link: &'a mut Link,
    now: Instant,
    frame: Vec<u8>,
    /// Frames still free; `send_frame` fails once none are left.
    pub budget: usize,
    /// Frames written and sent.
    pub sent: usize,
}

impl<'a> LinkFrames<'a> {
    /// `budget` frames of `frame_size` bytes (a UMEM frame; 2048 in xdptcp).
    pub fn new(link: &'a mut Link, now: Instant, frame_size: usize, budget: usize) -> Self {
        LinkFrames { link, now, frame: vec![0; frame_size], budget, sent: 0 }
    }
}

impl TxFrames for LinkFrames<'_> {
    fn send_frame(&mut self, f: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        if self.budget == 0 {
            return false;
        }
        // A UMEM frame holds whatever it carried last; so does this one.
        let n = f(&mut self.frame).min(self.frame.len());
        if n > 0 {
            self.budget -= 1;
            self.sent += 1;
            self.link.send(self.now, self.frame[..n].to_vec());
        }
        true
    }
}
