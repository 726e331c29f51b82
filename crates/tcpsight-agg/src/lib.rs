//! Mergeable aggregates of what the tcpsight engine finds.
//!
//! Each aggregate has `merge(&mut self, other: &Self)`: merging the aggregates of two
//! parts of a stream gives exactly the aggregate of the whole stream.
//!
//! * [`Percentiles`]: values kept exactly while there are at most `LIMIT` of them (as
//!   `tcpsight_core::stats::Quantiles` keeps them), in a mergeable [`Sketch`] beyond: an
//!   [`ExpHistogram`] by default, or [`LogLinear`], `Quantiles`'s own log-linear
//!   histogram made mergeable. Two exact sets merge into an exact set while the union is
//!   small, otherwise into one sketch.
//! * [`ExpHistogram`]: a base-2 exponential histogram with the layout of OpenTelemetry
//!   exponential histograms and Prometheus native histograms (scale, zero bucket, positive
//!   buckets as offset and dense counts, at most 160 by default, automatic downscale).
//!   Merging brings both to the common (lower) scale; the result is exactly the
//!   histogram of the concatenated stream. Its quantile estimate returns the bucket's
//!   harmonic midpoint `2LU/(L+U)`, whose relative error is at most `(b-1)/(b+1)` for the
//!   base `b = 2^(2^-scale)`: 4.33 % at scale 3, 2.17 % at scale 4, 0.27 % at scale 7
//!   (see [`exphist`] for the derivation).

pub mod exphist;
pub mod loglinear;
pub mod percentiles;

pub use exphist::ExpHistogram;
pub use loglinear::LogLinear;
pub use percentiles::{Percentiles, Sketch};
