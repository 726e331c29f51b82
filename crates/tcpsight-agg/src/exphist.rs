//! A mergeable base-2 exponential histogram of `u64` values, laid out exactly as an
//! OpenTelemetry exponential histogram / a Prometheus native histogram.
//!
//! # Layout
//!
//! * `scale` `s` fixes the bucket base `b = 2^(2^-s)`: 2^s buckets per power of two for
//!   `s >= 0`, one bucket per 2^-s powers of two below zero. Scales run from
//!   [`MIN_SCALE`] (-10) to [`MAX_SCALE`] (20).
//! * Positive bucket `i` holds the values in `(b^i, b^(i+1)]`, so value `v` has index
//!   `ceil(log2(v) * 2^s) - 1`: upper bounds are inclusive, powers of two close buckets.
//! * The zero bucket counts the values at or below the zero threshold, which is 0 (values
//!   are integers: only exact zeros go there). There are no negative buckets.
//! * Positive buckets are one `offset` (the first bucket's index) and dense `counts`,
//!   never more than `max_size` of them (160 by default, as OpenTelemetry's SDKs).
//!
//! A histogram starts at its highest scale; when a value would make the range of indices
//! wider than `max_size` buckets, it downscales (each step merges pairs of neighbours:
//! index `i` becomes `i >> 1`) by as few steps as needed. [`ExpHistogram::merge`] brings
//! both sides to the lower of the two scales, then downscales further if the union does
//! not fit. Indices are computed once at [`MAX_SCALE`] and shifted to the current scale,
//! so a value's bucket at any scale is exactly its bucket at a higher scale shifted: the
//! histogram of a stream does not depend on the order of its values, and merging the
//! histograms of two halves gives exactly the histogram of the whole (same scale, buckets,
//! count, sum, min and max).
//!
//! # Quantiles and their error
//!
//! [`ExpHistogram::quantile`] is a nearest-rank estimate: it finds the bucket holding the
//! value of rank `ceil(q * count)` and returns the point `m` of the bucket that minimises
//! the worst relative error, the harmonic mean of its ends, `m = 2·L·U / (L + U)`. For a
//! true value `x` in `[L, U]` the relative error `|m - x| / x` is largest at the ends,
//! where it is `(m - L)/L = (U - m)/U = (U - L)/(U + L)`. A bucket's real bounds have
//! `U = b·L`, so the error is at most
//!
//! ```text
//!     (b - 1) / (b + 1)        with b = 2^(2^-s)      (about ln 2 / 2^(s+1) for large s)
//! ```
//!
//! e.g. 4.33 % at scale 3, 2.17 % at scale 4, 0.27 % at scale 7. The estimate uses the
//! integers the bucket can hold (and the histogram's exact min and max), which are inside
//! the real bounds, so the bound holds and is often beaten; a bucket holding one integer
//! gives it exactly. Ranks 1 and `count` return the exact min and max, and the zero bucket
//! returns 0 exactly.

/// The highest scale: 2^20 buckets per power of two.
pub const MAX_SCALE: i32 = 20;
/// The lowest scale: one bucket per 2^10 powers of two (every `u64` fits in two).
pub const MIN_SCALE: i32 = -10;
/// OpenTelemetry's default maximum number of positive buckets.
pub const DEFAULT_MAX_SIZE: usize = 160;

/// See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpHistogram {
    max_size: usize,
    scale: i32,
    zero_count: u64,
    offset: i32,
    /// Empty, or its first and last counts are not zero.
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for ExpHistogram {
    fn default() -> Self {
        ExpHistogram::new(DEFAULT_MAX_SIZE, MAX_SCALE)
    }
}

/// Index of `v >= 1` at [`MAX_SCALE`]. Powers of two are exact, and the result always
/// stays in `v`'s power of two, so shifting it gives the exact index at scales <= 0.
fn index_max(v: u64) -> i64 {
    debug_assert!(v >= 1);
    let n = 63 - v.leading_zeros() as i64; // 2^n <= v < 2^(n+1)
    let per = 1i64 << MAX_SCALE;
    if v.is_power_of_two() {
        return n * per - 1;
    }
    let frac = v as f64 / (1u64 << n) as f64; // in (1, 2], rounded
    let k = (frac.log2() * per as f64).ceil() as i64;
    n * per + k.clamp(1, per) - 1
}

