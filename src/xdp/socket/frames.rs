//! The queue's frame logic over any [`Rings`] backend: receiving into
//! [`RxFrame`]s and releasing them to the fill ring, lending [`TxFrame`]s
//! and submitting them to the TX ring (one frame, or a chain on a
//! multi-buffer queue), and taking sent frames back. All of it safe code:
//! frames move by value through [`UmemRings`].

use super::super::umem::{RxBody, TxFrame};
use super::*;

/// TX scratch buffers of a multi-buffer queue: TxFrames lent at once at most.
const TX_SCRATCH: usize = 64;

impl<R: Rings> XskQueue<R> {
    /// Takes `descs` (every frame of the UMEM), posts up to `ring_size` of
    /// them (at most half) to the fill ring and keeps the rest free.
    /// Frames of up to `max_frame` bytes are sent; beyond one UMEM frame,
    /// as chains (the socket must then be bound with XDP_USE_SG).
    pub(super) fn new(rings: R, descs: Vec<R::Desc>, ring_size: u32, queue: u32, max_frame: usize) -> Self {
        let total = descs.len();
        let cap = rings.frame_capacity();
        let comp_max = ring_size as usize * 2;
        let (mut umem, mut free) = UmemRings::new(rings, descs, comp_max.max(RX_BATCH).max(MAX_CHAIN));
        let sg = (max_frame > cap).then(|| {
            let tx_chain_max = max_frame.div_ceil(cap);
            assert!(tx_chain_max <= MAX_CHAIN, "{max_frame}-byte frames need {tx_chain_max} frames of {cap}");
            let scratch = (0..TX_SCRATCH).map(|_| vec![0; max_frame].into_boxed_slice()).collect();
            let tx = TxChains { tx_max: max_frame, tx_chain_max, scratch, tx_chain: Vec::with_capacity(tx_chain_max) };
            // A batch holds at most RX_BATCH / 2 whole chains and the start of one more.
            let bufs = (0..RX_BATCH / 2 + 2).map(|_| Vec::with_capacity(RX_MAX)).collect::<Vec<_>>();
            let rx = RxChains { idle: (0..bufs.len()).rev().collect(), bufs, building: None, rx_partial: false, rx_dropping: false };
            (Box::new(tx), Box::new(rx))
        });
        let (sg_tx, sg_rx) = sg.unzip();
        let post = (ring_size as usize).min(total / 2);
        let mut first: Vec<_> = free.drain(..post).collect();
        let posted = if umem.post_fill(&mut first) { post } else { 0 };
        free.append(&mut first);
        XskQueue {
            umem,
            free,
            got: Vec::with_capacity(RX_BATCH),
            to_fill: Vec::with_capacity(2 * RX_BATCH),
            rx_frames: Vec::with_capacity(RX_BATCH),
            comp_max,
            rx_posted: posted,
            tx_in_flight: 0,
            rx_out: 0,
            tx_lent: 0,
            tx_slots_kept: 0,
            frames_kept: 0,
            tx_size: ring_size,
            total,
            queue,
            stats: QueueStats::default(),
            umem_info: UmemInfo::default(),
            sg_tx,
            sg_rx,
        }
    }

    /// Frames span several UMEM frames (the socket uses XDP_USE_SG).
    pub fn multi_buffer(&self) -> bool {
        self.sg_tx.is_some()
    }

