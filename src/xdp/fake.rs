//! A fake kernel for unit tests of [`XskQueue`](super::XskQueue), no root
//! needed: a UMEM and four single-producer/single-consumer rings in
//! anonymous memory, laid out like the kernel's (producer, consumer and
//! flags words, then the slots), with free-running `u32` indices that wrap.
//!
//! [`FakeRings`] is user space's end, the [`Rings`] backend the queue runs
//! on. [`Kernel`] is the other end: it takes frames off the fill ring,
//! writes received frames into them and posts them on RX; it takes frames
//! off TX (at most 32 per kick in copy mode, like `sendto` on a copy-mode
//! socket, or whenever the test drives it, like a zero-copy driver) and
//! posts them on the completion ring, at once or later.
//!
//! Multi-buffer (`FakeConfig::sg`, as a socket bound with XDP_USE_SG): a
//! received packet longer than a frame is split over as many frames as it
//! needs, all posted on RX at once with XDP_PKT_CONTD on all but the last,
//! or dropped whole when the fill ring or RX ring lacks room for all of
//! them, as the kernel does. On TX the kernel takes descriptors one at a
//! time and a packet leaves when its last descriptor does; a chain longer
//! than [`MAX_CHAIN`](super::socket::MAX_CHAIN) is a bug of ours, and so is a chain
//! whose first part the kernel finds on the ring without the rest
//! (`split_chains`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::rings::Rings;

/// The kernel's flag word bit asking user space for a wakeup.
const NEED_WAKEUP: u32 = 1;
/// XDP_PKT_CONTD in a descriptor's options.
pub const CONTD: u32 = 1;
/// Frames one copy-mode `sendto` sends at most (the kernel's TX_BATCH_SIZE).
pub const COPY_MODE_BATCH: usize = 32;

// Ring layout: each index on its own cache line, then the slots.
const PRODUCER: usize = 0;
const CONSUMER: usize = 64;
const FLAGS: usize = 128;
const SLOTS: usize = 192;

/// A private anonymous mapping, unmapped when the last handle goes.
struct Anon {
    ptr: NonNull<u8>,
    len: usize,
}

