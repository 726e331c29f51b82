//! `tcpsight watch`: every TCP handshake as it finishes or fails, tcpeek's layout, with
//! totals per named filter. `-i IFACE` watches an interface live (AF_PACKET ring);
//! `-r FILE` replays captures through the same engine in capture time.

use crate::live_args::LiveArgs;
use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tcpsight_core::{Config, ConnRecord, Endpoint, Engine, HandshakeEvent, Observer, Outcome};
use tcpsight_pipeline::{
    FileSource, FrameSource, Limits, LiveSource, Progress, Runner, StopFlag, Tap,
};

use tcpsight_io::{CaptureEnd, MergedReader};
use tcpsight_live::LiveCapture;
use tcpsight_live::owners::{Owner, SocketOwners};
use tcpsight_monitor::{LocalNets, Metrics, MetricsConfig, MetricsObserver, MetricsServer};

use crate::format::{thousands, utc};
use crate::statsock::{self, SharedStats, Totals};
use crate::watchfilter::{Filter, FilterSet, Net};

#[derive(Args)]
pub struct WatchArgs {
    /// Stop after this many frames (after the packet filter), as tcpdump's -c
    #[arg(short = 'c', long, value_name = "COUNT")]
    count: Option<u64>,
    /// Numeric output (tcpdump's -n): always so, accepted for tcpdump habits
    #[arg(short = 'n', hide = true)]
    numeric: bool,
    /// Capture files to replay (pcap/pcapng, gzip/zstd, - for stdin), in capture time
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        conflicts_with = "interface"
    )]
    files: Vec<String>,
    /// Interface to watch live (needs root or CAP_NET_RAW); repeatable, or
    /// comma-separated: several interfaces are one capture
    #[arg(
        id = "interface",
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        action = clap::ArgAction::Append,
        value_delimiter = ','
    )]
    interfaces: Vec<String>,
    /// `-i` options joined by commas (tcpsight_live's name for several interfaces).
    #[arg(skip)]
    interface: Option<String>,
    /// Stop after this many seconds (live); default: until Ctrl-C or SIGTERM
    #[arg(short = 't', long, value_name = "SECONDS")]
    duration: Option<f64>,
    #[command(flatten)]
    live: LiveArgs,
    /// Stats socket of a live watch, for `tcpsight stat` (newline-delimited JSON)
    #[arg(short = 'U', long = "socket", default_value = statsock::DEFAULT_SOCKET, value_name = "PATH")]
    socket: std::path::PathBuf,
    /// Filters in tcpeek's language: name:RX|TX@addr[/prefix]:port[:port...][,...]
    /// (an unnamed filter excludes); default RX and TX, or ALL without --local.
    /// Words without '@' form a tcpdump-syntax packet filter instead, as with -f
    #[arg(value_name = "FILTER")]
    filters: Vec<String>,
    /// Packet filter in tcpdump syntax (needs libpcap at run time); live, it runs in the
    /// kernel, so unwanted packets never reach tcpsight
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    packet_filter: Option<String>,
    /// Also write every frame watched to FILE, to replay later with -r: the same lines
    /// and totals come out. pcapng (ended with the time the watch stopped at, so a
    /// replay decides pending handshakes as the live run did) unless FILE ends in
    /// .pcap; `-` writes it to stdout, and the lines and summary go to stderr
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<std::path::PathBuf>,
    /// Capture threads (live): PACKET_FANOUT spreads connections over them by a
    /// symmetric flow hash, so both directions of a connection meet in one thread
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// This host's addresses (CIDR; repeatable): RX is traffic to them, TX from them;
    /// live, the interface's own addresses by default
    #[arg(long, value_name = "NET")]
    local: Vec<String>,
    /// Seconds (capture time) after the first SYN before a handshake has timed out
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    timeout: f64,
    /// Most connections tracked at once (about 1 KB each); past it the one closest to
    /// expiring is reported early, counted as evicted (--metrics)
    #[arg(long, default_value_t = tcpsight_core::engine::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    max_connections: usize,
    /// No per-handshake lines, only the summary
    #[arg(short, long)]
    quiet: bool,
    /// JSON lines (one per handshake, then one summary object) instead of text
    #[arg(long)]
    json: bool,
    /// Serve Prometheus metrics at ADDR/metrics (e.g. 127.0.0.1:9465; :9465 for every
    /// address): per destination, as `monitor --metrics` (docs/monitor.md). A replay
    /// keeps serving after its end until stopped
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Live: each line names the local process owning the connection (pid and command,
    /// from the kernel's socket tables, scanned off the packet path); a line waits up to
    /// 0.4 s for the scan that finds a new socket
    #[arg(long)]
    process: bool,
    #[command(flatten)]
    privacy: crate::privacy_args::PrivacyArgs,
}

