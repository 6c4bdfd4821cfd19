//! One AF_XDP socket with its UMEM and four rings (xsk-rs; zero-copy or
//! copy mode, see [`super::bind`]).
//!
//! # Frame ownership
//! A UMEM frame is owned either by us or by the kernel. Frames we own are
//! [`Frame`]s: not `Copy`, not `Clone`, so handing one to a ring moves it
//! and code can no longer touch it; frames come back only from the kernel's
//! RX and completion rings. Received frames go straight back to the fill
//! ring after the stack has looked at them (it copies what it keeps).
//!
//! Frame accounting: `fill + rx + tx + completion + free + held = total`
//! (see [`FrameCounts`]); debug builds check it after every `recv` and
//! `flush`.
//!
//! # Multi-buffer (jumbo frames)
//! When the largest frame (MTU + 14) does not fit in one UMEM frame, the
//! socket is bound with XDP_USE_SG and a packet may span several frames,
//! its descriptors chained by XDP_PKT_CONTD on all but the last
//! (Documentation/networking/af_xdp.rst, "Multi-Buffer Support").
//! - RX: the kernel posts a packet's descriptors all at once, but a batch
//!   taken off the ring may end inside a chain. A single-descriptor packet
//!   is handed over in place, as before; a chain is copied into a scratch
//!   buffer, across batches if need be, and handed over whole. Its frames go
//!   back to the fill ring straight away, so no frame is held.
//! - TX: with multi-buffer on, the sender writes into a scratch buffer of
//!   MTU + 14 bytes; what fits one frame is copied into one, anything longer
//!   is split over a chain. The chain goes on the TX ring whole or not at
//!   all, and only once the ring has room and the free list has frames for
//!   the longest chain the MTU can need, so a full ring never splits a
//!   packet and the sender's frame is never lost.
//!
//! The logic is generic over the [`Rings`] backend: xsk-rs in production,
//! a fake kernel over anonymous memory in the unit tests.

use std::io;
use std::num::NonZeroU32;
use std::time::Duration;

use xsk_rs::config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{Socket, Umem};

use super::bind::{huge_pages_plan, wait_for_huge_pages, zero_copy_advice, zero_copy_refusal, BindMode, HugePages, MemInfo, UmemInfo, ZeroCopy};
use super::rings::{Rings, XskRings};

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

/// A frame of UMEM that we own.
pub struct Frame<D>(D);

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
    /// Held by connections. Always 0: the stack copies what it keeps, and
    /// every received frame goes straight back to the fill ring.
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
    rings: R,
    free: Vec<Frame<R::Desc>>,
    rx_descs: Vec<R::Desc>,
    comp_descs: Vec<R::Desc>,
    /// Given to the fill ring and not yet taken back off the RX ring.
    rx_posted: usize,
    /// Given to the TX ring and not yet taken back off the completion ring.
    tx_in_flight: usize,
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
    /// The sender writes here when the frame may not fit one UMEM frame.
    tx_scratch: Vec<u8>,
    /// A TX chain being assembled.
    tx_chain: Vec<D>,
}