    pub fn queue_id(&self) -> u32 {
        self.queue
    }
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Where the frames are (reads the RX and completion rings' producer
    /// indices for the split; see [`FrameCounts`]).
    pub fn frames(&mut self) -> FrameCounts {
        let rx = self.umem.rings.rx_avail_exact() as usize;
        let completion = self.umem.rings.comp_avail_exact() as usize;
        // A ring showing more than we gave the kernel breaks the invariant;
        // saturating keeps that visible in the sum.
        FrameCounts {
            fill: self.rx_posted.saturating_sub(rx),
            rx,
            tx: self.tx_in_flight.saturating_sub(completion),
            completion,
            free: self.free.len(),
            held: self.rx_out + self.to_fill.len() + self.tx_lent,
            total: self.total,
        }
    }

    /// Debug builds: every frame is somewhere, once.
    #[inline]
    fn check_frames(&mut self) {
        if cfg!(debug_assertions) {
            let c = self.frames();
            debug_assert!(c.ok(), "UMEM frames do not add up: {c:?}");
        }
    }

    /// Takes up to `max` descriptors off the RX ring and appends each
    /// complete packet among them to `out` as an [`RxFrame`]: a
    /// single-frame packet in place, a chain reassembled into one of the
    /// queue's buffers (its frames straight back to the fill ring; see the
    /// module docs). Returns how many packets were appended. Read each with
    /// [`XskQueue::rx_bytes`], then [`XskQueue::release`] it.
    pub fn recv_frames(&mut self, max: usize, out: &mut Vec<RxFrame<R::Desc>>) -> usize {
        self.post_fill();
        let mut got = std::mem::take(&mut self.got);
        let n = self.umem.consume_rx(max.min(RX_BATCH), &mut got);
        self.rx_posted -= n;
        let (mut packets, mut largest) = (0, 0);
        for f in got.drain(..) {
            let more = UmemRings::<R>::more(&f);
            match self.sg_rx.as_deref_mut() {
                Some(c) if more || c.rx_partial => {
                    if let Some(b) = c.part(self.umem.data(&f), more, &mut self.stats) {
                        largest = largest.max(c.bufs[b].len());
                        self.stats.rx_chains += 1;
                        out.push(self.umem.rx_chain(b));
                        packets += 1;
                    }
                    self.to_fill.push(f);
                }
                // A socket without XDP_USE_SG never sees XDP_PKT_CONTD.
                _ => {
                    largest = largest.max(self.umem.data(&f).len());
                    out.push(self.umem.rx_in_place(f));
                    self.rx_out += 1;
                    packets += 1;
                }
            }
        }
        self.got = got;
        self.stats.rx_largest = self.stats.rx_largest.max(largest as u64);
        self.stats.rx_frames += n as u64;
        self.post_fill();
        self.check_frames();
        packets
    }

    /// A received packet's bytes.
    pub fn rx_bytes<'a>(&'a self, rx: &'a RxFrame<R::Desc>) -> &'a [u8] {
        match self.umem.rx_body(rx) {
            RxBody::InPlace(f) => self.umem.data(f),
            RxBody::Chain(b) => &self.sg_rx.as_ref().expect("chains only on a multi-buffer queue").bufs[*b],
        }
    }

    /// Gives a received packet back: its frame to the fill ring (posted
    /// once no received frame is held, or a batch's worth waits), or its reassembly buffer to the queue.
    pub fn release(&mut self, rx: RxFrame<R::Desc>) {
        match self.umem.rx_into_body(rx) {
            RxBody::InPlace(f) => {
                self.rx_out -= 1;
                self.to_fill.push(f);
                // A batch goes back whole, once its last frame is released.
                if self.rx_out == 0 || self.to_fill.len() >= RX_BATCH {
                    self.post_fill();
                }
            }
            RxBody::Chain(b) => {
                let c = self.sg_rx.as_deref_mut().expect("chains only on a multi-buffer queue");
                c.bufs[b].clear();
                c.idle.push(b);
            }
        }
    }

    /// Posts the frames waiting to go back to the fill ring, and wakes it
    /// when the kernel asks.
    fn post_fill(&mut self) {
        if self.to_fill.is_empty() {
            return;
        }
        let n = self.to_fill.len();
        if self.umem.post_fill(&mut self.to_fill) {
            self.rx_posted += n;
        } else {
            // Not reached while the fill ring is larger than what we post;
            // if it were, the frames would be ours again, not lost.
            self.free.append(&mut self.to_fill);
        }
        if self.umem.rings.fill_needs_wakeup() {
            self.umem.rings.wake_fill();
        }
    }

    /// Takes up to `max` descriptors off the RX ring and hands each
    /// complete packet among them to `f`, then gives the frames back to
    /// the fill ring. Returns how many packets `f` saw.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut frames = std::mem::take(&mut self.rx_frames);
        let n = self.recv_frames(max, &mut frames);
        for rx in frames.drain(..) {
            f(self.rx_bytes(&rx));
            self.release(rx);
        }
        self.rx_frames = frames;
        self.post_fill();
        self.check_frames();
        n
    }

