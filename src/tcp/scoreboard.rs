//! The sender's scoreboard: what is known about every range of sequence
//! space in flight (RFC 6675 §3–4), and when each range was last sent
//! (RFC 8985 §5.2, RACK's per-segment transmit times).
//!
//! Spans cover [SND.UNA, SND.MAX) in order. A span is data sent at one
//! instant that carries the same marks, so a burst sent at once is a single
//! span and the list stays short. SACK blocks, retransmissions and loss
//! marks split spans; neighbours that end up alike merge again.
//!
//! Peers choose the SACK blocks, so the splits they cause are bounded: past
//! [`MAX_SPANS`] a block only marks spans it covers whole (that data may
//! then be resent needlessly, never lost). Blocks are clipped to
//! (SND.UNA, SND.MAX].

use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// Most spans SACK blocks may split the flight into.
pub const MAX_SPANS: usize = 4096;
/// RFC 6675 §2 DupThresh.
const DUP_THRESH: usize = 3;

/// The peer holds these bytes (RFC 6675 "SACKed"). Final: the other marks
/// no longer matter.
pub const SACKED: u8 = 1;
/// Deemed lost (RFC 6675 IsLost, RACK, or a timeout).
pub const LOST: u8 = 2;
/// Sent again since first sent (RFC 6675: below HighRxt). A lost span that
/// was resent carries both marks until the resent copy is deemed lost too.
pub const RETRANS: u8 = 4;

/// One range of sequence space in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: SeqNumber,
    pub end: SeqNumber,
    /// When this data was last sent (RFC 8985 Segment.xmit_ts).
    pub sent: Instant,
    pub flags: u8,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_sacked(&self) -> bool {
        self.flags & SACKED != 0
    }
    pub fn is_retransmitted(&self) -> bool {
        self.flags & RETRANS != 0
    }
    /// Lost and not resent since: the next retransmission candidates
    /// (RFC 8985 gives such a segment an infinite transmit time).
    pub fn awaits_retransmit(&self) -> bool {
        self.flags & (SACKED | LOST | RETRANS) == LOST
    }
    /// How many copies RFC 6675 §4 SetPipe counts in the network: one for
    /// data not deemed lost, one more for a retransmission.
    fn copies_in_flight(&self) -> usize {
        if self.is_sacked() {
            0
        } else {
            usize::from(self.flags & LOST == 0) + usize::from(self.flags & RETRANS != 0)
        }
    }
    /// Neighbours merge when nothing tells them apart: both SACKed, or both
    /// awaiting retransmission (their send times no longer matter), or the
    /// same marks and send time.
    fn mergeable(&self, next: &Span) -> bool {
        let alike = (self.is_sacked() && next.is_sacked())
            || (self.flags == next.flags && (self.sent == next.sent || self.awaits_retransmit()));
        self.end == next.start && alike
    }
}

/// What one loss-detection pass marked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marked {
    /// Bytes newly deemed lost.
    pub bytes: usize,
    /// Retransmissions among them (RFC 8985's lost retransmissions).
    pub retransmissions: u32,
    /// RACK: how long until the next span outstanding but not yet overdue
    /// is; the reordering timer's timeout.
    pub wait: Option<Duration>,
}

#[derive(Debug, Default, Clone)]
pub struct Scoreboard {
    spans: Vec<Span>,
}