fn index_at(v: u64, scale: i32) -> i64 {
    index_max(v) >> (MAX_SCALE - scale)
}

/// Downscale steps for indices `lo..=hi` to fit `max_size` buckets.
fn steps_to_fit(lo: i64, hi: i64, max_size: usize) -> i32 {
    let mut k = 0;
    while (hi >> k) - (lo >> k) + 1 > max_size as i64 {
        k += 1;
    }
    k
}

impl ExpHistogram {
    /// An empty histogram of at most `max_size` positive buckets (at least 2), starting at
    /// `max_scale` (clamped to [`MIN_SCALE`]..=[`MAX_SCALE`]).
    pub fn new(max_size: usize, max_scale: i32) -> Self {
        ExpHistogram {
            max_size: max_size.max(2),
            scale: max_scale.clamp(MIN_SCALE, MAX_SCALE),
            zero_count: 0,
            offset: 0,
            counts: Vec::new(),
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
        }
    }

    /// Adds one value.
    pub fn add(&mut self, v: u64) {
        self.add_stats(1, v as u128, v, v);
        if v == 0 {
            self.zero_count += 1;
        } else {
            self.add_bucket(index_max(v), MAX_SCALE, 1);
        }
    }

    fn add_stats(&mut self, n: u64, sum: u128, min: u64, max: u64) {
        if self.count == 0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += n;
        self.sum += sum;
    }

