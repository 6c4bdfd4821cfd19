//! One AF_XDP socket with its UMEM and four rings (xsk-rs; zero-copy or
//! copy mode, see [`super::bind`]).
//!
//! # Frame ownership
//! A UMEM frame is owned either by us or by the kernel. Frames we own are
//! values of the types in [`super::umem`]: [`FreeFrame`] (the free list),
//! [`RxFrame`] (received, handed out by [`XskQueue::recv_frames`], read with
//! [`XskQueue::rx_bytes`], given back with [`XskQueue::release`]) and
//! [`TxFrame`] (lent by [`XskQueue::lend_tx`], written through `AsMut`,
//! queued with [`XskQueue::submit`] or returned with
//! [`XskQueue::give_back`]). None is `Copy` or `Clone`: handing one to a
//! ring moves it, and code can no longer touch it; frames come back only
//! from the kernel's RX and completion rings. A lent TxFrame keeps its TX
//! ring slot (the longest chain's, multi-buffer), so submitting it never
//! fails.
//!
//! Frame accounting: `fill + rx + tx + completion + free + held = total`
//! (see [`FrameCounts`]; `held`: RxFrames and TxFrames out of the queue's
//! hands); debug builds check it after every `recv_frames` and `flush`.
//!
//! # Multi-buffer (jumbo frames)
//! When the largest frame (MTU + 14) does not fit in one UMEM frame, the
//! socket is bound with XDP_USE_SG and a packet may span several frames,
//! its descriptors chained by XDP_PKT_CONTD on all but the last
//! (Documentation/networking/af_xdp.rst, "Multi-Buffer Support").
//! - RX: the kernel posts a packet's descriptors all at once, but a batch
//!   taken off the ring may end inside a chain. A single-descriptor packet
//!   is handed over in place; a chain is copied into one of the queue's
//!   preallocated reassembly buffers, across batches if need be, and handed
//!   over whole (an RxFrame naming the buffer). Its frames go back to the
//!   fill ring straight away. With every buffer held, a chain is dropped
//!   and counted.
//! - TX: with multi-buffer on, a lent TxFrame is a scratch buffer of
//!   MTU + 14 bytes; on submit, what fits one frame is copied into one,
//!   anything longer is split over a chain. Lending keeps TX ring room and
//!   free frames for the longest chain the MTU can need, so the chain goes
//!   on the ring whole, a full ring never splits a packet and the sender's
//!   frame is never lost.
//!
//! The logic is generic over the [`Rings`] backend: xsk-rs in production,
//! a fake kernel over anonymous memory in the unit tests.

use std::io;
use std::num::NonZeroU32;
use std::time::Duration;

use xsk_rs::config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::Umem;

use super::bind::{huge_pages_plan, wait_for_huge_pages, zero_copy_advice, zero_copy_refusal, BindMode, HugePages, MemInfo, UmemInfo, ZeroCopy};
use super::rings::{Rings, XskRings};
use super::umem::{FreeFrame, RxFrame, UmemRings};
#[cfg(doc)]
use super::umem::TxFrame;

/// Kicks per flush at most: a full 2048-slot ring in copy mode's batches of 32.
const MAX_KICKS: u32 = 64;
/// Received frames taken per `recv` at most.
const RX_BATCH: usize = 64;
/// Frames one packet may span. The kernel builds a copy-mode TX packet as
/// an skb, its first descriptor the linear part and each further one a
/// fragment, and drops a chain that would need more than MAX_SKB_FRAGS
/// (17) fragments; we stay at 17 frames in all. Measured on veth: 17-frame
/// chains go through both ways (65280-byte frames at MTU 65266 in 4 KiB
/// frames, 30464-byte ones at MTU 30450 in 2 KiB frames). An MTU
/// that would need more is refused when the queue is opened.
pub const MAX_CHAIN: usize = 17;
/// The largest packet a received chain is reassembled into: a full IPv4
/// datagram behind an Ethernet header. Longer chains are dropped, counted.
const RX_MAX: usize = 14 + 65535;
/// The kernel's XDP_PACKET_HEADROOM, kept free at the start of each frame
/// in copy mode: a frame's packet data is the frame size less this.
const XDP_HEADROOM: u32 = 256;

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// UMEM frames (rounded up to fill whole hugepages when on them).
    pub frames: u32,
    pub frame_size: u32,
    pub ring_size: u32,
    pub zero_copy: ZeroCopy,
    pub huge_pages: HugePages,
    /// The link's MTU: frames up to MTU + 14 bytes are sent and received.
    /// Above what one frame holds (frame size − 256), the socket binds
    /// with XDP_USE_SG and packets span chains of frames (see `for_mtu`).
    pub mtu: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { frames: 8192, frame_size: 2048, ring_size: 2048, zero_copy: ZeroCopy::Preferred, huge_pages: HugePages::Off, mtu: 1500 }
    }
}

