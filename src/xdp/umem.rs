//! UMEM frames owned by type.
//!
//! A frame of the UMEM is in exactly one place: on one of the kernel's
//! rings, or in our hands as exactly one value of these types, none of
//! which is `Copy` or `Clone`:
//! - [`FreeFrame`]: ours and on no ring (the queue's free list);
//! - [`RxFrame`]: a received packet, to be read and then released, which
//!   gives its frame back to the fill ring;
//! - [`TxFrame`]: a frame lent out for writing one packet, then submitted
//!   to the TX ring (or given back unused).
//!
//! Values are minted only where the kernel hands frames back (the RX and
//! completion rings) and once, for every frame, when the UMEM is made; the
//! ring methods here consume them by value. So the compiler, not a run-time
//! check, rules out touching a frame the kernel owns:
//!
//! ```compile_fail
//! # use xdptcp::xdp::{RxFrame, XskQueue};
//! fn read_after_release(q: &mut XskQueue, rx: RxFrame) {
//!     q.release(rx); // back to the fill ring: the kernel may write it now
//!     let _ = q.rx_bytes(&rx); // error[E0382]: borrow of moved value: `rx`
//! }
//! ```
//!
//! ```compile_fail
//! # use xdptcp::xdp::{TxFrame, XskQueue};
//! fn submit_twice(q: &mut XskQueue, tx: TxFrame) {
//!     let _ = q.submit(tx, 60); // on the TX ring: the kernel reads it now
//!     tx.as_mut()[0] = 0; // error[E0382]: borrow of moved value: `tx`
//!     let _ = q.submit(tx, 60); // error[E0382]: use of moved value: `tx`
//! }
//! ```
//!
//! The same code without the misuse compiles:
//!
//! ```no_run
//! # use xdptcp::xdp::{RxFrame, TxFrame, XskQueue};
//! fn proper(q: &mut XskQueue, rx: RxFrame, mut tx: TxFrame) {
//!     let n = q.rx_bytes(&rx).len().min(60);
//!     tx.as_mut()[..n].copy_from_slice(&q.rx_bytes(&rx)[..n]);
//!     q.release(rx);
//!     let _ = q.submit(tx, n);
//! }
//! ```
//!
//! Every value carries the id of the UMEM it belongs to, checked wherever
//! one is handed back, so a frame of one queue cannot be given to another.
//!
//! A [`TxFrame`] is written in place through a pointer into the UMEM (or,
//! on a multi-buffer queue, is a scratch buffer copied into a chain of
//! frames on submit). The mapping must outlive it: a queue dropped while
//! frames are still lent keeps its UMEM mapped for good
//! ([`Rings::keep_mapped`]) rather than leave them dangling.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::rings::Rings;

/// Ids of UMEMs, never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A UMEM frame that is ours and on no ring.
pub struct FreeFrame<D> {
    desc: D,
    umem: u64,
}

impl<D> FreeFrame<D> {
    /// The frame's descriptor, to look at (tests audit where frames are).
    #[cfg(test)]
    pub(super) fn desc(&self) -> &D {
        &self.desc
    }
}

/// A received packet: in place in its UMEM frame, or reassembled from a
/// chain into one of the queue's buffers (whose frames are already back on
/// the fill ring). Read it with `XskQueue::rx_bytes`, then `release` it.
#[must_use = "a received frame must be released to go back to the fill ring"]
pub struct RxFrame<D = xsk_rs::FrameDesc> {
    pub(super) body: RxBody<D>,
    pub(super) umem: u64,
}

/// Where a received packet's bytes are.
pub(super) enum RxBody<D> {
    /// In its one UMEM frame.
    InPlace(FreeFrame<D>),
    /// In the queue's reassembly buffer of this index.
    Chain(usize),
}

/// A frame lent out for writing one packet: all of its bytes
/// (`as_mut`), then `XskQueue::submit` with the length written.
#[must_use = "a lent TX frame must be submitted or given back"]
pub struct TxFrame<D = xsk_rs::FrameDesc> {
    pub(super) body: TxBody<D>,
    pub(super) umem: u64,
}

/// What a TX frame's bytes are.
pub(super) enum TxBody<D> {
    /// A UMEM frame, written in place: `len` bytes at `ptr`.
    InPlace { frame: FreeFrame<D>, ptr: NonNull<u8>, len: usize },
    /// A multi-buffer queue's scratch buffer, split into a chain on submit.
    Scratch(Box<[u8]>),
}

