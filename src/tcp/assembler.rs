//! Out-of-order ranges waiting for reassembly (RFC 9293 §3.10.7.4).
//!
//! Offsets are relative to RCV.NXT. The list is bounded: a segment that would
//! need more than `MAX_RANGES` disjoint ranges is refused (and the peer
//! retransmits it later). An emptied list keeps its storage, up to that
//! bound, so that every hole filled does not cost an allocation; `clear`
//! (a closing connection) releases it.
//!
//! The byte total is kept as ranges change, so a shard can account the
//! out-of-order data it holds per segment in O(1) (see `RxBudget`).

/// Most disjoint out-of-order ranges kept per connection. A lossy window of
/// alternating holes needs one range per segment, so this must cover a full
/// window of segments or received data gets dropped and the sender stalls;
/// the bytes themselves are bounded by the receive window.
pub const MAX_RANGES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRanges;

#[derive(Debug, Default, Clone)]
pub struct Assembler {
    /// Sorted, disjoint, non-adjacent (offset, len) with len > 0.
    ranges: Vec<(usize, usize)>,
    /// Sum of the ranges' lengths.
    bytes: usize,
}

impl Assembler {
    pub const fn new() -> Self {
        Assembler { ranges: Vec::new(), bytes: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
    /// Bytes held in all ranges (O(1)).
    pub fn total_bytes(&self) -> usize {
        self.bytes
    }
    /// Forgets every range and releases the storage.
    pub fn clear(&mut self) {
        self.ranges = Vec::new();
        self.bytes = 0;
    }
    /// When empty, gives back storage grown past [`MAX_RANGES`] ranges;
    /// up to that it is kept for the next holes.
    pub fn shrink(&mut self) {
        if self.ranges.is_empty() && self.ranges.capacity() > MAX_RANGES {
            self.ranges = Vec::new();
        }
    }
    /// The ranges the storage holds without growing.
    pub fn capacity(&self) -> usize {
        self.ranges.capacity()
    }
    /// The ranges in ascending order, as (offset, len).
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().copied()
    }

    /// How many bytes of `[offset, offset + len)` no range covers yet: what
    /// `add` would add to `total_bytes`.
    pub fn uncovered(&self, offset: usize, len: usize) -> usize {
        let end = offset.saturating_add(len);
        let first = self.ranges.partition_point(|&(o, l)| o + l <= offset);
        let mut covered = 0;
        for &(o, l) in &self.ranges[first..] {
            if o >= end {
                break;
            }
            covered += (o + l).min(end) - o.max(offset);
        }
        len - covered
    }

    /// Records bytes `[offset, offset + len)`, merging with neighbours.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyRanges> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len);
        // First range that ends at or after `offset` (could touch or overlap).
        let first = self.ranges.partition_point(|&(o, l)| o + l < offset);
        // Ranges from `first` that start at or before `end` all merge.
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].0 <= end {
            last += 1;
        }
        if first == last {
            if self.ranges.len() >= MAX_RANGES {
                return Err(TooManyRanges);
            }
            self.ranges.insert(first, (offset, len));
            self.bytes += len;
            return Ok(());
        }
        let start = offset.min(self.ranges[first].0);
        let stop = end.max(self.ranges[last - 1].0 + self.ranges[last - 1].1);
        let merged: usize = self.ranges[first..last].iter().map(|r| r.1).sum();
        self.bytes = self.bytes - merged + (stop - start);
        self.ranges[first] = (start, stop - start);
        self.ranges.drain(first + 1..last);
        Ok(())
    }

    /// Forgets whole ranges from the highest down until at least `need`
    /// bytes are freed or none is left. Returns the bytes freed.
    pub fn prune_back(&mut self, need: usize) -> usize {
        let mut freed = 0;
        while freed < need {
            let Some((_, len)) = self.ranges.pop() else { break };
            self.bytes -= len;
            freed += len;
        }
        freed
    }

    /// RCV.NXT moved `n` bytes that no range covers or touches: every
    /// offset moves down by `n`.
    pub fn shift_down(&mut self, n: usize) {
        debug_assert!(self.ranges.first().is_none_or(|&(o, _)| o > n), "a range at or below the advance");
        for r in &mut self.ranges {
            r.0 = r.0.saturating_sub(n);
        }
    }

    /// If a range starts at offset 0, removes it and returns its length,
    /// shifting the others down; otherwise 0.
    pub fn remove_front(&mut self) -> usize {
        match self.ranges.first() {
            Some(&(0, len)) => {
                self.ranges.remove(0);
                self.bytes -= len;
                for r in &mut self.ranges {
                    r.0 -= len;
                }
                len
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_and_reports_front() {
        let mut a = Assembler::new();
        a.add(10, 5).unwrap();
        a.add(20, 5).unwrap();
        assert_eq!(a.range_count(), 2);
        a.add(15, 5).unwrap(); // joins both
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![(10, 15)]);
        assert_eq!(a.remove_front(), 0);
        a.add(0, 10).unwrap();
        assert_eq!(a.remove_front(), 25);
        assert!(a.is_empty());
    }

    #[test]
    fn bounded() {
        let mut a = Assembler::new();
        for k in 0..MAX_RANGES {
            a.add(k * 10 + 1, 1).unwrap();
        }
        assert_eq!(a.add(MAX_RANGES * 10 + 100, 1), Err(TooManyRanges));
        // Merging into an existing range still works when full.
        a.add(2, 1).unwrap();
    }

    #[test]
    fn emptied_keeps_its_storage_within_the_cap() {
        let mut a = Assembler::new();
        for k in 0..8 {
            a.add(k * 10 + 1, 1).unwrap();
        }
        let cap = a.capacity();
        assert!(cap >= 8);
        a.add(0, 100).unwrap();
        assert_eq!(a.remove_front(), 100);
        assert!(a.is_empty());
        a.shrink();
        assert_eq!(a.capacity(), cap, "kept for the next holes");
        // Grown past the cap (it cannot be by `add`): given back when empty.
        a.ranges.reserve(MAX_RANGES + 1);
        a.shrink();
        assert_eq!(a.capacity(), 0);
    }

    #[test]
    fn empty_owns_nothing() {
        let mut a = Assembler::new();
        a.add(5, 5).unwrap();
        a.clear();
        a.shrink();
        assert_eq!(a.ranges.capacity(), 0);
        assert_eq!(a.total_bytes(), 0);
        assert!(core::mem::size_of::<Assembler>() <= 32);
    }

    proptest! {
        #[test]
        fn matches_a_bitmap(adds in proptest::collection::vec((0..400usize, 1..60usize), 0..40)) {
            let mut a = Assembler::new();
            let mut bits = vec![false; 500];
            for (o, l) in adds {
                let fresh = bits[o..o + l].iter().filter(|b| !**b).count();
                prop_assert_eq!(a.uncovered(o, l), fresh);
                if a.add(o, l).is_ok() {
                    for b in &mut bits[o..o + l] { *b = true; }
                }
                prop_assert_eq!(a.total_bytes(), bits.iter().filter(|b| **b).count());
            }
            let mut model = Vec::new();
            let mut i = 0;
            while i < bits.len() {
                if bits[i] {
                    let s = i;
                    while i < bits.len() && bits[i] { i += 1; }
                    model.push((s, i - s));
                } else {
                    i += 1;
                }
            }
            prop_assert_eq!(a.iter().collect::<Vec<_>>(), model);
        }
    }
}
