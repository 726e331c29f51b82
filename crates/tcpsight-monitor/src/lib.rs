//! tcpsight-monitor: the continuous faces' building blocks, each fed by the engine's
//! observer seam and usable from any face (monitor, watch, analyze):
//!
//! - [`metrics`]: Prometheus metrics per destination (counters, classic and native
//!   histograms) from engine events; [`http`]: the `/metrics` endpoint.
//! - [`bins`]: the per-destination table per time interval, with counts and histogram
//!   buckets (`analyze --interval`, the monitor's `bins` files).
//! - [`outdir`]: the monitor's output directory: one folder per rotation period, files
//!   that appear only when complete, retention by age and size.
//! - [`monitor`]: the observer that writes records, bins and summaries into it, rotating
//!   by capture time.
//! - [`local`]: `--local NETS` and connection directions; [`chunked`]: files of whole lines (zstd in Rust) that survive a full disk.

pub mod bins;
pub mod chunked;
pub mod http;
pub mod local;
pub mod metrics;
pub mod monitor;
pub mod outdir;

pub use bins::{Binner, Bins};
pub use http::MetricsServer;
pub use local::{Direction, LocalNets};
pub use metrics::{Metrics, MetricsConfig, MetricsObserver};
