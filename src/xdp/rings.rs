//! What [`XskQueue`](super::XskQueue) needs from an AF_XDP socket: its four
//! rings and its UMEM, as a trait.
//!
//! [`XskRings`] is the real thing (xsk-rs over a bound socket). Tests run the
//! queue's frame-ownership logic over a fake kernel in anonymous memory
//! instead (`fake.rs`). The queue is generic over the backend, so each use is
//! monomorphized: no `dyn`, and the production calls inline to what they
//! were before.

use std::io;

use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// An AF_XDP socket's rings and UMEM, seen from user space.
///
/// The ring methods follow libxdp: producers hand over all of a batch or
/// none of it, consumers take what is there up to what was asked for.
/// "Exact" counts read the other side's index now; the others may answer
/// from a cached one, which never overstates what is available.
pub trait Rings {
    /// Names one UMEM frame, the length of what it holds and its options
    /// (XDP_PKT_CONTD: the packet goes on in the next descriptor).
    type Desc: Copy + Default;

    /// The descriptor's XDP_PKT_CONTD flag: more of the packet follows
    /// (multi-buffer, XDP_USE_SG).
    fn more(desc: &Self::Desc) -> bool;
    /// Sets or clears XDP_PKT_CONTD (every other option is cleared).
    fn set_more(desc: &mut Self::Desc, more: bool);
    /// Bytes one frame's packet data can hold.
    fn frame_capacity(&self) -> usize;

    /// Takes up to `out.len()` received frames off the RX ring.
    fn consume_rx(&mut self, out: &mut [Self::Desc]) -> usize;
    /// Received frames waiting on the RX ring (reads the producer index).
    fn rx_avail_exact(&mut self) -> u32;
    /// Posts `descs` to the fill ring, all or none; returns how many.
    ///
    /// # Safety
    /// The frames are this UMEM's and ours, and nothing touches them until
    /// they come back on the RX ring.
    unsafe fn produce_fill(&mut self, descs: &[Self::Desc]) -> usize;
    /// The kernel asked to be woken for the fill ring (need_wakeup).
    fn fill_needs_wakeup(&self) -> bool;
    /// Wakes the kernel for the fill ring.
    fn wake_fill(&mut self);

    /// The TX ring has `n` free slots (may answer from a cached index,
    /// which never overstates the room).
    fn tx_has_room(&mut self, n: u32) -> bool;
    /// Free slots on the TX ring (reads the consumer index).
    fn tx_free_exact(&mut self) -> u32;
    /// Queues one packet on the TX ring: one descriptor, or a chain whose
    /// descriptors all but the last have XDP_PKT_CONTD set. All of them or
    /// none (false: the ring has no room for the whole chain), so the
    /// kernel never sees part of a packet.
    ///
    /// # Safety
    /// The frames are this UMEM's and ours, hold what their descriptors
    /// describe, and nothing touches them until they come back on the
    /// completion ring.
    unsafe fn produce_tx(&mut self, descs: &[Self::Desc]) -> bool;
    /// The kernel asked to be kicked for the TX ring (need_wakeup).
    fn tx_needs_wakeup(&self) -> bool;
    /// Kicks transmission (sendto).
    fn kick_tx(&mut self);

    /// Takes up to `out.len()` sent frames off the completion ring.
    fn consume_comp(&mut self, out: &mut [Self::Desc]) -> usize;
    /// Sent frames waiting on the completion ring (reads the producer index).
    fn comp_avail_exact(&mut self) -> u32;

