//! tcpsight: TCP connection analyzer.

mod analyze;
mod format;
mod inputs;
mod output;
mod probe;
mod statsock;
mod watch;
mod watchfilter;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tcpsight",
    version,
    about = "TCP connection analyzer: handshakes, latency, RTT, retransmissions, resets, exchanges",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyze capture files (pcap, pcapng; gzip or zstd compressed; - for stdin)
    Analyze(Box<analyze::AnalyzeArgs>),
    /// Handshake monitor (tcpeek's job): one line per finished handshake, totals per filter
    Watch(Box<watch::WatchArgs>),
    /// Totals of a running live watch, from its stats socket
    Stat(statsock::StatArgs),
    /// Kernel TCP tracing (tcp_probe and friends): trace, parse, plot, summary
    Probe(Box<probe::ProbeArgs>),
    /// Print the connection record schema (every field of --flows output)
    Fields,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(*args),
        Command::Watch(args) => watch::run(*args),
        Command::Stat(args) => statsock::stat(args),
        Command::Probe(args) => probe::run(*args),
        Command::Fields => {
            for name in tcpsight_core::record::field_names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
    }
}
