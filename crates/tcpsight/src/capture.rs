//! `tcpsight capture`: writes a capture file from a live interface. By default only
//! control packets (SYN, FIN or RST set, and ICMP errors quoting TCP) are kept, which is
//! all `analyze` needs for connection outcomes, durations and byte counts (from sequence
//! numbers): yconalyzer's cheap capture, without its off-by-one.

use crate::live_args::LiveArgs;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use tcpsight_core::LinkType;
use tcpsight_core::decode::{Decoded, TcpFlags, decode};
use tcpsight_io::{CaptureWriter, FrameRef, WriteFormat};
use tcpsight_live::{LiveCapture, LiveOptions};
use tcpsight_pipeline::{FrameSource, LiveSource, Next};

use crate::format::thousands;
use crate::watch::{STOP, stop_on_signals};

#[derive(Args)]
pub struct CaptureArgs {
    /// Numeric output (tcpdump's -n): always so, accepted for tcpdump habits
    #[arg(short = 'n', hide = true)]
    numeric: bool,
    /// Interface to capture on (`any` for all; needs root or CAP_NET_RAW); repeatable,
    /// or comma-separated: several interfaces are one capture
    #[arg(
        id = "interface",
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required = true,
        action = clap::ArgAction::Append,
        value_delimiter = ','
    )]
    interfaces: Vec<String>,
    /// `-i` options joined by commas (tcpsight_live's name for several interfaces).
    #[arg(skip)]
    interface: String,
    /// Output file (with rotation, numbered: FILE-0001.pcap, FILE-0002.pcap, ...)
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    output: PathBuf,
    /// Stop after this many seconds (0: until Ctrl-C or SIGTERM)
    #[arg(short = 't', long, default_value_t = 60.0, value_name = "SECONDS")]
    duration: f64,
    /// Keep every packet, not only control packets (SYN, FIN, RST, ICMP errors)
    #[arg(long)]
    all: bool,
    /// Keep only TCP connections with this port (either side; repeatable). `-P`, as
    /// `-p` is tcpdump's "not promiscuous"
    #[arg(short = 'P', long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// Stop after writing this many packets
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Start a new file when the current one reaches this many megabytes (10^6 bytes)
    #[arg(long, value_name = "MB")]
    rotate_mb: Option<f64>,
    /// Start a new file every this many seconds
    #[arg(long, value_name = "SECONDS")]
    rotate_secs: Option<f64>,
    /// Write pcapng instead of pcap (also when FILE ends in .pcapng): it names each
    /// frame's interface and ends with the capture's statistics
    #[arg(long)]
    pcapng: bool,
    #[command(flatten)]
    live: LiveArgs,
    /// Packet filter in tcpdump syntax (needs libpcap at run time), run in the kernel
    #[arg(
        short = 'f',
        long = "filter",
        value_name = "EXPR",
        conflicts_with = "words"
    )]
    filter: Option<String>,
    /// The packet filter as trailing words, as tcpdump takes it
    #[arg(value_name = "FILTER")]
    words: Vec<String>,
}

/// Is this frame worth keeping? Control packets (SYN, FIN or RST) and ICMP errors that
/// quote a TCP segment, or everything with `all`; with ports, only TCP of those ports.
fn keep(link: LinkType, data: &[u8], orig_len: u32, all: bool, ports: &[u16]) -> bool {
    let port_ok = |a: u16, b: u16| ports.is_empty() || ports.contains(&a) || ports.contains(&b);
    match decode(link, data, orig_len) {
        Ok(Decoded::Tcp(s)) => {
            (all || s.flags.has(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST))
                && port_ok(s.sport, s.dport)
        }
        Ok(Decoded::IcmpError(q)) => port_ok(q.sport, q.dport),
        // Not TCP (or not decodable): only a capture of everything without ports keeps it.
        _ => all && ports.is_empty(),
    }
}

/// The files of a capture: one, or numbered ones with rotation.
struct Output {
    base: PathBuf,
    format: WriteFormat,
    link: LinkType,
    snaplen: u32,
    interface: String,
    rotating: bool,
    rotate_bytes: Option<u64>,
    rotate_ns: Option<u64>,
    current: Option<CaptureWriter<BufWriter<File>>>,
    opened_ns: u64,
    files: Vec<PathBuf>,
    frames: u64,
}

impl Output {
    fn path(&self, n: usize) -> PathBuf {
        if !self.rotating {
            return self.base.clone();
        }
        let stem = self
            .base
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match self.base.extension() {
            Some(ext) => format!("{stem}-{n:04}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{n:04}"),
        };
        self.base.with_file_name(name)
    }