    /// Lends a free frame for writing one packet of up to MTU + 14 bytes,
    /// with a TX ring slot kept for it (the longest chain's worth on a
    /// multi-buffer queue, whose TxFrames are scratch buffers split into a
    /// chain on submit). `None` if the ring has no room (uncounted) or no
    /// frame is free (counted in `tx_no_frame`). Submit it with
    /// [`XskQueue::submit`] or give it back with [`XskQueue::give_back`].
    pub fn lend_tx(&mut self) -> Option<TxFrame<R::Desc>> {
        let need = self.sg_tx.as_ref().map_or(1, |c| c.tx_chain_max);
        if !self.umem.rings.tx_has_room(self.tx_slots_kept + need as u32) {
            return None;
        }
        if self.free.len() < self.frames_kept + need {
            self.stats.tx_no_frame += 1;
            return None;
        }
        let tx = match self.sg_tx.as_deref_mut() {
            None => {
                self.tx_lent += 1;
                self.umem.lend(self.free.pop().expect("checked above"))
            }
            Some(c) => {
                let buf = c.scratch.pop()?;
                self.frames_kept += need;
                self.umem.lend_scratch(buf)
            }
        };
        self.tx_slots_kept += need as u32;
        Some(tx)
    }

    /// Takes back a lent frame that was not used.
    pub fn give_back(&mut self, tx: TxFrame<R::Desc>) {
        match self.umem.take_back(tx, 0) {
            Ok(f) => {
                self.tx_lent -= 1;
                self.tx_slots_kept -= 1;
                self.free.push(f);
            }
            Err(buf) => self.unkeep_scratch(buf),
        }
    }

    fn unkeep_scratch(&mut self, buf: Box<[u8]>) {
        let c = self.sg_tx.as_deref_mut().expect("scratch frames only on a multi-buffer queue");
        self.tx_slots_kept -= c.tx_chain_max as u32;
        self.frames_kept -= c.tx_chain_max;
        c.scratch.push(buf);
    }

    /// Queues a lent frame holding a packet of `len` bytes on the TX ring
    /// (on a multi-buffer queue, copied into one frame or a chain). After
    /// this the kernel owns it until the completion ring gives it back.
    /// False if nothing was queued: `len` was 0 (the frame is simply taken
    /// back) or, not reached with the room kept by `lend_tx`, the ring
    /// refused it.
    pub fn submit(&mut self, tx: TxFrame<R::Desc>, len: usize) -> bool {
        if len == 0 {
            self.give_back(tx);
            return false;
        }
        let cap = tx.as_ref().len();
        match self.umem.take_back(tx, len) {
            Ok(f) => {
                self.tx_lent -= 1;
                self.tx_slots_kept -= 1;
                if let Err(f) = self.umem.produce_tx_one(f) {
                    debug_assert!(false, "TX ring refused a frame it had room kept for");
                    self.free.push(f);
                    return false;
                }
                self.sent(1, len.min(cap));
                true
            }
            Err(buf) => self.submit_chain(buf, len),
        }
    }