/// How long a line waits for the scan that finds its new socket: scans come at most
/// every 250 ms (tcpsight-live's MAX_SCANS_PER_S), one is asked for at the handshake,
/// and a scan takes up to 20 ms on a big host.
const PROCESS_WAIT: Duration = Duration::from_millis(400);

/// `--process`: handshake lines wait here, in order, until the owner of their
/// connection is known or [`PROCESS_WAIT`] has passed.
struct Held {
    owners: Arc<SocketOwners>,
    lines: VecDeque<(HandshakeEvent, Instant)>,
}

/// `-w`: the frames watched, and what the file's end will say of the capture.
struct Recording {
    writer: crate::capfile::Writer,
    path: std::path::PathBuf,
    /// Capture time the file starts at: when the live ring opened, else the first frame.
    start_ns: Option<u64>,
    /// The engines' clock: the latest frame's time or idle time (live: the wall clock
    /// on a quiet ring; a replay: the end its input recorded). The file ends with it.
    clock_ns: u64,
}

impl Recording {
    fn open(
        path: &std::path::Path,
        link: tcpsight_core::LinkType,
        snaplen: u32,
        interface: &str,
        start_ns: Option<u64>,
    ) -> Result<Recording, String> {
        let format = crate::capfile::format(path, false)?;
        Ok(Recording {
            writer: crate::capfile::create(path, format, link, snaplen, interface)?,
            path: path.to_path_buf(),
            start_ns,
            clock_ns: 0,
        })
    }

    /// Ends the file with the clock and the kernel's (received, dropped) counters.
    fn close(self, kernel: Option<(u64, u64)>) -> Result<(), String> {
        let end = CaptureEnd {
            start_ns: self.start_ns.unwrap_or(self.clock_ns),
            end_ns: self.clock_ns,
            received: kernel.map(|k| k.0),
            dropped: kernel.map(|k| k.1),
        };
        let path = self.path.clone();
        crate::capfile::close(self.writer, &end).map_err(|e| crate::capfile::describe(&path, &e))
    }
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
    /// `-w`: every frame watched, for a later replay.
    record: Option<Recording>,
    /// `--metrics`: the Prometheus series of every connection (not only the filters').
    metrics: Option<MetricsObserver>,
    last_progress: Progress,
    /// `--process`: the lines waiting for their owner.
    held: Option<Held>,
    /// `--anonymize`: what the lines show of addresses (the filters see real ones).
    anon: Option<tcpsight_anon::Anonymizer>,
}

fn endpoint(e: Endpoint) -> String {
    if e.addr.is_v4() {
        format!("{}:{}", e.addr, e.port)
    } else {
        format!("[{}]:{}", e.addr, e.port)
    }
}

