//! A byte ring for the send and receive buffers, allocated lazily.
//!
//! An idle connection owns no buffer memory: storage is allocated on first
//! use, grows by doubling up to the buffer's limit, and is released when the
//! connection drains it. The receive side may write beyond the readable bytes
//! (out-of-order data) and make them readable once the gap before them fills.
//!
//! Invariants: `len <= limit`; `written <= cap` where `written` counts the
//! readable bytes plus the furthest out-of-order byte written past them.

/// Smallest storage allocated, so small messages don't cause many regrowths.
const MIN_CAPACITY: usize = 4096;

/// Storage kept for reuse, per thread, by size (every size is 4 KiB times
/// a power of two). A request/response connection fills and drains its
/// buffers on every exchange, and a bulk sender whose window outgrows its
/// send buffer drains it every flight and regrows it by doubling on the
/// next send; allocating and zeroing each time cost more than the rest of
/// the exchange (a fifth of a 64-byte round trip through two shards). An
/// allocator cache: what a buffer held before is never read, since only
/// written bytes are. Each size keeps up to `POOL_BYTES_PER_SIZE` bytes
/// (at least one buffer), sizes up to `POOL_MAX_SIZE`.
const POOL_BYTES_PER_SIZE: usize = 4 << 20;
const POOL_MAX_SIZE: usize = 16 << 20;
/// Sizes pooled: 4 KiB, 8 KiB, … `POOL_MAX_SIZE`.
const POOL_SIZES: usize = (POOL_MAX_SIZE / MIN_CAPACITY).trailing_zeros() as usize + 1;

thread_local! {
    static POOL: std::cell::RefCell<[Vec<Vec<u8>>; POOL_SIZES]> = const { std::cell::RefCell::new([const { Vec::new() }; POOL_SIZES]) };
}

/// The pool's index for storage of `cap` bytes, if it pools that size.
fn size_class(cap: usize) -> Option<usize> {
    (cap >= MIN_CAPACITY && cap <= POOL_MAX_SIZE && cap.is_power_of_two()).then(|| (cap / MIN_CAPACITY).trailing_zeros() as usize)
}

fn take_storage(cap: usize) -> Vec<u8> {
    if let Some(class) = size_class(cap) {
        if let Some(v) = POOL.with(|p| p.borrow_mut()[class].pop()) {
            return v;
        }
    }
    vec![0u8; cap]
}

fn give_storage(v: Vec<u8>) {
    let Some(class) = size_class(v.len()) else { return };
    let keep = (POOL_BYTES_PER_SIZE / v.len()).max(1);
    // `try_with`: a buffer dropped while the thread's locals are torn down.
    let _ = POOL.try_with(|p| {
        let pool = &mut p.borrow_mut()[class];
        if pool.len() < keep {
            pool.push(v);
        }
    });
}

#[derive(Debug, Default, Clone)]
pub struct RingBuffer {
    storage: Vec<u8>,
    // Offsets and counts as u32: a buffer is at most 4 GiB (a window scale
    // of 14 reaches 1 GiB), and a connection is 32 bytes smaller for it.
    head: u32,
    len: u32,
    /// Bytes from `head` that hold data: readable plus written-ahead.
    written: u32,
    limit: u32,
}

/// A size within a buffer's limit (which `new` caps at `u32::MAX`).
#[inline]
const fn to_u32(n: usize) -> u32 {
    if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        give_storage(std::mem::take(&mut self.storage));
    }
}

impl RingBuffer {
    /// A buffer that never holds more than `limit` bytes; allocates nothing yet.
    pub const fn new(limit: usize) -> Self {
        RingBuffer { storage: Vec::new(), head: 0, len: 0, written: 0, limit: to_u32(limit) }
    }
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn limit(&self) -> usize {
        self.limit as usize
    }
    pub fn free(&self) -> usize {
        (self.limit as usize) - (self.len as usize)
    }
    /// Bytes of storage currently allocated.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// Frees the storage if nothing is held.
    pub fn release(&mut self) {
        if self.len == 0 && self.written == 0 {
            give_storage(std::mem::take(&mut self.storage));
            self.head = 0;
        }
    }

    /// Makes room for `need` bytes from `head`, keeping everything written.
    fn reserve(&mut self, need: usize) {
        let cap = self.storage.len();
        if need <= cap {
            return;
        }
        let mut new_cap = cap.max(MIN_CAPACITY);
        while new_cap < need {
            new_cap *= 2;
        }
        let mut storage = take_storage(new_cap);
        // Copy the `written` bytes in order to the start of the new storage.
        let (a, b) = self.slices(0, self.written as usize);
        storage[..a.len()].copy_from_slice(a);
        storage[a.len()..a.len() + b.len()].copy_from_slice(b);
        give_storage(std::mem::replace(&mut self.storage, storage));
        self.head = 0;
    }