    /// Adds `n` to the bucket of index `i` at scale `from` (>= the current scale),
    /// downscaling first if it does not fit.
    fn add_bucket(&mut self, i: i64, from: i32, n: u64) {
        let mut i = i >> (from - self.scale);
        if self.counts.is_empty() {
            self.offset = i as i32;
            self.counts.push(n);
            return;
        }
        let lo = (self.offset as i64).min(i);
        let hi = (self.offset as i64 + self.counts.len() as i64 - 1).max(i);
        let k = steps_to_fit(lo, hi, self.max_size);
        if k > 0 {
            self.downscale(k);
            i >>= k;
        }
        let off = self.offset as i64;
        if i < off {
            let pad = (off - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, pad));
            self.offset = i as i32;
        } else if i >= off + self.counts.len() as i64 {
            self.counts.resize((i - off + 1) as usize, 0);
        }
        self.counts[(i - self.offset as i64) as usize] += n;
    }

    /// Lowers the scale by `k` steps (merging 2^k neighbouring buckets into one).
    fn downscale(&mut self, k: i32) {
        let k = k.min(self.scale - MIN_SCALE);
        if k <= 0 {
            return;
        }
        self.scale -= k;
        if self.counts.is_empty() {
            return;
        }
        let off = self.offset as i64;
        let new_off = off >> k;
        let mut out: Vec<u64> = Vec::with_capacity(self.counts.len());
        for (j, &c) in self.counts.iter().enumerate() {
            let t = (((off + j as i64) >> k) - new_off) as usize;
            if t == out.len() {
                out.push(0);
            }
            out[t] += c;
        }
        self.offset = new_off as i32;
        self.counts = out;
    }

    /// Adds every value of `other`: both sides go to the lower scale, then lower still if
    /// the union of their buckets does not fit this histogram's `max_size`.
    pub fn merge(&mut self, other: &ExpHistogram) {
        if other.count == 0 {
            return;
        }
        self.add_stats(other.count, other.sum, other.min, other.max);
        self.zero_count += other.zero_count;
        if other.counts.is_empty() {
            return;
        }
        let s = self.scale.min(other.scale);
        let (olo, ohi) = other.range_at(s).expect("buckets");
        let (lo, hi) = match self.range_at(s) {
            Some((a, b)) => (a.min(olo), b.max(ohi)),
            None => (olo, ohi),
        };
        let target = s - steps_to_fit(lo, hi, self.max_size);
        self.downscale(self.scale - target);
        for (j, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.add_bucket(other.offset as i64 + j as i64, other.scale, c);
            }
        }
    }

    fn range_at(&self, s: i32) -> Option<(i64, i64)> {
        let k = self.scale - s;
        (!self.counts.is_empty()).then(|| {
            let lo = self.offset as i64;
            (lo >> k, (lo + self.counts.len() as i64 - 1) >> k)
        })
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact sum of the values.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn scale(&self) -> i32 {
        self.scale
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Values at or below this go to the zero bucket: always 0 (exact zeros only).
    pub fn zero_threshold(&self) -> u64 {
        0
    }

    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// Index of the first positive bucket (0 when there are none).
    pub fn positive_offset(&self) -> i32 {
        self.offset
    }

    /// Counts of the positive buckets `positive_offset()..`, dense (some may be 0; the
    /// first and last are not).
    pub fn positive_counts(&self) -> &[u64] {
        &self.counts
    }

    /// The positive buckets that hold values: `(lower, upper, count)`, lowest first.
    pub fn nonempty_buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(j, c)| {
                let (lo, hi) = self.bucket_bounds(self.offset + j as i32);
                (lo, hi, *c)
            })
    }

    /// The bucket base `2^(2^-scale)`.
    pub fn base(&self) -> f64 {
        (-(self.scale as f64)).exp2().exp2()
    }

    /// The quantile estimate's relative error bound at the current scale, `(b-1)/(b+1)`.
    pub fn relative_error(&self) -> f64 {
        relative_error(self.scale)
    }

    /// Bounds `(lower, upper]` of positive bucket `index` at the current scale.
    pub fn bucket_bounds(&self, index: i32) -> (f64, f64) {
        let step = (-(self.scale as f64)).exp2();
        (
            (index as f64 * step).exp2(),
            ((index as f64 + 1.0) * step).exp2(),
        )
    }

    /// The index `v` (>= 1) has at the current scale.
    pub fn index_of(&self, v: u64) -> i32 {
        index_at(v.max(1), self.scale) as i32
    }

    /// Classic cumulative buckets, as a Prometheus classic histogram has them: `(upper
    /// bound, values at or below it)`: the zero bucket `(0, zero_count)`, one per positive
    /// bucket (upper bound `b^(i+1)`), then `(+inf, count)`.
    pub fn cumulative_buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut seen = self.zero_count;
        std::iter::once((0.0, self.zero_count))
            .chain(self.counts.iter().enumerate().map(move |(j, &c)| {
                seen += c;
                (self.bucket_bounds(self.offset + j as i32).1, seen)
            }))
            .chain(std::iter::once((f64::INFINITY, self.count)))
    }

    /// Smallest `v >= 1` whose index at the current scale is at least `i`.
    fn first_at_least(&self, i: i64) -> Option<u64> {
        if index_at(u64::MAX, self.scale) < i {
            return None;
        }
        let (mut lo, mut hi) = (1u64, u64::MAX);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if index_at(mid, self.scale) >= i {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// Nearest-rank quantile estimate, `q` in 0..=1: the value of rank `ceil(q·count)`
    /// (at least 1), within [`relative_error`](Self::relative_error) of it; `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return Some(self.max as f64);
        }
        if rank == 1 {
            return Some(self.min as f64);
        }
        if rank <= self.zero_count {
            return Some(0.0);
        }
        let mut seen = self.zero_count;
        let j = self
            .counts
            .iter()
            .position(|&c| {
                seen += c;
                seen >= rank
            })
            .expect("rank <= count");
        let i = self.offset as i64 + j as i64;
        let lo = self.first_at_least(i).unwrap_or(u64::MAX).max(self.min);
        let hi = self
            .first_at_least(i + 1)
            .map_or(u64::MAX, |n| n - 1)
            .min(self.max);
        let (l, u) = (lo as f64, hi.max(lo) as f64);
        Some(2.0 * l * u / (l + u))
    }
}

