//! The integration tests of the `tcpsight` binary, in one test binary: each module was
//! a test binary of its own, and every one of them linked (with the release profile's
//! LTO) the same dependencies again. One binary is built and linked once, and its tests
//! share the cores instead of waiting for each other's sleeps.
//!
//! `cargo test --profile test-release -p tcpsight --test integration MODULE::` runs one
//! part, e.g. `oracle::` or `golden::`.

mod common;

mod anon_faces;
mod any_copies;
mod bpf;
mod cli;
mod distributions;
mod docs;
mod export;
mod golden;
mod histograms;
mod l7;
mod live;
mod monitor;
mod netns_capture;
mod netns_watch;
mod newcomer;
mod oracle;
mod probe;
mod threads;
mod top;
mod top_tmux;
mod tstat;
mod tunnels;
mod udp;
mod watch;