    /// `submit` on a multi-buffer queue: the scratch buffer's packet copied
    /// into as many UMEM frames as it needs, which were kept free for it.
    fn submit_chain(&mut self, buf: Box<[u8]>, len: usize) -> bool {
        let c = self.sg_tx.as_deref_mut().expect("scratch frames only on a multi-buffer queue");
        self.tx_slots_kept -= c.tx_chain_max as u32;
        self.frames_kept -= c.tx_chain_max;
        let len = len.min(c.tx_max);
        let cap = self.umem.rings.frame_capacity();
        let parts = len.div_ceil(cap);
        c.tx_chain.clear();
        for (i, chunk) in buf[..len].chunks(cap).enumerate() {
            let Some(mut f) = self.free.pop() else { unreachable!("free frames kept for the chain") };
            let n = self.umem.write(&mut f, i + 1 < parts, |b| {
                b[..chunk.len()].copy_from_slice(chunk);
                Some(chunk.len())
            });
            debug_assert_eq!(n, chunk.len());
            c.tx_chain.push(f);
        }
        c.scratch.push(buf);
        if !self.umem.produce_tx(&mut c.tx_chain) {
            debug_assert!(false, "TX ring refused a chain it had room kept for");
            self.free.append(&mut c.tx_chain);
            return false;
        }
        if parts > 1 {
            self.stats.tx_chains += 1;
        }
        self.sent(parts, len);
        true
    }

    fn sent(&mut self, frames: usize, len: usize) {
        self.tx_in_flight += frames;
        self.stats.tx_frames += frames as u64;
        self.stats.tx_largest = self.stats.tx_largest.max(len as u64);
    }

    /// Lets `f` write one frame (up to MTU + 14 bytes) into a lent frame
    /// and queues it: [`XskQueue::lend_tx`], then [`XskQueue::submit`].
    /// Returns `Some(true)` if a frame was queued, `Some(false)` if `f` had
    /// nothing, `None` if no frame or ring slot was free (then `f` is not
    /// called, so nothing it would have sent is lost).
    pub fn send_with(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<bool> {
        let mut tx = self.lend_tx()?;
        match f(tx.as_mut()) {
            Some(n) if n > 0 => Some(self.submit(tx, n)),
            _ => {
                self.give_back(tx);
                Some(false)
            }
        }
    }

    /// Kicks transmission, takes back frames the kernel has sent, and
    /// posts released frames to the fill ring.
    pub fn flush(&mut self) {
        self.post_fill();
        if self.tx_in_flight == 0 {
            return; // nothing to kick, nothing to complete
        }
        // In copy mode one kick (sendto) sends at most 32 frames (the
        // kernel's TX_BATCH_SIZE) and then returns; a turn that queued more
        // kicks again while the kernel keeps taking frames off the ring.
        // Where a kick only schedules the driver (zero copy), the ring does
        // not move during the call and one kick is all it takes.
        let size = self.tx_size;
        let mut kicks = 0;
        let rings = &mut self.umem.rings;
        while rings.tx_needs_wakeup() && kicks < MAX_KICKS {
            let before = rings.tx_free_exact();
            if before == size {
                break;
            }
            self.stats.kicks += 1;
            kicks += 1;
            rings.kick_tx();
            let after = rings.tx_free_exact();
            if after == size || after == before {
                break;
            }
        }
        let n = self.umem.consume_comp(self.comp_max, &mut self.free);
        // More completions than frames in flight would be a kernel bug;
        // the frame check below reports it.
        self.tx_in_flight -= n.min(self.tx_in_flight);
        self.check_frames();
    }
}

impl RxChains {
    /// Adds one part of a received chain (`more`: parts follow). Returns
    /// the buffer holding the packet when this was its last part and the
    /// chain was kept; a chain longer than [`RX_MAX`], or one for which no
    /// buffer is free, is dropped and counted.
    fn part(&mut self, data: &[u8], more: bool, stats: &mut QueueStats) -> Option<usize> {
        if !self.rx_partial {
            self.building = self.idle.pop();
            self.rx_dropping = self.building.is_none();
            if self.rx_dropping {
                stats.rx_chains_dropped += 1;
            }
        }
        if let (false, Some(b)) = (self.rx_dropping, self.building) {
            if self.bufs[b].len() + data.len() > RX_MAX {
                self.rx_dropping = true;
                self.bufs[b].clear();
                self.idle.push(b);
                self.building = None;
                stats.rx_chains_dropped += 1;
            } else {
                self.bufs[b].extend_from_slice(data);
            }
        }
        self.rx_partial = more;
        if more {
            return None;
        }
        self.rx_dropping = false;
        self.building.take()
    }
}
