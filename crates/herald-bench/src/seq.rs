//! Loss, duplicate and order accounting for one numbered stream: a
//! publisher's messages as one subscriber sees them, or one WebHook lane's
//! events as the sink sees them.
//!
//! [`SeqTracker`] keeps the next number it expects and the ranges it skipped
//! (as ranges, so heavy loss costs one entry per gap, not per message). A
//! number below the next expected one is either a late arrival that fills a
//! gap (out of order) or something already seen (a duplicate). It never
//! panics, whatever numbers arrive, so it can count what comes off the
//! network.

use std::collections::BTreeMap;

/// What one observed number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The number expected next.
    InOrder,
    /// Later than expected: this many numbers were skipped (for now).
    Gap(u64),
    /// Earlier than expected, filling a gap: arrived out of order.
    Late,
    /// Already seen.
    Duplicate,
}

/// Accounting for one stream of sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// One past the highest number seen; `None` until the first number when
    /// the stream has no known start (the sink joins lanes mid-stream).
    next: Option<u64>,
    /// The lowest number the stream is known to start at (or the lowest
    /// seen, for a stream without a known start).
    low: u64,
    /// Skipped numbers not seen yet: start → end (exclusive), all below
    /// `next`, disjoint and not touching.
    missing: BTreeMap<u64, u64>,
    /// Numbers observed, duplicates included.
    pub received: u64,
    /// Numbers observed more than once.
    pub duplicates: u64,
    /// Numbers that filled a gap (arrived after a higher one).
    pub out_of_order: u64,
    /// Times a number arrived beyond the next expected one.
    pub gaps: u64,
}

impl SeqTracker {
    /// A stream whose first number is `first` (publishers count from 0):
    /// anything before the first arrival counts as skipped.
    pub fn starting_at(first: u64) -> SeqTracker {
        SeqTracker {
            next: Some(first),
            low: first,
            ..SeqTracker::default()
        }
    }

    /// A stream joined mid-way: the first number seen is the baseline.
    pub fn joined() -> SeqTracker {
        SeqTracker::default()
    }

