//! `tcpsight watch`: every TCP handshake as it finishes or fails, tcpeek's layout, with
//! totals per named filter. `-i IFACE` watches an interface live (AF_PACKET ring);
//! `-r FILE` replays captures through the same engine in capture time.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use tcpsight_core::{Config, ConnRecord, Endpoint, Engine, HandshakeEvent, Observer, Outcome};

use tcpsight_io::MergedReader;
use tcpsight_live::{LiveCapture, LiveOptions};

use crate::format::{thousands, utc};
use crate::statsock::{self, SharedStats, Totals};
use crate::watchfilter::{Filter, FilterSet, Net};

#[derive(Args)]
pub struct WatchArgs {
    /// Capture files to replay (pcap/pcapng, gzip/zstd, - for stdin), in capture time
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        required_unless_present = "interface",
        conflicts_with = "interface"
    )]
    files: Vec<String>,
    /// Interface to watch live (needs root or CAP_NET_RAW)
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: Option<String>,
    /// Stop after this many seconds (live); default: until Ctrl-C or SIGTERM
    #[arg(short = 't', long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Kernel ring size in MB (live)
    #[arg(short = 'B', long = "buffer", default_value_t = 64, value_name = "MB")]
    buffer_mb: u32,
    /// Put the interface in promiscuous mode (live)
    #[arg(long)]
    promisc: bool,
    /// Drop privileges to this user once the capture and the stats socket are open (live)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Stats socket of a live watch, for `tcpsight stat` (newline-delimited JSON)
    #[arg(short = 'U', long = "socket", default_value = statsock::DEFAULT_SOCKET, value_name = "PATH")]
    socket: std::path::PathBuf,
    /// Filters in tcpeek's language: name:RX|TX@addr[/prefix]:port[:port...][,...]
    /// (an unnamed filter excludes); default RX and TX, or ALL without --local
    #[arg(value_name = "FILTER")]
    filters: Vec<String>,
    /// This host's addresses (CIDR; repeatable): RX is traffic to them, TX from them;
    /// live, the interface's own addresses by default
    #[arg(long, value_name = "NET")]
    local: Vec<String>,
    /// Seconds (capture time) after the first SYN before a handshake has timed out
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    timeout: f64,
    /// No per-handshake lines, only the summary
    #[arg(short, long)]
    quiet: bool,
    /// JSON lines (one per handshake, then one summary object) instead of text
    #[arg(long)]
    json: bool,
}

struct Watcher<W: Write> {
    out: W,
    filters: FilterSet,
    totals: Vec<Totals>,
    quiet: bool,
    json: bool,
    digits: u8,
    header_done: bool,
    error: Option<io::Error>,
    /// Live: every line is flushed as it is written.
    flush_each: bool,
    /// Live: what the stats socket serves.
    shared: Option<SharedStats>,
}

fn endpoint(e: Endpoint) -> String {
    if e.addr.is_v4() {
        format!("{}:{}", e.addr, e.port)
    } else {
        format!("[{}]:{}", e.addr, e.port)
    }
}

fn result_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Established => "     success     ",
        Outcome::Timeout => "failure (timeout)",
        Outcome::Rejected => "failure (reject) ",
        Outcome::Unreachable => "failure (unreach)",
        _ => "failure (unknown)",
    }
}

impl<W: Write> Watcher<W> {
    fn line(&mut self, e: &HandshakeEvent) -> io::Result<()> {
        let dup_syn = e.syn_count.saturating_sub(1);
        let dup_sa = e.synack_count.saturating_sub(1);
        if self.json {
            let v = json!({
                "ts": e.first_syn_ns.unwrap_or(e.ts_ns) as f64 / 1e9,
                "client": endpoint(e.client),
                "server": endpoint(e.server),
                "result": match e.outcome { Outcome::Established => "success", o => o.name() },
                "handshake_us": e.elapsed_ns.map(|n| n as f64 / 1000.0),
                "server_rtt_us": e.server_rtt_ns.map(|n| n as f64 / 1000.0),
                "dup_syn": dup_syn,
                "dup_synack": dup_sa,
                "icmp": e.icmp.map(|(t, c)| json!({"type": t, "code": c})),
            });
            return writeln!(self.out, "{v}");
        }
        if !self.header_done {
            self.header_done = true;
            writeln!(
                self.out,
                " TIME(s) |        TIMESTAMP        | {:>27}   {:<27} |      RESULTS      | DUP SYN  DUP S/A |  RTT(ms)",
                "SRC IP:PORT", "DST IP:PORT"
            )?;
            writeln!(self.out, "{}", "-".repeat(143))?;
        }
        let elapsed = e.elapsed_ns.unwrap_or(0);
        let rtt = e
            .server_rtt_ns
            .map_or("-".to_string(), |r| format!("{:.3}", r as f64 / 1e6));
        let ts = utc(e.first_syn_ns.unwrap_or(e.ts_ns), 3);
        writeln!(
            self.out,
            "{:4}.{:03} | {} | {:>27}   {:<27} | {} | {:7}  {:7} | {:>8}",
            elapsed / 1_000_000_000,
            (elapsed / 1_000_000) % 1000,
            ts,
            endpoint(e.client),
            endpoint(e.server),
            result_text(e.outcome),
            dup_syn,
            dup_sa,
            rtt
        )
    }
}

