//! Kernel TCP tracing for tcpsight (`tcpsight probe`).
//!
//! - [`tracefs`]: finding or mounting tracefs, and a private tracing instance whose guard
//!   removes it on drop (and so on Ctrl-C, with the crate's signal handlers);
//! - [`format`]: an event's `format` file (fields, and how each printed value is typed);
//! - [`event`]: one ftrace text line (ours, `trace_pipe`'s, tcp_probe's files) as an event;
//! - [`read`]: trace files, plain or gzip, garbage lines counted and skipped;
//! - [`filter`]: the user's ftrace filter per event, and --port/--host;
//! - [`summary`]: per-connection figures; [`plot`]: per-connection PNG/SVG plots.

pub mod event;
pub mod filter;
pub mod format;
pub mod plot;
pub mod read;
pub mod summary;
pub mod tracefs;

pub use event::{Event, Line, parse_line};
pub use format::{EVENTS, Format, Formats};
pub use summary::{ConnSummary, Summary};
