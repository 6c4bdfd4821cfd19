//! One AF_XDP socket with its UMEM and four rings (xsk-rs, copy mode).
//!
//! # Frame ownership
//! A UMEM frame is owned either by us or by the kernel. Frames we own are
//! [`Frame`]s: not `Copy`, not `Clone`, so handing one to a ring moves it
//! and code can no longer touch it; frames come back only from the kernel's
//! completion ring. Received frames go straight back to the fill ring after
//! the stack has looked at them (it copies what it keeps).
//!
//! Frame accounting: `fill + rx (kernel) + tx in flight + free = total`.

use std::io;
use std::num::NonZeroU32;
use std::time::Duration;

use xsk_rs::config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Kicks per flush at most: a full 2048-slot ring in copy mode's batches of 32.
const MAX_KICKS: u32 = 64;

/// A frame of UMEM that we own.
pub struct Frame(FrameDesc);

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub frames: u32,
    pub frame_size: u32,
    pub ring_size: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { frames: 8192, frame_size: 2048, ring_size: 2048 }
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
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub tx_no_frame: u64,
    pub kicks: u64,
}

pub struct XskQueue {
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    tx: TxQueue,
    rx: RxQueue,
    free: Vec<Frame>,
    rx_descs: Vec<FrameDesc>,
    comp_descs: Vec<FrameDesc>,
    tx_in_flight: usize,
    /// Slots in the TX ring.
    tx_size: u32,
    /// Preferred busy polling is on: drive NAPI with recvfrom each turn.
    busy_poll: bool,
    total: usize,
    queue: u32,
    stats: QueueStats,
}