/// What a multi-buffer queue keeps between calls, to receive.
struct RxChains {
    /// A received chain so far (empty between packets).
    rx_scratch: Vec<u8>,
    /// Inside a received chain: its last descriptor is still to come.
    rx_partial: bool,
    /// The chain inside which we are is too long and is being dropped.
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
        let mut opts = libc::xdp_options { flags: 0 };
        let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: `opts` and `len` are valid for writes of the sizes given,
        // and the fd is this queue's open AF_XDP socket.
        let rc = unsafe { libc::getsockopt(self.fd(), libc::SOL_XDP, libc::XDP_OPTIONS, (&mut opts as *mut libc::xdp_options).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }

    /// The kernel's counters for this socket (getsockopt XDP_STATISTICS):
    /// frames it dropped because our RX ring was full or the fill ring was
    /// empty, and invalid descriptors. Frames the stack never saw are
    /// counted here.
    pub fn kernel_stats(&self) -> io::Result<KernelStats> {
        // SAFETY: xdp_statistics is plain integers; all-zero is valid.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given,
        // and the fd is this queue's open AF_XDP socket.
        let rc = unsafe { libc::getsockopt(self.fd(), libc::SOL_XDP, libc::XDP_STATISTICS, (&mut st as *mut libc::xdp_statistics).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
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
        self.rings.fd()
    }

    /// Turns on the kernel's preferred busy polling for this socket
    /// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL of `usecs`, SO_BUSY_POLL_BUDGET of
    /// `budget`): on a NIC whose driver runs NAPI for the queue, the driver's
    /// RX and TX work then runs in our `recvfrom`/`sendto` calls instead of
    /// in interrupts (see `busy_poll`). Fails where the kernel refuses an
    /// option; veth in copy mode accepts them but has nothing to poll.
    pub fn enable_busy_poll(&mut self, usecs: u32, budget: u32) -> io::Result<()> {
        let fd = self.fd();
        let set = |opt: libc::c_int, value: libc::c_int| -> io::Result<()> {
            // SAFETY: `fd` is our open AF_XDP socket; `value` lives across
            // the call and its exact size is passed.
            let rc = unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        set(libc::SO_PREFER_BUSY_POLL, 1)?;
        set(libc::SO_BUSY_POLL, usecs.min(i32::MAX as u32) as libc::c_int)?;
        set(libc::SO_BUSY_POLL_BUDGET, budget.min(i32::MAX as u32) as libc::c_int)?;
        self.rings.busy_poll = true;
        Ok(())
    }

    /// With busy polling on, drives the driver's NAPI once: a non-blocking
    /// `recvfrom` (the kernel's documented way for AF_XDP). No-op otherwise.
    pub fn busy_poll(&mut self) {
        if !self.rings.busy_poll {
            return;
        }
        // SAFETY: a zero-length recvfrom on our own socket with no buffer
        // and no address; the kernel writes nothing.
        let _ = unsafe { libc::recvfrom(self.fd(), std::ptr::null_mut(), 0, libc::MSG_DONTWAIT, std::ptr::null_mut(), std::ptr::null_mut()) };
    }

    /// Blocks up to `timeout` for received frames.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.rings.poll_rx(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(false)
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
        // SAFETY: each (interface, queue) is bound once per UMEM, and the
        // program is loaded by us (INHIBIT_PROG_LOAD), as the crate requires.
        match unsafe { Socket::new(sock_cfg, &umem, name, queue) } {
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

impl<R: Rings> XskQueue<R> {
    /// Takes `descs` (every frame of the UMEM), posts up to `ring_size` of
    /// them (at most half) to the fill ring and keeps the rest free.
    /// Frames of up to `max_frame` bytes are sent; beyond one UMEM frame,
    /// as chains (the socket must then be bound with XDP_USE_SG).
    fn new(mut rings: R, descs: Vec<R::Desc>, ring_size: u32, queue: u32, max_frame: usize) -> Self {
        let total = descs.len();
        let cap = rings.frame_capacity();
        let sg = (max_frame > cap).then(|| {
            let tx_chain_max = max_frame.div_ceil(cap);
            assert!(tx_chain_max <= MAX_CHAIN, "{max_frame}-byte frames need {tx_chain_max} frames of {cap}");
            let tx = TxChains { tx_max: max_frame, tx_chain_max, tx_scratch: vec![0; max_frame], tx_chain: Vec::with_capacity(tx_chain_max) };
            let rx = RxChains { rx_scratch: Vec::with_capacity(RX_MAX), rx_partial: false, rx_dropping: false };
            (Box::new(tx), Box::new(rx))
        });
        let (sg_tx, sg_rx) = sg.unzip();
        let post = (ring_size as usize).min(total / 2);
        // SAFETY: these frames are fresh from the UMEM; nothing else uses them.
        let posted = unsafe { rings.produce_fill(&descs[..post]) };
        let free = descs[posted..].iter().map(|d| Frame(*d)).collect();
        XskQueue {
            rings,
            free,
            rx_descs: vec![R::Desc::default(); RX_BATCH],
            // As many as the completion ring holds (twice the TX ring).
            comp_descs: vec![R::Desc::default(); ring_size as usize * 2],
            rx_posted: posted,
            tx_in_flight: 0,
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
        let rx = self.rings.rx_avail_exact() as usize;
        let completion = self.rings.comp_avail_exact() as usize;
        // A ring showing more than we gave the kernel breaks the invariant;
        // saturating keeps that visible in the sum.
        FrameCounts {
            fill: self.rx_posted.saturating_sub(rx),
            rx,
            tx: self.tx_in_flight.saturating_sub(completion),
            completion,
            free: self.free.len(),
            held: 0,
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

    /// Takes up to `max` descriptors off the RX ring and hands each
    /// complete packet among them to `f` (a chain as one contiguous frame,
    /// see the module docs), then gives the frames back to the kernel's
    /// fill ring. Returns how many packets `f` saw.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        self.recv_with_tx(max, |frame, _| f(frame))
    }

    /// [`XskQueue::recv`], lending `f` the queue's TX side with each
    /// received frame: it may write and queue frames to send (a reply
    /// straight into a TX frame) while it still reads the received one.
    pub fn recv_with_tx(&mut self, max: usize, mut f: impl FnMut(&[u8], &mut XskTx<'_, R>)) -> usize {
        let max = max.min(self.rx_descs.len());
        let n = self.rings.consume_rx(&mut self.rx_descs[..max]);
        if n == 0 {
            return 0;
        }
        self.rx_posted -= n;
        let mut packets = 0;
        let mut largest = 0;
        for d in &self.rx_descs[..n] {
            // SAFETY: the kernel handed this frame to us; we read it before
            // giving it back below.
            let data: *const [u8] = unsafe { self.rings.data(d) };
            let more = R::more(d);
            let mut tx = XskTx {
                rings: &mut self.rings,
                free: &mut self.free,
                tx_in_flight: &mut self.tx_in_flight,
                stats: &mut self.stats,
                sg: self.sg_tx.as_deref_mut(),
            };
            // SAFETY (for each `&*data` below): the slice lies in the UMEM's
            // memory, not in `self.rings` (the `Rings::data` contract), so it
            // stays valid while `tx` borrows the rings; the frame is ours
            // until `produce_fill` below, and `tx` writes only frames off the
            // free list, which this one is not on. So nothing writes it while
            // it is read.
            match self.sg_rx.as_deref_mut() {
                Some(c) if more || c.rx_partial => {
                    let data = unsafe { &*data };
                    if !c.rx_dropping {
                        if c.rx_scratch.len() + data.len() > RX_MAX {
                            c.rx_dropping = true;
                            c.rx_scratch.clear();
                            tx.stats.rx_chains_dropped += 1;
                        } else {
                            c.rx_scratch.extend_from_slice(data);
                        }
                    }
                    c.rx_partial = more;
                    if !more {
                        if !c.rx_dropping {
                            largest = largest.max(c.rx_scratch.len());
                            tx.stats.rx_chains += 1;
                            f(&c.rx_scratch, &mut tx);
                            packets += 1;
                        }
                        c.rx_scratch.clear();
                        c.rx_dropping = false;
                    }
                }
                // A socket without XDP_USE_SG never sees XDP_PKT_CONTD.
                _ => {
                    let data = unsafe { &*data };
                    largest = largest.max(data.len());
                    f(data, &mut tx);
                    packets += 1;
                }
            }
        }
        self.stats.rx_largest = self.stats.rx_largest.max(largest as u64);
        self.stats.rx_frames += n as u64;
        // SAFETY: these frames came off the RX ring and nothing refers to
        // them any more (f has returned).
        let back = unsafe { self.rings.produce_fill(&self.rx_descs[..n]) };
        debug_assert_eq!(back, n, "fill ring sized above the frames posted");
        self.rx_posted += back;
        // Not reached while the fill ring is larger than what we post; if
        // it were, the frames would be ours again, not lost.
        self.free.extend(self.rx_descs[back..n].iter().map(|d| Frame(*d)));
        if self.rings.fill_needs_wakeup() {
            self.rings.wake_fill();
        }
        self.check_frames();
        packets
    }

    /// Lets `f` write one frame (up to MTU + 14 bytes) and queues it for
    /// transmission: in place into a free UMEM frame, or with multi-buffer
    /// on through a scratch buffer into one frame or a chain. Returns
    /// `Some(true)` if a frame was queued, `Some(false)` if `f` had nothing,
    /// `None` if no frame or ring slot was free (then `f` is not called, so
    /// nothing it would have sent is lost).
    pub fn send_with(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<bool> {
        self.tx().send_with(f)
    }

    /// The TX side, borrowed.
    pub fn tx(&mut self) -> XskTx<'_, R> {
        XskTx {
            rings: &mut self.rings,
            free: &mut self.free,
            tx_in_flight: &mut self.tx_in_flight,
            stats: &mut self.stats,
            sg: self.sg_tx.as_deref_mut(),
        }
    }

    /// Kicks transmission, and takes back frames the kernel has sent.
    pub fn flush(&mut self) {
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
        while self.rings.tx_needs_wakeup() && kicks < MAX_KICKS {
            let before = self.rings.tx_free_exact();
            if before == size {
                break;
            }
            self.stats.kicks += 1;
            kicks += 1;
            self.rings.kick_tx();
            let after = self.rings.tx_free_exact();
            if after == size || after == before {
                break;
            }
        }
        let n = self.rings.consume_comp(&mut self.comp_descs);
        self.free.extend(self.comp_descs[..n].iter().map(|d| Frame(*d)));
        // More completions than frames in flight would be a kernel bug;
        // the frame check below reports it.
        self.tx_in_flight -= n.min(self.tx_in_flight);
        self.check_frames();
    }
}

/// A queue's TX side, borrowed ([`XskQueue::tx`]): free frames written in
/// place and queued on the TX ring. [`XskQueue::recv_with_tx`] lends it
/// while a received frame is being looked at.
pub struct XskTx<'a, R: Rings> {
    rings: &'a mut R,
    free: &'a mut Vec<Frame<R::Desc>>,
    tx_in_flight: &'a mut usize,
    stats: &'a mut QueueStats,
    /// The multi-buffer send state, on a queue that chains frames.
    sg: Option<&'a mut TxChains<R::Desc>>,
}

impl<R: Rings> XskTx<'_, R> {
    /// [`XskQueue::send_with`].
    pub fn send_with(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<bool> {
        if self.sg.is_some() {
            return self.send_chained(f);
        }
        if !self.rings.tx_has_room(1) {
            return None;
        }
        let Some(Frame(mut desc)) = self.free.pop() else {
            self.stats.tx_no_frame += 1;
            return None;
        };
        // SAFETY: we own this frame (it came from the free list).
        let len = unsafe { self.rings.write(&mut desc, f) };
        if len == 0 {
            self.free.push(Frame(desc));
            return Some(false);
        }
        R::set_more(&mut desc, false);
        // SAFETY: the frame holds a complete frame of `len` bytes; after this
        // the kernel owns it until it appears on the completion ring.
        if !unsafe { self.rings.produce_tx(std::slice::from_ref(&desc)) } {
            self.free.push(Frame(desc));
            return None;
        }
        *self.tx_in_flight += 1;
        self.stats.tx_frames += 1;
        self.stats.tx_largest = self.stats.tx_largest.max(len as u64);
        Some(true)
    }

    /// `send_with` on a multi-buffer queue: `f` writes into the scratch
    /// buffer, and the frame is copied into as many UMEM frames as it
    /// needs. Room for the longest chain is made sure of first.
    fn send_chained(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<bool> {
        let c = self.sg.as_deref_mut().expect("multi-buffer queue");
        if !self.rings.tx_has_room(c.tx_chain_max as u32) {
            return None;
        }
        if self.free.len() < c.tx_chain_max {
            self.stats.tx_no_frame += 1;
            return None;
        }
        let len = f(&mut c.tx_scratch[..c.tx_max]).unwrap_or(0).min(c.tx_max);
        if len == 0 {
            return Some(false);
        }
        let cap = self.rings.frame_capacity();
        let parts = len.div_ceil(cap);
        c.tx_chain.clear();
        for (i, chunk) in c.tx_scratch[..len].chunks(cap).enumerate() {
            let Some(Frame(mut desc)) = self.free.pop() else { unreachable!("free frames checked above") };
            // SAFETY: we own this frame (it came from the free list).
            let n = unsafe {
                self.rings.write(&mut desc, |buf| {
                    buf[..chunk.len()].copy_from_slice(chunk);
                    Some(chunk.len())
                })
            };
            debug_assert_eq!(n, chunk.len());
            R::set_more(&mut desc, i + 1 < parts);
            c.tx_chain.push(desc);
        }
        // SAFETY: each frame holds its part of the packet, chained by
        // XDP_PKT_CONTD; after this the kernel owns them until they appear
        // on the completion ring.
        if !unsafe { self.rings.produce_tx(&c.tx_chain) } {
            // Not reached: the room checked above only grows meanwhile.
            debug_assert!(false, "TX ring refused a chain it had room for");
            self.free.extend(c.tx_chain.drain(..).map(Frame));
            return None;
        }
        *self.tx_in_flight += parts;
        self.stats.tx_frames += parts as u64;
        if parts > 1 {
            self.stats.tx_chains += 1;
        }
        self.stats.tx_largest = self.stats.tx_largest.max(len as u64);
        Some(true)
    }
}

#[cfg(test)]
mod tests;