/// The handshake's time in a unit that shows it: tcpeek's seconds with three decimals
/// printed every loopback handshake as 0.000. Microseconds below a millisecond,
/// milliseconds below a second, seconds beyond: "35.2us", "21.512ms", "3.004s" (at most
/// 9 characters up to 9,999 s).
fn handshake_time(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
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
    fn header_to(out: &mut impl Write, process: bool) -> io::Result<()> {
        writeln!(
            out,
            "     TIME |        TIMESTAMP        | {:>27}   {:<27} |      RESULTS      | DUP SYN  DUP S/A |  RTT(ms){}",
            "SRC IP:PORT",
            "DST IP:PORT",
            if process { " | PID COMMAND" } else { "" }
        )?;
        writeln!(out, "{}", "-".repeat(if process { 160 } else { 144 }))
    }

    /// A decided handshake: its line now, or (--process) once its owner is known.
    fn show(&mut self, e: &HandshakeEvent) -> io::Result<()> {
        let Some(held) = &mut self.held else {
            return self.line(e, None);
        };
        let mut wait = Instant::now();
        // Only an established connection has a socket worth waiting for.
        if e.outcome == Outcome::Established {
            held.owners.nudge();
            wait += PROCESS_WAIT;
        }
        held.lines.push_back((*e, wait));
        self.release(false)
    }

    /// Writes the waiting lines whose owner is known or whose wait is over, in order;
    /// all of them with `all`.
    fn release(&mut self, all: bool) -> io::Result<()> {
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let now = Instant::now();
        let mut r = Ok(());
        while let Some((e, until)) = held.lines.front() {
            let owner = held.owners.lookup(
                SocketAddr::new(e.client.addr.ip(), e.client.port),
                SocketAddr::new(e.server.addr.ip(), e.server.port),
            );
            if owner.is_none() && !all && now < *until {
                break;
            }
            let e = *e;
            held.lines.pop_front();
            r = self.line(&e, Some(owner.as_ref()));
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() && self.flush_each {
            r = self.out.flush();
        }
        self.held = Some(held);
        r
    }

    /// One line; `owner` is `Some` with --process (the owner, if found).
    fn line(&mut self, e: &HandshakeEvent, owner: Option<Option<&Owner>>) -> io::Result<()> {
        let anonymized;
        let e = match self.anon.as_mut() {
            Some(a) => {
                anonymized = HandshakeEvent {
                    client: a.endpoint(e.client),
                    server: a.endpoint(e.server),
                    ..*e
                };
                &anonymized
            }
            None => e,
        };
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
                "icmp": e.icmp.map(|(t, c)| json!({
                    "type": t,
                    "code": c,
                    "reason": tcpsight_core::record::icmp_reason(!e.client.addr.is_v4(), t, c),
                })),
            });
            let mut v = v;
            if let Some(o) = owner {
                v["pid"] = json!(o.map(|o| o.pid));
                v["process"] = json!(o.map(|o| &*o.comm));
            }
            return writeln!(self.out, "{v}");
        }
        if !self.header_done {
            self.header_done = true;
            Self::header_to(&mut self.out, owner.is_some())?;
        }
        // Unknown when a FIN or RST completed the handshake (a control-only capture).
        let elapsed = e.elapsed_ns.map_or("-".to_string(), handshake_time);
        let rtt = e
            .server_rtt_ns
            .map_or("-".to_string(), |r| format!("{:.3}", r as f64 / 1e6));
        let ts = utc(e.first_syn_ns.unwrap_or(e.ts_ns), 3);
        let process = match owner {
            Some(Some(o)) => format!(" | {} {}", o.pid, o.comm),
            Some(None) => " | -".to_string(),
            None => String::new(),
        };
        writeln!(
            self.out,
            "{:>9} | {} | {:>27}   {:<27} | {} | {:7}  {:7} | {:>8}{}",
            elapsed,
            ts,
            endpoint(e.client),
            endpoint(e.server),
            result_text(e.outcome),
            dup_syn,
            dup_sa,
            rtt,
            process
        )
    }
}

impl<W: Write> Observer for Watcher<W> {
    fn on_exchange(&mut self, e: &tcpsight_core::ExchangeEvent) {
        if let Some(m) = self.metrics.as_mut() {
            m.on_exchange(e);
        }
    }