impl Anon {
    fn new(len: usize) -> Rc<Anon> {
        // SAFETY: asks for a fresh private anonymous mapping; no existing
        // memory is touched.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Rc::new(Anon { ptr: NonNull::new(p.cast()).expect("mmap returned null"), len })
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range, and no handle to it is left.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One ring's memory.
struct Ring<T> {
    mem: Rc<Anon>,
    size: u32,
    _slot: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    /// A producer end and a consumer end of a new ring of `size` slots
    /// whose indices both start at `start`.
    fn pair(size: u32, start: u32) -> (Prod<T>, Cons<T>) {
        assert!(size.is_power_of_two());
        assert!(std::mem::align_of::<T>() <= 64);
        let ring = |mem: &Rc<Anon>| Ring { mem: Rc::clone(mem), size, _slot: PhantomData };
        let mem = Anon::new(SLOTS + size as usize * std::mem::size_of::<T>());
        let r = ring(&mem);
        r.word(PRODUCER).store(start, Ordering::Relaxed);
        r.word(CONSUMER).store(start, Ordering::Relaxed);
        (Prod { ring: r, prod: start, cons: start }, Cons { ring: ring(&mem), cons: start, prod: start })
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        debug_assert!(at == PRODUCER || at == CONSUMER || at == FLAGS);
        // SAFETY: the header words lie inside the page-aligned mapping, are
        // 4-aligned, and are only ever accessed atomically.
        unsafe { &*self.mem.ptr.as_ptr().add(at).cast::<AtomicU32>() }
    }

    fn slot(&self, index: u32) -> *mut T {
        let i = (index & (self.size - 1)) as usize;
        // SAFETY: i < size, so the slot lies inside the mapping; SLOTS is
        // 64-aligned and T needs no more.
        unsafe { self.mem.ptr.as_ptr().add(SLOTS).cast::<T>().add(i) }
    }

    /// The entries between the published consumer and producer indices.
    fn entries(&self) -> Vec<T> {
        let (cons, prod) = (self.word(CONSUMER).load(Ordering::Acquire), self.word(PRODUCER).load(Ordering::Acquire));
        // SAFETY: slots between the published indices hold entries the
        // producer wrote before publishing, and neither end writes them.
        (0..prod.wrapping_sub(cons)).map(|k| unsafe { self.slot(cons.wrapping_add(k)).read() }).collect()
    }

    fn set_flag(&self, on: bool) {
        self.word(FLAGS).store(if on { NEED_WAKEUP } else { 0 }, Ordering::Release);
    }
    fn flag(&self) -> bool {
        self.word(FLAGS).load(Ordering::Acquire) & NEED_WAKEUP != 0
    }
}

/// A ring's producer end: its own index, and the last consumer index seen.
struct Prod<T> {
    ring: Ring<T>,
    prod: u32,
    cons: u32,
}

impl<T: Copy> Prod<T> {
    /// Free slots, answering from the cached consumer index while that
    /// shows at least `want`.
    fn free(&mut self, want: u32) -> u32 {
        let free = self.ring.size - self.prod.wrapping_sub(self.cons);
        if free >= want {
            return free;
        }
        self.free_exact()
    }
    fn free_exact(&mut self) -> u32 {
        self.cons = self.ring.word(CONSUMER).load(Ordering::Acquire);
        self.ring.size - self.prod.wrapping_sub(self.cons)
    }
    /// Writes all of `items` and publishes them, or nothing if they do not fit.
    fn push(&mut self, items: impl ExactSizeIterator<Item = T>) -> usize {
        let n = items.len() as u32;
        if self.free(n) < n {
            return 0;
        }
        for (k, item) in items.enumerate() {
            // SAFETY: slots from our index up to the consumer's plus the
            // size are the producer's until published.
            unsafe { self.ring.slot(self.prod.wrapping_add(k as u32)).write(item) };
        }
        self.prod = self.prod.wrapping_add(n);
        self.ring.word(PRODUCER).store(self.prod, Ordering::Release);
        n as usize
    }
}

/// A ring's consumer end: its own index, and the last producer index seen.
struct Cons<T> {
    ring: Ring<T>,
    cons: u32,
    prod: u32,
}

impl<T: Copy> Cons<T> {
    fn avail_exact(&mut self) -> u32 {
        self.prod = self.ring.word(PRODUCER).load(Ordering::Acquire);
        self.prod.wrapping_sub(self.cons)
    }
    /// Takes up to `max` entries, handing each to `f`, and publishes the
    /// new consumer index.
    fn pop(&mut self, max: usize, mut f: impl FnMut(usize, T)) -> usize {
        let mut avail = self.prod.wrapping_sub(self.cons);
        if (avail as usize) < max {
            avail = self.avail_exact();
        }
        let n = (avail as usize).min(max);
        for k in 0..n {
            // SAFETY: slots between our index and the producer's published
            // one hold entries written before publishing; the producer
            // leaves them alone until we publish past them.
            f(k, unsafe { self.ring.slot(self.cons.wrapping_add(k as u32)).read() });
        }
        self.cons = self.cons.wrapping_add(n as u32);
        self.ring.word(CONSUMER).store(self.cons, Ordering::Release);
        n
    }
}

/// An RX/TX ring entry, laid out like the kernel's `xdp_desc`; also the
/// queue's descriptor type over the fake.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct FakeConfig {
    pub frames: u32,
    pub frame_size: u32,
    /// RX and TX ring slots; fill and completion rings get twice that, as
    /// `XskQueue::open` sets them up.
    pub ring_size: u32,
    /// Where every ring's indices start (near `u32::MAX` to test wrapping).
    pub start: u32,
    /// Kicks send (up to 32 frames each), as in copy mode; else only
    /// [`Kernel::send`] does, as a zero-copy driver would.
    pub copy_mode: bool,
    /// Sent frames reach the completion ring only through [`Kernel::complete`].
    pub deferred_completion: bool,
    /// Bound with XDP_USE_SG: packets longer than a frame arrive as chains
    /// (else they are dropped), and TX takes chains.
    pub sg: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig { frames: 64, frame_size: 256, ring_size: 16, start: 0, copy_mode: true, deferred_completion: false, sg: false }
    }
}

