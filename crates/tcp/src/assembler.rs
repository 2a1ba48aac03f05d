//! The out-of-order queue: which sequence ranges past RCV.NXT have arrived
//! (the bytes themselves are in the receive ring at their offsets).
//! Bounded twice: by a fixed number of ranges, allocated at the first
//! out-of-order segment (an in-order connection never does), and by
//! the receive window in bytes (data outside it is trimmed before it gets
//! here). A flood of tiny segments therefore fills at most `max` ranges;
//! the ones that would need more are dropped and counted by the caller.

use crate::Seq;

/// Arrived ranges `[start, end)` above RCV.NXT, sorted, disjoint, not adjacent.
pub struct Assembler {
    ranges: Vec<(Seq, Seq)>,
    max: usize,
    /// The range the last insert touched (first SACK block, RFC 2018 §4).
    last: Option<Seq>,
}

/// The queue has no room for another range.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Assembler {
    pub fn new(max_ranges: usize) -> Assembler {
        Assembler { ranges: Vec::new(), max: max_ranges.max(1), last: None }
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.last = None;
    }
    pub fn ranges(&self) -> &[(Seq, Seq)] {
        &self.ranges
    }

    /// Records `[start, end)`, merging with what it overlaps or touches.
    pub fn insert(&mut self, start: Seq, end: Seq) -> Result<(), Full> {
        if end.le(start) {
            return Ok(());
        }
        // First range whose end reaches start; last range whose start <= end.
        let lo = self.ranges.iter().position(|r| r.1.ge(start)).unwrap_or(self.ranges.len());
        let hi = self.ranges.iter().rposition(|r| r.0.le(end)).map_or(0, |i| i + 1);
        if lo >= hi {
            if self.ranges.len() == self.max {
                return Err(Full);
            }
            if self.ranges.capacity() == 0 {
                self.ranges.reserve_exact(self.max);
            }
            self.ranges.insert(lo, (start, end));
        } else {
            let s = self.ranges[lo].0.min(start);
            let e = self.ranges[hi - 1].1.max(end);
            self.ranges[lo] = (s, e);
            self.ranges.drain(lo + 1..hi);
        }
        self.last = Some(start);
        Ok(())
    }

    /// When the front range starts at or before `rcv_nxt`, removes it and
    /// returns how far it reaches past `rcv_nxt`.
    pub fn take_front(&mut self, rcv_nxt: Seq) -> usize {
        let mut n = 0;
        while let Some(&(s, e)) = self.ranges.first() {
            if s.gt(rcv_nxt + n) {
                break;
            }
            n = n.max(e.since(rcv_nxt));
            self.ranges.remove(0);
        }
        n
    }

    /// Up to three SACK blocks: the most recently changed range first, then
    /// the others in order (RFC 2018 §4).
    pub fn sack_blocks(&self) -> [Option<(u32, u32)>; 3] {
        let mut out = [None; 3];
        let mut i = 0;
        let first = self.last.and_then(|l| self.ranges.iter().position(|r| l.in_range(r.0, r.1 + 1)));
        if let Some(f) = first {
            out[0] = Some((self.ranges[f].0 .0, self.ranges[f].1 .0));
            i = 1;
        }
        for (k, r) in self.ranges.iter().enumerate() {
            if i == 3 {
                break;
            }
            if Some(k) != first {
                out[i] = Some((r.0 .0, r.1 .0));
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> Seq {
        Seq(n)
    }

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let mut a = Assembler::new(4);
        a.insert(s(10), s(20)).unwrap();
        a.insert(s(30), s(40)).unwrap();
        a.insert(s(20), s(30)).unwrap();
        assert_eq!(a.ranges(), &[(s(10), s(40))]);
        a.insert(s(5), s(12)).unwrap();
        a.insert(s(50), s(60)).unwrap();
        assert_eq!(a.ranges(), &[(s(5), s(40)), (s(50), s(60))]);
        assert_eq!(a.take_front(s(0)), 0);
        assert_eq!(a.take_front(s(5)), 35);
        assert_eq!(a.ranges(), &[(s(50), s(60))]);
    }

    #[test]
    fn tiny_segment_flood_is_bounded_in_ranges() {
        let mut a = Assembler::new(8);
        let mut refused = 0;
        for i in 0..10_000u32 {
            if a.insert(s(100 + 2 * i), s(101 + 2 * i)).is_err() {
                refused += 1;
            }
        }
        assert_eq!(a.len(), 8);
        assert_eq!(refused, 10_000 - 8);
        assert!(a.ranges.capacity() <= 8, "no growth past the first allocation");
    }

    #[test]
    fn most_recent_block_is_reported_first() {
        let mut a = Assembler::new(8);
        a.insert(s(10), s(20)).unwrap();
        a.insert(s(30), s(40)).unwrap();
        a.insert(s(50), s(60)).unwrap();
        a.insert(s(70), s(80)).unwrap();
        a.insert(s(35), s(45)).unwrap();
        assert_eq!(a.sack_blocks(), [Some((30, 45)), Some((10, 20)), Some((50, 60))]);
    }

    #[test]
    fn wraps_around_zero() {
        let mut a = Assembler::new(4);
        a.insert(s(u32::MAX - 5), s(5)).unwrap();
        a.insert(s(5), s(10)).unwrap();
        assert_eq!(a.take_front(s(u32::MAX - 10)), 0);
        assert_eq!(a.take_front(s(u32::MAX - 5)), 16);
    }
}