    /// The storage index `offset` bytes past `head`. Offsets never exceed
    /// the storage (`head < cap`, `offset <= cap`), so one subtraction
    /// replaces a division, which showed in the per-segment profile.
    #[inline]
    fn index(&self, offset: usize) -> usize {
        let cap = self.storage.len();
        let i = (self.head as usize) + offset;
        debug_assert!(i < 2 * cap.max(1));
        if i >= cap {
            i - cap
        } else {
            i
        }
    }

    /// `len` bytes starting `offset` bytes past `head`, as up to two slices.
    fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let cap = self.storage.len();
        if len == 0 || cap == 0 {
            return (&[], &[]);
        }
        let start = self.index(offset);
        let first = len.min(cap - start);
        (&self.storage[start..start + first], &self.storage[..len - first])
    }

    fn copy_in(&mut self, offset: usize, data: &[u8]) {
        let cap = self.storage.len();
        let start = self.index(offset);
        let first = data.len().min(cap - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        self.storage[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// The readable bytes in order.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        self.slices(0, self.len as usize)
    }

    /// Bytes `[offset, offset + len)` of the readable region, clamped.
    pub fn slices_at(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if offset >= (self.len as usize) {
            return (&[], &[]);
        }
        self.slices(offset, len.min((self.len as usize) - offset))
    }

    /// Copies readable bytes from `offset` into `dst`; returns how many.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> usize {
        let (a, b) = self.slices_at(offset, dst.len());
        dst[..a.len()].copy_from_slice(a);
        dst[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// Drops up to `n` bytes from the front; returns how many.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.len as usize);
        if n == 0 {
            return 0;
        }
        self.head = to_u32(self.index(n));
        self.len -= to_u32(n);
        self.written -= to_u32(n);
        if self.written == 0 {
            self.head = 0;
        }
        n
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let end = (self.len as usize) + n;
        self.reserve(end.max(self.written as usize));
        self.copy_in(self.len as usize, &data[..n]);
        self.len = to_u32(end);
        self.written = to_u32((self.written as usize).max(end));
        n
    }

    /// Lets `f` write up to `max` bytes in place at the end of the readable
    /// region, and makes what it says it wrote (clamped) readable. `f` gets
    /// one contiguous piece of the free space: less than `max` when the
    /// free space wraps (a second call gets the rest) or the limit is near.
    /// Returns how much was appended.
    pub fn push_with(&mut self, max: usize, f: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let want = max.min(self.free());
        if want == 0 {
            return 0;
        }
        let end = (self.len as usize) + want;
        self.reserve(end.max(self.written as usize));
        let start = self.index(self.len as usize);
        let piece = want.min(self.storage.len() - start);
        let n = f(&mut self.storage[start..start + piece]).min(piece);
        self.len += to_u32(n);
        self.written = to_u32((self.written as usize).max(self.len as usize));
        n
    }

    /// Writes `data` at `offset` bytes past the readable region without making
    /// it readable, clipped to the limit; returns how much was written.
    pub fn write_unallocated(&mut self, offset: usize, data: &[u8]) -> usize {
        let start = (self.len as usize) + offset;
        if start >= (self.limit as usize) {
            return 0;
        }
        let n = data.len().min((self.limit as usize) - start);
        if n == 0 {
            return 0;
        }
        self.reserve(start + n);
        self.copy_in(start, &data[..n]);
        self.written = to_u32((self.written as usize).max(start + n));
        n
    }

    /// Makes `n` bytes written past the readable region readable.
    pub fn enqueue_unallocated(&mut self, n: usize) -> usize {
        let n = n.min((self.written as usize) - (self.len as usize));
        self.len += to_u32(n);
        n
    }

    /// Forgets data written past the readable region (out-of-order data dropped).
    pub fn discard_unallocated(&mut self) {
        self.written = to_u32(self.len as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn empty_owns_nothing_and_is_small() {
        let r = RingBuffer::new(1 << 20);
        assert_eq!(r.capacity(), 0);
        assert!(core::mem::size_of::<RingBuffer>() <= 40);
    }

    #[test]
    fn released_storage_is_reused_by_size_when_the_buffer_regrows() {
        let mut r = RingBuffer::new(1 << 20);
        let data = vec![7u8; 300_000];
        assert_eq!(r.push(&data), 300_000);
        let grown = (r.storage.as_ptr(), r.storage.len());
        assert_eq!(grown.1, 512 << 10, "doubled from 4 KiB to the first power of two that fits");
        assert_eq!(r.consume(300_000), 300_000);
        r.release();
        assert!(r.storage.is_empty(), "a drained buffer holds no storage");
        // Regrowing doubles through every size again, each taken from the
        // pool: the 512 KiB one is the storage given back.
        for _ in 0..3 {
            assert_eq!(r.push(&data), 300_000);
            assert_eq!((r.storage.as_ptr(), r.storage.len()), grown);
            assert_eq!(r.consume(300_000), 300_000);
            r.release();
        }
    }

    #[test]
    fn grows_across_wrap_and_releases() {
        let mut r = RingBuffer::new(1 << 16);
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert_eq!(r.push(&data[..3000]), 3000);
        assert_eq!(r.consume(2500), 2500);
        assert_eq!(r.push(&data[3000..]), 2000); // wraps in 4 KiB
        assert_eq!(r.push(&data[..4000]), 4000); // grows across the wrap
        let mut out = vec![0u8; r.len()];
        assert_eq!(r.read_at(0, &mut out), 6500);
        assert_eq!(&out[..500], &data[2500..3000]);
        assert_eq!(&out[500..2500], &data[3000..5000]);
        assert_eq!(&out[2500..], &data[..4000]);
        r.consume(usize::MAX);
        r.release();
        assert_eq!(r.capacity(), 0);
    }

    #[test]
    fn limit_is_hard() {
        let mut r = RingBuffer::new(10);
        assert_eq!(r.push(&[1; 7]), 7);
        assert_eq!(r.push(&[2; 7]), 3);
        assert_eq!(r.write_unallocated(0, &[3; 4]), 0);
    }

    #[test]
    fn out_of_order_writes_become_readable() {
        let mut r = RingBuffer::new(100);
        r.push(b"ab");
        assert_eq!(r.write_unallocated(3, b"fgh"), 3);
        assert_eq!(r.as_slices().0, b"ab");
        assert_eq!(r.write_unallocated(0, b"cde"), 3);
        assert_eq!(r.enqueue_unallocated(6), 6);
        let (a, b) = r.as_slices();
        assert_eq!([a, b].concat(), b"abcdefgh");
    }

    #[test]
    fn push_with_writes_in_place_across_the_wrap() {
        let mut r = RingBuffer::new(8192);
        assert_eq!(r.push(&[0; 3000]), 3000);
        assert_eq!(r.consume(2000), 2000); // head at 2000 of 4096, 1000 held
        // The free space wraps at 4096: the first piece ends there.
        let n = r.push_with(1596, |buf| {
            assert_eq!(buf.len(), 1096);
            buf.fill(2);
            buf.len()
        });
        assert_eq!(n, 1096);
        // The next call gets the rest, at the start of the storage; the
        // application may write less than it was offered.
        let n = r.push_with(500, |buf| {
            assert_eq!(buf.len(), 500);
            buf[..300].fill(3);
            300
        });
        assert_eq!(n, 300);
        let (a, b) = r.as_slices();
        let all = [a, b].concat();
        assert_eq!(all.len(), 2396);
        assert!(all[..1000].iter().all(|&x| x == 0));
        assert!(all[1000..2096].iter().all(|&x| x == 2));
        assert!(all[2096..].iter().all(|&x| x == 3));
        // Growing keeps what is held; the limit holds, and a claim beyond
        // what was offered is clamped.
        let n = r.push_with(usize::MAX, |buf| buf.len() + 100);
        assert_eq!(n, 8192 - 2396);
        assert_eq!(r.len(), 8192);
        assert_eq!(r.slices_at(1000, 1).0, &[2]);
        assert_eq!(r.push_with(10, |_| unreachable!("no space offered")), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(Vec<u8>),
        Consume(usize),
        Ooo(usize, Vec<u8>),
        Release,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Op::Push),
            (0..5000usize).prop_map(Op::Consume),
            (0..2000usize, proptest::collection::vec(any::<u8>(), 0..2000)).prop_map(|(o, d)| Op::Ooo(o, d)),
            Just(Op::Release),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_deque(ops in proptest::collection::vec(op(), 0..60)) {
            let limit = 10_000;
            let mut r = RingBuffer::new(limit);
            let mut model: VecDeque<u8> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(d) => {
                        r.discard_unallocated();
                        let n = r.push(&d);
                        prop_assert_eq!(n, d.len().min(limit - model.len()));
                        model.extend(&d[..n]);
                    }
                    Op::Consume(n) => {
                        let got = r.consume(n);
                        prop_assert_eq!(got, n.min(model.len()));
                        model.drain(..got);
                    }
                    Op::Ooo(off, d) => {
                        r.discard_unallocated();
                        // Write out of order, then fill the gap, then enqueue all.
                        let w = r.write_unallocated(off, &d);
                        let gap: Vec<u8> = (0..off).map(|i| i as u8).collect();
                        let g = r.write_unallocated(0, &gap);
                        if g == off && w == d.len() {
                            prop_assert_eq!(r.enqueue_unallocated(off + w), off + w);
                            model.extend(&gap);
                            model.extend(&d);
                        }
                        r.discard_unallocated();
                    }
                    Op::Release => r.release(),
                }
                let (a, b) = r.as_slices();
                let got: Vec<u8> = a.iter().chain(b).copied().collect();
                let want: Vec<u8> = model.iter().copied().collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
