//! Per publisher→subscriber accounting of the measured window: which sequence numbers arrived,
//! which twice, and which are still missing.
//!
//! MQTT keeps one publisher's messages in order on one subscription, so the common case is "the
//! next number": one comparison and an increment. A jump leaves a gap (a range of missing
//! numbers); a number below the highest one seen either fills a gap (it was late) or is a
//! duplicate. Gaps are kept as a bounded list of ranges, so a pair costs a few dozen bytes however
//! many messages it carries, unlike a bitmap over the whole window.

use std::ops::Range;

/// Most gaps remembered per pair. Beyond it the oldest gap is forgotten: its numbers stay counted
/// as missing, and a late arrival into it is counted as a duplicate and in `untracked`.
pub const GAPS_MAX: usize = 64;

/// Window indexes (sequence number minus the window base) seen from one publisher at one sink.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    /// One past the highest index seen.
    next: u64,
    /// Distinct indexes seen.
    received: u64,
    /// Indexes seen again.
    duplicates: u64,
    /// Arrivals that landed in a gap forgotten because of [`GAPS_MAX`]; they are counted as
    /// duplicates since they cannot be told apart.
    untracked: u64,
    /// Missing ranges below `next`, oldest first.
    gaps: Vec<Range<u64>>,
}

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First time this index was seen.
    New,
    /// Seen before (or indistinguishable from it, see [`GAPS_MAX`]).
    Duplicate,
}

impl SeqTracker {
    /// Records window index `index` (0 for the first message of the window).
    pub fn record(&mut self, index: u64) -> Arrival {
        if index == self.next {
            self.next += 1;
        } else if index > self.next {
            self.push_gap(self.next..index);
            self.next = index + 1;
        } else if !self.fill_gap(index) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.received += 1;
        Arrival::New
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Messages missing out of `sent` (the publisher's count for the window): the indexes below
    /// `sent` never seen.
    pub fn missing(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }

    fn push_gap(&mut self, gap: Range<u64>) {
        assert!(!gap.is_empty());
        if self.gaps.len() == GAPS_MAX {
            self.gaps.remove(0);
        }
        self.gaps.push(gap);
    }

    /// Removes `index` from the gap holding it; false if no gap holds it.
    fn fill_gap(&mut self, index: u64) -> bool {
        let Some(at) = self.gaps.iter().position(|g| g.contains(&index)) else {
            if self.forgotten(index) {
                self.untracked += 1;
            }
            return false;
        };
        let gap = self.gaps[at].clone();
        match (index == gap.start, index + 1 == gap.end) {
            (true, true) => {
                self.gaps.remove(at);
            }
            (true, false) => self.gaps[at].start += 1,
            (false, true) => self.gaps[at].end -= 1,
            (false, false) => {
                self.gaps[at].end = index;
                self.gaps.insert(at + 1, index + 1..gap.end);
            }
        }
        true
    }

    /// Whether `index` may have been in a gap that [`GAPS_MAX`] made us forget: only possible
    /// once the list is full, and only below the oldest gap still remembered.
    fn forgotten(&self, index: u64) -> bool {
        self.gaps.len() == GAPS_MAX && self.gaps.first().is_some_and(|g| index < g.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves in-order arrivals are all new and nothing is missing.
    #[test]
    fn in_order() {
        let mut t = SeqTracker::default();
        for i in 0..100 {
            assert_eq!(t.record(i), Arrival::New);
        }
        assert_eq!(t.received(), 100);
        assert_eq!(t.missing(100), 0);
        assert_eq!(t.duplicates(), 0);
    }

    /// Proves a jump counts the skipped messages as missing, and a repeat as a duplicate.
    #[test]
    fn loss_and_duplicates() {
        let mut t = SeqTracker::default();
        for i in [0, 1, 5, 6, 6, 1] {
            t.record(i);
        }
        assert_eq!(t.received(), 4);
        assert_eq!(t.duplicates(), 2);
        // 10 sent: 2, 3, 4 skipped and 7, 8, 9 never came.
        assert_eq!(t.missing(10), 6);
    }

    /// Proves late (reordered) arrivals fill their gap exactly once, from any position.
    #[test]
    fn late_arrivals_fill_gaps() {
        let mut t = SeqTracker::default();
        t.record(0);
        t.record(10); // gap 1..10
        for i in [5, 1, 9, 3] {
            assert_eq!(t.record(i), Arrival::New, "index {i}");
        }
        assert_eq!(t.record(5), Arrival::Duplicate);
        assert_eq!(t.received(), 6);
        assert_eq!(t.missing(11), 5); // 2, 4, 6, 7, 8
        for i in [2, 4, 6, 7, 8] {
            assert_eq!(t.record(i), Arrival::New, "index {i}");
        }
        assert_eq!(t.missing(11), 0);
        assert!(t.gaps.is_empty());
    }

    /// Proves the gap list stays bounded, and an arrival in a forgotten gap is counted as
    /// untracked (and as a duplicate) rather than as a new message.
    #[test]
    fn gaps_are_bounded() {
        let mut t = SeqTracker::default();
        for i in 0..(GAPS_MAX as u64 + 10) {
            t.record(i * 2 + 1); // every even index skipped: one gap each
        }
        assert_eq!(t.gaps.len(), GAPS_MAX);
        assert_eq!(t.record(0), Arrival::Duplicate);
        assert_eq!(t.untracked(), 1);
        let last_even = (GAPS_MAX as u64 + 9) * 2;
        assert_eq!(t.record(last_even), Arrival::New);
    }
}