/// The fake kernel's side of the rings.
pub struct Kernel {
    umem: Rc<Anon>,
    cfg: FakeConfig,
    fill: Cons<u64>,
    rx: Prod<Desc>,
    tx: Cons<Desc>,
    comp: Prod<u64>,
    /// Taken off the fill ring but not yet filled (the kernel's buffer pool).
    pool: Vec<u64>,
    /// Taken off TX and sent, not yet on the completion ring.
    sending: VecDeque<u64>,
    /// Every frame sent, in order (a chain as one frame).
    pub wire: Vec<Vec<u8>>,
    /// The packet being taken off TX: its descriptors so far.
    building: Vec<u8>,
    building_frames: usize,
    pub kicks: u64,
    pub rx_ring_full: u64,
    pub fill_ring_empty: u64,
    /// Packets longer than a frame dropped for want of XDP_USE_SG.
    pub rx_too_long: u64,
    /// Times the kernel took part of a chain off TX and found the ring
    /// empty before its last descriptor: user space posted it in parts.
    pub split_chains: u64,
    /// The longest chain taken off TX, in frames.
    pub longest_chain: usize,
}

/// Where the fake kernel has frames, by address.
#[derive(Debug, Default)]
pub struct Places {
    pub fill: Vec<u64>,
    pub pool: Vec<u64>,
    pub rx: Vec<u64>,
    pub tx: Vec<u64>,
    pub sending: Vec<u64>,
    pub comp: Vec<u64>,
}

impl Kernel {
    fn frame_ptr(&self, addr: u64) -> *mut u8 {
        let fs = u64::from(self.cfg.frame_size);
        assert!(addr % fs == 0 && addr / fs < u64::from(self.cfg.frames), "bad frame address {addr:#x}");
        // SAFETY: addr is the start of one of the UMEM's frames, inside the mapping.
        unsafe { self.umem.ptr.as_ptr().add(addr as usize) }
    }