impl QueueConfig {
    /// The configuration for a link of MTU `mtu`: 2048-byte UMEM frames
    /// while a full frame fits in one, else 4096-byte frames, which hold a
    /// full frame up to MTU 3826 and make a 9014-byte frame a chain of 3
    /// rather than 6. Measured at MTU 9000
    /// on veth, xdptcp↔xdptcp stream: median 4.7 against 3.9 Gbit/s and
    /// 970 against 1200 µs of client CPU per MB (bench/RESULTS.md).
    pub fn for_mtu(mtu: u32) -> Self {
        let small = QueueConfig { mtu, ..QueueConfig::default() };
        if small.multi_buffer() {
            QueueConfig { frame_size: 4096, ..small }
        } else {
            small
        }
    }
    /// Packet bytes one frame holds in copy mode.
    pub fn frame_capacity(&self) -> usize {
        self.frame_size.saturating_sub(XDP_HEADROOM) as usize
    }
    /// Whether a full-MTU frame needs several UMEM frames (XDP_USE_SG).
    pub fn multi_buffer(&self) -> bool {
        self.mtu as usize + 14 > self.frame_capacity()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    #[error("creating the UMEM failed: {0}")]
    Umem(String),
    #[error("binding an AF_XDP socket to {iface} queue {queue} failed: {source}")]
    Bind { iface: String, queue: u32, source: io::Error },
    #[error("--zero-copy required: {iface} queue {queue} refused an AF_XDP zero-copy bind: {reason} ({source}). What to do: {advice}")]
    ZeroCopy { iface: String, queue: u32, source: io::Error, reason: &'static str, advice: String },
}

/// The kernel's counters for one AF_XDP socket (XDP_STATISTICS).
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

/// Counters for `xdptcp stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    /// Descriptors taken off the RX ring (a chain counts each of its frames).
    pub rx_frames: u64,
    /// Descriptors put on the TX ring.
    pub tx_frames: u64,
    pub tx_no_frame: u64,
    pub kicks: u64,
    /// Packets received in more than one frame (reassembled from a chain).
    pub rx_chains: u64,
    /// Packets sent in more than one frame (split into a chain).
    pub tx_chains: u64,
    /// Received chains dropped for being longer than [`RX_MAX`] bytes.
    pub rx_chains_dropped: u64,
    /// The longest frame (Ethernet header on) received and sent.
    pub rx_largest: u64,
    pub tx_largest: u64,
}

/// Where a queue's UMEM frames are. Every frame is in exactly one place:
/// `fill + rx + tx + completion + free + held = total` ([`FrameCounts::ok`]).
///
/// What is exact: `free`, `held` and `total`; `fill + rx` (frames given to
/// the fill ring minus those taken off the RX ring, counted by us) and
/// `tx + completion` (frames queued on TX minus those taken off the
/// completion ring). How each pair splits is read from the RX and
/// completion rings' producer indices when asked: the kernel moves frames
/// on meanwhile, so the split is a snapshot, exact for that instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Posted for receiving, not yet on the RX ring: in the fill ring, or
    /// taken off it by the kernel (or a zero-copy driver) and not yet filled.
    pub fill: usize,
    /// Received and waiting on the RX ring.
    pub rx: usize,
    /// Queued for sending, not yet on the completion ring: in the TX ring
    /// or being sent.
    pub tx: usize,
    /// Sent, waiting on the completion ring to be taken back.
    pub completion: usize,
    /// Ours, on the free list.
    pub free: usize,
    /// Out of the queue's hands: received frames handed out as RxFrames
    /// and not yet back on the fill ring, and TX frames lent as TxFrames.
    /// Between loop iterations only the worker's lent TX frames (the stack
    /// copies what it keeps).
    pub held: usize,
    /// Frames in the UMEM.
    pub total: usize,
}

impl FrameCounts {
    /// All the places added up.
    pub fn sum(&self) -> usize {
        self.fill + self.rx + self.tx + self.completion + self.free + self.held
    }
    /// The invariant: the places add up to the UMEM.
    pub fn ok(&self) -> bool {
        self.sum() == self.total
    }
    /// Given to the kernel for sending and not yet taken back.
    pub fn tx_in_flight(&self) -> usize {
        self.tx + self.completion
    }
}