impl XskQueue {
    /// Creates the UMEM and binds a socket to `iface` queue `queue`, retrying
    /// EBUSY (the previous owner of the queue may still be letting go).
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
        let frames = NonZeroU32::new(cfg.frames).ok_or_else(|| e("zero frames".into()))?;
        let (umem, descs) = Umem::new(umem_cfg, frames, false).map_err(|x| SocketError::Umem(x.to_string()))?;
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let name: Interface = iface.parse().map_err(|_| e(format!("bad interface name {iface}")))?;
        let mut delay = Duration::from_millis(50);
        let (tx, rx, rings) = loop {
            // SAFETY: each (interface, queue) is bound once per UMEM, and the
            // program is loaded by us (INHIBIT_PROG_LOAD), as the crate requires.
            match unsafe { Socket::new(sock_cfg, &umem, &name, queue) } {
                Ok(s) => break s,
                Err(err) => {
                    let source = std::error::Error::source(&err)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .map(|s| io::Error::new(s.kind(), s.to_string()))
                        .unwrap_or_else(|| io::Error::other(err.to_string()));
                    if source.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_secs(2) {
                        log::info!("{iface} queue {queue} busy, retrying in {delay:?}");
                        std::thread::sleep(delay);
                        delay *= 2;
                        continue;
                    }
                    return Err(SocketError::Bind { iface: iface.into(), queue, source });
                }
            }
        };
        let (mut fill, comp) = rings.ok_or_else(|| e("no fill/completion rings".into()))?;
        let total = descs.len();
        let post = (cfg.ring_size as usize).min(total / 2);
        // SAFETY: these frames are fresh from the UMEM; nothing else uses them.
        let posted = unsafe { fill.produce(&descs[..post]) };
        let free = descs[posted..].iter().map(|d| Frame(*d)).collect();
        Ok(XskQueue {
            umem,
            fill,
            comp,
            tx,
            rx,
            free,
            rx_descs: descs[..64].to_vec(),
            comp_descs: descs[..cfg.ring_size as usize].to_vec(),
            tx_in_flight: 0,
            tx_size: cfg.ring_size,
            busy_poll: false,
            total,
            queue,
            stats: QueueStats::default(),
        })
    }

    pub fn queue_id(&self) -> u32 {
        self.queue
    }

    /// Whether the kernel bound this socket in zero-copy mode (else copy),
    /// read back with getsockopt(XDP_OPTIONS).
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
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.rx.fd().as_raw_fd()
    }
    pub fn stats(&self) -> QueueStats {
        self.stats
    }
    /// (free, tx in flight, total) frames.
    pub fn frames(&self) -> (usize, usize, usize) {
        (self.free.len(), self.tx_in_flight, self.total)
    }

    /// Hands each received frame (at most `max`) to `f`, then gives the
    /// frames back to the kernel's fill ring.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let max = max.min(self.rx_descs.len());
        // SAFETY: rx_descs are scratch descriptors the RX ring fills in.
        let n = unsafe { self.rx.consume(&mut self.rx_descs[..max]) };
        for d in &self.rx_descs[..n] {
            // SAFETY: the kernel handed this frame to us; we read it before
            // giving it back below.
            let data = unsafe { self.umem.data(d) };
            f(data.contents());
        }
        if n > 0 {
            self.stats.rx_frames += n as u64;
            // SAFETY: these frames came off the RX ring and nothing refers to
            // them any more (f has returned).
            let back = unsafe { self.fill.produce(&self.rx_descs[..n]) };
            debug_assert_eq!(back, n, "fill ring sized above the frames posted");
            if self.fill.needs_wakeup() {
                let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
            }
        }
        n
    }

    /// Lets `f` write one frame in place into a free UMEM frame and queues it
    /// for transmission. Returns `Some(true)` if a frame was queued,
    /// `Some(false)` if `f` had nothing, `None` if no frame or ring slot was free.
    pub fn send_with(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<bool> {
        let Some(Frame(mut desc)) = self.free.pop() else {
            self.stats.tx_no_frame += 1;
            return None;
        };
        let len = {
            // SAFETY: we own this frame (it came from the free list).
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let cap = data.cursor().buf_len();
            data.cursor().set_pos(cap);
            match f(data.contents_mut()) {
                Some(n) => {
                    data.cursor().set_pos(n);
                    n
                }
                None => 0,
            }
        };
        if len == 0 {
            self.free.push(Frame(desc));
            return Some(false);
        }
        // SAFETY: the frame holds a complete frame of `len` bytes; after this
        // the kernel owns it until it appears on the completion ring.
        if unsafe { self.tx.produce_one(&desc) } == 0 {
            self.free.push(Frame(desc));
            return None;
        }
        self.tx_in_flight += 1;
        self.stats.tx_frames += 1;
        Some(true)
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
        while self.tx.needs_wakeup() && kicks < MAX_KICKS {
            let before = self.tx.nb_free_exact();
            if before == size {
                break;
            }
            self.stats.kicks += 1;
            kicks += 1;
            let _ = self.tx.wakeup();
            let after = self.tx.nb_free_exact();
            if after == size || after == before {
                break;
            }
        }
        // SAFETY: comp_descs are scratch descriptors the ring fills in.
        let n = unsafe { self.comp.consume(&mut self.comp_descs) };
        for d in &self.comp_descs[..n] {
            self.free.push(Frame(*d));
        }
        self.tx_in_flight -= n.min(self.tx_in_flight);
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
        self.busy_poll = true;
        Ok(())
    }

    /// With busy polling on, drives the driver's NAPI once: a non-blocking
    /// `recvfrom` (the kernel's documented way for AF_XDP). No-op otherwise.
    pub fn busy_poll(&mut self) {
        if !self.busy_poll {
            return;
        }
        // SAFETY: a zero-length recvfrom on our own socket with no buffer
        // and no address; the kernel writes nothing.
        let _ = unsafe { libc::recvfrom(self.fd(), std::ptr::null_mut(), 0, libc::MSG_DONTWAIT, std::ptr::null_mut(), std::ptr::null_mut()) };
    }

    /// Blocks up to `timeout` for received frames.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.rx.poll(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(false)
    }
}

use std::os::fd::AsRawFd;