impl Scoreboard {
    pub const fn new() -> Self {
        Scoreboard { spans: Vec::new() }
    }
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
    /// Forgets everything, releasing the memory (a connection closing or
    /// entering TIME_WAIT keeps none).
    pub fn clear(&mut self) {
        self.spans = Vec::new();
    }
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }
    pub fn sacked_bytes(&self) -> usize {
        self.spans.iter().filter(|s| s.is_sacked()).map(Span::len).sum()
    }
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.spans.iter().rev().find(|s| s.is_sacked()).map(|s| s.end)
    }
    /// The SACKed ranges, merged (neighbouring SACKed spans always are).
    pub fn sacked_ranges(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.spans.iter().filter(|s| s.is_sacked()).map(|s| (s.start, s.end))
    }

    /// The index of the span holding `seq`, or of the first span after it.
    fn find(&self, seq: SeqNumber) -> usize {
        self.spans.partition_point(|s| s.end <= seq)
    }

    /// Makes `seq` a span boundary; returns the index of the span starting there.
    fn split(&mut self, seq: SeqNumber) -> usize {
        let i = self.find(seq);
        if i < self.spans.len() && self.spans[i].start < seq {
            let mut right = self.spans[i];
            right.start = seq;
            self.spans[i].end = seq;
            self.spans.insert(i + 1, right);
            return i + 1;
        }
        i
    }

    /// Merges neighbours that became alike.
    fn coalesce(&mut self) {
        if self.spans.len() < 2 {
            return;
        }
        let mut w = 0;
        for r in 1..self.spans.len() {
            let next = self.spans[r];
            if self.spans[w].mergeable(&next) {
                let cur = &mut self.spans[w];
                cur.end = next.end;
                cur.sent = cur.sent.max(next.sent);
            } else {
                w += 1;
                self.spans[w] = next;
            }
        }
        self.spans.truncate(w + 1);
    }

    /// Applies `mark` to every span not SACKed inside `[lo, hi)`, splitting
    /// at the edges. Returns whether anything was touched.
    fn mark_range(&mut self, lo: SeqNumber, hi: SeqNumber, mut mark: impl FnMut(&mut Span)) -> bool {
        if lo >= hi {
            return false;
        }
        let first = self.split(lo);
        self.split(hi);
        let mut touched = false;
        for s in self.spans[first..].iter_mut() {
            if s.start >= hi {
                break;
            }
            if !s.is_sacked() {
                mark(s);
                touched = true;
            }
        }
        self.coalesce();
        touched
    }

    /// Records a transmission of `[seq, end)` at `now`. New data is added
    /// at the tail (joining the last span when sent at the same instant);
    /// resent data is marked RETRANS with the new time (SACKed parts stay
    /// as they are).
    pub fn on_transmit(&mut self, seq: SeqNumber, end: SeqNumber, now: Instant, retransmit: bool) {
        if seq >= end {
            return;
        }
        let tail = self.spans.last().map_or(seq, |s| s.end);
        if end > tail {
            let start = seq.max(tail);
            match self.spans.last_mut() {
                Some(last) if last.end == start && last.flags == 0 && last.sent == now => last.end = end,
                _ => self.spans.push(Span { start, end, sent: now, flags: 0 }),
            }
        }
        if retransmit && seq < tail {
            self.mark_range(seq, end.min(tail), |s| {
                s.flags |= RETRANS;
                s.sent = now;
            });
        }
    }

    /// Marks the SACK blocks of one ACK; returns the bytes newly SACKed.
    /// `delivered` sees every span that became SACKed (for RACK).
    pub fn sack(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, blocks: &[(SeqNumber, SeqNumber)], mut delivered: impl FnMut(&Span)) -> usize {
        let (Some(first), Some(last)) = (self.spans.first(), self.spans.last()) else { return 0 };
        let (lo_all, hi_all) = (first.start.max(snd_una), last.end.min(snd_max));
        let mut newly = 0;
        for &(l, r) in blocks {
            // A valid block lies inside (SND.UNA, SND.MAX]; reject inverted or
            // absurd ones (more than 2^31 apart) before clipping.
            if r.diff(l) <= 0 {
                continue;
            }
            let (l, r) = (l.max(lo_all), r.min(hi_all));
            if l >= r {
                continue;
            }
            let mut i = if self.spans.len() + 2 <= MAX_SPANS {
                self.split(r);
                self.split(l)
            } else {
                self.find(l)
            };
            while i < self.spans.len() && self.spans[i].start < r {
                let s = &mut self.spans[i];
                if !s.is_sacked() && s.start >= l && s.end <= r {
                    newly += s.len();
                    delivered(s);
                    s.flags = SACKED;
                }
                i += 1;
            }
        }
        self.coalesce();
        newly
    }

    /// Forgets everything below the new cumulative ACK. `delivered` sees
    /// the part of every span acknowledged now that was not SACKed before.
    pub fn advance(&mut self, snd_una: SeqNumber, mut delivered: impl FnMut(&Span)) {
        let gone = self.find(snd_una);
        for s in &self.spans[..gone] {
            if !s.is_sacked() {
                delivered(s);
            }
        }
        if let Some(s) = self.spans.get_mut(gone) {
            if s.start < snd_una {
                if !s.is_sacked() {
                    delivered(&Span { end: snd_una, ..*s });
                }
                s.start = snd_una;
            }
        }
        self.spans.drain(..gone);
        if self.spans.is_empty() {
            self.release_if_over_cap();
        }
    }

    /// An emptied scoreboard keeps its storage, so that the next flight
    /// (every request/response round) costs no allocation, unless it grew
    /// past [`MAX_SPANS`]: no more than that is kept between flights.
    fn release_if_over_cap(&mut self) {
        if self.spans.capacity() > MAX_SPANS {
            self.spans = Vec::new();
        }
    }

    /// The spans the storage holds without growing.
    pub fn capacity(&self) -> usize {
        self.spans.capacity()
    }

    pub fn is_sacked(&self, seq: SeqNumber) -> bool {
        self.sacked_range_end(seq).is_some()
    }

    /// If `seq` lies inside a SACKed range, that range's right edge.
    pub fn sacked_range_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.spans.get(self.find(seq)).filter(|s| s.start <= seq && s.is_sacked()).map(|s| s.end)
    }

    /// The left edge of the first SACKed range that starts at or after `seq`.
    pub fn next_sacked_at_or_after(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.spans[self.find(seq)..].iter().find(|s| s.is_sacked() && s.start >= seq).map(|s| s.start)
    }

    /// SACKed bytes inside `[lo, hi)`.
    pub fn sacked_between(&self, lo: SeqNumber, hi: SeqNumber) -> usize {
        if lo >= hi {
            return 0;
        }
        self.spans[self.find(lo)..]
            .iter()
            .take_while(|s| s.start < hi)
            .filter(|s| s.is_sacked())
            .map(|s| s.end.min(hi) - s.start.max(lo))
            .sum()
    }

    /// RFC 6675 §4 IsLost is monotone: every un-SACKed byte below the
    /// returned point is lost (DupThresh ranges, or more than
    /// (DupThresh − 1)·SMSS SACKed bytes, lie above it).
    pub fn lost_boundary(&self, mss: usize) -> Option<SeqNumber> {
        let mut bytes = 0;
        for (count, s) in self.spans.iter().rev().filter(|s| s.is_sacked()).enumerate() {
            bytes += s.len();
            if count + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss {
                return Some(s.start);
            }
        }
        None
    }

    /// RFC 6675 §4 IsLost(seq) for an un-SACKed `seq`.
    pub fn is_lost(&self, seq: SeqNumber, mss: usize) -> bool {
        !self.is_sacked(seq) && self.lost_boundary(mss).is_some_and(|b| seq < b)
    }

    /// RFC 6675 loss detection: marks lost every span below the IsLost
    /// boundary that is neither SACKed nor already resent (RFC 6675 never
    /// resends twice below HighRxt).
    pub fn mark_lost_by_sacks(&mut self, mss: usize) -> Marked {
        let mut marked = Marked::default();
        let Some(boundary) = self.lost_boundary(mss) else { return marked };
        for s in self.spans.iter_mut().take_while(|s| s.end <= boundary) {
            if s.flags == 0 {
                s.flags = LOST;
                marked.bytes += s.len();
            }
        }
        if marked.bytes > 0 {
            self.coalesce();
        }
        marked
    }

    /// Deems `[lo, hi)` lost, resent copies included (a timeout, or the
    /// segment at SND.UNA when fast recovery starts).
    pub fn mark_lost(&mut self, lo: SeqNumber, hi: SeqNumber) -> Marked {
        let mut marked = Marked::default();
        self.mark_range(lo, hi, |s| {
            if !s.awaits_retransmit() {
                marked.bytes += s.len();
                marked.retransmissions += u32::from(s.is_retransmitted());
            }
            s.flags = LOST;
        });
        marked
    }

    /// Deems everything in flight lost (RFC 6675 §5.1 after a timeout).
    /// With `renege`, SACKed data too: a second timeout for the same data
    /// suggests the receiver discarded what it SACKed (RFC 2018 §8).
    pub fn mark_all_lost(&mut self, renege: bool) -> Marked {
        if renege {
            for s in &mut self.spans {
                if s.is_sacked() {
                    s.flags = 0;
                }
            }
        }
        match (self.spans.first(), self.spans.last()) {
            (Some(f), Some(l)) => {
                let (lo, hi) = (f.start, l.end);
                self.mark_lost(lo, hi)
            }
            _ => Marked::default(),
        }
    }

    /// RFC 8985 §6.2 step 5, RACK_detect_loss: a span not SACKed and not
    /// already waiting to be resent is lost once it was sent before the
    /// most recently sent delivered data (`rack_sent`, `rack_end`, ties
    /// broken by sequence) and has been out for `wait` (RACK.rtt +
    /// RACK.reo_wnd). Also reports how long the others still have.
    pub fn rack_detect(&mut self, now: Instant, rack_sent: Instant, rack_end: SeqNumber, wait: Duration) -> Marked {
        let mut marked = Marked::default();
        for s in &mut self.spans {
            if s.is_sacked() || s.awaits_retransmit() {
                continue;
            }
            let before = rack_sent > s.sent || (rack_sent == s.sent && rack_end > s.end);
            if !before {
                continue;
            }
            let due = s.sent + wait;
            if due <= now {
                marked.bytes += s.len();
                marked.retransmissions += u32::from(s.is_retransmitted());
                s.flags = LOST;
            } else {
                let left = due - now;
                marked.wait = Some(marked.wait.map_or(left, |w| w.max(left)));
            }
        }
        if marked.bytes > 0 {
            self.coalesce();
        }
        marked
    }

    /// RFC 8985 §6.3, RACK_mark_losses_on_RTO: the data at SND.UNA, and
    /// whatever has been out for `wait` (RACK.rtt + RACK.reo_wnd), is lost;
    /// the rest may still arrive. With `renege`, SACKed data is forgotten first.
    pub fn rack_mark_on_timeout(&mut self, now: Instant, wait: Duration, renege: bool) -> Marked {
        if renege {
            for s in &mut self.spans {
                if s.is_sacked() {
                    s.flags = 0;
                }
            }
        }
        let mut marked = Marked::default();
        let mut first = true;
        for s in &mut self.spans {
            if s.is_sacked() {
                continue;
            }
            if (first || s.sent + wait <= now) && !s.awaits_retransmit() {
                marked.bytes += s.len();
                marked.retransmissions += u32::from(s.is_retransmitted());
                s.flags = LOST;
            }
            first = false;
        }
        self.coalesce();
        marked
    }

    /// Whether anything deemed lost waits to be resent.
    pub fn has_lost(&self) -> bool {
        self.spans.iter().any(Span::awaits_retransmit)
    }

    /// RFC 6675 §4 NextSeg rule (1) over the marks: the lowest data deemed
    /// lost and not resent since, at most `max_len` bytes of it.
    pub fn next_lost(&self, max_len: usize) -> Option<(SeqNumber, usize)> {
        let i = self.spans.iter().position(Span::awaits_retransmit)?;
        let start = self.spans[i].start;
        let mut end = self.spans[i].end;
        for s in &self.spans[i + 1..] {
            if end - start >= max_len || s.start != end || !s.awaits_retransmit() {
                break;
            }
            end = s.end;
        }
        Some((start, (end - start).min(max_len)))
    }

    /// RFC 6675 §4 SetPipe from the marks: un-SACKed bytes not deemed lost,
    /// plus bytes retransmitted. Bytes not on the scoreboard count once.
    pub fn pipe(&self, snd_una: SeqNumber, snd_max: SeqNumber) -> usize {
        let flight = snd_max - snd_una;
        let (covered, counted) = self.spans.iter().fold((0, 0), |(c, n), s| (c + s.len(), n + s.len() * s.copies_in_flight()));
        flight.saturating_sub(covered) + counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }
    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// A scoreboard with `[0, n)` sent at t = 0 in one burst.
    fn sent(n: u32) -> Scoreboard {
        let mut sb = Scoreboard::new();
        sb.on_transmit(s(0), s(n), t(0), false);
        sb
    }

    fn sack(sb: &mut Scoreboard, una: u32, max: u32, blocks: &[(u32, u32)]) -> usize {
        let b: Vec<_> = blocks.iter().map(|&(l, r)| (s(l), s(r))).collect();
        sb.sack(s(una), s(max), &b, |_| {})
    }

    fn sacked(sb: &Scoreboard) -> Vec<(SeqNumber, SeqNumber)> {
        sb.sacked_ranges().collect()
    }

    #[test]
    fn an_acknowledged_flight_keeps_the_storage_within_the_cap() {
        let mut sb = Scoreboard::new();
        for k in 0..8 {
            sb.on_transmit(s(k * 100), s(k * 100 + 100), t(u64::from(k)), false);
        }
        let cap = sb.capacity();
        assert!(cap >= 8);
        sb.advance(s(800), |_| {});
        assert!(sb.is_empty());
        assert_eq!(sb.capacity(), cap, "kept for the next flight");
        sb.on_transmit(s(800), s(900), t(9), false);
        assert_eq!(sb.capacity(), cap);
        // Grown past the cap: given back once the flight is acknowledged.
        sb.spans.reserve(MAX_SPANS + 1);
        sb.advance(s(900), |_| {});
        assert_eq!(sb.capacity(), 0);
        // A closing connection keeps nothing.
        sb.on_transmit(s(900), s(1000), t(10), false);
        sb.clear();
        assert_eq!(sb.capacity(), 0);
    }

    #[test]
    fn a_burst_is_one_span() {
        let mut sb = Scoreboard::new();
        for k in 0..10 {
            sb.on_transmit(s(k * 100), s(k * 100 + 100), t(5), false);
        }
        assert_eq!(sb.spans().len(), 1);
        sb.on_transmit(s(1000), s(1100), t(6), false);
        assert_eq!(sb.spans().len(), 2);
        assert_eq!(sb.pipe(s(0), s(1100)), 1100);
    }

    #[test]
    fn sack_clips_merges_and_counts() {
        let mut sb = sent(1000);
        assert_eq!(sack(&mut sb, 100, 1000, &[(200, 300)]), 100);
        assert_eq!(sack(&mut sb, 100, 1000, &[(250, 400), (50, 90)]), 100);
        assert_eq!(sacked(&sb), vec![(s(200), s(400))]);
        // Beyond SND.MAX is clipped; inverted ignored.
        assert_eq!(sack(&mut sb, 100, 1000, &[(900, 5000), (600, 500)]), 100);
        assert_eq!(sb.highest_sacked(), Some(s(1000)));
        let mut got = Vec::new();
        sb.advance(s(300), |sp| got.push((sp.start, sp.end)));
        assert_eq!(got, vec![(s(0), s(200))], "only what was not SACKed is newly delivered");
        assert_eq!(sacked(&sb), vec![(s(300), s(400)), (s(900), s(1000))]);
        assert_eq!(sb.spans()[0].start, s(300));
    }

    #[test]
    fn is_lost_by_bytes_or_ranges() {
        let mss = 100;
        let mut sb = sent(2000);
        sack(&mut sb, 0, 2000, &[(100, 300)]);
        assert!(!sb.is_lost(s(0), mss), "200 bytes above: not more than 2·SMSS");
        sack(&mut sb, 0, 2000, &[(300, 301)]);
        assert!(sb.is_lost(s(0), mss), "201 bytes above");
        let mut sb = sent(2000);
        sack(&mut sb, 0, 2000, &[(100, 110), (200, 210), (300, 310)]);
        assert!(sb.is_lost(s(50), mss), "three discontiguous ranges above");
        assert!(!sb.is_lost(s(150), mss), "only two above");
    }

    #[test]
    fn marks_drive_next_lost_and_pipe() {
        let mss = 100;
        // Sent [0, 1000); lost 0..100 and 300..400; the rest SACKed.
        let mut sb = sent(1000);
        sack(&mut sb, 0, 1000, &[(100, 300), (400, 1000)]);
        assert_eq!(sb.pipe(s(0), s(1000)), 200, "nothing marked lost yet");
        assert_eq!(sb.mark_lost_by_sacks(mss).bytes, 200);
        assert_eq!(sb.next_lost(mss), Some((s(0), 100)));
        assert_eq!(sb.pipe(s(0), s(1000)), 0, "both holes lost");
        // Resending the first hole: it counts once, and is not offered again.
        sb.on_transmit(s(0), s(100), t(1), true);
        assert_eq!(sb.pipe(s(0), s(1000)), 100);
        assert_eq!(sb.next_lost(mss), Some((s(300), 100)));
        sb.on_transmit(s(300), s(400), t(1), true);
        assert_eq!(sb.next_lost(mss), None);
        // New data sent beyond counts fully.
        sb.on_transmit(s(1000), s(1200), t(1), false);
        assert_eq!(sb.pipe(s(0), s(1200)), 400);
    }

    #[test]
    fn next_lost_spans_neighbours_up_to_max() {
        let mut sb = Scoreboard::new();
        sb.on_transmit(s(0), s(60), t(0), false);
        sb.on_transmit(s(60), s(120), t(1), false);
        sb.on_transmit(s(120), s(300), t(2), false);
        sb.mark_lost(s(0), s(300));
        assert_eq!(sb.spans().len(), 1, "alike spans merge");
        assert_eq!(sb.next_lost(100), Some((s(0), 100)));
        sb.on_transmit(s(0), s(100), t(3), true);
        assert_eq!(sb.next_lost(100), Some((s(100), 100)));
    }

    #[test]
    fn rack_marks_only_what_was_sent_before_and_is_overdue() {
        let mut sb = Scoreboard::new();
        sb.on_transmit(s(0), s(100), t(0), false);
        sb.on_transmit(s(100), s(200), t(10), false);
        sb.on_transmit(s(200), s(300), t(20), false);
        let mut latest = None;
        sack(&mut sb, 0, 300, &[(100, 200)]);
        sb.sack(s(0), s(300), &[(s(100), s(200))], |sp| latest = Some(sp.sent));
        assert_eq!(latest, None, "already SACKed: not delivered twice");
        // RACK: the segment sent at 10 ms was delivered; [0, 100) was sent
        // before it. With RACK.rtt + reo_wnd = 15 ms it is due at 15 ms.
        let m = sb.rack_detect(t(12), t(10), s(200), Duration::from_millis(15));
        assert_eq!((m.bytes, m.wait), (0, Some(Duration::from_millis(3))));
        let m = sb.rack_detect(t(15), t(10), s(200), Duration::from_millis(15));
        assert_eq!(m.bytes, 100);
        assert_eq!(m.wait, None, "[200, 300) was sent after: not a candidate");
        // The resent copy is deemed lost too once later data is delivered.
        sb.on_transmit(s(0), s(100), t(16), true);
        sack(&mut sb, 0, 300, &[(200, 300)]);
        let m = sb.rack_detect(t(40), t(20), s(300), Duration::from_millis(30));
        assert_eq!((m.bytes, m.wait), (0, Some(Duration::from_millis(6))), "resent at 16 ms: due at 46 ms");
        let m = sb.rack_detect(t(46), t(20), s(300), Duration::from_millis(30));
        assert_eq!((m.bytes, m.retransmissions), (100, 1), "a lost retransmission");
        assert_eq!(sb.next_lost(1000), Some((s(0), 100)));
    }

    #[test]
    fn timeout_marks() {
        let mut sb = Scoreboard::new();
        sb.on_transmit(s(0), s(100), t(0), false);
        sb.on_transmit(s(100), s(200), t(100), false);
        sb.on_transmit(s(200), s(300), t(190), false);
        sack(&mut sb, 0, 300, &[(100, 200)]);
        let mut rack = sb.clone();
        // RFC 8985 §6.3: SND.UNA's segment, and what has been out long enough.
        let m = rack.rack_mark_on_timeout(t(200), Duration::from_millis(50), false);
        assert_eq!(m.bytes, 100);
        assert_eq!(rack.pipe(s(0), s(300)), 100, "[200, 300) may still arrive");
        // RFC 6675 §5.1: everything not SACKed; reneging forgets the SACKs.
        assert_eq!(sb.clone().mark_all_lost(false).bytes, 200);
        assert_eq!(sb.mark_all_lost(true).bytes, 300);
        assert_eq!(sb.pipe(s(0), s(300)), 0);
        assert_eq!(sb.spans().len(), 1);
    }

    #[test]
    fn wraparound() {
        let base = u32::MAX - 150;
        let mut sb = Scoreboard::new();
        sb.on_transmit(s(base), s(base).add_wrapping(1000), t(0), false);
        sack(&mut sb, base, base.wrapping_add(1000), &[(base.wrapping_add(100), base.wrapping_add(400))]);
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
        fn random_blocks_keep_spans_sorted_contiguous_and_bounded(
            una in any::<u32>(),
            blocks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..200),
            resend in proptest::collection::vec((0u32..100_000, 1u32..3000), 0..20),
        ) {
            let una = s(una);
            let max = SeqNumber(una.0.wrapping_add(100_000));
            let mut sb = Scoreboard::new();
            for k in 0..100u32 {
                sb.on_transmit(una.add_wrapping(k * 1000), una.add_wrapping(k * 1000 + 1000), t(u64::from(k / 10)), false);
            }
            for (i, chunk) in blocks.chunks(4).enumerate() {
                let bl: Vec<_> = chunk.iter().map(|&(a, b)| (una.add_wrapping(a % 120_000), una.add_wrapping(b % 120_000))).collect();
                sb.sack(una, max, &bl, |_| {});
                if let Some(&(off, len)) = resend.get(i) {
                    sb.mark_lost(una.add_wrapping(off), una.add_wrapping(off + len).min(max));
                    sb.on_transmit(una.add_wrapping(off), una.add_wrapping(off + len).min(max), t(20), true);
                }
                prop_assert!(sb.spans().len() <= MAX_SPANS);
                prop_assert_eq!(sb.spans()[0].start, una);
                prop_assert_eq!(sb.spans().last().unwrap().end, max);
                for w in sb.spans().windows(2) {
                    prop_assert_eq!(w[0].end, w[1].start);
                    prop_assert!(!w[0].mergeable(&w[1]));
                }
                for sp in sb.spans() {
                    prop_assert!(sp.start < sp.end);
                }
                let pipe = sb.pipe(una, max);
                prop_assert!(pipe <= 2 * 100_000);
                let _ = sb.next_lost(1460);
                let _ = sb.rack_detect(t(30), t(9), una.add_wrapping(95_000), Duration::from_millis(5));
            }
        }
    }
}