impl<W: Write> Observer for Watcher<W> {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        let hits = self.filters.matching(e.client, e.server);
        if hits.is_empty() {
            return;
        }
        for &i in &hits {
            let t = &mut self.totals[i];
            match e.outcome {
                Outcome::Established => {
                    t.success += 1;
                    t.dup_syn += (e.syn_count > 1) as u64;
                    t.dup_synack += (e.synack_count > 1) as u64;
                }
                Outcome::Timeout => t.timeout += 1,
                Outcome::Rejected => t.reject += 1,
                Outcome::Unreachable => t.unreach += 1,
                _ => {}
            }
        }
        if let Some(sh) = &self.shared
            && let Ok(mut g) = sh.lock()
        {
            g.totals.clone_from(&self.totals);
        }
        if !self.quiet
            && self.error.is_none()
            && let Err(err) = self.line(e).and_then(|_| {
                if self.flush_each {
                    self.out.flush()
                } else {
                    Ok(())
                }
            })
        {
            self.error = Some(err);
        }
    }

    fn on_connection(&mut self, r: &ConnRecord) {
        if r.outcome == Outcome::Pending {
            let c = Endpoint {
                addr: r.client,
                port: r.client_port,
            };
            let s = Endpoint {
                addr: r.server,
                port: r.server_port,
            };
            for i in self.filters.matching(c, s) {
                self.totals[i].pending += 1;
            }
        }
    }
}