    /// Accounts for one arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Seen {
        self.received += 1;
        let Some(next) = self.next else {
            self.next = Some(seq.saturating_add(1));
            self.low = seq;
            return Seen::InOrder;
        };
        if seq == next {
            self.next = Some(seq.saturating_add(1));
            return Seen::InOrder;
        }
        if seq > next {
            self.gaps += 1;
            self.add_missing(next, seq);
            self.next = Some(seq.saturating_add(1));
            return Seen::Gap(seq - next);
        }
        if seq < self.low {
            // Earlier than anything this joined stream has seen: everything
            // between it and the old baseline is now expected too.
            self.out_of_order += 1;
            self.add_missing(seq.saturating_add(1), self.low);
            self.low = seq;
            return Seen::Late;
        }
        let hole = self
            .missing
            .range(..=seq)
            .next_back()
            .map(|(&start, &end)| (start, end));
        match hole {
            Some((start, end)) if seq < end => {
                self.missing.remove(&start);
                if start < seq {
                    self.missing.insert(start, seq);
                }
                if seq + 1 < end {
                    self.missing.insert(seq + 1, end);
                }
                self.out_of_order += 1;
                Seen::Late
            }
            _ => {
                self.duplicates += 1;
                Seen::Duplicate
            }
        }
    }

    /// Records `start..end` as skipped (merging with a range it touches).
    fn add_missing(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Only the range ending exactly at `start` can touch it: everything
        // in `missing` lies below the old `next` (or above the old `low`).
        let before = self
            .missing
            .range(..start)
            .next_back()
            .map(|(&s, &e)| (s, e));
        let after = self.missing.get(&end).copied();
        let (mut s, mut e) = (start, end);
        if let Some((bs, be)) = before
            && be == start
        {
            s = bs;
        }
        if let Some(ae) = after {
            self.missing.remove(&end);
            e = ae;
        }
        self.missing.insert(s, e);
    }

    /// Distinct numbers seen.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    /// Numbers skipped and still not seen (below the highest seen).
    pub fn missing(&self) -> u64 {
        self.missing.iter().map(|(s, e)| e - s).sum()
    }

    /// One past the highest number seen (or the known start).
    pub fn next_expected(&self) -> Option<u64> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream() {
        let mut t = SeqTracker::starting_at(0);
        for i in 0..1000 {
            assert_eq!(t.observe(i), Seen::InOrder);
        }
        assert_eq!(
            (t.received, t.unique(), t.duplicates, t.out_of_order, t.gaps),
            (1000, 1000, 0, 0, 0)
        );
        assert_eq!(t.missing(), 0);
        assert_eq!(t.next_expected(), Some(1000));
    }

    #[test]
    fn loss_is_counted_as_ranges() {
        let mut t = SeqTracker::starting_at(0);
        assert_eq!(t.observe(0), Seen::InOrder);
        assert_eq!(t.observe(5), Seen::Gap(4));
        assert_eq!(t.observe(6), Seen::InOrder);
        assert_eq!(t.observe(1_000_000), Seen::Gap(999_993));
        assert_eq!(t.missing(), 4 + 999_993);
        assert_eq!(t.gaps, 2);
        assert_eq!(t.missing.len(), 2);
        assert_eq!(t.unique(), 4);
    }

    #[test]
    fn a_missing_first_message_is_a_gap() {
        let mut t = SeqTracker::starting_at(0);
        assert_eq!(t.observe(1), Seen::Gap(1));
        assert_eq!(t.missing(), 1);
        assert_eq!(t.observe(0), Seen::Late);
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn late_arrivals_fill_gaps_and_count_as_out_of_order() {
        let mut t = SeqTracker::starting_at(0);
        t.observe(0);
        t.observe(10); // 1..10 missing
        assert_eq!(t.observe(5), Seen::Late); // splits into 1..5 and 6..10
        assert_eq!(t.observe(1), Seen::Late);
        assert_eq!(t.observe(9), Seen::Late);
        assert_eq!(t.missing(), 6);
        assert_eq!(t.observe(5), Seen::Duplicate);
        assert_eq!(t.observe(10), Seen::Duplicate);
        assert_eq!(t.observe(0), Seen::Duplicate);
        for s in [2, 3, 4, 6, 7, 8] {
            assert_eq!(t.observe(s), Seen::Late);
        }
        assert_eq!(t.missing(), 0);
        assert!(t.missing.is_empty());
        assert_eq!(t.out_of_order, 9);
        assert_eq!(t.duplicates, 3);
        assert_eq!(t.unique(), 11);
    }

    #[test]
    fn duplicates_of_the_latest_are_duplicates() {
        let mut t = SeqTracker::starting_at(0);
        t.observe(0);
        t.observe(1);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!((t.received, t.duplicates, t.unique()), (4, 2, 2));
    }

    #[test]
    fn joined_stream_takes_the_first_number_as_baseline() {
        let mut t = SeqTracker::joined();
        assert_eq!(t.observe(500), Seen::InOrder);
        assert_eq!(t.observe(501), Seen::InOrder);
        assert_eq!(t.missing(), 0);
        // Something from before the baseline: late, and the numbers between
        // it and the baseline are now expected.
        assert_eq!(t.observe(497), Seen::Late);
        assert_eq!(t.missing(), 2);
        assert_eq!(t.observe(498), Seen::Late);
        assert_eq!(t.observe(499), Seen::Late);
        assert_eq!(t.missing(), 0);
        assert_eq!(t.observe(497), Seen::Duplicate);
    }

    #[test]
    fn adjacent_gaps_merge() {
        let mut t = SeqTracker::joined();
        t.observe(10);
        t.observe(5); // 6..10 missing, low 5
        t.observe(2); // 3..5 missing, touching 5? no: 5 was seen
        assert_eq!(t.missing(), 4 + 2);
        t.observe(20); // 11..20
        assert_eq!(t.missing(), 6 + 9);
        let mut u = SeqTracker::joined();
        u.observe(10);
        u.observe(7); // 8..10 missing
        u.observe(3); // 4..7 missing; 7 seen, so two ranges
        assert_eq!(u.missing.len(), 2);
        assert_eq!(u.missing(), 2 + 3);
    }

    #[test]
    fn extreme_numbers_do_not_panic() {
        let mut t = SeqTracker::starting_at(0);
        t.observe(u64::MAX);
        t.observe(u64::MAX);
        t.observe(0);
        t.observe(u64::MAX - 1);
        assert_eq!(t.received, 4);
        let mut j = SeqTracker::joined();
        j.observe(u64::MAX);
        j.observe(0);
        assert_eq!(j.out_of_order, 1);
    }
}
