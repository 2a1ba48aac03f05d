//! Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): comparisons are
//! by the sign of the 32-bit difference, so they hold across wraparound for
//! numbers less than 2^31 apart.

use core::fmt;
use core::ops::{Add, Sub};

/// A TCP sequence number.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// `self - other` as a signed distance.
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
    /// Bytes from `earlier` to `self`; 0 if `earlier` is after `self`.
    pub fn since(self, earlier: Seq) -> usize {
        self.diff(earlier).max(0) as usize
    }
    pub fn lt(self, o: Seq) -> bool {
        self.diff(o) < 0
    }
    pub fn le(self, o: Seq) -> bool {
        self.diff(o) <= 0
    }
    pub fn gt(self, o: Seq) -> bool {
        self.diff(o) > 0
    }
    pub fn ge(self, o: Seq) -> bool {
        self.diff(o) >= 0
    }
    pub fn max(self, o: Seq) -> Seq {
        if self.ge(o) {
            self
        } else {
            o
        }
    }
    pub fn min(self, o: Seq) -> Seq {
        if self.le(o) {
            self
        } else {
            o
        }
    }
    /// `lo <= self < hi`.
    pub fn in_range(self, lo: Seq, hi: Seq) -> bool {
        self.ge(lo) && self.lt(hi)
    }
}

impl Add<usize> for Seq {
    type Output = Seq;
    fn add(self, n: usize) -> Seq {
        Seq(self.0.wrapping_add(n as u32))
    }
}

impl Sub<usize> for Seq {
    type Output = Seq;
    fn sub(self, n: usize) -> Seq {
        Seq(self.0.wrapping_sub(n as u32))
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn comparisons_hold_across_wraparound() {
        let a = Seq(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b.0, 9);
        assert!(a.lt(b) && b.gt(a) && a.le(a) && b.ge(b));
        assert_eq!(b.since(a), 20);
        assert_eq!(a.since(b), 0);
        assert!(Seq(5).in_range(a, b));
        assert!(!b.in_range(a, b));
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
    }

    proptest! {
        #[test]
        fn distance_is_what_was_added(base in any::<u32>(), n in 0usize..(1 << 31)) {
            let a = Seq(base);
            let b = a + n;
            prop_assert_eq!(b.since(a), n);
            prop_assert!(a.le(b));
            prop_assert_eq!(b - n, a);
        }
    }
}