/// The filters of a watch: parsed arguments, and "this host" from --local or, live, from
/// the interface's own addresses.
fn filter_set(args: &WatchArgs) -> Result<FilterSet, String> {
    let filters = args
        .filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut local = args
        .local
        .iter()
        .map(|n| Net::parse(n).map_err(|e| format!("--local {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if local.is_empty()
        && let Some(iface) = &args.interface
    {
        local.extend(
            tcpsight_live::interface_addresses(iface)?
                .into_iter()
                .map(Net::host),
        );
    }
    FilterSet::new(filters, local)
}

pub fn run(args: WatchArgs) -> ExitCode {
    let set = match filter_set(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    let n = set.named.len();
    let live = args.interface.is_some();
    let mut w = Watcher {
        out: BufWriter::new(io::stdout().lock()),
        filters: set,
        totals: vec![Totals::default(); n],
        quiet: args.quiet,
        json: args.json,
        digits: 6,
        header_done: false,
        error: None,
        flush_each: live,
        shared: None,
    };
    let mut engine = Engine::new(Config {
        handshake_timeout_ns: (args.timeout.max(0.0) * 1e9) as u64,
        ..Config::default()
    });
    let mut errors = Vec::new();
    let mut kernel = None;
    if let Some(iface) = &args.interface {
        match watch_live(iface, &args, &mut engine, &mut w) {
            Ok(stats) => kernel = Some(stats),
            Err(e) => {
                eprintln!("tcpsight: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        let (readers, open_errors) = crate::inputs::open_all(&args.files);
        errors = open_errors;
        if readers.is_empty() {
            return ExitCode::from(2);
        }
        w.digits = readers.iter().map(|r| r.ts_digits()).max().unwrap_or(6);
        let mut merged = MergedReader::new(readers);
        while let Some(f) = merged.next_frame() {
            engine.process(f.ts_ns, f.link, f.data, f.orig_len, &mut w);
        }
        engine.finish(&mut w);
        for e in &merged.errors {
            eprintln!("tcpsight: {e} (everything before it was analysed)");
        }
        errors.extend(merged.errors.iter().cloned());
    }
    let st = engine.stats();
    let summary = summary(&w, &st, kernel);
    let ok = w.error.is_none()
        && w.out
            .write_all(summary.as_bytes())
            .and_then(|_| w.out.flush())
            .is_ok();
    if !ok {
        return ExitCode::from(2);
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Set by SIGINT/SIGTERM: the live loop stops, reports and exits 0.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Watches `iface` until the duration ends or a signal arrives; returns the kernel's
/// (delivered, dropped) counters.
fn watch_live<W: Write>(
    iface: &str,
    args: &WatchArgs,
    engine: &mut Engine,
    w: &mut Watcher<W>,
) -> Result<(u64, u64), String> {
    let opts = LiveOptions {
        buffer_mb: args.buffer_mb,
        promisc: args.promisc,
        ..LiveOptions::default()
    };
    let mut cap = LiveCapture::open(iface, opts)?;
    let shared: SharedStats = Default::default();
    if let Ok(mut g) = shared.lock() {
        g.names = w.filters.named.iter().map(|f| f.name.clone()).collect();
        g.totals.clone_from(&w.totals);
    }
    let _socket = statsock::serve(&args.socket, shared.clone())?;
    if let Some(user) = &args.user {
        tcpsight_live::drop_privileges(user)?;
    }
    w.shared = Some(shared.clone());
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    eprintln!(
        "tcpsight: watching {iface} live (AF_PACKET ring, {} MB; stats socket {}); Ctrl-C to stop",
        args.buffer_mb,
        args.socket.display()
    );
    let link = cap.link;
    let start = std::time::Instant::now();
    let limit = args
        .duration
        .map(|d| std::time::Duration::from_secs_f64(d.max(0.0)));
    let mut n: u64 = 0;
    while !STOP.load(Ordering::Relaxed) && limit.is_none_or(|l| start.elapsed() < l) {
        let idle = match cap.next(100)? {
            Some(f) => {
                engine.process(f.ts_ns, link, f.data, f.orig_len, w);
                n += 1;
                false
            }
            // Idle: the clock still moves, so handshakes time out on a quiet interface.
            None => {
                engine.advance(now_ns(), w);
                true
            }
        };
        if (idle || n.is_multiple_of(4096))
            && let Ok(mut g) = shared.lock()
        {
            let st = engine.stats();
            let (_, drops) = cap.stats();
            g.frames = st.frames;
            g.tcp_packets = st.tcp_packets;
            g.kernel_drops = drops;
        }
    }
    engine.finish(w);
    Ok(cap.stats())
}

fn summary<W: Write>(
    w: &Watcher<W>,
    st: &tcpsight_core::CaptureStats,
    kernel: Option<(u64, u64)>,
) -> String {
    let (from, to) = (st.first_ns.unwrap_or(0), st.last_ns.unwrap_or(0));
    if w.json {
        let filters: Vec<_> = w
            .filters
            .named
            .iter()
            .zip(&w.totals)
            .map(|(f, t)| t.to_json(&f.name))
            .collect();
        let v = json!({
            "summary": {
                "from": from as f64 / 1e9,
                "to": to as f64 / 1e9,
                "filters": filters,
                "capture": {"frames": st.frames, "tcp_packets": st.tcp_packets, "kernel_drops": kernel.map(|k| k.1)},
            }
        });
        return format!("{v}\n");
    }
    let mut s = String::new();
    s.push_str("========== TCPSIGHT WATCH SUMMARY ==========\n");
    s.push_str(&format!("     from : {} UTC\n", utc(from, w.digits)));
    s.push_str(&format!("       to : {} UTC\n", utc(to, w.digits)));
    s.push_str(&format!(
        "     time : {:.3} sec (capture time)\n",
        to.saturating_sub(from) as f64 / 1e9
    ));
    for (f, t) in w.filters.named.iter().zip(&w.totals) {
        s.push_str("============================================\n");
        s.push_str(&format!(" {}\n", f.name));
        let failure = t.timeout + t.reject + t.unreach;
        let lines = [
            ("   Success: ", t.success, true),
            ("     SYN Segment Duplicate : ", t.dup_syn, false),
            ("     S/A Segment Duplicate : ", t.dup_synack, false),
            ("   Failure: ", failure, true),
            ("     Connection Timed Out  : ", t.timeout, false),
            ("     Connection Rejected   : ", t.reject, false),
            ("     ICMP Unreachable      : ", t.unreach, false),
            ("   Pending (trace ended) : ", t.pending, false),
        ];
        for (label, v, sessions) in lines {
            if sessions {
                s.push_str(&format!("{label}{} session\n", thousands(v)));
            } else {
                s.push_str(&format!("{label}{:>6}\n", thousands(v)));
            }
        }
    }
    s.push_str("============================================\n");
    let drops = match kernel {
        None => "none (file)".to_string(),
        Some((_, 0)) => "0".to_string(),
        Some((_, d)) => format!("{} (figures may be incomplete)", thousands(d)),
    };
    s.push_str(&format!(
        " capture: {} frames, {} TCP packets; kernel drops: {drops}\n",
        thousands(st.frames),
        thousands(st.tcp_packets)
    ));
    s
}