/// One AF_XDP socket's frames over a ring backend: [`XskRings`] in
/// production, a fake kernel in tests.
pub struct XskQueue<R: Rings = XskRings> {
    umem: UmemRings<R>,
    free: Vec<FreeFrame<R::Desc>>,
    /// Frames just taken off the RX ring, being sorted into packets.
    got: Vec<FreeFrame<R::Desc>>,
    /// Frames going back to the fill ring: released, or parts of chains
    /// copied out.
    to_fill: Vec<FreeFrame<R::Desc>>,
    /// Received frames for `recv`, kept for their capacity.
    rx_frames: Vec<RxFrame<R::Desc>>,
    /// Completions taken per flush at most (the completion ring's size).
    comp_max: usize,
    /// Given to the fill ring and not yet taken back off the RX ring.
    rx_posted: usize,
    /// Given to the TX ring and not yet taken back off the completion ring.
    tx_in_flight: usize,
    /// RxFrames in place handed out and not yet released.
    rx_out: usize,
    /// TxFrames in place lent and not yet back.
    tx_lent: usize,
    /// TX ring slots kept for lent TxFrames (the longest chain for each
    /// on a multi-buffer queue), so that submitting one never fails.
    tx_slots_kept: u32,
    /// Free frames kept for lent scratch TxFrames (multi-buffer).
    frames_kept: usize,
    /// Slots in the TX ring.
    tx_size: u32,
    total: usize,
    queue: u32,
    stats: QueueStats,
    umem_info: UmemInfo,
    /// Multi-buffer state (see the module docs), for sending and for
    /// receiving; `None` when one frame holds the largest frame.
    sg_tx: Option<Box<TxChains<R::Desc>>>,
    sg_rx: Option<Box<RxChains>>,
}

/// What a multi-buffer queue keeps between calls, to send.
struct TxChains<D> {
    /// The largest frame sent: MTU + 14.
    tx_max: usize,
    /// Frames the longest TX chain takes.
    tx_chain_max: usize,
    /// Scratch buffers of `tx_max` bytes not lent out as TxFrames.
    scratch: Vec<Box<[u8]>>,
    /// A TX chain being assembled.
    tx_chain: Vec<FreeFrame<D>>,
}

/// What a multi-buffer queue keeps between calls, to receive.
struct RxChains {
    /// Reassembly buffers, by index ([`RX_MAX`] bytes of capacity each).
    bufs: Vec<Vec<u8>>,
    /// Buffers not in use (neither being filled nor handed out).
    idle: Vec<usize>,
    /// The buffer of the chain being received, across batches.
    building: Option<usize>,
    /// Inside a received chain: its last descriptor is still to come.
    rx_partial: bool,
    /// The chain inside which we are is being dropped (too long, or no
    /// buffer was free for it).
    rx_dropping: bool,
}