/// `(b-1)/(b+1)` for `b = 2^(2^-scale)`: the quantile estimate's relative error bound.
pub fn relative_error(scale: i32) -> f64 {
    let b = (-(scale as f64)).exp2().exp2();
    (b - 1.0) / (b + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn of(values: &[u64]) -> ExpHistogram {
        let mut h = ExpHistogram::default();
        values.iter().for_each(|&v| h.add(v));
        h
    }

    fn exact_quantile(values: &[u64], q: f64) -> u64 {
        let mut v = values.to_vec();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    fn rel_err(est: f64, x: u64) -> f64 {
        if x == 0 {
            return est.abs();
        }
        (est - x as f64).abs() / x as f64
    }

    #[test]
    fn index_matches_the_definition() {
        // Powers of two close their bucket: 2^n is the upper bound of index n·2^s - 1.
        for s in [-3, 0, 1, 3, 8, 20] {
            for n in 0..64 {
                let i = index_at(1u64 << n, s);
                let want = if s >= 0 {
                    (n as i64) * (1 << s) - 1
                } else {
                    (n as i64 - 1) >> -s
                };
                assert_eq!(i, want, "2^{n} at scale {s}");
            }
        }
        // Against ceil(log2(v)·2^s) - 1 away from boundaries.
        for v in [
            3u64,
            5,
            7,
            10,
            100,
            1000,
            12345,
            999_999_999,
            1 << 40 | 12345,
        ] {
            for s in [-2, 0, 2, 5, 10] {
                let want = ((v as f64).log2() * (s as f64).exp2()).ceil() as i64 - 1;
                assert_eq!(index_at(v, s), want, "v={v} s={s}");
            }
        }
        // Every bucket's integers are inside its real bounds.
        let h = ExpHistogram::new(160, 3);
        for v in 1..5000u64 {
            let (lo, hi) = h.bucket_bounds(h.index_of(v));
            assert!(lo < v as f64 && v as f64 <= hi * (1.0 + 1e-12), "v={v}");
        }
    }

    #[test]
    fn edge_values_do_not_panic() {
        let mut h = of(&[0, 1, u64::MAX, u64::MAX, 0, 1]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum(), 2 * u64::MAX as u128 + 2);
        assert_eq!((h.min(), h.max()), (Some(0), Some(u64::MAX)));
        assert_eq!(h.zero_count(), 2);
        assert!(h.positive_counts().len() <= h.max_size());
        for q in [0.0, 0.1, 0.5, 0.6, 0.99, 1.0, -1.0, 2.0, f64::NAN] {
            assert!(h.quantile(q).is_some());
        }
        assert_eq!(h.quantile(1.0), Some(u64::MAX as f64));
        assert_eq!(h.quantile(0.0), Some(0.0));
        let b: Vec<_> = h.cumulative_buckets().collect();
        assert_eq!(b.first(), Some(&(0.0, 2)));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 6)));
        h.merge(&h.clone());
        assert_eq!(h.count(), 12);
        let mut tiny = ExpHistogram::new(0, MIN_SCALE - 5);
        for v in [1, 2, u64::MAX, 0] {
            tiny.add(v);
        }
        assert_eq!(tiny.scale(), MIN_SCALE);
        assert!(tiny.positive_counts().len() <= 2);
        assert_eq!(ExpHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn downscales_when_the_range_grows() {
        let mut h = ExpHistogram::default();
        h.add(1000);
        assert_eq!(h.scale(), MAX_SCALE);
        h.add(1_000_000_000); // 1 µs .. 1 s: about 20 powers of two in 160 buckets
        assert_eq!(h.scale(), 2);
        assert!(h.positive_counts().len() <= 160);
        assert_eq!(h.positive_counts().iter().sum::<u64>(), 2);
        assert_eq!(*h.positive_counts().first().unwrap(), 1);
        assert_eq!(h.positive_offset(), h.index_of(1000));
    }

    #[test]
    fn cumulative_buckets_are_monotonic_and_end_at_count() {
        let h = of(&(0..2000u64).map(|i| i * i).collect::<Vec<_>>());
        let b: Vec<_> = h.cumulative_buckets().collect();
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(b.last().unwrap().1, 2000);
        assert_eq!(b.len(), h.positive_counts().len() + 2);
        // Each bucket's cumulative count is the number of values at or below its bound.
        for &(le, n) in &b[..b.len() - 1] {
            let want = (0..2000u64).filter(|i| ((i * i) as f64) <= le).count() as u64;
            assert_eq!(n, want, "le={le}");
        }
    }

    /// The measured worst relative error at each final scale, against the stated bound
    /// (`cargo test -p tcpsight-agg measured -- --nocapture` prints it).
    #[test]
    fn measured_relative_error() {
        for (lo, span) in [(1_000u64, 1u64 << 6), (1_000, 1 << 12), (1_000, 1 << 20)] {
            let values: Vec<u64> = (0..20_000u64)
                .map(|i| lo + (i.wrapping_mul(2_654_435_761) % (lo * span)))
                .collect();
            let h = of(&values);
            let mut worst = 0.0f64;
            for k in 1..1000 {
                let q = k as f64 / 1000.0;
                worst = worst.max(rel_err(h.quantile(q).unwrap(), exact_quantile(&values, q)));
            }
            println!(
                "scale {:>2}: bound {:.5}, measured worst {:.5}",
                h.scale(),
                h.relative_error(),
                worst
            );
            assert!(worst <= h.relative_error() + 1e-12);
        }
    }

    fn stream() -> impl Strategy<Value = Vec<u64>> {
        let value = prop_oneof![
            Just(0u64),
            Just(1u64),
            Just(u64::MAX),
            0u64..2_000,
            1_000u64..10_000_000_000,
            any::<u64>(),
        ];
        prop::collection::vec(value, 0..400)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn merge_equals_the_concatenated_stream(a in stream(), b in stream(), size in 2usize..200) {
            let mut ha = ExpHistogram::new(size, MAX_SCALE);
            let mut hb = ExpHistogram::new(size, MAX_SCALE);
            let mut whole = ExpHistogram::new(size, MAX_SCALE);
            a.iter().for_each(|&v| { ha.add(v); whole.add(v) });
            b.iter().for_each(|&v| { hb.add(v); whole.add(v) });
            ha.merge(&hb);
            prop_assert_eq!(&ha, &whole);
            // Order does not matter either.
            let mut rev = ExpHistogram::new(size, MAX_SCALE);
            a.iter().chain(&b).rev().for_each(|&v| rev.add(v));
            prop_assert_eq!(&rev, &whole);
        }

        #[test]
        fn quantile_within_stated_error(values in stream(), qs in prop::collection::vec(0.0f64..=1.0, 1..20), size in 2usize..200) {
            prop_assume!(!values.is_empty());
            let mut h = ExpHistogram::new(size, MAX_SCALE);
            values.iter().for_each(|&v| h.add(v));
            for q in qs {
                let x = exact_quantile(&values, q);
                let est = h.quantile(q).unwrap();
                prop_assert!(rel_err(est, x) <= h.relative_error() * (1.0 + 1e-9) + 1e-12,
                    "q={} exact={} est={} scale={}", q, x, est, h.scale());
            }
        }

        #[test]
        fn downscale_preserves_count_and_sum(values in stream(), k in 0i32..31) {
            let mut h = ExpHistogram::default();
            values.iter().for_each(|&v| h.add(v));
            let (count, sum, buckets) = (h.count(), h.sum(), h.positive_counts().iter().sum::<u64>());
            h.downscale(k);
            prop_assert_eq!(h.count(), count);
            prop_assert_eq!(h.sum(), sum);
            prop_assert_eq!(h.positive_counts().iter().sum::<u64>(), buckets);
            prop_assert_eq!(buckets + h.zero_count(), count);
            prop_assert!(h.positive_counts().first().is_none_or(|&c| c > 0));
            prop_assert!(h.positive_counts().last().is_none_or(|&c| c > 0));
            // Every value is still in the bucket its index names.
            for &v in values.iter().filter(|&&v| v > 0) {
                let j = h.index_of(v) - h.positive_offset();
                prop_assert!(j >= 0 && h.positive_counts()[j as usize] > 0);
            }
        }
    }
}