    /// The frame `desc` holds. The slice lies in the UMEM's memory, not in
    /// `self`: it stays valid while `self` is used mutably (other frames
    /// written, rings moved), which `XskQueue::recv_with_tx` relies on.
    ///
    /// # Safety
    /// The frame is ours (off the RX ring and not yet given back), and no
    /// one writes it while the slice lives.
    unsafe fn data(&self, desc: &Self::Desc) -> &[u8];
    /// Lets `f` write a frame into the whole of `desc`'s frame, and sets
    /// the descriptor's length to what `f` returns (0 for `None`).
    ///
    /// # Safety
    /// The frame is ours and on no ring.
    unsafe fn write(&mut self, desc: &mut Self::Desc, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> usize;
    /// Where the whole of `desc`'s frame lies in the UMEM's memory, for
    /// writing in place: its start and its length (the frame's capacity).
    /// The memory is not in `self`; it stays mapped while `self` lives, or
    /// for good after [`Rings::keep_mapped`].
    ///
    /// # Safety
    /// The frame is ours and on no ring.
    unsafe fn frame_mem(&mut self, desc: &mut Self::Desc) -> (std::ptr::NonNull<u8>, usize);
    /// Keeps the UMEM mapped after `self` is dropped, for good: frames
    /// lent out still point into it.
    fn keep_mapped(&self);
}

/// The production backend: xsk-rs rings of one bound socket and its UMEM.
pub struct XskRings {
    pub(super) umem: Umem,
    pub(super) fill: FillQueue,
    pub(super) comp: CompQueue,
    pub(super) tx: TxQueue,
    pub(super) rx: RxQueue,
    /// Preferred busy polling is on: drive NAPI with recvfrom each turn.
    pub(super) busy_poll: bool,
    /// Bytes of packet data per frame (frame size less the XDP headroom).
    pub(super) frame_capacity: usize,
}

impl XskRings {
    pub(super) fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.rx.fd().as_raw_fd()
    }

