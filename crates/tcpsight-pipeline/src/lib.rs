//! tcpsight-pipeline: where frames come from and the one loop that feeds them to the
//! engine, under every face (analyze, watch, top, probe --with-capture).
//!
//! - [`source`]: [`FrameSource`] over capture files merged in time order (stdin too),
//!   the live AF_PACKET ring, and a paced replay ([`Paced`], top's `--speed`).
//! - [`run`]: [`Runner`], the loop: frame in, packet filter (tcpdump syntax, user
//!   space), taps, engine, observers; idle time advances the engine's clock; stops on a
//!   signal flag, a deadline or a frame count; end of input finishes the engine.
//! - [`dedup`]: [`CopyFilter`], live `any`'s copies of one packet from two interfaces
//!   (a bridge and its port) dropped and counted.
//! - [`shard`]: [`run_sharded`], N engines on N threads, each frame routed by a
//!   symmetric hash of its flow key (an ICMP error by the connection it quotes), the
//!   engines' reports merged into exactly the order one engine gives. Offline sharding
//!   and live `--threads` are this same code.
//!
//! Capture timestamps are the only time the engine sees; the wall clock enters only
//! through sources (a live ring's idle clock, a paced replay's schedule).

pub mod dedup;
pub mod run;
pub mod shard;
pub mod source;

pub use dedup::CopyFilter;
pub use run::{Limits, Progress, Runner, Step, StopFlag, Stopped, Tap};
pub use shard::{ShardedRun, run_sharded, shard_of};
pub use source::{FileSource, FrameSource, LiveSource, Next, Paced, Speed};

/// Wall-clock time in ns since the epoch: a live source's idle clock.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
