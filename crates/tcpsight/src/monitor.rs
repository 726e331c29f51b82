//! `tcpsight monitor`: continuous measurement into a directory of rotated, time-binned
//! files and, with --metrics, a Prometheus endpoint. Live from an interface or, with
//! -r, from captures in capture time (the same files a live run of that traffic
//! writes). The work is the tcpsight-monitor crate's; this is arguments, signals and
//! the run loop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Args;
use tcpsight_agg::Grouping;
use tcpsight_core::{CaptureStats, Config, Engine, EngineCounts, Observer};
use tcpsight_io::MergedReader;
use tcpsight_live::owners::SocketOwners;
use tcpsight_monitor::metrics::{Health, HealthCounts};
use tcpsight_monitor::monitor::{Monitor, MonitorConfig, OwnerLookup, RecordFormat};
use tcpsight_monitor::outdir::OutputDir;
use tcpsight_monitor::{LocalNets, Metrics, MetricsConfig, MetricsObserver, MetricsServer};
use tcpsight_pipeline::{
    FileSource, FrameSource, Limits, LiveSource, Progress, Runner, StopFlag, Tap,
};

use crate::live_args::LiveArgs;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    tcpsight monitor -i eth0 -o /var/lib/tcpsight --metrics 127.0.0.1:9465\n  \
    tcpsight monitor -r day.pcap -o out --interval 5m --rotate 1h --local 10.0.0.0/8\n\n\
    Each rotation period gets a folder named by its start (UTC, capture time), holding\n\
    flows.jsonl.zst (connection records, final and interim), bins.jsonl (the\n\
    per-destination table per interval), summary.json, and with --l7 the HTTP and TLS\n\
    logs. Files appear only when complete. docs/monitor.md")]
pub struct MonitorArgs {
    /// Interface to watch live; repeatable, or comma-separated: several interfaces are
    /// one capture
    #[arg(
        id = "interface",
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        action = clap::ArgAction::Append,
        value_delimiter = ',',
        conflicts_with = "files"
    )]
    pub interfaces: Vec<String>,
    /// `-i` options joined by commas (tcpsight_live's name for several interfaces).
    #[arg(skip)]
    pub interface: Option<String>,
    /// Capture files to read instead (capture time; the same files a live run writes)
    #[arg(short = 'r', long = "read", value_name = "FILE", num_args = 1..)]
    pub files: Vec<String>,
    /// Stop after this many frames (after the packet filter), as tcpdump's -c
    #[arg(short = 'c', long, value_name = "COUNT")]
    pub count: Option<u64>,
    /// Output directory (created if missing)
    #[arg(short = 'o', long = "out", value_name = "DIR", required = true)]
    pub out: PathBuf,
    /// Bin length: the per-destination table is written per interval (60s, 5m, 1h)
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: u64,
    /// A new folder per this much capture time (a whole number of intervals)
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub rotate: u64,
    /// An open connection gets an interim record this often (0: never)
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub active_timeout: u64,
    /// Local networks (CIDRs, comma-separated, or a file of them): records, bins and
    /// metrics get a direction (in, out, local, external)
    #[arg(long, value_name = "NETS")]
    pub local: Option<String>,
    /// Serve Prometheus metrics at ADDR/metrics (e.g. 127.0.0.1:9465; :9465 for every
    /// address)
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Give metrics a server port label
    #[arg(long)]
    pub metrics_port: bool,
    /// Destinations with their own metric series, at most (others: server="other")
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub metrics_max_destinations: usize,
    /// Remove periods older than this many hours
    #[arg(long, value_name = "HOURS")]
    pub keep: Option<f64>,
    /// Remove the oldest periods while the directory holds more than this many MB
    #[arg(long, value_name = "MB")]
    pub max_disk: Option<u64>,
    /// Record file format
    #[arg(long, default_value = "jsonl.zst", value_parser = ["jsonl.zst", "jsonl", "csv", "parquet"])]
    pub format: String,
    /// Bins per server address and port, not per address
    #[arg(long)]
    pub by_port: bool,
    /// Application layer: L7 fields in records, HTTP and TLS logs, app and name labels
    #[arg(long)]
    pub l7: bool,
    /// Analysis threads (connections spread by a symmetric flow hash)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Packet filter, tcpdump syntax
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Stop after this many seconds (live)
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Handshake timeout, seconds of capture time
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Most connections tracked at once (about 1 KB each); past it the one closest to
    /// expiring is reported early, counted as evicted (summaries, metrics)
    #[arg(long, default_value_t = tcpsight_core::engine::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Live: records name the local process owning each connection (`pid`, `process`),
    /// from the kernel's socket tables; costs up to 8 % of a core on a busy host
    #[arg(long)]
    pub process: bool,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub privacy: crate::privacy_args::PrivacyArgs,
    #[command(flatten)]
    pub export: crate::export_args::ExportArgs,
}

