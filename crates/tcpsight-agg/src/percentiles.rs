//! Percentiles exact while the stream is small, from a mergeable histogram beyond.

use tcpsight_core::stats::percentile_sorted;

use crate::exphist::ExpHistogram;

/// A mergeable summary of a stream of values that estimates percentiles: what
/// [`Percentiles`] keeps beyond its exact limit.
pub trait Sketch: Clone + Default + PartialEq {
    fn add(&mut self, v: u64);
    /// Adds every value of `other`; the result is the sketch of both streams.
    fn merge(&mut self, other: &Self);
    fn count(&self) -> u64;
    /// Nearest-rank percentile estimate, `p` in 0..=100; `None` when empty.
    fn percentile(&self, p: f64) -> Option<u64>;
}

/// The nearest-rank quantile, rounded to an integer.
impl Sketch for ExpHistogram {
    fn add(&mut self, v: u64) {
        ExpHistogram::add(self, v)
    }
    fn merge(&mut self, other: &Self) {
        ExpHistogram::merge(self, other)
    }
    fn count(&self) -> u64 {
        ExpHistogram::count(self)
    }
    fn percentile(&self, p: f64) -> Option<u64> {
        self.quantile(p / 100.0).map(|v| v.round() as u64)
    }
}

/// Values kept exactly up to `LIMIT`, then in a [`Sketch`] `S`: by default an
/// [`ExpHistogram`] (160 buckets, scale from 20 down as the range needs). Up to `LIMIT`
/// values, percentiles are exactly those of `tcpsight_core::stats::Quantiles` (nearest
/// rank over the sorted values); beyond, the sketch's estimate: for the exponential
/// histogram its nearest-rank estimate rounded to an integer, within the histogram's
/// [`relative_error`](ExpHistogram::relative_error) (4.3 % at scale 3, the scale a
/// µs..s range of nanoseconds ends at) plus half a unit; with
/// [`LogLinear`](crate::loglinear::LogLinear), exactly `Quantiles`'s figures at any size.
///
/// Merging two exact sets stays exact while their union has at most `LIMIT` values;
/// otherwise both go to one histogram, the same histogram the whole stream would have
/// built, so merged percentiles equal the whole stream's in every case.
///
/// Two are equal when they hold the same values (exact values in any order) or the same
/// histogram.
#[derive(Clone, Debug, Default)]
pub struct Percentiles<const LIMIT: usize, S = ExpHistogram> {
    exact: Vec<u64>,
    hist: Option<Box<S>>,
    max: u64,
}

impl<const LIMIT: usize, S: Sketch> PartialEq for Percentiles<LIMIT, S> {
    fn eq(&self, other: &Self) -> bool {
        let sorted = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        self.max == other.max
            && self.hist == other.hist
            && self.exact.len() == other.exact.len()
            && sorted(&self.exact) == sorted(&other.exact)
    }
}

impl<const LIMIT: usize, S: Sketch + Eq> Eq for Percentiles<LIMIT, S> {}

impl<const LIMIT: usize, S: Sketch> Percentiles<LIMIT, S> {
    pub fn add(&mut self, v: u64) {
        self.max = self.max.max(v);
        if let Some(h) = self.hist.as_mut() {
            h.add(v);
        } else if self.exact.len() < LIMIT {
            self.exact.push(v);
        } else {
            self.histogram_mut().add(v);
        }
    }

    /// Moves the exact values to the histogram (once).
    fn histogram_mut(&mut self) -> &mut S {
        let exact = std::mem::take(&mut self.exact);
        self.hist.get_or_insert_with(|| {
            let mut h = S::default();
            exact.iter().for_each(|&x| h.add(x));
            Box::new(h)
        })
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        self.max = self.max.max(other.max);
        match &other.hist {
            None if self.hist.is_none() && self.exact.len() + other.exact.len() <= LIMIT => {
                self.exact.extend_from_slice(&other.exact)
            }
            None => {
                let h = self.histogram_mut();
                other.exact.iter().for_each(|&x| h.add(x));
            }
            Some(oh) => self.histogram_mut().merge(oh),
        }
    }

