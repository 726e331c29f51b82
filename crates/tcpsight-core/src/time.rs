//! Capture timestamps that may be absent, in 8 bytes.

use core::num::NonZeroU64;

/// `Option<u64>` of nanoseconds in 8 bytes instead of 16 (a connection keeps five of
/// them): the value is stored plus one, so zero means "none". A timestamp of exactly
/// `u64::MAX` ns (year 2554) reads back one nanosecond early.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaybeNs(Option<NonZeroU64>);

impl MaybeNs {
    pub const NONE: MaybeNs = MaybeNs(None);

    #[inline]
    pub fn some(ns: u64) -> MaybeNs {
        MaybeNs(NonZeroU64::new(ns.saturating_add(1)))
    }

    #[inline]
    pub fn get(self) -> Option<u64> {
        self.0.map(|v| v.get() - 1)
    }

    #[inline]
    pub fn is_some(self) -> bool {
        self.0.is_some()
    }

    /// Returns the value and leaves none.
    #[inline]
    pub fn take(&mut self) -> Option<u64> {
        let v = self.get();
        self.0 = None;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(core::mem::size_of::<MaybeNs>(), 8);
        assert_eq!(MaybeNs::NONE.get(), None);
        assert_eq!(MaybeNs::some(0).get(), Some(0));
        assert_eq!(
            MaybeNs::some(1_700_000_000_123_456_789).get(),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(MaybeNs::some(u64::MAX).get(), Some(u64::MAX - 1));
        let mut m = MaybeNs::some(5);
        assert_eq!(m.take(), Some(5));
        assert!(!m.is_some());
    }
}