/// The socket tables' owners, for the monitor's records.
struct Owners(SocketOwners);

impl OwnerLookup for Owners {
    fn owner(&self, a: std::net::SocketAddr, b: std::net::SocketAddr) -> Option<(u32, Arc<str>)> {
        self.0.lookup(a, b).map(|o| (o.pid, o.comm))
    }
    fn nudge(&self) {
        self.0.nudge();
    }
}

/// `90`, `90s`, `5m`, `1h`, `1d`, `250ms` to nanoseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 90s, 5m, 1h"))?;
    let mul = match unit {
        "ms" => 1e6,
        "s" | "" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "d" => 86_400e9,
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    let ns = v * mul;
    if !(0.0..=3.2e17).contains(&ns) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(ns as u64)
}

static STOP: AtomicBool = AtomicBool::new(false);
static ROTATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}
extern "C" fn on_hup(_: libc::c_int) {
    ROTATE.store(true, Ordering::Relaxed);
}

fn handle_signals() {
    // SAFETY: the handlers only store to atomics.
    unsafe {
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
}

/// The monitor, the metrics, and what the run loop tells them.
struct Face {
    monitor: Monitor,
    metrics: Option<MetricsObserver>,
    health: Option<Health>,
    last: Progress,
}

impl Face {
    fn say(&mut self) {
        for line in self.monitor.log.drain(..) {
            eprintln!("tcpsight: {line}");
        }
    }
}

impl Observer for Face {
    fn on_handshake(&mut self, e: &tcpsight_core::HandshakeEvent) {
        self.monitor.on_handshake(e);
        if let Some(m) = self.metrics.as_mut() {
            m.on_handshake(e);
        }
    }
    fn on_exchange(&mut self, e: &tcpsight_core::ExchangeEvent) {
        self.monitor.on_exchange(e);
        if let Some(m) = self.metrics.as_mut() {
            m.on_exchange(e);
        }
    }
    fn on_connection(&mut self, r: &tcpsight_core::ConnRecord) {
        let filled = self.monitor.record_with_l7(r);
        let r = filled.as_ref().unwrap_or(r);
        self.monitor.on_connection_filled(r);
        if let Some(m) = self.metrics.as_mut() {
            m.on_connection(r);
        }
    }
    fn on_interim(&mut self, r: &tcpsight_core::ConnRecord) {
        let filled = self.monitor.interim_with_l7(r);
        let r = filled.as_ref().unwrap_or(r);
        self.monitor.on_interim_filled(r);
        if let Some(m) = self.metrics.as_mut() {
            m.on_interim(r);
        }
    }
    fn on_tick(&mut self, ts_ns: u64) {
        self.monitor.on_tick(ts_ns);
        self.say();
    }
    fn on_payload(&mut self, p: &tcpsight_core::Payload) -> bool {
        self.monitor.on_payload(p)
    }
    fn on_datagram(&mut self, d: &tcpsight_core::Datagram) {
        self.monitor.on_datagram(d);
    }
}

impl Tap for Face {
    fn on_frame(&mut self, f: &tcpsight_io::FrameRef) -> Result<(), String> {
        self.monitor.count_frame(f.ts_ns, f.orig_len);
        Ok(())
    }

    fn on_progress(&mut self, p: &Progress) {
        if let Some(h) = &self.health {
            h.advance(&health_counts(&self.last), &health_counts(p));
        }
        if let Some(k) = p.kernel {
            self.monitor.set_kernel(k);
        }
        if let Some(c) = p.copies {
            self.monitor.set_copies(c);
        }
        self.monitor.set_engine_counts(health_counts(p).engine);
        self.last = *p;
        if ROTATE.swap(false, Ordering::Relaxed) {
            eprintln!("tcpsight: SIGHUP: closing the current period");
            self.monitor.rotate_now();
        }
        self.say();
    }
}

/// What the health metrics follow of a run's progress (monitor and watch).
pub(crate) fn health_counts(p: &Progress) -> HealthCounts {
    HealthCounts {
        frames: p.frames,
        engine: EngineCounts {
            tcp_packets: p.tcp_packets,
            evicted: p.evicted,
            undecodable: p.undecodable,
        },
        kernel_drops: p.kernel.map_or(0, |k| k.1),
    }
}

pub fn run(mut args: MonitorArgs) -> ExitCode {
    args.interface = crate::live_args::joined(&args.interfaces);
    match monitor(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            ExitCode::from(2)
        }
    }
}

