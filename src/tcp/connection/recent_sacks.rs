//! The SACK blocks our ACKs reported most recently (RFC 2018 §4).

/// Offsets (from RCV.NXT) inside the out-of-order ranges that our ACKs
/// reported first, most recent first: RFC 2018 §4 fills the SACK option's
/// later blocks with the most recently reported ones, as Linux's
/// `selective_acks` list does. `u32::MAX` marks an empty slot. Three: with
/// the first block, that fills the four a SACK option can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecentSacks([u32; 3]);

impl RecentSacks {
    pub(super) const EMPTY: RecentSacks = RecentSacks([u32::MAX; 3]);

    /// `offset` was just reported first; older entries in the same range
    /// (`same(a, b)`: both offsets lie in one range) are dropped.
    pub(super) fn note(&mut self, offset: usize, same: impl Fn(usize, usize) -> bool) {
        let offset = offset.min(u32::MAX as usize - 1) as u32;
        let mut next = [u32::MAX; 3];
        next[0] = offset;
        let mut n = 1;
        for &old in self.0.iter().filter(|&&o| o != u32::MAX) {
            if n < next.len() && !same(old as usize, offset as usize) {
                next[n] = old;
                n += 1;
            }
        }
        self.0 = next;
    }

    /// RCV.NXT moved `n` bytes forward: entries now below it are delivered.
    pub(super) fn advance(&mut self, n: usize) {
        let mut next = [u32::MAX; 3];
        let mut k = 0;
        for &old in self.0.iter().filter(|&&o| o != u32::MAX && o as usize >= n) {
            next[k] = old - n as u32;
            k += 1;
        }
        self.0 = next;
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().filter(|&&o| o != u32::MAX).map(|&o| o as usize)
    }
}