impl<D> AsMut<[u8]> for TxFrame<D> {
    fn as_mut(&mut self) -> &mut [u8] {
        match &mut self.body {
            // SAFETY: `ptr..ptr + len` is this frame's memory in the UMEM
            // (`Rings::frame_mem`), which stays mapped while any TxFrame
            // lives (the module docs). The frame is on no ring and this
            // value is its only owner, so nothing else reads or writes it
            // while the borrow of `self` lasts.
            TxBody::InPlace { ptr, len, .. } => unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), *len) },
            TxBody::Scratch(buf) => buf,
        }
    }
}

impl<D> AsRef<[u8]> for TxFrame<D> {
    fn as_ref(&self) -> &[u8] {
        match &self.body {
            // SAFETY: as in `as_mut`; shared, for as long as `&self` lives.
            TxBody::InPlace { ptr, len, .. } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) },
            TxBody::Scratch(buf) => buf,
        }
    }
}

/// A socket's rings over its UMEM, with frames passed by value: the only
/// way the queue reaches the rings' `unsafe` methods.
pub(super) struct UmemRings<R: Rings> {
    /// The rings, for their safe methods (counts, wakeups, kicks).
    pub(super) rings: R,
    id: u64,
    /// In-place TX frames lent and not yet back.
    lent: usize,
    /// Descriptors, to hand a batch to a ring or take one off it.
    descs: Vec<R::Desc>,
}