fn monitor(args: MonitorArgs) -> Result<ExitCode, String> {
    if args.interface.is_none() && args.files.is_empty() {
        return Err(crate::inputs::NO_INPUT.replace("watch and top", "monitor"));
    }
    let local = args
        .local
        .as_deref()
        .map(LocalNets::from_arg)
        .transpose()
        .map_err(|e| format!("--local: {e}"))?;
    let out = OutputDir::open(&args.out)?;
    let cfg = MonitorConfig {
        interval_ns: args.interval,
        rotate_ns: args.rotate,
        keep_ns: args.keep.map(|h| (h.max(0.0) * 3600e9) as u64),
        max_bytes: args.max_disk.map(|mb| mb << 20),
        local: local.clone(),
        grouping: if args.by_port {
            Grouping::HostPort
        } else {
            Grouping::Host
        },
        format: match args.format.as_str() {
            "jsonl" => RecordFormat::Jsonl,
            "csv" => RecordFormat::Csv,
            "parquet" => RecordFormat::Parquet,
            _ => RecordFormat::JsonlZst,
        },
        l7: args.l7,
    };
    let metrics = args.metrics.as_ref().map(|_| Metrics::new());
    let anon = args.privacy.anonymizer()?;
    let mut monitor = Monitor::new(cfg, out)?;
    if let Some(a) = &anon {
        monitor = monitor.with_anonymizer(a.clone());
    }
    monitor = monitor.with_exports(args.export.open(args.interface.is_some())?);
    if args.process && args.interface.is_none() {
        return Err(
            "--process needs a live interface (-i): a capture file has no sockets to ask".into(),
        );
    }
    if args.process {
        monitor = monitor.with_owners(Box::new(Owners(SocketOwners::start(
            std::time::Duration::from_secs(5),
        ))));
    }
    if let Some(m) = &metrics {
        monitor = monitor.with_health(m.health.clone());
    }
    let engine_cfg = Config {
        handshake_timeout_ns: (args.timeout.max(0.0) * 1e9) as u64,
        tick_ns: monitor.tick_ns(),
        active_timeout_ns: args.active_timeout,
        max_connections: args.max_connections,
        payload: args.l7,
        datagrams: args.l7,
        ..Config::default()
    };
    let server = match (&args.metrics, &metrics) {
        (Some(addr), Some(m)) => Some(MetricsServer::start(addr, m.clone())?),
        _ => None,
    };
    let mut face = Face {
        monitor,
        metrics: metrics.as_ref().map(|m| {
            MetricsObserver::new(
                m.clone(),
                MetricsConfig {
                    max_destinations: args.metrics_max_destinations,
                    port: args.metrics_port,
                    local,
                    app: args.l7,
                    anonymize: anon.clone(),
                },
            )
        }),
        health: metrics.as_ref().map(|m| m.health.clone()),
        last: Progress::default(),
    };
    if let Some(s) = &server {
        eprintln!("tcpsight: metrics at http://{}/metrics", s.local_addr());
    }
    handle_signals();
    let threads = args.threads as usize;
    let mut errors = 0;
    let started = Instant::now();
    let stats: CaptureStats;
    if let Some(iface) = &args.interface {
        let link = tcpsight_live::link_type(iface);
        let filter = args
            .filter
            .as_deref()
            .map(|e| tcpsight_bpf::Program::compile(e, link.0, args.live.snaplen))
            .transpose()?;
        let cap = tcpsight_live::LiveCapture::open(iface, args.live.options(filter))?;
        if let Some(user) = &args.live.user {
            tcpsight_live::give_to(&args.out, user)?;
        }

        args.live.drop_privileges()?;
        eprintln!(
            "tcpsight: monitoring {iface} live into {}; SIGHUP rotates, Ctrl-C stops",
            args.out.display()
        );
        let limits = Limits {
            stop: Some(StopFlag::Static(&STOP)),
            deadline: args
                .duration
                .map(|d| Instant::now() + tcpsight_pipeline::source::duration_of_secs(d)),
            max_frames: args.count,
        };
        let mut src = LiveSource::new(cap, 100);
        let mut runner = Runner::new(limits, None).progress_every(4096);
        let st = run_engine(&mut runner, &mut src, engine_cfg, threads, &mut face)?;
        let last = runner.progress(&mut src, st.counts());
        face.on_progress(&last);
        stats = st;
        if let Some(c) = src.copies_dropped() {
            eprintln!(
                "tcpsight: copies: {} frames dropped as copies of one seen on another interface (-i any; --keep-copies keeps them)",
                crate::format::thousands(c)
            );
        }
    } else {
        let (readers, open_errors) = crate::inputs::open_all(&args.files);
        errors += open_errors.len();
        if readers.is_empty() {
            return Ok(ExitCode::from(2));
        }
        let packet_filter = crate::inputs::packet_filter(args.filter.as_deref(), &readers)?;
        let mut src = FileSource::new(MergedReader::new(readers));
        let limits = Limits {
            stop: Some(StopFlag::Static(&STOP)),
            max_frames: args.count,
            ..Limits::default()
        };
        let mut runner = Runner::new(limits, packet_filter).progress_every(1 << 16);
        let st = run_engine(&mut runner, &mut src, engine_cfg, threads, &mut face)?;
        let last = runner.progress(&mut src, st.counts());
        face.on_progress(&last);
        stats = st;
        for e in src.errors() {
            eprintln!("tcpsight: {e} (everything before it was analysed)");
            errors += 1;
        }
    }
    face.monitor.finish();
    for said in face.monitor.finish_exports() {
        match said {
            Ok(line) => eprintln!("tcpsight: {line}"),
            Err(e) => {
                eprintln!("tcpsight: {e}");
                errors += 1;
            }
        }
    }
    face.say();
    let t = face.monitor.totals();
    eprintln!(
        "tcpsight: monitor: {} records ({} interim), {} bins rows, {} period folders in {}{} ({:.1} s)",
        t.records,
        t.interim,
        t.bins_rows,
        t.periods,
        args.out.display(),
        if t.lost > 0 {
            format!("; {} records could not be written", t.lost)
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    if stats.evicted > 0 {
        eprintln!(
            "tcpsight: evicted {} connections under memory pressure (--max-connections {}): their records were written early",
            stats.evicted, args.max_connections
        );
    }
    if stats.undecodable_total() > 0 {
        eprintln!("tcpsight: {} undecodable frames", stats.undecodable_total());
    }
    if let Some(s) = &server
        && args.interface.is_none()
        && !STOP.load(Ordering::Relaxed)
    {
        // A replay's metrics stay up for scrapers until the monitor is stopped.
        eprintln!(
            "tcpsight: end of input; serving metrics at http://{}/metrics until stopped",
            s.local_addr()
        );
        while !STOP.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    if t.lost > 0 {
        errors += 1;
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn run_engine<S: FrameSource>(
    runner: &mut Runner,
    src: &mut S,
    cfg: Config,
    threads: usize,
    face: &mut Face,
) -> Result<CaptureStats, String> {
    if threads > 1 {
        Ok(tcpsight_pipeline::run_sharded(runner, src, cfg, threads, face)?.stats)
    } else {
        let mut engine = Engine::new(cfg);
        runner.run(src, &mut engine, face)?;
        Ok(engine.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90_000_000_000));
        assert_eq!(parse_duration("5m"), Ok(300_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        for bad in ["", "x", "5y", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
