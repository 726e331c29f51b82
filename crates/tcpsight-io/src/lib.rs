//! tcpsight-io: capture sources around the sans-IO core.
//!
//! [`CaptureReader`] reads one pcap or pcapng file (plain, gzip or zstd, detected by
//! magic bytes, never by name; `-` for stdin). [`MergedReader`] reads several files as
//! one trace in timestamp order. Both hand out [`FrameRef`]s ready for
//! `tcpsight_core::Engine::process`.

mod error;
mod legacy;
mod merge;
mod open;
mod reader;
mod write;

pub use error::ReadError;
pub use merge::MergedReader;
pub use reader::{CaptureReader, FileFormat, FrameRef, Recorded};
pub use write::{CaptureEnd, CaptureWriter, WriteFormat};