    fn on_handshake(&mut self, e: &HandshakeEvent) {
        if let Some(m) = self.metrics.as_mut() {
            m.on_handshake(e);
        }
        let hits = self.filters.matching(e.client, e.server);
        if hits.is_empty() {
            return;
        }
        for &i in &hits {
            self.totals[i].count(e);
        }
        // The socket's totals are shared by every capture thread: each adds its own.
        if let Some(sh) = &self.shared
            && let Ok(mut g) = sh.lock()
        {
            for &i in &hits {
                g.totals[i].count(e);
            }
        }
        if !self.quiet
            && self.error.is_none()
            && let Err(err) = self.show(e).and_then(|_| {
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
        if let Some(m) = self.metrics.as_mut() {
            m.on_connection(r);
        }
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
                if let Some(sh) = &self.shared
                    && let Ok(mut g) = sh.lock()
                {
                    g.totals[i].pending += 1;
                }
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
        .filter(|f| f.contains('@'))
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

/// The tcpdump-syntax expression: -f, or the trailing words that are not tcpeek filters
/// (these always hold an '@'), as tcpdump takes its expression.
fn packet_filter_expr(args: &WatchArgs) -> Result<Option<String>, String> {
    let words: Vec<&str> = args
        .filters
        .iter()
        .filter(|f| !f.contains('@'))
        .map(String::as_str)
        .collect();
    match (&args.packet_filter, words.is_empty()) {
        (Some(_), false) => Err(format!(
            "a packet filter given twice: -f and the words {:?}",
            words.join(" ")
        )),
        (Some(e), true) => Ok(Some(e.clone())),
        (None, false) => Ok(Some(words.join(" "))),
        (None, true) => Ok(None),
    }
}

pub fn run(mut args: WatchArgs) -> ExitCode {
    args.interface = crate::live_args::joined(&args.interfaces);
    if args.files.is_empty() && args.interface.is_none() {
        eprintln!("tcpsight: {}", crate::inputs::NO_INPUT);
        return ExitCode::from(2);
    }
    let expr = match packet_filter_expr(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    let set = match filter_set(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    let n = set.named.len();
    let live = args.interface.is_some();
    // `-w -`: the capture has stdout, so the lines go where tcpdump's messages go.
    let lines: Box<dyn Write> = match &args.write {
        Some(p) if crate::capfile::is_stdout(p) => Box::new(io::stderr()),
        _ => Box::new(io::stdout()),
    };
    let mut w = Watcher {
        // Not a held lock: live capture threads write their lines to stdout too.
        out: BufWriter::new(lines),
        filters: set,
        totals: vec![Totals::default(); n],
        quiet: args.quiet,
        json: args.json,
        // Live, the ring stamps frames in nanoseconds (as the -w file keeps them);
        // a replay takes its files' precision below.
        digits: 9,
        header_done: false,
        error: None,
        flush_each: live,
        shared: None,
        record: None,
        metrics: None,
        last_progress: Progress::default(),
        held: None,
        anon: None,
    };
    match args.privacy.anonymizer() {
        Ok(None) => {}
        Ok(Some(_)) if args.write.is_some() => {
            eprintln!(
                "tcpsight: -w keeps packets as they were seen, real addresses and all: --anonymize cannot apply to it (`tcpsight anonymize IN OUT` rewrites a capture)"
            );
            return ExitCode::from(2);
        }
        Ok(Some(a)) => w.anon = Some(a),
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    }
    if args.process {
        if !live {
            eprintln!(
                "tcpsight: --process needs a live interface (-i): a capture file has no sockets to ask"
            );
            return ExitCode::from(2);
        }
        w.held = Some(Held {
            owners: Arc::new(SocketOwners::start(Duration::from_secs(5))),
            lines: VecDeque::new(),
        });
    }
    let mut server = None;
    if let Some(addr) = &args.metrics {
        let m = Metrics::new();
        let local = if args.local.is_empty() {
            None
        } else {
            match LocalNets::parse(&args.local.join(",")) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("tcpsight: --local: {e}");
                    return ExitCode::from(2);
                }
            }
        };
        match MetricsServer::start(addr, m.clone()) {
            Ok(s) => {
                eprintln!("tcpsight: metrics at http://{}/metrics", s.local_addr());
                server = Some(s);
            }
            Err(e) => {
                eprintln!("tcpsight: {e}");
                return ExitCode::from(2);
            }
        }
        w.metrics = Some(MetricsObserver::new(
            m,
            MetricsConfig {
                local,
                anonymize: w.anon.clone(),
                ..MetricsConfig::default()
            },
        ));
    }
    let mut errors = Vec::new();
    let mut kernel = None;
    let st;
    if let Some(iface) = &args.interface {
        match watch_live(iface, &args, expr.as_deref(), &engine_config(&args), &mut w) {
            Ok((stats, k)) => {
                st = stats;
                kernel = Some(k);
            }
            Err(_) if w.error.as_ref().is_some_and(crate::pipe::is_broken) => {
                return ExitCode::SUCCESS;
            }
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
        let packet_filter = match crate::inputs::packet_filter(expr.as_deref(), &readers) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("tcpsight: {e}");
                return ExitCode::from(2);
            }
        };
        w.digits = readers.iter().map(|r| r.ts_digits()).max().unwrap_or(6);
        if let Some(path) = &args.write {
            match replay_recording(path, &readers) {
                Ok(r) => w.record = Some(r),
                Err(e) => {
                    eprintln!("tcpsight: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        let mut src = FileSource::new(MergedReader::new(readers));
        let mut engine = Engine::new(engine_config(&args));
        let limits = Limits {
            max_frames: args.count,
            ..Limits::default()
        };
        let mut runner = Runner::new(limits, packet_filter);
        if let Err(e) = runner.run(&mut src, &mut engine, &mut w) {
            if w.error.as_ref().is_some_and(crate::pipe::is_broken) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
        for e in src.errors() {
            eprintln!("tcpsight: {e} (everything before it was analysed)");
        }
        errors.extend(src.errors().iter().cloned());
        st = engine.stats();
        // What the capture's own end said of the kernel (a tcpsight or dumpcap pcapng
        // file): the replay's summary then says what the live one did.
        let recorded = src.merged().recorded();
        let counters = recorded.received.zip(recorded.dropped);
        if let Some((recv, drop)) = counters {
            kernel = Some(Kernel {
                delivered: recv.saturating_sub(drop),
                dropped: drop,
                ..Kernel::default()
            });
        }
        if let Some(rec) = w.record.take()
            && let Err(e) = rec.close(counters)
        {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    }
    if w.metrics.is_some() {
        // The run's final counts (a replay reports no progress on its way).
        let last = Progress {
            frames: st.frames,
            tcp_packets: st.tcp_packets,
            evicted: st.evicted,
            undecodable: st.undecodable_total(),
            ..w.last_progress
        };
        w.on_progress(&last);
    }
    if w.error.is_none()
        && let Err(e) = w.release(true)
    {
        w.error = Some(e);
    }
    let summary = summary(&w, &st, kernel);
    let ok = w.error.is_none()
        && w.out
            .write_all(summary.as_bytes())
            .and_then(|_| w.out.flush())
            .is_ok();
    if !ok {
        // A reader that left early (`| head`) is not a failure, as for grep or tshark.
        let broken = w.error.as_ref().is_some_and(crate::pipe::is_broken);
        return if broken {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    if let Some(s) = &server
        && !live
    {
        serve_until_stopped(s);
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `watch -r FILE -w OUT`: the frames replayed (those the packet filter kept) in one
/// link type, as the live ring's file would hold them.
fn replay_recording(
    path: &std::path::Path,
    readers: &[tcpsight_io::CaptureReader],
) -> Result<Recording, String> {
    let mut links: Vec<_> = readers.iter().flat_map(|r| r.link_types()).collect();
    links.sort();
    links.dedup();
    let [link] = links[..] else {
        return Err(format!(
            "-w writes one link type; the input has {}",
            links.len()
        ));
    };
    let name = readers.first().map_or("replay", |r| r.path());
    Recording::open(path, link, tcpsight_live::MAX_SNAPLEN, name, None)
}

fn engine_config(args: &WatchArgs) -> Config {
    Config {
        handshake_timeout_ns: (args.timeout.max(0.0) * 1e9) as u64,
        max_connections: args.max_connections,
        ..Config::default()
    }
}

/// A replay's metrics stay up for scrapers until SIGINT or SIGTERM.
fn serve_until_stopped(s: &MetricsServer) {
    stop_on_signals();
    eprintln!(
        "tcpsight: end of input; serving metrics at http://{}/metrics until stopped",
        s.local_addr()
    );
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Set by SIGINT/SIGTERM: the live loop stops, reports and exits 0.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// From now on SIGINT and SIGTERM set [`STOP`]: live loops notice it within their poll
/// timeout, finish their work and report.
pub(crate) fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

impl<W: Write> Watcher<W> {
    /// The lines whose owner is found or whose wait is over (a quiet ring too).
    fn release_held(&mut self) {
        if self.held.is_some()
            && self.error.is_none()
            && let Err(e) = self.release(false)
        {
            self.error = Some(e);
        }
    }
}

impl<W: Write> Tap for Watcher<W> {
    fn on_frame(&mut self, f: &tcpsight_io::FrameRef) -> Result<(), String> {
        // The reader went away (`watch | head`): nothing more can be shown.
        if self.error.as_ref().is_some_and(crate::pipe::is_broken) {
            return Err("broken pipe".into());
        }
        if let Some(rec) = &mut self.record {
            rec.start_ns.get_or_insert(f.ts_ns);
            rec.clock_ns = rec.clock_ns.max(f.ts_ns);
            if let Err(e) = rec
                .writer
                .write_on(f.ts_ns, f.data, f.orig_len, f.interface)
            {
                let msg = crate::capfile::describe(&rec.path, &e);
                // `-w - | head -c N`: the capture's reader left; stop quietly as tcpdump.
                if crate::pipe::is_broken(&e) {
                    self.error = Some(e);
                }
                return Err(msg);
            }
        }
        Ok(())
    }

    fn on_idle(&mut self, clock_ns: u64) {
        if let Some(rec) = &mut self.record {
            rec.clock_ns = rec.clock_ns.max(clock_ns);
        }
        self.release_held();
    }

    /// Live: the socket's capture counters, and new kernel drops said on stderr at once
    /// (at most once a second), not only in the summary.
    fn on_progress(&mut self, p: &Progress) {
        self.release_held();
        if let Some(m) = &self.metrics {
            use crate::monitor::health_counts;
            let h = &m.metrics().health;
            h.advance(&health_counts(&self.last_progress), &health_counts(p));
            self.last_progress = *p;
        }
        let Some(shared) = &self.shared else {
            return;
        };
        let drops = p.kernel.map_or(0, |k| k.1);
        if let Ok(mut g) = shared.lock() {
            g.frames = p.frames;
            g.tcp_packets = p.tcp_packets;
            g.kernel_drops = drops;
            let t = Instant::now();
            if g.kernel_drops > g.drops_announced
                && g.announced_at
                    .is_none_or(|a| t.duration_since(a) >= Duration::from_secs(1))
            {
                eprintln!(
                    "tcpsight: kernel dropped {} packets so far (ring full): figures may be incomplete; a bigger -B or --threads may help",
                    thousands(g.kernel_drops)
                );
                g.drops_announced = g.kernel_drops;
                g.announced_at = Some(t);
            }
        }
    }
}

/// What the kernel's socket reported.
#[derive(Default)]
struct Kernel {
    delivered: u64,
    dropped: u64,
    /// Frames dropped as copies from another interface (`-i any`; None: no copy filter).
    copies: Option<u64>,
    /// Frames each analysis thread processed (with --threads).
    per_thread: Vec<u64>,
}

/// Watches `iface` until the duration ends or a signal arrives; with `--threads N`, N
/// engines share the work (the pipeline's sharded run: connections spread by a
/// symmetric flow hash, ICMP errors routed to the connection they quote). Returns the
/// capture statistics and the kernel's counters; `w` gets every handshake in order.
fn watch_live<W: Write>(
    iface: &str,
    args: &WatchArgs,
    expr: Option<&str>,
    cfg: &Config,
    w: &mut Watcher<W>,
) -> Result<(tcpsight_core::CaptureStats, Kernel), String> {
    let link = tcpsight_live::link_type(iface);
    let filter = match expr {
        Some(e) => Some(tcpsight_bpf::Program::compile(
            e,
            link.0,
            args.live.snaplen,
        )?),
        None => None,
    };
    let threads = args.threads as usize;
    let opts = args.live.options(filter);
    // The socket is opened before privileges are dropped.
    let cap = LiveCapture::open(iface, opts)?;
    let shared: SharedStats = Default::default();
    if let Ok(mut g) = shared.lock() {
        g.names = w.filters.named.iter().map(|f| f.name.clone()).collect();
        g.totals = vec![Totals::default(); g.names.len()];
    }
    let mut socket = statsock::serve(&args.socket, shared.clone())?;
    if let Some(user) = &args.live.user {
        socket.give_to(user)?;
    }
    if let Some(path) = &args.write {
        let now = tcpsight_pipeline::wall_clock_ns();
        w.record = Some(Recording::open(
            path,
            link,
            args.live.snaplen,
            iface,
            Some(now),
        )?);
    }
    args.live.drop_privileges()?;
    stop_on_signals();
    eprintln!(
        "tcpsight: watching {iface} live (AF_PACKET ring, {} MB{}{}; stats socket {}); Ctrl-C to stop",
        cap.ring_bytes() >> 20,
        if threads > 1 {
            format!(", {threads} threads")
        } else {
            String::new()
        },
        expr.map(|e| format!(", filter \"{e}\""))
            .unwrap_or_default(),
        args.socket.display()
    );
    w.shared = Some(shared);
    let deadline = args
        .duration
        .map(|d| Instant::now() + tcpsight_pipeline::source::duration_of_secs(d));
    let limits = Limits {
        stop: Some(StopFlag::Static(&STOP)),
        deadline,
        max_frames: args.count,
    };
    let mut src = LiveSource::new(cap, 100);
    let mut runner = Runner::new(limits, None).progress_every(4096);
    let mut kernel = Kernel::default();
    let st = if threads > 1 {
        let r = tcpsight_pipeline::run_sharded(&mut runner, &mut src, *cfg, threads, w)?;
        kernel.per_thread = r.frames_per_shard;
        r.stats
    } else {
        let mut engine = Engine::new(*cfg);
        runner.run(&mut src, &mut engine, w)?;
        engine.stats()
    };
    let (p, d) = src.capture().stats();
    kernel.delivered = p;
    kernel.dropped = d;
    kernel.copies = src.copies_dropped();
    let last = runner.progress(&mut src, st.counts());
    w.on_progress(&last);
    if let Some(rec) = w.record.take() {
        // isb_ifrecv counts what the ring dropped too, as libpcap's ps_recv does.
        rec.close(Some((p + d, d)))?;
    }
    Ok((st, kernel))
}

fn summary<W: Write>(
    w: &Watcher<W>,
    st: &tcpsight_core::CaptureStats,
    kernel: Option<Kernel>,
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
                "from": st.first_ns.map(|t| t as f64 / 1e9),
                "to": st.last_ns.map(|t| t as f64 / 1e9),
                "filters": filters,
                "capture": {"frames": st.frames, "tcp_packets": st.tcp_packets, "kernel_drops": kernel.as_ref().map(|k| k.dropped),
                    "copies_dropped": kernel.as_ref().and_then(|k| k.copies),
                    "frames_per_thread": kernel.as_ref().filter(|k| !k.per_thread.is_empty()).map(|k| &k.per_thread)},
            }
        });
        return format!("{v}\n");
    }
    let mut s = String::new();
    s.push_str("========== TCPSIGHT WATCH SUMMARY ==========\n");
    if st.first_ns.is_none() {
        // Not 1970: nothing was seen, so there is no time span to give.
        s.push_str("     from : - (no packet seen)\n       to : -\n     time : -\n");
    } else {
        s.push_str(&format!("     from : {} UTC\n", utc(from, w.digits)));
        s.push_str(&format!("       to : {} UTC\n", utc(to, w.digits)));
        s.push_str(&format!(
            "     time : {:.3} sec (capture time)\n",
            to.saturating_sub(from) as f64 / 1e9
        ));
    }
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
    let drops = match &kernel {
        None => "none (file)".to_string(),
        Some(k) if k.dropped == 0 => "0".to_string(),
        Some(k) => format!("{} (figures may be incomplete)", thousands(k.dropped)),
    };
    s.push_str(&format!(
        " capture: {} frames, {} TCP packets; kernel drops: {drops}\n",
        thousands(st.frames),
        thousands(st.tcp_packets)
    ));
    if let Some(c) = kernel.as_ref().and_then(|k| k.copies) {
        s.push_str(&format!(
            " copies: {} frames dropped as copies of one seen on another interface\n",
            thousands(c)
        ));
    }
    if let Some(k) = kernel.as_ref().filter(|k| !k.per_thread.is_empty()) {
        let each: Vec<String> = k.per_thread.iter().map(|n| thousands(*n)).collect();
        s.push_str(&format!(
            " threads: frames per thread {}\n",
            each.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    /// Issue 15 (friction): sub-millisecond handshakes are not 0.000.
    #[test]
    fn handshake_time_has_a_unit_that_shows_it() {
        assert_eq!(super::handshake_time(35_210), "35.2us");
        assert_eq!(super::handshake_time(21_512_345), "21.512ms");
        assert_eq!(super::handshake_time(3_004_000_000), "3.004s");
        assert_eq!(super::handshake_time(0), "0.0us");
        assert!(super::handshake_time(9_999_999_000_000).len() <= 9);
    }
}
