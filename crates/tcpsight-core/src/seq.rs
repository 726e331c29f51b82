//! TCP sequence numbers: 32-bit values compared in wrapping (RFC 1982 style) arithmetic.
//!
//! A plain `u32` comparison is wrong across the 2^32 wrap, which a long transfer reaches
//! after 4 GiB. Every sequence and acknowledgement number in the engine goes through
//! [`Seq`], so no comparison can forget the wrap.

use core::cmp::Ordering;
use core::ops::{Add, Sub};

/// A TCP sequence (or acknowledgement) number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Seq(pub u32);

impl Seq {
    /// Signed distance `self - other`, valid while the two are less than 2^31 apart.
    #[inline]
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    #[inline]
    pub fn lt(self, other: Seq) -> bool {
        self.diff(other) < 0
    }

    #[inline]
    pub fn le(self, other: Seq) -> bool {
        self.diff(other) <= 0
    }

    #[inline]
    pub fn gt(self, other: Seq) -> bool {
        self.diff(other) > 0
    }

    #[inline]
    pub fn ge(self, other: Seq) -> bool {
        self.diff(other) >= 0
    }

    /// The later of two sequence numbers in wrapping order.
    #[inline]
    pub fn max(self, other: Seq) -> Seq {
        if self.ge(other) { self } else { other }
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn add(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_add(rhs))
    }
}

impl Sub<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn sub(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_sub(rhs))
    }
}

/// Wrapping order. Not a total order over all of `u32` (no such order exists for
/// sequence space), so it is offered as a method rather than `Ord`.
impl Seq {
    #[inline]
    pub fn cmp_wrapping(self, other: Seq) -> Ordering {
        self.diff(other).cmp(&0)
    }
}

/// A position in one direction's byte stream, unwrapped to 64 bits relative to a base.
///
/// Connections can carry more than 4 GiB; counting unique bytes and capture gaps needs
/// positions that never wrap. `Unwrapper` follows the highest sequence number seen and
/// turns each new `Seq` into an absolute offset from the base.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unwrapper {
    base: Seq,
    /// Highest position seen, as a sequence number and as an offset.
    top_seq: Seq,
    top_off: u64,
}

impl Unwrapper {
    pub fn new(base: Seq) -> Self {
        Unwrapper {
            base,
            top_seq: base,
            top_off: 0,
        }
    }

    /// Offset of `s` relative to the base, interpreted near the highest position seen.
    /// Positions before the base clamp to 0.
    #[inline]
    pub fn offset(&self, s: Seq) -> u64 {
        let d = s.diff(self.top_seq) as i64;
        let off = self.top_off as i64 + d;
        if off < 0 { 0 } else { off as u64 }
    }

    /// Moves the highest position forward to `s` if it is later; returns its offset.
    #[inline]
    pub fn advance(&mut self, s: Seq) -> u64 {
        let off = self.offset(s);
        if off > self.top_off {
            self.top_off = off;
            self.top_seq = s;
        }
        off
    }

    pub fn base(&self) -> Seq {
        self.base
    }

    pub fn top(&self) -> u64 {
        self.top_off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_wrap() {
        let a = Seq(u32::MAX - 5);
        let b = a + 10;
        assert_eq!(b.0, 4);
        assert!(a.lt(b));
        assert!(b.gt(a));
        assert_eq!(b.diff(a), 10);
        assert_eq!(a.max(b), b);
    }

    #[test]
    fn unwrapper_counts_past_4gib() {
        let mut u = Unwrapper::new(Seq(u32::MAX - 100));
        let mut s = u.base();
        let mut total = 0u64;
        for _ in 0..5000 {
            s = s + 1_000_000;
            total += 1_000_000;
            assert_eq!(u.advance(s), total);
        }
        assert!(u.top() > u32::MAX as u64);
        // An old (retransmitted) position is still placed correctly.
        assert_eq!(u.offset(s - 500), total - 500);
    }
}