impl XskQueue<XskRings> {
    /// Creates the UMEM and binds a socket to `iface` queue `queue`: in the
    /// mode `cfg.zero_copy` asks for, falling back from zero-copy to copy
    /// with a warning naming the reason where allowed, on hugepages where
    /// `cfg.huge_pages` says so (see [`super::bind`]). Retries EBUSY (the
    /// previous owner of the queue may still be letting go).
    pub fn open(iface: &str, queue: u32, cfg: QueueConfig) -> Result<XskQueue, SocketError> {
        let e = |x: String| SocketError::Config(x);
        let ring = QueueSize::new(cfg.ring_size).map_err(|x| e(x.to_string()))?;
        // The fill ring stays larger than what we post to it (the kernel
        // publishes its consumer index lazily).
        let fill_size = QueueSize::new(cfg.ring_size * 2).map_err(|x| e(x.to_string()))?;
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(cfg.frame_size).map_err(|x| e(x.to_string()))?)
            .fill_queue_size(fill_size)
            .comp_queue_size(fill_size)
            .build()
            .map_err(|x| e(x.to_string()))?;
        let name: Interface = iface.parse().map_err(|_| e(format!("bad interface name {iface}")))?;
        if cfg.mtu as usize + 14 > MAX_CHAIN * cfg.frame_capacity() {
            return Err(e(format!("MTU {} needs more than {MAX_CHAIN} frames of {} bytes per packet", cfg.mtu, cfg.frame_capacity())));
        }
        let (huge, frames) = huge_pages_plan(iface, queue, cfg.frames, cfg.frame_size, cfg.huge_pages).map_err(SocketError::Umem)?;
        let mut plan = UmemPlan { cfg: umem_cfg, frames, huge, policy: cfg.huge_pages };
        let mut refused = None;
        let huge_usable_before = if huge { MemInfo::read().map_or(0, |m| m.usable()) } else { 0 };
        let modes: &[BindMode] = match cfg.zero_copy {
            ZeroCopy::Required => &[BindMode::ZeroCopy],
            ZeroCopy::Preferred => &[BindMode::ZeroCopy, BindMode::Copy],
            ZeroCopy::Off => &[BindMode::Copy],
        };
        for &mode in modes {
            let mut flags = BindFlags::XDP_USE_NEED_WAKEUP
                | if mode == BindMode::ZeroCopy { BindFlags::XDP_ZEROCOPY } else { BindFlags::XDP_COPY };
            if cfg.multi_buffer() {
                flags |= BindFlags::XDP_USE_SG;
            }
            let sock_cfg = SocketConfig::builder()
                .rx_queue_size(ring)
                .tx_queue_size(ring)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(flags)
                .build();
            let (umem, descs, (tx, rx, rings)) = match bind_fresh(iface, &name, queue, &mut plan, sock_cfg) {
                Ok(bound) => bound,
                Err(SocketError::Bind { source, .. }) if mode == BindMode::ZeroCopy && cfg.zero_copy == ZeroCopy::Preferred => {
                    let errno = source.raw_os_error().unwrap_or(0);
                    log::warn!(
                        "{iface} queue {queue}: zero-copy bind refused: {} ({source}); falling back to copy mode (XDP_COPY)",
                        zero_copy_refusal(errno)
                    );
                    refused = Some(errno);
                    // Let the refused UMEM's hugepages come back before the
                    // copy bind, and before the next queue counts them.
                    if plan.huge && !wait_for_huge_pages(huge_usable_before, Duration::from_secs(1)) {
                        log::warn!("{iface} queue {queue}: the hugepages of the refused bind were not freed within 1 s");
                    }
                    continue;
                }
                Err(SocketError::Bind { source, .. }) if mode == BindMode::ZeroCopy => {
                    let reason = zero_copy_refusal(source.raw_os_error().unwrap_or(0));
                    return Err(SocketError::ZeroCopy { iface: iface.into(), queue, source, reason, advice: zero_copy_advice(iface, queue) });
                }
                Err(SocketError::Bind { iface, queue, source })
                    if cfg.multi_buffer() && matches!(source.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)) =>
                {
                    let source = io::Error::new(
                        source.kind(),
                        format!("{source}; MTU {} needs multi-buffer AF_XDP (XDP_USE_SG, kernel 6.6 or later, and in zero-copy mode a driver that supports it)", cfg.mtu),
                    );
                    return Err(SocketError::Bind { iface, queue, source });
                }
                Err(err) => return Err(err),
            };
            let (fill, comp) = rings.ok_or_else(|| e("no fill/completion rings".into()))?;
            let bytes = frames as usize * cfg.frame_size as usize;
            let rings = XskRings { umem, fill, comp, tx, rx, busy_poll: false, frame_capacity: cfg.frame_capacity() };
            let mut q = XskQueue::new(rings, descs, cfg.ring_size, queue, cfg.mtu as usize + 14);
            q.umem_info = UmemInfo { bytes, frame_size: cfg.frame_size, frames, huge_pages: plan.huge, zero_copy_refused: refused };
            return Ok(q);
        }
        Err(e("no bind mode to try".into()))
    }

    /// How this queue's UMEM and socket were set up.
    pub fn umem_info(&self) -> UmemInfo {
        self.umem_info
    }

    /// Whether the kernel bound this socket in zero-copy mode (else copy),
    /// read back with getsockopt(XDP_OPTIONS).
    pub fn zero_copy(&self) -> io::Result<bool> {
        Ok(self.umem.rings.xdp_options()?.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }

    /// The kernel's counters for this socket (getsockopt XDP_STATISTICS):
    /// frames it dropped because our RX ring was full or the fill ring was
    /// empty, and invalid descriptors. Frames the stack never saw are
    /// counted here.
    pub fn kernel_stats(&self) -> io::Result<KernelStats> {
        let st = self.umem.rings.xdp_statistics()?;
        Ok(KernelStats {
            rx_dropped: st.rx_dropped,
            rx_invalid_descs: st.rx_invalid_descs,
            tx_invalid_descs: st.tx_invalid_descs,
            rx_ring_full: st.rx_ring_full,
            rx_fill_ring_empty: st.rx_fill_ring_empty_descs,
            tx_ring_empty: st.tx_ring_empty_descs,
        })
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.umem.rings.fd()
    }

    /// Turns on the kernel's preferred busy polling for this socket
    /// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL of `usecs`, SO_BUSY_POLL_BUDGET of
    /// `budget`): on a NIC whose driver runs NAPI for the queue, the driver's
    /// RX and TX work then runs in our `recvfrom`/`sendto` calls instead of
    /// in interrupts (see `busy_poll`). Fails where the kernel refuses an
    /// option; veth in copy mode accepts them but has nothing to poll.
    pub fn enable_busy_poll(&mut self, usecs: u32, budget: u32) -> io::Result<()> {
        let set = |opt: libc::c_int, value: libc::c_int| self.umem.rings.set_socket_option(opt, value);
        set(libc::SO_PREFER_BUSY_POLL, 1)?;
        set(libc::SO_BUSY_POLL, usecs.min(i32::MAX as u32) as libc::c_int)?;
        set(libc::SO_BUSY_POLL_BUDGET, budget.min(i32::MAX as u32) as libc::c_int)?;
        self.umem.rings.busy_poll = true;
        Ok(())
    }

    /// With busy polling on, drives the driver's NAPI once: a non-blocking
    /// `recvfrom` (the kernel's documented way for AF_XDP). No-op otherwise.
    pub fn busy_poll(&mut self) {
        if !self.umem.rings.busy_poll {
            return;
        }
        self.umem.rings.poll_napi();
    }

    /// Blocks up to `timeout` for received frames.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.umem.rings.poll_rx(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(false)
    }
}

