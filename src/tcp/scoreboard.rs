//! The sender's SACK scoreboard (RFC 2018, RFC 6675 §4).
//!
//! SACKed ranges `[left, right)` above SND.UNA, sorted and disjoint. Peers
//! choose the blocks, so every block is clipped to (SND.UNA, SND.MAX] and
//! the list is bounded; when it is full the lowest range is forgotten (that
//! data may then be resent needlessly, never lost).

use crate::wire::SeqNumber;

/// Most ranges kept: enough for a window of alternating losses.
pub const MAX_RANGES: usize = 1024;
/// RFC 6675 §2 DupThresh.
const DUP_THRESH: usize = 3;

#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    ranges: Vec<(SeqNumber, SeqNumber)>,
}

fn overlap(a: (SeqNumber, SeqNumber), lo: SeqNumber, hi: SeqNumber) -> usize {
    let l = a.0.max(lo);
    let r = a.1.min(hi);
    if l < r { r - l } else { 0 }
}

impl Scoreboard {
    pub const fn new() -> Self {
        Scoreboard { ranges: Vec::new() }
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn clear(&mut self) {
        self.ranges = Vec::new();
    }
    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges
    }
    pub fn sacked_bytes(&self) -> usize {
        self.ranges.iter().map(|&(l, r)| r - l).sum()
    }
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.ranges.last().map(|r| r.1)
    }

    /// Adds the blocks of one ACK; returns the bytes newly SACKed. Blocks
    /// below SND.UNA (D-SACK, RFC 2883) or beyond SND.MAX are clipped away.
    pub fn update(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, blocks: &[(SeqNumber, SeqNumber)]) -> usize {
        let before = self.sacked_bytes();
        for &(l, r) in blocks {
            // A valid block lies inside (SND.UNA, SND.MAX]; reject inverted or
            // absurd ones (more than 2^31 apart) before clipping.
            if r.diff(l) <= 0 {
                continue;
            }
            let l = l.max(snd_una);
            let r = r.min(snd_max);
            if l >= r {
                continue;
            }
            self.insert(l, r);
        }
        self.sacked_bytes().saturating_sub(before)
    }

    fn insert(&mut self, l: SeqNumber, r: SeqNumber) {
        let first = self.ranges.partition_point(|&(_, rr)| rr < l);
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].0 <= r {
            last += 1;
        }
        if first == last {
            if self.ranges.len() >= MAX_RANGES {
                if first == 0 {
                    return; // lower than everything kept: forget it
                }
                self.ranges.remove(0);
                self.ranges.insert(first - 1, (l, r));
            } else {
                self.ranges.insert(first, (l, r));
            }
            return;
        }
        let nl = l.min(self.ranges[first].0);
        let nr = r.max(self.ranges[last - 1].1);
        self.ranges[first] = (nl, nr);
        self.ranges.drain(first + 1..last);
    }

    /// Forgets everything at or below the new cumulative ACK.
    pub fn advance(&mut self, snd_una: SeqNumber) {
        let drop = self.ranges.partition_point(|&(_, r)| r <= snd_una);
        self.ranges.drain(..drop);
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < snd_una {
                first.0 = snd_una;
            }
        }
        if self.ranges.is_empty() {
            self.ranges = Vec::new();
        }
    }

    pub fn is_sacked(&self, seq: SeqNumber) -> bool {
        self.sacked_range_end(seq).is_some()
    }

    /// If `seq` lies inside a SACKed range, that range's right edge.
    pub fn sacked_range_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        let i = self.ranges.partition_point(|&(_, r)| r <= seq);
        self.ranges.get(i).filter(|&&(l, _)| l <= seq).map(|&(_, r)| r)
    }

    /// The left edge of the first SACKed range that starts after `seq`.
    pub fn next_sacked_at_or_after(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.ranges.iter().find(|&&(l, _)| l >= seq).map(|&(l, _)| l)
    }

    /// SACKed bytes inside `[lo, hi)`.
    pub fn sacked_between(&self, lo: SeqNumber, hi: SeqNumber) -> usize {
        if lo >= hi {
            return 0;
        }
        self.ranges.iter().map(|&r| overlap(r, lo, hi)).sum()
    }

    /// RFC 6675 §4 IsLost is monotone: every un-SACKed byte below the
    /// returned point is lost (DupThresh ranges, or more than
    /// (DupThresh − 1)·SMSS SACKed bytes, lie above it).
    pub fn lost_boundary(&self, mss: usize) -> Option<SeqNumber> {
        let mut bytes = 0;
        for (count, &(l, r)) in self.ranges.iter().rev().enumerate() {
            bytes += r - l;
            if count + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss {
                return Some(l);
            }
        }
        None
    }

    /// RFC 6675 §4 IsLost(seq) for an un-SACKed `seq`.
    pub fn is_lost(&self, seq: SeqNumber, mss: usize) -> bool {
        !self.is_sacked(seq) && self.lost_boundary(mss).is_some_and(|b| seq < b)
    }

    /// RFC 6675 §4 NextSeg rule (1): the first lost, un-SACKed range at or
    /// after max(HighRxt, SND.UNA), at most `mss` long.
    pub fn next_seg(&self, high_rxt: SeqNumber, snd_una: SeqNumber, mss: usize) -> Option<(SeqNumber, usize)> {
        let boundary = self.lost_boundary(mss)?;
        let mut seq = high_rxt.max(snd_una);
        if let Some(end) = self.sacked_range_end(seq) {
            seq = end;
        }
        if seq >= boundary {
            return None;
        }
        let hole_end = self.next_sacked_at_or_after(seq).unwrap_or(boundary).min(boundary);
        Some((seq, (hole_end - seq).min(mss)))
    }

    /// RFC 6675 §4 SetPipe, over ranges: un-SACKed bytes not yet deemed lost,
    /// plus un-SACKed bytes retransmitted (below HighRxt).
    pub fn pipe(&self, snd_una: SeqNumber, snd_max: SeqNumber, high_rxt: SeqNumber, mss: usize) -> usize {
        let unsacked = |lo: SeqNumber, hi: SeqNumber| if lo < hi { (hi - lo) - self.sacked_between(lo, hi) } else { 0 };
        let boundary = self.lost_boundary(mss).unwrap_or(snd_una).max(snd_una).min(snd_max);
        unsacked(boundary, snd_max) + unsacked(snd_una, high_rxt.min(snd_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn update_clips_merges_and_counts() {
        let mut sb = Scoreboard::new();
        assert_eq!(sb.update(s(100), s(1000), &[(s(200), s(300))]), 100);
        assert_eq!(sb.update(s(100), s(1000), &[(s(250), s(400)), (s(50), s(90))]), 100);
        assert_eq!(sb.ranges(), &[(s(200), s(400))]);
        // Beyond SND.MAX is clipped; inverted ignored.
        assert_eq!(sb.update(s(100), s(1000), &[(s(900), s(5000)), (s(600), s(500))]), 100);
        assert_eq!(sb.highest_sacked(), Some(s(1000)));
        sb.advance(s(300));
        assert_eq!(sb.ranges(), &[(s(300), s(400)), (s(900), s(1000))]);
    }

    #[test]
    fn is_lost_by_bytes_or_ranges() {
        let mss = 100;
        let mut sb = Scoreboard::new();
        sb.update(s(0), s(2000), &[(s(100), s(300))]);
        assert!(!sb.is_lost(s(0), mss), "200 bytes above: not more than 2·SMSS");
        sb.update(s(0), s(2000), &[(s(300), s(301))]);
        assert!(sb.is_lost(s(0), mss), "201 bytes above");
        let mut sb = Scoreboard::new();
        sb.update(s(0), s(2000), &[(s(100), s(110)), (s(200), s(210)), (s(300), s(310))]);
        assert!(sb.is_lost(s(50), mss), "three discontiguous ranges above");
        assert!(!sb.is_lost(s(150), mss), "only two above");
    }

    #[test]
    fn next_seg_and_pipe() {
        let mss = 100;
        let mut sb = Scoreboard::new();
        // Sent [0, 1000); lost 0..100 and 300..400; the rest SACKed.
        sb.update(s(0), s(1000), &[(s(100), s(300)), (s(400), s(1000))]);
        assert_eq!(sb.next_seg(s(0), s(0), mss), Some((s(0), 100)));
        assert_eq!(sb.next_seg(s(100), s(0), mss), Some((s(300), 100)));
        assert_eq!(sb.next_seg(s(400), s(0), mss), None);
        // Nothing retransmitted: both holes are lost, so pipe is 0.
        assert_eq!(sb.pipe(s(0), s(1000), s(0), mss), 0);
        // After resending the first hole it counts once.
        assert_eq!(sb.pipe(s(0), s(1000), s(100), mss), 100);
        // New data sent beyond counts fully.
        assert_eq!(sb.pipe(s(0), s(1200), s(100), mss), 300);
    }

    #[test]
    fn wraparound() {
        let base = u32::MAX - 150;
        let mut sb = Scoreboard::new();
        sb.update(s(base), s(base).add_wrapping(1000), &[(s(base).add_wrapping(100), s(base).add_wrapping(400))]);
        assert!(sb.is_sacked(s(base).add_wrapping(200)));
        assert!(!sb.is_sacked(s(base).add_wrapping(50)));
        assert_eq!(sb.sacked_bytes(), 300);
    }

    trait AddW {
        fn add_wrapping(self, n: u32) -> SeqNumber;
    }
    impl AddW for SeqNumber {
        fn add_wrapping(self, n: u32) -> SeqNumber {
            SeqNumber(self.0.wrapping_add(n))
        }
    }

    proptest! {
        #[test]
        fn random_blocks_stay_sorted_and_in_window(
            una in any::<u32>(),
            blocks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..200),
        ) {
            let una = s(una);
            let max = SeqNumber(una.0.wrapping_add(100_000));
            let mut sb = Scoreboard::new();
            for chunk in blocks.chunks(4) {
                let bl: Vec<_> = chunk.iter().map(|&(a, b)| (s(una.0.wrapping_add(a % 120_000)), s(una.0.wrapping_add(b % 120_000)))).collect();
                sb.update(una, max, &bl);
                prop_assert!(sb.ranges().len() <= MAX_RANGES);
                for w in sb.ranges().windows(2) {
                    prop_assert!(w[0].1 < w[1].0);
                }
                for &(l, r) in sb.ranges() {
                    prop_assert!(l >= una && r <= max && l < r);
                }
                let _ = sb.next_seg(una, una, 1460);
                let _ = sb.pipe(una, max, una, 1460);
            }
        }
    }
}
