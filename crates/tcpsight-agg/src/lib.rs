//! Mergeable aggregates of what the tcpsight engine finds.
//!
//! Each aggregate folds engine events or records into figures, and has
//! `merge(&mut self, other: &Self)`: merging the aggregates of two parts of a stream
//! gives exactly the aggregate of the whole stream (the same rows, totals and
//! percentiles), so separate workers, captures or time slices can be aggregated apart
//! and combined. Rendering (text and JSON tables) is the CLI's.
//!
//! * [`DestinationTable`]: the per-destination table (trtop's columns), one
//!   [`HostStats`] per [`HostKey`] (server address, or address and port), fed with
//!   [`ConnRecord`](tcpsight_core::ConnRecord)s through [`ConnFacts`] and with exchange
//!   events; [`HostStats::row`] and [`DestinationTable::rows`] give its [`Row`]s, a
//!   snapshot. Merging adds each destination's counters and merges its percentiles.
//! * [`Outcomes`]: handshake outcome totals of finished connections, with tcpeek's
//!   duplicate SYN / SYN-ACK counters. Merging adds them.
//! * [`Totals`]: tcpeek's handshake totals of one `watch` filter. Merging adds them;
//!   [`Totals::minus`] gives the change since an earlier snapshot.
//! * [`Percentiles`]: values kept exactly while there are at most `LIMIT` of them (the
//!   table's percentiles, as `tcpsight_core::stats::Quantiles` computes them), in a
//!   mergeable [`Sketch`] beyond: an [`ExpHistogram`] by default, or [`LogLinear`],
//!   `Quantiles`'s own log-linear histogram made mergeable, which the destination table
//!   uses so that every figure it prints stays what it was. Two exact sets merge into an
//!   exact set while the union is small, otherwise into one sketch.
//! * [`ExpHistogram`]: a base-2 exponential histogram with the layout of OpenTelemetry
//!   exponential histograms and Prometheus native histograms (scale, zero bucket, positive
//!   buckets as offset and dense counts, at most 160 by default, automatic downscale).
//!   Merging brings both to the common (lower) scale; the result is exactly the
//!   histogram of the concatenated stream. Its quantile estimate returns the bucket's
//!   harmonic midpoint `2LU/(L+U)`, whose relative error is at most `(b-1)/(b+1)` for the
//!   base `b = 2^(2^-scale)`: 4.33 % at scale 3, 2.17 % at scale 4, 0.27 % at scale 7
//!   (see [`exphist`] for the derivation).
//! * [`RecordHistograms`]: one [`ExpHistogram`] per main record quantity (connect,
//!   response, RTT, duration, bytes each way, retransmission rate) over a whole run:
//!   `analyze --histograms`.

pub mod exphist;
pub mod loglinear;
pub mod outcomes;
pub mod percentiles;
pub mod recordhist;
pub mod table;
pub mod totals;

pub use exphist::ExpHistogram;
pub use loglinear::LogLinear;
pub use outcomes::Outcomes;
pub use percentiles::{Percentiles, Sketch};
pub use recordhist::RecordHistograms;
pub use table::{
    ConnFacts, DestinationTable, Failure, Grouping, HostCounters, HostKey, HostStats, Row, RowOrder,
};
pub use totals::Totals;
