//! tcpsight: TCP connection analyzer.

mod analyze;
mod capfile;
mod capture;
mod export_args;
mod extras;
mod format;
mod inputs;
mod live_args;
mod monitor;
mod output;
mod pipe;
mod privacy_args;
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
    /// Continuous measurement: rotated, time-binned record and bin files in a directory,
    /// Prometheus metrics (--metrics); live, or from captures in capture time
    Monitor(Box<monitor::MonitorArgs>),
    /// Kernel TCP tracing (tcp_probe and friends): trace, parse, plot, summary
    Probe(Box<probe::ProbeArgs>),
    /// Print the connection record schema (every field of --flows output)
    Fields {
        /// With each field's type and unit
        #[arg(short, long)]
        long: bool,
    },
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
        Command::Monitor(args) => monitor::run(*args),
        Command::Fields { long } => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let mut res = Ok(());
            tcpsight_core::ConnRecord::example().for_each_field(|name, v| {
                if res.is_ok() {
                    res = if long {
                        writeln!(out, "{name:<28} {}", field_type(name, v))
                    } else {
                        writeln!(out, "{name}")
                    };
                }
            });
            match res {
                Err(e) if !pipe::is_broken(&e) => {
                    eprintln!("tcpsight: {e}");
                    ExitCode::from(2)
                }
                _ => ExitCode::SUCCESS,
            }
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

/// A record field's type and unit, for `tcpsight fields --long`.
fn field_type(name: &str, v: tcpsight_core::Value) -> &'static str {
    use tcpsight_core::Value;
    let base = name
        .strip_prefix("c2s_")
        .or_else(|| name.strip_prefix("s2c_"))
        .unwrap_or(name);
    match base {
        "vlan" => return "integer, 802.1Q id (outer << 12 | inner; 0 untagged)",
        "icmp_type" | "icmp_code" => return "integer, ICMP type / code",
        "icmp_reason" => return "string, the ICMP error's name",
        "mss" => return "integer, bytes (from the SYN)",
        "wscale" => return "integer, window scale shift (from the SYN)",
        "ttl_min" | "ttl_max" => return "integer, IP TTL / hop limit",
        "win_first" | "win_min" | "win_max" => {
            return "integer, bytes (advertised window, scaled)";
        }
        _ => {}
    }
    match v {
        Value::Bool(_) => "boolean",
        Value::Epoch(_) => "float, epoch seconds (6 decimals)",
        Value::Micros(_) | Value::MicrosF(_) => "integer, microseconds",
        Value::Addr(_) => "string, IP address",
        Value::Str(_) => "string",
        Value::U64(_) if name.ends_with("_ns") => "integer, nanoseconds since the epoch",
        Value::U64(_) if name.ends_with("bytes") => "integer, bytes",
        Value::U64(_) if name.ends_with("_port") => "integer, port",
        Value::U64(_) => "integer, count",
        Value::Null if name.ends_with("_us") => "integer, microseconds",
        Value::Null => "null",
    }
}