    /// The socket's XDP_OPTIONS (getsockopt).
    pub(super) fn xdp_options(&self) -> io::Result<libc::xdp_options> {
        let mut opts = libc::xdp_options { flags: 0 };
        let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: `opts` and `len` are valid for writes of the sizes given,
        // and the fd is this queue's open AF_XDP socket.
        let rc = unsafe { libc::getsockopt(self.fd(), libc::SOL_XDP, libc::XDP_OPTIONS, (&mut opts as *mut libc::xdp_options).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(opts)
    }

    /// The socket's XDP_STATISTICS (getsockopt).
    pub(super) fn xdp_statistics(&self) -> io::Result<libc::xdp_statistics> {
        // SAFETY: xdp_statistics is plain integers; all-zero is valid.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given,
        // and the fd is this queue's open AF_XDP socket.
        let rc = unsafe { libc::getsockopt(self.fd(), libc::SOL_XDP, libc::XDP_STATISTICS, (&mut st as *mut libc::xdp_statistics).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }

    /// Sets an integer SOL_SOCKET option on the socket.
    pub(super) fn set_socket_option(&self, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: the fd is our open AF_XDP socket; `value` lives across
        // the call and its exact size is passed.
        let rc = unsafe {
            libc::setsockopt(self.fd(), libc::SOL_SOCKET, opt, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Drives the driver's NAPI once: a non-blocking zero-length `recvfrom`.
    pub(super) fn poll_napi(&self) {
        // SAFETY: a zero-length recvfrom on our own socket with no buffer
        // and no address; the kernel writes nothing.
        let _ = unsafe { libc::recvfrom(self.fd(), std::ptr::null_mut(), 0, libc::MSG_DONTWAIT, std::ptr::null_mut(), std::ptr::null_mut()) };
    }

    /// Blocks up to `timeout_ms` for received frames.
    pub(super) fn poll_rx(&mut self, timeout_ms: i32) -> io::Result<bool> {
        self.rx.poll(timeout_ms)
    }
}

/// Binds a socket to `name` queue `queue` over `umem`, with its rings.
pub(super) fn new_socket(
    cfg: xsk_rs::config::SocketConfig,
    umem: &Umem,
    name: &xsk_rs::config::Interface,
    queue: u32,
) -> Result<(TxQueue, RxQueue, Option<(FillQueue, CompQueue)>), xsk_rs::socket::SocketCreateError> {
    // SAFETY: each (interface, queue) is bound once per UMEM (the caller
    // makes a fresh UMEM per attempt), and the program is loaded by us
    // (INHIBIT_PROG_LOAD), as the crate requires.
    unsafe { xsk_rs::Socket::new(cfg, umem, name, queue) }
}

/// The kernel's XDP_PKT_CONTD (include/uapi/linux/if_xdp.h).
const XDP_PKT_CONTD: u32 = 1;

impl Rings for XskRings {
    type Desc = FrameDesc;

    #[inline]
    fn more(desc: &FrameDesc) -> bool {
        desc.options() & XDP_PKT_CONTD != 0
    }
    #[inline]
    fn set_more(desc: &mut FrameDesc, more: bool) {
        desc.set_options(if more { XDP_PKT_CONTD } else { 0 });
    }
    #[inline]
    fn frame_capacity(&self) -> usize {
        self.frame_capacity
    }

    #[inline]
    fn consume_rx(&mut self, out: &mut [FrameDesc]) -> usize {
        // SAFETY: the RX ring belongs to a socket bound to this UMEM, so the
        // frames it names are this UMEM's; `out` is scratch it overwrites.
        unsafe { self.rx.consume(out) }
    }
    #[inline]
    fn rx_avail_exact(&mut self) -> u32 {
        self.rx.nb_avail_exact()
    }
    #[inline]
    unsafe fn produce_fill(&mut self, descs: &[FrameDesc]) -> usize {
        // SAFETY: the caller guarantees the frames are this UMEM's, ours,
        // and untouched until the RX ring returns them.
        unsafe { self.fill.produce(descs) }
    }
    #[inline]
    fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }
    #[inline]
    fn wake_fill(&mut self) {
        let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
    }

    #[inline]
    fn tx_has_room(&mut self, n: u32) -> bool {
        self.tx.nb_free(n) >= n
    }
    #[inline]
    fn tx_free_exact(&mut self) -> u32 {
        self.tx.nb_free_exact()
    }
    #[inline]
    unsafe fn produce_tx(&mut self, descs: &[FrameDesc]) -> bool {
        // SAFETY: the caller guarantees the frames are this UMEM's, ours,
        // complete, and untouched until the completion ring returns them.
        // xsk-rs reserves the whole batch or nothing.
        unsafe { self.tx.produce(descs) == descs.len() }
    }
    #[inline]
    fn tx_needs_wakeup(&self) -> bool {
        self.tx.needs_wakeup()
    }
    #[inline]
    fn kick_tx(&mut self) {
        let _ = self.tx.wakeup();
    }

    #[inline]
    fn consume_comp(&mut self, out: &mut [FrameDesc]) -> usize {
        // SAFETY: the completion ring belongs to this UMEM, so the frames it
        // names are this UMEM's; `out` is scratch it overwrites.
        unsafe { self.comp.consume(out) }
    }
    #[inline]
    fn comp_avail_exact(&mut self) -> u32 {
        self.comp.nb_avail_exact()
    }

    #[inline]
    unsafe fn data(&self, desc: &FrameDesc) -> &[u8] {
        // SAFETY: `desc` came off this UMEM's RX ring and the caller
        // guarantees the frame is ours and not written meanwhile.
        unsafe { self.umem.data(desc) }.contents()
    }
    #[inline]
    unsafe fn write(&mut self, desc: &mut FrameDesc, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> usize {
        // SAFETY: the caller guarantees we own this frame of this UMEM and
        // that it is on no ring, so nothing else reads or writes it.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let cap = data.cursor().buf_len();
        data.cursor().set_pos(cap);
        match f(data.contents_mut()) {
            Some(n) => {
                data.cursor().set_pos(n);
                n
            }
            None => 0,
        }
    }
    #[inline]
    unsafe fn frame_mem(&mut self, desc: &mut FrameDesc) -> (std::ptr::NonNull<u8>, usize) {
        // SAFETY: the caller guarantees we own this frame of this UMEM and
        // that it is on no ring; the pointer outlives the borrow, into the
        // UMEM's mapping (not into `self`).
        let mut data = unsafe { self.umem.data_mut(desc) };
        let cap = data.cursor().buf_len();
        data.cursor().set_pos(cap);
        let buf = data.contents_mut();
        (std::ptr::NonNull::new(buf.as_mut_ptr()).expect("UMEM memory is not null"), buf.len())
    }
    fn keep_mapped(&self) {
        // The mapping goes when the last handle to the UMEM does.
        std::mem::forget(self.umem.clone());
    }
}