impl<R: Rings> UmemRings<R> {
    /// Takes `rings` and every frame of their UMEM (`descs`, fresh: on no
    /// ring, nothing using them), which become [`FreeFrame`]s.
    pub(super) fn new(rings: R, descs: Vec<R::Desc>, batch: usize) -> (Self, Vec<FreeFrame<R::Desc>>) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let frames = descs.into_iter().map(|desc| FreeFrame { desc, umem: id }).collect();
        (UmemRings { rings, id, lent: 0, descs: Vec::with_capacity(batch) }, frames)
    }

    fn check(&self, umem: u64) {
        assert_eq!(umem, self.id, "a frame of another UMEM");
    }

    /// XDP_PKT_CONTD: the packet goes on in the next frame.
    pub(super) fn more(frame: &FreeFrame<R::Desc>) -> bool {
        R::more(&frame.desc)
    }

    /// Posts all of `frames` to the fill ring, or none; true if posted
    /// (then `frames` is empty).
    pub(super) fn post_fill(&mut self, frames: &mut Vec<FreeFrame<R::Desc>>) -> bool {
        self.descs.clear();
        for f in frames.iter() {
            self.check(f.umem);
            self.descs.push(f.desc);
        }
        // SAFETY: the frames are this UMEM's (checked) and ours, on no ring
        // (each FreeFrame is the only handle to its frame), and they are
        // consumed here, so nothing touches them until the RX ring hands
        // them back as new values.
        let posted = unsafe { self.rings.produce_fill(&self.descs) };
        if posted == frames.len() {
            frames.clear();
            true
        } else {
            debug_assert_eq!(posted, 0, "the fill ring takes all or nothing");
            false
        }
    }

    /// Takes up to `max` received frames off the RX ring onto `out`.
    pub(super) fn consume_rx(&mut self, max: usize, out: &mut Vec<FreeFrame<R::Desc>>) -> usize {
        self.descs.clear();
        self.descs.resize(max, R::Desc::default());
        let n = self.rings.consume_rx(&mut self.descs);
        out.extend(self.descs[..n].iter().map(|&desc| FreeFrame { desc, umem: self.id }));
        n
    }

    /// Takes up to `max` sent frames off the completion ring onto `out`.
    pub(super) fn consume_comp(&mut self, max: usize, out: &mut Vec<FreeFrame<R::Desc>>) -> usize {
        self.descs.clear();
        self.descs.resize(max, R::Desc::default());
        let n = self.rings.consume_comp(&mut self.descs);
        out.extend(self.descs[..n].iter().map(|&desc| FreeFrame { desc, umem: self.id }));
        n
    }

    /// What a frame of ours holds, as long as its descriptor says.
    pub(super) fn data<'a>(&'a self, frame: &'a FreeFrame<R::Desc>) -> &'a [u8] {
        self.check(frame.umem);
        // SAFETY: the frame is this UMEM's and ours (on no ring), and only
        // a `&mut FreeFrame` could write it, which the shared borrow of
        // `frame` rules out while the slice lives.
        unsafe { self.rings.data(&frame.desc) }
    }

    /// Lets `f` write into the whole of a frame of ours; its descriptor's
    /// length becomes what `f` returns (0 for `None`). Clears XDP_PKT_CONTD
    /// unless `more`.
    pub(super) fn write(&mut self, frame: &mut FreeFrame<R::Desc>, more: bool, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> usize {
        self.check(frame.umem);
        // SAFETY: the frame is this UMEM's and ours, on no ring.
        let n = unsafe { self.rings.write(&mut frame.desc, f) };
        R::set_more(&mut frame.desc, more);
        n
    }

    /// Queues one packet on the TX ring: `chain`'s frames, written, all
    /// but the last marked XDP_PKT_CONTD. All or none; true if queued (then
    /// `chain` is empty).
    pub(super) fn produce_tx(&mut self, chain: &mut Vec<FreeFrame<R::Desc>>) -> bool {
        self.descs.clear();
        for f in chain.iter() {
            self.check(f.umem);
            self.descs.push(f.desc);
        }
        // SAFETY: the frames are this UMEM's and ours, hold what their
        // descriptors say, and are consumed here: nothing touches them
        // until the completion ring hands them back as new values.
        if unsafe { self.rings.produce_tx(&self.descs) } {
            chain.clear();
            true
        } else {
            false
        }
    }

    /// Queues one single-frame packet on the TX ring; the frame back if
    /// the ring has no room.
    pub(super) fn produce_tx_one(&mut self, frame: FreeFrame<R::Desc>) -> Result<(), FreeFrame<R::Desc>> {
        self.check(frame.umem);
        // SAFETY: as in `produce_tx`, for one frame.
        if unsafe { self.rings.produce_tx(std::slice::from_ref(&frame.desc)) } {
            Ok(())
        } else {
            Err(frame)
        }
    }

    /// Lends a free frame out for writing in place.
    pub(super) fn lend(&mut self, mut frame: FreeFrame<R::Desc>) -> TxFrame<R::Desc> {
        self.check(frame.umem);
        // SAFETY: the frame is this UMEM's and ours, on no ring; the
        // TxFrame made from it is its only owner from here on.
        let (ptr, len) = unsafe { self.rings.frame_mem(&mut frame.desc) };
        self.lent += 1;
        TxFrame { body: TxBody::InPlace { frame, ptr, len }, umem: self.id }
    }

    /// Lends a scratch buffer out as a TX frame (multi-buffer queues).
    pub(super) fn lend_scratch(&self, buf: Box<[u8]>) -> TxFrame<R::Desc> {
        TxFrame { body: TxBody::Scratch(buf), umem: self.id }
    }

    /// Takes a lent TX frame back: its frame (with the length `len` set)
    /// or its scratch buffer.
    pub(super) fn take_back(&mut self, tx: TxFrame<R::Desc>, len: usize) -> Result<FreeFrame<R::Desc>, Box<[u8]>> {
        self.check(tx.umem);
        match tx.body {
            TxBody::InPlace { mut frame, len: cap, .. } => {
                self.lent -= 1;
                let n = self.write(&mut frame, false, |_| Some(len.min(cap)));
                debug_assert_eq!(n, len.min(cap));
                Ok(frame)
            }
            TxBody::Scratch(buf) => Err(buf),
        }
    }

    /// A received frame in place, as an [`RxFrame`].
    pub(super) fn rx_in_place(&self, frame: FreeFrame<R::Desc>) -> RxFrame<R::Desc> {
        self.check(frame.umem);
        RxFrame { body: RxBody::InPlace(frame), umem: self.id }
    }

    /// A reassembled packet in buffer `slot`, as an [`RxFrame`].
    pub(super) fn rx_chain(&self, slot: usize) -> RxFrame<R::Desc> {
        RxFrame { body: RxBody::Chain(slot), umem: self.id }
    }

    /// What a received frame is, once checked to be this UMEM's.
    pub(super) fn rx_body<'a>(&self, rx: &'a RxFrame<R::Desc>) -> &'a RxBody<R::Desc> {
        self.check(rx.umem);
        &rx.body
    }

    /// A received frame taken apart, once checked to be this UMEM's.
    pub(super) fn rx_into_body(&self, rx: RxFrame<R::Desc>) -> RxBody<R::Desc> {
        self.check(rx.umem);
        rx.body
    }
}

impl<R: Rings> Drop for UmemRings<R> {
    fn drop(&mut self) {
        if self.lent > 0 {
            // TX frames still point into the UMEM: keep it mapped.
            self.rings.keep_mapped();
        }
    }
}