/// A bound socket and its fresh UMEM.
type Bound = (Umem, Vec<xsk_rs::FrameDesc>, (xsk_rs::TxQueue, xsk_rs::RxQueue, Option<(xsk_rs::FillQueue, xsk_rs::CompQueue)>));

/// The UMEM to create: its layout, frame count, and whether on hugepages
/// (turned off if they fail under [`HugePages::Auto`]).
struct UmemPlan {
    cfg: UmemConfig,
    frames: u32,
    huge: bool,
    policy: HugePages,
}

/// Creates a fresh UMEM and binds a socket over it, retrying EBUSY. Each
/// attempt gets a new UMEM: a failed bind leaves the rings set up on the
/// UMEM's socket, which then refuses them a second time.
fn bind_fresh(iface: &str, name: &Interface, queue: u32, plan: &mut UmemPlan, sock_cfg: SocketConfig) -> Result<Bound, SocketError> {
    let count = NonZeroU32::new(plan.frames).ok_or_else(|| SocketError::Config("zero frames".into()))?;
    let mut delay = Duration::from_millis(50);
    let mut huge_waited = Duration::ZERO;
    loop {
        let (umem, descs) = match Umem::new(plan.cfg, count, plan.huge) {
            Ok(u) => u,
            // The kernel lets go of a closed socket's UMEM pages in deferred
            // work, so the hugepages of a refused zero-copy bind a moment
            // ago may not be free yet.
            Err(_) if plan.huge && huge_waited < Duration::from_secs(1) => {
                std::thread::sleep(Duration::from_millis(20));
                huge_waited += Duration::from_millis(20);
                continue;
            }
            Err(err) if plan.huge && plan.policy != HugePages::On => {
                log::warn!("{iface} queue {queue}: UMEM on hugepages failed ({err}); using normal pages");
                plan.huge = false;
                continue;
            }
            Err(err) => return Err(SocketError::Umem(err.to_string())),
        };
        match super::rings::new_socket(sock_cfg, &umem, name, queue) {
            Ok(s) => return Ok((umem, descs, s)),
            Err(err) => {
                // Keep the errno: EBUSY is retried, and a refused zero-copy
                // bind is explained by it.
                let source = match std::error::Error::source(&err).and_then(|s| s.downcast_ref::<io::Error>()) {
                    Some(s) => s.raw_os_error().map(io::Error::from_raw_os_error).unwrap_or_else(|| io::Error::new(s.kind(), s.to_string())),
                    None => io::Error::other(err.to_string()),
                };
                if source.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_secs(2) {
                    log::info!("{iface} queue {queue} busy, retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay *= 2;
                    continue;
                }
                return Err(SocketError::Bind { iface: iface.into(), queue, source });
            }
        }
    }
}

mod frames;

#[cfg(test)]
mod tests;