    /// A frame arrives: the kernel fills frames from the fill ring with it
    /// (one, or with `sg` as many as it needs) and posts them on RX at
    /// once. False (and counted) if there were not enough frames or not
    /// enough room on RX; the frames taken then stay in the kernel's pool.
    pub fn receive(&mut self, payload: &[u8]) -> bool {
        let fs = self.cfg.frame_size as usize;
        assert!(!payload.is_empty());
        if payload.len() > fs && !self.cfg.sg {
            self.rx_too_long += 1;
            return false;
        }
        let parts = payload.len().div_ceil(fs);
        while self.pool.len() < parts {
            let mut got = None;
            self.fill.pop(1, |_, a| got = Some(a));
            match got {
                Some(a) => self.pool.push(a),
                None => {
                    self.fill_ring_empty += 1;
                    return false;
                }
            }
        }
        if (self.rx.free(parts as u32) as usize) < parts {
            self.rx_ring_full += 1;
            return false;
        }
        let mut descs = Vec::with_capacity(parts);
        for (i, chunk) in payload.chunks(fs).enumerate() {
            let addr = self.pool.pop().expect("frames taken above");
            // SAFETY: the frame came off the fill ring (or our pool), so the
            // kernel owns it; the chunk fits in a frame.
            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), self.frame_ptr(addr), chunk.len()) };
            descs.push(Desc { addr, len: chunk.len() as u32, options: if i + 1 < parts { CONTD } else { 0 } });
        }
        assert_eq!(self.rx.push(descs.into_iter()), parts);
        true
    }

    /// Sends up to `budget` frames off TX, each only with a completion slot
    /// kept for it (as the kernel reserves one). Returns how many.
    pub fn send(&mut self, budget: usize) -> usize {
        let mut sent = 0;
        while sent < budget {
            let keep = self.sending.len() as u32 + 1;
            if self.comp.free(keep) < keep {
                break;
            }
            let mut d = None;
            if self.tx.pop(1, |_, x| d = Some(x)) == 0 {
                break;
            }
            let d = d.unwrap();
            assert!(d.len > 0 && d.len <= self.cfg.frame_size, "bad TX length {}", d.len);
            assert!(d.options & !CONTD == 0, "unknown TX options {:#x}", d.options);
            assert!(d.options == 0 || self.cfg.sg, "XDP_PKT_CONTD on a socket without XDP_USE_SG");
            // SAFETY: the frame came off TX, so it is the kernel's until
            // completed; its length is within the frame.
            let bytes = unsafe { std::slice::from_raw_parts(self.frame_ptr(d.addr), d.len as usize) };
            self.building.extend_from_slice(bytes);
            self.building_frames += 1;
            assert!(self.building_frames <= super::socket::MAX_CHAIN, "a TX chain longer than the kernel takes");
            self.sending.push_back(d.addr);
            sent += 1;
            if d.options & CONTD == 0 {
                self.longest_chain = self.longest_chain.max(self.building_frames);
                self.building_frames = 0;
                self.wire.push(std::mem::take(&mut self.building));
            } else if self.tx.avail_exact() == 0 {
                self.split_chains += 1;
            }
        }
        if !self.cfg.deferred_completion {
            self.complete(usize::MAX);
        }
        sent
    }

    /// Posts up to `n` sent frames on the completion ring.
    pub fn complete(&mut self, n: usize) -> usize {
        let n = n.min(self.sending.len());
        let done = self.comp.push(self.sending.drain(..n));
        assert_eq!(done, n, "completion slot kept for every frame sent");
        n
    }

    /// A buggy kernel: posts `addr` on the completion ring though it never
    /// sent it.
    pub fn bogus_completion(&mut self, addr: u64) {
        assert_eq!(self.comp.push(std::iter::once(addr)), 1);
    }

    fn kick(&mut self) {
        self.kicks += 1;
        if self.cfg.copy_mode {
            self.send(COPY_MODE_BATCH);
        }
    }

    /// Sets the need_wakeup flags of the fill and TX rings.
    pub fn set_need_wakeup(&mut self, fill: bool, tx: bool) {
        self.fill.ring.set_flag(fill);
        self.tx.ring.set_flag(tx);
    }

    /// Every frame the kernel side has, by place.
    pub fn places(&self) -> Places {
        Places {
            fill: self.fill.ring.entries(),
            pool: self.pool.clone(),
            rx: self.rx.ring.entries().iter().map(|d| d.addr).collect(),
            tx: self.tx.ring.entries().iter().map(|d| d.addr).collect(),
            sending: self.sending.iter().copied().collect(),
            comp: self.comp.ring.entries(),
        }
    }

    /// The RX ring's published producer index.
    pub fn rx_producer(&self) -> u32 {
        self.rx.prod
    }
}

/// User space's end of the fake: the [`Rings`] backend.
pub struct FakeRings {
    umem: Rc<Anon>,
    cfg: FakeConfig,
    fill: Prod<u64>,
    rx: Cons<Desc>,
    tx: Prod<Desc>,
    comp: Cons<u64>,
    pub kernel: Kernel,
    pub fill_wakeups: u64,
}

impl FakeRings {
    /// The rings, the kernel, and a descriptor for every frame of the UMEM.
    pub fn new(cfg: FakeConfig) -> (FakeRings, Vec<Desc>) {
        assert!(cfg.frame_size.is_power_of_two());
        let umem = Anon::new(cfg.frames as usize * cfg.frame_size as usize);
        let (fill, kfill) = Ring::pair(cfg.ring_size * 2, cfg.start);
        let (krx, rx) = Ring::pair(cfg.ring_size, cfg.start);
        let (tx, ktx) = Ring::pair(cfg.ring_size, cfg.start);
        let (kcomp, comp) = Ring::pair(cfg.ring_size * 2, cfg.start);
        let kernel = Kernel {
            umem: Rc::clone(&umem),
            cfg,
            fill: kfill,
            rx: krx,
            tx: ktx,
            comp: kcomp,
            pool: Vec::new(),
            sending: VecDeque::new(),
            wire: Vec::new(),
            building: Vec::new(),
            building_frames: 0,
            kicks: 0,
            rx_ring_full: 0,
            fill_ring_empty: 0,
            rx_too_long: 0,
            split_chains: 0,
            longest_chain: 0,
        };
        let mut rings = FakeRings { umem, cfg, fill, rx, tx, comp, kernel, fill_wakeups: 0 };
        rings.kernel.set_need_wakeup(true, cfg.copy_mode);
        let descs = (0..u64::from(cfg.frames)).map(|i| Desc { addr: i * u64::from(cfg.frame_size), len: 0, options: 0 }).collect();
        (rings, descs)
    }

