//! The log-linear histogram `tcpsight_core::stats::Quantiles` switches to, made
//! mergeable: 8 linear buckets per power of two of `value / UNIT` (up to 2^40), values
//! reported as bucket midpoints times `UNIT`, within 6.25 % (plus `UNIT`'s truncation).
//! The table's percentiles use it beyond their exact limit so that the figures the CLI
//! prints stay what they were; [`ExpHistogram`](crate::ExpHistogram) is the exporter's
//! layout.

use crate::percentiles::Sketch;

// The buckets are core's, so both histograms report the same figures.
use tcpsight_core::stats::{LOG_BUCKETS as BUCKETS, bucket_mid, bucket_of};

/// See the [module documentation](self). `UNIT` is the resolution: 1000 for nanosecond
/// durations kept in microsecond buckets, 1 for counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLinear<const UNIT: u64> {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl<const UNIT: u64> Default for LogLinear<UNIT> {
    fn default() -> Self {
        LogLinear {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl<const UNIT: u64> Sketch for LogLinear<UNIT> {
    fn add(&mut self, v: u64) {
        self.counts[bucket_of(v / UNIT.max(1))] += 1;
        self.total += 1;
    }

    fn merge(&mut self, other: &Self) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c += o;
        }
        self.total += other.total;
    }

    fn count(&self) -> u64 {
        self.total
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_mid(b) * UNIT.max(1));
            }
        }
        None
    }
}
