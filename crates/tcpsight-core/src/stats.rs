//! Deterministic percentiles.
//!
//! Per connection, response times are kept exactly up to [`EXACT_SAMPLES`] samples; a
//! longer keep-alive connection switches to a log-linear histogram (8 buckets per power
//! of two, values reported as bucket midpoints: at most 6.25 % relative error), so memory
//! per connection stays bounded whatever the number of exchanges. Nothing is sampled at
//! random: the same input gives the same figures, always.

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` % of
/// the values at or below it. `p` in 0..=100; `None` for no values.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub const EXACT_SAMPLES: usize = 64;
const SUB: u32 = 8;
/// Buckets of the log-linear histogram: 8 per power of two, up to 2^40 units.
pub const LOG_BUCKETS: usize = 8 * 40;
const BUCKETS: usize = LOG_BUCKETS;

/// Log-linear histogram (up to 2^40 units: about 12 days of microseconds).
#[derive(Clone, Debug)]
struct LogHistogram {
    counts: [u32; BUCKETS],
    total: u64,
}

/// The log-linear bucket of `us` (in the histogram's units).
pub fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros(); // us in [2^e, 2^(e+1))
    let sub = ((us >> (e - 3)) & (SUB as u64 - 1)) as u32;
    (((e - 2) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The value a log-linear bucket reports: its midpoint (within 6.25 %).
pub fn bucket_mid(b: usize) -> u64 {
    let b = b as u32;
    if b < SUB {
        return b as u64;
    }
    let e = b / SUB + 2;
    let sub = (b % SUB) as u64;
    let lo = (1u64 << e) + (sub << (e - 3));
    lo + (1u64 << (e - 3)) / 2
}

impl LogHistogram {
    fn new() -> Self {
        LogHistogram {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
    fn add(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
    }
    fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c as u64;
            if seen >= rank {
                return Some(bucket_mid(b));
            }
        }
        None
    }
}

/// Values kept exactly up to `LIMIT`, then in a log-linear histogram: deterministic
/// percentiles in bounded memory. `UNIT` is the histogram's resolution (1000 for
/// nanosecond durations kept in microsecond buckets, 1 for counts).
#[derive(Clone, Debug, Default)]
pub struct Quantiles<const LIMIT: usize, const UNIT: u64> {
    exact: Vec<u64>,
    hist: Option<Box<LogHistogram>>,
    max: u64,
}

impl<const LIMIT: usize, const UNIT: u64> Quantiles<LIMIT, UNIT> {
    pub fn add(&mut self, v: u64) {
        self.max = self.max.max(v);
        if let Some(h) = self.hist.as_mut() {
            h.add(v / UNIT);
            return;
        }
        if self.exact.len() < LIMIT {
            self.exact.push(v);
            return;
        }
        let mut h = Box::new(LogHistogram::new());
        for &x in &self.exact {
            h.add(x / UNIT);
        }
        h.add(v / UNIT);
        self.exact = Vec::new();
        self.hist = Some(h);
    }

    pub fn count(&self) -> u64 {
        self.hist
            .as_ref()
            .map_or(self.exact.len() as u64, |h| h.total)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max)
    }

    /// Whether percentiles are exact (no more than `LIMIT` values were added).
    pub fn is_exact(&self) -> bool {
        self.hist.is_none()
    }

    /// Nearest-rank percentile: exact up to `LIMIT` values, then within 6.25 %.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if let Some(h) = &self.hist {
            return h.percentile(p).map(|v| v * UNIT);
        }
        let mut v = self.exact.clone();
        v.sort_unstable();
        percentile_sorted(&v, p)
    }
}

/// Response times of one connection, in nanoseconds: exact for up to 64 exchanges.
pub type ResponseTimes = Quantiles<EXACT_SAMPLES, 1000>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), Some(50));
        assert_eq!(percentile_sorted(&v, 95.0), Some(95));
        assert_eq!(percentile_sorted(&v, 100.0), Some(100));
        assert_eq!(percentile_sorted(&v, 0.0), Some(1));
        assert_eq!(percentile_sorted(&[7], 99.0), Some(7));
        assert_eq!(percentile_sorted(&[], 50.0), None);
    }

    #[test]
    fn buckets_are_monotonic_and_within_error() {
        let mut last = 0;
        for us in 1..200_000u64 {
            let b = bucket_of(us);
            assert!(b >= last);
            last = b;
            let mid = bucket_mid(b) as f64;
            let err = (mid - us as f64).abs() / us as f64;
            assert!(err <= 0.0625 + 1e-9, "us={us} mid={mid}");
        }
    }

    #[test]
    fn switches_to_histogram_after_exact_limit() {
        let mut r = ResponseTimes::default();
        for i in 1..=1000u64 {
            r.add(i * 1_000_000); // 1..1000 ms
        }
        let p50 = r.percentile(50.0).unwrap() as f64;
        assert!((p50 - 500e6).abs() / 500e6 < 0.0625, "p50={p50}");
        assert_eq!(r.max(), Some(1_000_000_000));
        assert_eq!(r.count(), 1000);
        assert!(!r.is_exact());
    }
}
