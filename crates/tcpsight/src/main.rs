//! tcpsight: TCP connection analyzer.

mod analyze;
mod capture;
mod format;
mod inputs;
mod output;
mod pipe;
mod probe;
mod statsock;
mod top;
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
    /// Live per-destination view (trtop done right): -i IFACE or -r FILE
    Top(Box<top::TopArgs>),
    /// Totals of a running live watch, from its stats socket
    Stat(statsock::StatArgs),
    /// Write a capture file from an interface: control packets only (SYN, FIN, RST,
    /// ICMP errors) by default, or --all
    Capture(Box<capture::CaptureArgs>),
    /// Kernel TCP tracing (tcp_probe and friends): trace, parse, plot, summary
    Probe(Box<probe::ProbeArgs>),
    /// Print the connection record schema (every field of --flows output)
    Fields,
    /// Print a shell completion script (e.g. `tcpsight completions bash >
    /// /etc/bash_completion.d/tcpsight`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (e.g. `tcpsight man | man -l -`)
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(*args),
        Command::Watch(args) => watch::run(*args),
        Command::Top(args) => top::run(*args),
        Command::Stat(args) => statsock::stat(args),
        Command::Capture(args) => capture::run(*args),
        Command::Probe(args) => probe::run(*args),
        Command::Fields => {
            for name in tcpsight_core::record::field_names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "tcpsight", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Err(e) if !pipe::is_broken(&e) => {
                    eprintln!("tcpsight: writing the manual page: {e}");
                    ExitCode::from(2)
                }
                _ => ExitCode::SUCCESS,
            }
        }
    }
}