    pub fn count(&self) -> u64 {
        self.hist
            .as_ref()
            .map_or(self.exact.len() as u64, |h| h.count())
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max)
    }

    /// Whether percentiles are exact (no more than `LIMIT` values were added).
    pub fn is_exact(&self) -> bool {
        self.hist.is_none()
    }

    /// The histogram, once there are more than `LIMIT` values.
    pub fn histogram(&self) -> Option<&S> {
        self.hist.as_deref()
    }

    /// Nearest-rank percentile, `p` in 0..=100: exact up to `LIMIT` values, then the
    /// histogram's estimate; `None` for no values.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if let Some(h) = &self.hist {
            return h.percentile(p);
        }
        let mut v = self.exact.clone();
        v.sort_unstable();
        percentile_sorted(&v, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loglinear::LogLinear;
    use proptest::prelude::*;
    use tcpsight_core::stats::Quantiles;

    const PS: [f64; 7] = [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 100.0];

    proptest! {
        /// Below the limit, every figure is `Quantiles`'s, however the set was built.
        #[test]
        fn exact_like_quantiles_below_the_limit(a in prop::collection::vec(any::<u64>(), 0..40), b in prop::collection::vec(0u64..1000, 0..40)) {
            let mut q = Quantiles::<64, 1000>::default();
            let mut whole = Percentiles::<64>::default();
            let (mut pa, mut pb) = (Percentiles::<64>::default(), Percentiles::<64>::default());
            for &v in &a { q.add(v); whole.add(v); pa.add(v) }
            for &v in &b { q.add(v); whole.add(v); pb.add(v) }
            pa.merge(&pb);
            prop_assert_eq!(&pa, &whole);
            prop_assert_eq!(whole.is_exact(), q.is_exact());
            prop_assert_eq!(whole.count(), q.count());
            prop_assert_eq!(whole.max(), q.max());
            if q.is_exact() {
                for p in PS {
                    prop_assert_eq!(whole.percentile(p), q.percentile(p));
                }
            }
        }

        /// Merging halves equals the whole on both sides of the limit.
        #[test]
        fn merge_equals_whole(a in prop::collection::vec(0u64..10_000_000_000, 0..60), b in prop::collection::vec(any::<u64>(), 0..60)) {
            let mut whole = Percentiles::<50>::default();
            let (mut pa, mut pb) = (Percentiles::<50>::default(), Percentiles::<50>::default());
            for &v in &a { whole.add(v); pa.add(v) }
            for &v in &b { whole.add(v); pb.add(v) }
            let mut ba = pb.clone();
            pa.merge(&pb);
            ba.merge(&Percentiles::default());
            prop_assert_eq!(whole.is_exact(), pa.is_exact());
            prop_assert_eq!(whole.count(), pa.count());
            prop_assert_eq!(whole.max(), pa.max());
            prop_assert_eq!(whole.histogram(), pa.histogram());
            for p in PS {
                prop_assert_eq!(whole.percentile(p), pa.percentile(p));
            }
            prop_assert_eq!(ba, pb);
        }
    }

    proptest! {
        /// With the log-linear sketch, every figure is `Quantiles`'s on both sides of the
        /// limit, merged or not.
        #[test]
        fn loglinear_is_quantiles_at_any_size(a in prop::collection::vec(prop_oneof![0u64..5_000_000_000, any::<u64>().prop_map(|v| v >> 20)], 0..120), b in prop::collection::vec(0u64..100_000, 0..120)) {
            let mut q = Quantiles::<64, 1000>::default();
            let mut qc = Quantiles::<64, 1>::default();
            let (mut pa, mut pb) = (Percentiles::<64, LogLinear<1000>>::default(), Percentiles::<64, LogLinear<1000>>::default());
            let (mut ca, mut cb) = (Percentiles::<64, LogLinear<1>>::default(), Percentiles::<64, LogLinear<1>>::default());
            for &v in &a { q.add(v); qc.add(v); pa.add(v); ca.add(v) }
            for &v in &b { q.add(v); qc.add(v); pb.add(v); cb.add(v) }
            pa.merge(&pb);
            ca.merge(&cb);
            prop_assert_eq!(pa.is_exact(), q.is_exact());
            prop_assert_eq!(pa.count(), q.count());
            prop_assert_eq!(pa.max(), q.max());
            for p in PS.into_iter().chain([12.5, 33.3, 66.7, 99.9]) {
                prop_assert_eq!(pa.percentile(p), q.percentile(p), "p{}", p);
                prop_assert_eq!(ca.percentile(p), qc.percentile(p), "p{}", p);
            }
        }
    }

    #[test]
    fn switches_to_the_histogram_after_the_limit() {
        let mut r = Percentiles::<64>::default();
        for i in 1..=1000u64 {
            r.add(i * 1_000_000);
        }
        assert!(!r.is_exact());
        assert_eq!(r.count(), 1000);
        assert_eq!(r.max(), Some(1_000_000_000));
        let h = r.histogram().unwrap();
        let p50 = r.percentile(50.0).unwrap() as f64;
        assert!(
            (p50 - 500e6).abs() / 500e6 <= h.relative_error(),
            "p50={p50}"
        );
        assert_eq!(r.percentile(100.0), Some(1_000_000_000));
        assert_eq!(r.percentile(0.0), Some(1_000_000));
    }
}