    fn open(&mut self, now_ns: u64) -> Result<(), String> {
        self.close()?;
        let path = self.path(self.files.len() + 1);
        let file =
            File::create(&path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
        let w = CaptureWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            self.format,
            self.link,
            self.snaplen,
            &self.interface,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        self.current = Some(w);
        self.files.push(path);
        self.opened_ns = now_ns;
        Ok(())
    }

    /// Flushes and closes the current file: every packet written so far is on disk.
    fn close(&mut self) -> Result<(), String> {
        if let Some(w) = self.current.take() {
            let path = self.files.last().cloned().unwrap_or_default();
            let f = w.finish().map_err(|e| format!("{}: {e}", path.display()))?;
            f.into_inner()
                .map_err(|e| format!("{}: {}", path.display(), e.error()))?
                .sync_all()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Starts the next file when the current one is full or old enough.
    fn rotate_if_due(&mut self, now_ns: u64) -> Result<(), String> {
        let Some(w) = &self.current else {
            return Ok(());
        };
        let by_size = self.rotate_bytes.is_some_and(|b| w.bytes >= b);
        let by_time = self
            .rotate_ns
            .is_some_and(|t| now_ns.saturating_sub(self.opened_ns) >= t);
        if by_size || by_time {
            self.open(now_ns)?;
        }
        Ok(())
    }

    fn write(&mut self, f: &FrameRef) -> Result<(), String> {
        let path = self.files.last().cloned().unwrap_or_default();
        if let Some(w) = &mut self.current {
            w.write_on(f.ts_ns, f.data, f.orig_len, f.interface)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            self.frames += 1;
        }
        Ok(())
    }
}

pub fn run(mut args: CaptureArgs) -> ExitCode {
    args.interface = crate::live_args::joined(&args.interfaces).unwrap_or_default();
    match capture(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            ExitCode::from(2)
        }
    }
}

/// Every packet of `interface` for `duration` seconds (0: until Ctrl-C) into a pcap file
/// at `output`: `analyze -i`'s capture step, the same code as `capture --all`.
pub fn record_all(
    interface: &str,
    output: &std::path::Path,
    duration: f64,
    filter: Option<String>,
    live: &LiveArgs,
) -> Result<(), String> {
    capture(&CaptureArgs {
        numeric: false,
        interfaces: vec![interface.to_string()],
        interface: interface.to_string(),
        output: output.to_path_buf(),
        duration,
        all: true,
        ports: Vec::new(),
        count: None,
        rotate_mb: None,
        rotate_secs: None,
        pcapng: false,
        live: live.clone(),
        filter,
        words: Vec::new(),
    })
}

fn capture(args: &CaptureArgs) -> Result<(), String> {
    let expr = match (&args.filter, args.words.is_empty()) {
        (Some(e), _) => Some(e.clone()),
        (None, false) => Some(args.words.join(" ")),
        (None, true) => None,
    };
    let link = tcpsight_live::link_type(&args.interface);
    let snaplen = args.live.snaplen.clamp(1, tcpsight_live::MAX_SNAPLEN);
    let filter = match &expr {
        Some(e) => Some(tcpsight_bpf::Program::compile(e, link.0, snaplen)?),
        None => None,
    };
    let cap = LiveCapture::open(
        &args.interface,
        LiveOptions {
            snaplen,
            ..args.live.options(filter)
        },
    )?;
    // The format follows the name as the user wrote it (`x.pcapng`), or --pcapng.
    let named_ng = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"));
    let format = if args.pcapng || named_ng {
        WriteFormat::PcapNg
    } else {
        WriteFormat::Pcap
    };
    let mut out = Output {
        base: args.output.clone(),
        format,
        link,
        snaplen,
        interface: args.interface.clone(),
        rotating: args.rotate_mb.is_some() || args.rotate_secs.is_some(),
        rotate_bytes: args.rotate_mb.map(|m| (m.max(0.001) * 1e6) as u64),
        rotate_ns: args.rotate_secs.map(|s| (s.max(0.001) * 1e9) as u64),
        current: None,
        opened_ns: 0,
        files: Vec::new(),
        frames: 0,
    };
    out.open(tcpsight_pipeline::wall_clock_ns())?;
    args.live.drop_privileges()?;
    stop_on_signals();
    // When it stops, said up front: a capture that ends after a minute surprises
    // whoever expected tcpdump's "until Ctrl-C".
    let until = if args.duration > 0.0 {
        format!(
            "stops after {} s (-t SECONDS; -t 0 for until Ctrl-C) or at Ctrl-C",
            args.duration
        )
    } else {
        "Ctrl-C to stop".to_string()
    };
    eprintln!(
        "tcpsight: capturing {} on {} to {}{}; {until}",
        if args.all {
            "every packet"
        } else {
            "control packets (SYN, FIN, RST, ICMP errors)"
        },
        args.interface,
        out.files[0].display(),
        expr.as_deref()
            .map(|e| format!(", filter \"{e}\""))
            .unwrap_or_default()
    );
    let deadline =
        (args.duration > 0.0).then(|| Instant::now() + Duration::from_secs_f64(args.duration));
    // The pipeline's live source: on `any`, copies of a packet seen on two interfaces
    // (a bridge and its port) are dropped and counted, and each frame names its
    // interface (pcapng describes each).
    let mut src = LiveSource::new(cap, 100);
    let mut seen: u64 = 0;
    let result = loop {
        if STOP.load(Ordering::Relaxed)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || args.count.is_some_and(|c| out.frames >= c)
        {
            break Ok(());
        }
        let frame = match src.next_frame() {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        let step = match frame {
            Next::Frame(f) => {
                seen += 1;
                if keep(link, f.data, f.orig_len, args.all, &args.ports) {
                    out.rotate_if_due(f.ts_ns).and_then(|_| out.write(&f))
                } else {
                    Ok(())
                }
            }
            Next::Idle { .. } | Next::End => out.rotate_if_due(tcpsight_pipeline::wall_clock_ns()),
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    // Whatever happened, what was written reaches the disk before we report.
    let closed = out.close();
    let (delivered, dropped) = src.kernel_stats().unwrap_or_default();
    let copies = src
        .copies_dropped()
        .map(|c| {
            format!(
                "; {} copies of packets seen on two interfaces dropped (--keep-copies keeps them)",
                thousands(c)
            )
        })
        .unwrap_or_default();
    let files: Vec<String> = out.files.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "tcpsight: {} packets written to {} ({} file{}); {} seen; kernel delivered {}, dropped {}{}{copies}",
        thousands(out.frames),
        files.join(", "),
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        thousands(seen),
        thousands(delivered),
        thousands(dropped),
        if dropped > 0 {
            " (the capture is incomplete)"
        } else {
            ""
        }
    );
    result.and(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpsight_core::build::{Tcp, icmp_error_frame, tcp_frame};

    fn seg(flags: u16, dport: u16) -> Vec<u8> {
        let mut t = Tcp::new(
            "10.0.0.1".parse().unwrap(),
            40000,
            "10.0.0.2".parse().unwrap(),
            dport,
        );
        t.flags = flags;
        tcp_frame(&t)
    }

    #[test]
    fn control_packets_are_syn_fin_rst_and_icmp_errors() {
        let e = LinkType::ETHERNET;
        for (flags, want) in [
            (0x02, true),  // SYN
            (0x12, true),  // SYN-ACK
            (0x11, true),  // FIN-ACK
            (0x04, true),  // RST
            (0x14, true),  // RST-ACK
            (0x10, false), // ACK
            (0x18, false), // PSH-ACK
        ] {
            let f = seg(flags, 80);
            assert_eq!(keep(e, &f, f.len() as u32, false, &[]), want, "{flags:#x}");
            assert!(keep(e, &f, f.len() as u32, true, &[]));
        }
        let mut quoted = Tcp::new(
            "10.0.0.1".parse().unwrap(),
            40000,
            "10.0.0.9".parse().unwrap(),
            80,
        );
        quoted.flags = 0x02;
        let icmp = icmp_error_frame("10.0.0.254".parse().unwrap(), 3, 1, &quoted);
        assert!(keep(e, &icmp, icmp.len() as u32, false, &[]));
        assert!(keep(e, &icmp, icmp.len() as u32, false, &[80]));
        assert!(!keep(e, &icmp, icmp.len() as u32, false, &[443]));
    }

    #[test]
    fn ports_select_either_side_and_garbage_is_kept_only_with_all() {
        let e = LinkType::ETHERNET;
        let f = seg(0x02, 443);
        assert!(keep(e, &f, 60, false, &[443]));
        assert!(keep(e, &f, 60, false, &[40000]));
        assert!(!keep(e, &f, 60, false, &[80]));
        let junk = [0u8; 7];
        assert!(!keep(e, &junk, 7, false, &[]));
        assert!(keep(e, &junk, 7, true, &[]));
        assert!(!keep(e, &junk, 7, true, &[80]));
    }

    #[test]
    fn rotated_files_are_numbered_keeping_the_extension() {
        let mut o = Output {
            base: PathBuf::from("dir/out.pcap"),
            format: WriteFormat::Pcap,
            link: LinkType::ETHERNET,
            snaplen: 100,
            interface: "lo".into(),
            rotating: true,
            rotate_bytes: None,
            rotate_ns: None,
            current: None,
            opened_ns: 0,
            files: Vec::new(),
            frames: 0,
        };
        assert_eq!(o.path(1), PathBuf::from("dir/out-0001.pcap"));
        assert_eq!(o.path(12), PathBuf::from("dir/out-0012.pcap"));
        o.base = PathBuf::from("trace");
        assert_eq!(o.path(3), PathBuf::from("trace-0003"));
        o.rotating = false;
        assert_eq!(o.path(3), PathBuf::from("trace"));
    }
}