    fn frame(&self, desc: &Desc) -> *mut u8 {
        let fs = u64::from(self.cfg.frame_size);
        assert!(desc.addr % fs == 0 && desc.addr / fs < u64::from(self.cfg.frames), "bad frame address {:#x}", desc.addr);
        // SAFETY: desc.addr is the start of one of the UMEM's frames.
        unsafe { self.umem.ptr.as_ptr().add(desc.addr as usize) }
    }
}

impl Rings for FakeRings {
    type Desc = Desc;

    fn more(desc: &Desc) -> bool {
        desc.options & CONTD != 0
    }
    fn set_more(desc: &mut Desc, more: bool) {
        desc.options = if more { CONTD } else { 0 };
    }
    fn frame_capacity(&self) -> usize {
        self.cfg.frame_size as usize
    }

    fn consume_rx(&mut self, out: &mut [Desc]) -> usize {
        self.rx.pop(out.len(), |k, d| out[k] = d)
    }
    fn rx_avail_exact(&mut self) -> u32 {
        self.rx.avail_exact()
    }
    unsafe fn produce_fill(&mut self, descs: &[Desc]) -> usize {
        self.fill.push(descs.iter().map(|d| d.addr))
    }
    fn fill_needs_wakeup(&self) -> bool {
        self.fill.ring.flag()
    }
    fn wake_fill(&mut self) {
        self.fill_wakeups += 1;
    }
    fn tx_has_room(&mut self, n: u32) -> bool {
        self.tx.free(n) >= n
    }
    fn tx_free_exact(&mut self) -> u32 {
        self.tx.free_exact()
    }
    unsafe fn produce_tx(&mut self, descs: &[Desc]) -> bool {
        self.tx.push(descs.iter().copied()) == descs.len()
    }
    fn tx_needs_wakeup(&self) -> bool {
        self.tx.ring.flag()
    }
    fn kick_tx(&mut self) {
        self.kernel.kick();
    }
    fn consume_comp(&mut self, out: &mut [Desc]) -> usize {
        self.comp.pop(out.len(), |k, addr| out[k] = Desc { addr, len: 0, options: 0 })
    }
    fn comp_avail_exact(&mut self) -> u32 {
        self.comp.avail_exact()
    }
    unsafe fn data(&self, desc: &Desc) -> &[u8] {
        assert!(desc.len <= self.cfg.frame_size);
        // SAFETY: the frame lies inside the UMEM and desc.len within it; the
        // caller guarantees we own it and no one writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.frame(desc), desc.len as usize) }
    }
    unsafe fn write(&mut self, desc: &mut Desc, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> usize {
        // SAFETY: the whole frame lies inside the UMEM; the caller
        // guarantees we own it and it is on no ring.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.frame(desc), self.cfg.frame_size as usize) };
        let n = f(buf).unwrap_or(0);
        desc.len = n.min(buf.len()) as u32;
        n
    }
    unsafe fn frame_mem(&mut self, desc: &mut Desc) -> (NonNull<u8>, usize) {
        (NonNull::new(self.frame(desc)).expect("inside the mapping"), self.cfg.frame_size as usize)
    }
    fn keep_mapped(&self) {
        std::mem::forget(Rc::clone(&self.umem));
    }
}

impl FakeRings {
    /// The UMEM's addresses, to tell a slice in place from a copy.
    pub fn umem_range(&self) -> std::ops::Range<usize> {
        let start = self.umem.ptr.as_ptr() as usize;
        start..start + self.umem.len
    }
}
