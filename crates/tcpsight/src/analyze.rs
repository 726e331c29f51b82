//! `tcpsight analyze`: capture files in, summary + per-destination table (+ flows) out.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tcpsight_core::{Config, ConnRecord, Engine, ExchangeEvent, Observer};
use tcpsight_io::{FileFormat, MergedReader};
use tcpsight_pipeline::{FileSource, FrameSource, Limits, Progress, Runner, Tap};

use std::collections::HashMap;

use tcpsight_anon::Anonymizer;
use tcpsight_core::Endpoint;
use tcpsight_export::RecordSink;
use tcpsight_export::columns;
use tcpsight_l7::observe::{Context, Logged, example_context, http_log_examples, tls_log_examples};
use tcpsight_l7::{Anonymized, HttpTransaction, L7, L7Log, TlsHandshake};
use tcpsight_monitor::{Binner, Bins};

use crate::output::dist::{self, BucketBy, Buckets, ConnSummary};
use crate::output::filter::{ConnFilter, TimeSpec, parse_time};
use crate::output::flows::{FlowFormat, Writer};
use crate::output::summary::{self, InputInfo, Outcomes};
use crate::output::table::{self, DestinationTable, GroupBy, SortBy};

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, optionally gzip/zstd); several are merged in time
    /// order. With -r, these words are a packet filter instead, as for tcpdump
    #[arg(required_unless_present_any = ["read", "interface"], value_name = "FILE")]
    files: Vec<String>,
    /// Capture every packet of this interface for -t seconds, then analyse the capture
    /// (yconalyzer's live mode, for cron): the report is the one a file of that traffic
    /// gives. The words after the options are a packet filter, as for tcpdump
    /// (repeatable, or comma-separated: several interfaces are one capture)
    #[arg(
        id = "interface",
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        action = clap::ArgAction::Append,
        value_delimiter = ',',
        conflicts_with = "read",
        help_heading = "Live (capture, then analyse)"
    )]
    interfaces: Vec<String>,
    /// `-i` options joined by commas (tcpsight_live's name for several interfaces).
    #[arg(skip)]
    interface: Option<String>,
    /// With -i: seconds to capture (0: until Ctrl-C)
    #[arg(
        short = 't',
        long,
        value_name = "SECONDS",
        requires = "interface",
        help_heading = "Live (capture, then analyse)"
    )]
    duration: Option<f64>,
    /// With -i: keep the capture in FILE (pcap)
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        requires = "interface",
        help_heading = "Live (capture, then analyse)"
    )]
    write: Option<std::path::PathBuf>,
    #[command(flatten)]
    live: crate::live_args::LiveArgs,
    /// A capture file, as tcpdump, watch and top take it (repeatable); the words after
    /// the options are then a tcpdump-syntax packet filter
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Vec<String>,
    /// Stop after this many frames (after the packet filter), as tcpdump's -c
    #[arg(short = 'c', long, value_name = "COUNT")]
    count: Option<u64>,
    /// Numeric output (tcpdump's -n): always so, accepted for tcpdump habits
    #[arg(short = 'n', hide = true)]
    numeric: bool,
    /// Write one record per connection to FILE (- for stdout)
    #[arg(long, value_name = "FILE")]
    flows: Option<String>,
    /// Format of --flows (default: from the file name, `.csv` for CSV, `.parquet` for
    /// Parquet, else JSON Lines)
    #[arg(long, value_enum, requires = "flows")]
    format: Option<FlowFormat>,
    /// Write one record per HTTP request/response to FILE (JSON Lines, or CSV for a
    /// `.csv` name, Parquet for `.parquet`; - for stdout): docs/l7.md
    #[arg(long, value_name = "FILE", help_heading = "Application layer")]
    http_log: Option<String>,
    /// Write one record per TLS handshake to FILE (JSON Lines, CSV for `.csv`, Parquet
    /// for `.parquet`)
    #[arg(long, value_name = "FILE", help_heading = "Application layer")]
    tls_log: Option<String>,
    /// Application-layer analysis: each record's app_proto, server_name, dns_name and
    /// HTTP/TLS figures (implied by --http-log and --tls-log). Off by default: it about
    /// halves the packet rate (BENCHMARKS.md)
    #[arg(long, help_heading = "Application layer")]
    l7: bool,
    /// Print the summary and table as one JSON document
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    export: crate::export_args::ExportArgs,
    #[command(flatten)]
    privacy: crate::privacy_args::PrivacyArgs,
    /// Table rows: per server address, or per address and port
    #[arg(long, value_enum, default_value = "host")]
    group_by: GroupBy,
    /// The per-destination table per interval of capture time too (60s, 5m, 1h): a
    /// sparkline per destination, `intervals` in --json, rows in --bins (docs/monitor.md)
    #[arg(long, value_name = "DURATION", value_parser = crate::monitor::parse_duration)]
    interval: Option<u64>,
    /// Write the per-interval rows to FILE (JSON Lines, or CSV by name; - for stdout),
    /// the monitor's bins.jsonl format; --interval 60s unless given
    #[arg(long, value_name = "FILE")]
    bins: Option<String>,
    /// Sort the table by this column (descending; --reverse for ascending)
    #[arg(long, value_enum, default_value = "syn")]
    sort: SortBy,
    /// Reverse the sort order
    #[arg(long)]
    reverse: bool,
    /// Rows in the table (0 = all; default 20 in the table, every row in --json, which
    /// also gives `destinations_total`)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Highlight the table's cells over top's thresholds (bold red): auto (when stdout
    /// is a terminal and NO_COLOR is unset), always, never
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    color: ColorWhen,
    /// Seconds (capture time) after the first SYN before an unanswered handshake times out
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    handshake_timeout: f64,
    /// Seconds (capture time) of silence after which an open connection is reported and forgotten
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    idle_timeout: f64,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
    /// Analysis threads: N engines, connections spread over them by a flow hash, plus
    /// the reading thread; the output is byte for byte the same with any number. One by
    /// default: on two cores the reading thread competes with the engines (BENCHMARKS.md)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Most connections tracked at once (about 1 KB each); past it the one closest to
    /// expiring is reported early and counted as evicted
    #[arg(long, default_value_t = tcpsight_core::engine::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    max_connections: usize,
    /// Packet filter in tcpdump syntax (e.g. "tcp port 80 and net 10.0.0.0/8"), applied
    /// to every frame before analysis; needs libpcap at run time
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    packet_filter: Option<String>,

    /// Report only connections to this server port
    #[arg(long, help_heading = "Connection filters")]
    port: Option<u16>,
    /// Report only connections whose client sent at least BYTES (unique bytes)
    #[arg(long, value_name = "BYTES", help_heading = "Connection filters")]
    client_bytes_min: Option<u64>,
    /// Report only connections whose client sent at most BYTES
    #[arg(long, value_name = "BYTES", help_heading = "Connection filters")]
    client_bytes_max: Option<u64>,
    /// Report only connections whose server sent at least BYTES
    #[arg(long, value_name = "BYTES", help_heading = "Connection filters")]
    server_bytes_min: Option<u64>,
    /// Report only connections whose server sent at most BYTES
    #[arg(long, value_name = "BYTES", help_heading = "Connection filters")]
    server_bytes_max: Option<u64>,
    /// Report only connections starting at or after TIME (HH:MM:SS on the capture's first
    /// day, YYYY-MM-DD HH:MM:SS, or epoch seconds; UTC, capture time)
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Connection filters")]
    since: Option<TimeSpec>,
    /// Report only connections starting before TIME
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Connection filters")]
    until: Option<TimeSpec>,

    /// Distribution of connections by duration, client bytes, server bytes or throughput
    #[arg(long, value_enum, help_heading = "Distributions")]
    buckets: Option<BucketBy>,
    /// Bucket width: ms for duration, bytes for bytes, KB/s for throughput
    #[arg(long, value_name = "SIZE", help_heading = "Distributions")]
    bucket_size: Option<f64>,
    /// Number of buckets before the overflow bucket
    #[arg(
        long,
        default_value_t = 10,
        value_name = "N",
        help_heading = "Distributions"
    )]
    bucket_count: usize,
    /// List the connections of bucket N (as numbered in the table) with tcpdump filters
    #[arg(
        long,
        value_name = "N",
        requires = "buckets",
        help_heading = "Distributions"
    )]
    details: Option<usize>,
    /// List connections that needed at least N SYNs, with tcpdump filters
    #[arg(long, value_name = "N", help_heading = "Distributions")]
    min_syns: Option<u32>,
    #[command(flatten)]
    extra: crate::extras::ExtraArgs,
}

impl AnalyzeArgs {
    /// With -r the files are those, and the positional words a filter (tcpdump's rule);
    /// without, the positional words are the files.
    fn normalize(&mut self) -> Result<(), String> {
        self.interface = crate::live_args::joined(&self.interfaces);
        if self.interface.is_some() {
            // Live: the words are a packet filter (the capture is the input).
            let words = std::mem::take(&mut self.files);
            if !words.is_empty() {
                if self.packet_filter.is_some() {
                    return Err("a packet filter both with -f and as trailing words".into());
                }
                self.packet_filter = Some(words.join(" "));
            }
            return Ok(());
        }
        if self.read.is_empty() {
            return Ok(());
        }
        let words = std::mem::replace(&mut self.files, std::mem::take(&mut self.read));
        if !words.is_empty() {
            if self.packet_filter.is_some() {
                return Err("a packet filter both with -f and as trailing words".into());
            }
            self.packet_filter = Some(words.join(" "));
        }
        Ok(())
    }

    fn filter(&self) -> ConnFilter {
        ConnFilter {
            port: self.port,
            client_bytes_min: self.client_bytes_min,
            client_bytes_max: self.client_bytes_max,
            server_bytes_min: self.server_bytes_min,
            server_bytes_max: self.server_bytes_max,
            since: self.since,
            until: self.until,
        }
    }

    /// The --flows format: as given, else as the file name says; a contradiction (a
    /// `.csv` file asked for as JSON Lines, or the reverse) is refused.
    fn flow_format(&self) -> Result<FlowFormat, String> {
        let named = self.flows.as_deref().and_then(FlowFormat::of_name);
        match (self.format, named) {
            (Some(f), Some(n)) if f != n => Err(format!(
                "--format {} but --flows {} names the other format",
                f.name(),
                self.flows.as_deref().unwrap_or_default()
            )),
            (Some(f), _) | (None, Some(f)) => Ok(f),
            (None, None) => Ok(FlowFormat::Jsonl),
        }
    }

    /// Checks what clap cannot: option values that contradict each other.
    fn validate(&self) -> Result<(), String> {
        if let (Some(since), Some(until)) = (self.since, self.until) {
            // Both times of day, or both absolute, compare as given; mixed ones only
            // once the capture's date is known (then an empty window just matches nothing).
            let comparable = matches!(
                (since, until),
                (TimeSpec::Absolute(_), TimeSpec::Absolute(_))
                    | (TimeSpec::TimeOfDay(_), TimeSpec::TimeOfDay(_))
            );
            if comparable && since.resolve(0) >= until.resolve(0) {
                return Err("--since must be before --until".into());
            }
        }
        self.flow_format().map(|_| ())
    }

    fn wants_l7(&self) -> bool {
        self.l7 || self.http_log.is_some() || self.tls_log.is_some() || self.group_by.is_l7()
    }

    fn wants_summaries(&self) -> bool {
        self.buckets.is_some() || self.min_syns.is_some()
    }
}

/// Where the HTTP and TLS logs go.
#[derive(Default)]
struct L7Logs {
    http: Option<Writer>,
    tls: Option<Writer>,
    error: Option<(&'static str, io::Error)>,
}

impl L7Logs {
    fn keep(&mut self, what: &'static str, r: io::Result<()>) {
        if let Err(e) = r
            && self.error.is_none()
        {
            self.error = Some((what, e));
        }
    }

    fn finish(&mut self) {
        if let Some(w) = self.http.as_mut() {
            let r = w.finish();
            self.keep("the HTTP log", r);
        }
        if let Some(w) = self.tls.as_mut() {
            let r = w.finish();
            self.keep("the TLS log", r);
        }
    }
}

impl L7Log for L7Logs {
    fn http(&mut self, ctx: &Context, t: &HttpTransaction) {
        if let Some(w) = self.http.as_mut() {
            let r = w.write(&Logged { ctx, event: t });
            self.keep("the HTTP log", r);
        }
    }
    fn tls(&mut self, ctx: &Context, t: &TlsHandshake) {
        if let Some(w) = self.tls.as_mut() {
            let r = w.write(&Logged { ctx, event: t });
            self.keep("the TLS log", r);
        }
    }
}

/// The columns of the HTTP and TLS logs, from their schema.
fn log_columns(http: bool) -> Vec<columns::Column> {
    let ctx = example_context();
    let r = if http {
        let [full, empty] = http_log_examples();
        columns::of(
            &Logged {
                ctx: &ctx,
                event: &full,
            },
            &Logged {
                ctx: &ctx,
                event: &empty,
            },
        )
    } else {
        let [full, empty] = tls_log_examples();
        columns::of(
            &Logged {
                ctx: &ctx,
                event: &full,
            },
            &Logged {
                ctx: &ctx,
                event: &empty,
            },
        )
    };
    r.expect("the log examples set every field")
}

fn log_writer(path: &str, http: bool) -> Result<Writer, String> {
    let format = FlowFormat::of_name(path).unwrap_or(FlowFormat::Jsonl);
    Writer::open(path, format, log_columns(http))
}

struct Sinks {
    flows: Option<Writer>,
    /// Streams of records to other engines (ClickHouse, IPFIX).
    exports: Vec<Box<dyn RecordSink + Send>>,
    /// With --interval or --bins: the table per interval, and every row so far.
    intervals: Option<Intervals>,
    /// Addresses (and names) anonymized before any output sees a record.
    anon: Option<Anonymizer>,
    /// With --group-by name or app: the table keyed by those.
    labels: Option<table::LabelTable>,
    /// The application-layer analysis (with --l7, a log or an L7 grouping) and its logs.
    l7: Option<L7>,
    l7_logs: L7Logs,
    flow_error: Option<io::Error>,
    table: DestinationTable,
    outcomes: Outcomes,
    filter: ConnFilter,
    capture_start_ns: u64,
    /// With a filter, exchanges wait here until their connection is known to pass.
    pending: HashMap<(Endpoint, Endpoint, u32), Vec<ExchangeEvent>>,
    seen: u64,
    /// Per-connection summaries for distributions and listings (only when asked).
    summaries: Option<Vec<ConnSummary>>,
    progress: Option<ProgressBar>,
}

impl Tap for Sinks {
    /// `--flows - | head`: once the reader is gone, reading on is wasted work.
    fn on_frame(&mut self, _f: &tcpsight_io::FrameRef) -> Result<(), String> {
        match &self.flow_error {
            Some(e) if crate::pipe::is_broken(e) => Err("broken pipe".into()),
            _ => Ok(()),
        }
    }

    fn on_progress(&mut self, p: &Progress) {
        if let Some(pb) = &self.progress {
            pb.set_position(p.bytes_read);
        }
    }
}

impl Observer for Sinks {
    fn on_tick(&mut self, ts_ns: u64) {
        if let Some(iv) = self.intervals.as_mut() {
            let rows = iv.binner.close(ts_ns);
            iv.take(rows);
        }
    }

    fn on_handshake(&mut self, e: &tcpsight_core::HandshakeEvent) {
        if let Some(l7) = self.l7.as_mut() {
            l7.on_handshake(e);
        }
    }

    fn on_payload(&mut self, p: &tcpsight_core::Payload) -> bool {
        self.l7.as_mut().is_some_and(|l7| match self.anon.as_mut() {
            Some(anon) => l7.on_payload(
                p,
                &mut Anonymized {
                    log: &mut self.l7_logs,
                    anon,
                },
            ),
            None => l7.on_payload(p, &mut self.l7_logs),
        })
    }

    fn on_datagram(&mut self, d: &tcpsight_core::Datagram) {
        if let Some(l7) = self.l7.as_mut() {
            l7.on_datagram(d);
        }
    }

    fn on_exchange(&mut self, e: &ExchangeEvent) {
        let anonymized;
        let e = match self.anon.as_mut() {
            Some(a) => {
                anonymized = ExchangeEvent {
                    client: a.endpoint(e.client),
                    server: a.endpoint(e.server),
                    ..*e
                };
                &anonymized
            }
            None => e,
        };
        if let Some(l) = self.labels.as_mut() {
            l.on_exchange(e);
            return;
        }
        if self.filter.is_active() {
            self.pending
                .entry((e.client, e.server, e.vlan))
                .or_default()
                .push(*e);
        } else {
            if let Some(iv) = self.intervals.as_mut() {
                iv.binner.see(e.ts_ns);
                iv.binner.bins.on_exchange(e);
            }
            self.table.on_exchange(e);
        }
    }

    fn on_connection(&mut self, r: &ConnRecord) {
        // The record with its application-layer fields, copied only when there are some.
        let filled;
        let app = self.l7.as_mut().and_then(|l7| match self.anon.as_mut() {
            Some(anon) => l7.finish(
                r,
                &mut Anonymized {
                    log: &mut self.l7_logs,
                    anon,
                },
            ),
            None => l7.finish(r, &mut self.l7_logs),
        });
        let r = match (app, self.anon.as_mut()) {
            (None, None) => r,
            (app, anon) => {
                let mut c = r.clone();
                if let Some(app) = app {
                    c.app = app;
                }
                if let Some(a) = anon {
                    a.record(&mut c);
                }
                filled = c;
                &filled
            }
        };
        self.seen += 1;
        let label_exchanges = self.labels.as_mut().map(|l| l.take_exchanges(r));
        if self.filter.is_active() {
            let key = (
                Endpoint {
                    addr: r.client,
                    port: r.client_port,
                },
                Endpoint {
                    addr: r.server,
                    port: r.server_port,
                },
                r.vlan,
            );
            let pending = self.pending.remove(&key).unwrap_or_default();
            if !self.filter.matches(r, self.capture_start_ns) {
                return;
            }
            for e in &pending {
                self.table.on_exchange(e);
                if let Some(iv) = self.intervals.as_mut() {
                    iv.binner.bins.on_exchange(e);
                }
            }
        }
        if let Some(iv) = self.intervals.as_mut() {
            iv.binner.see(r.ts_last_ns);
            iv.binner.bins.on_connection(r);
        }
        if let Some(s) = self.summaries.as_mut() {
            s.push(ConnSummary::of(r));
        }
        self.outcomes.add(r);
        match (self.labels.as_mut(), &label_exchanges) {
            (Some(l), Some(x)) => l.on_connection(r, x),
            _ => self.table.on_connection(r),
        }
        if let Some(w) = self.flows.as_mut()
            && self.flow_error.is_none()
            && let Err(e) = w.write(r)
        {
            self.flow_error = Some(e);
        }
        for x in &mut self.exports {
            // Network sinks never fail a write: they count what they could not send.
            let _ = x.write(r);
        }
    }
}

/// `--interval`: the per-destination table per interval (the monitor's bins), its rows
/// kept for the report and written to `--bins`.
struct Intervals {
    binner: Binner,
    rows: Vec<serde_json::Value>,
    /// The bins file, and whether it is CSV.
    out: Option<(bool, Box<dyn Write>)>,
    error: Option<io::Error>,
}

impl Intervals {
    fn take(&mut self, rows: Vec<serde_json::Value>) {
        if let Some((csv, w)) = self.out.as_mut()
            && self.error.is_none()
        {
            for r in &rows {
                let line = if *csv {
                    bins_csv_line(r)
                } else {
                    r.to_string()
                };
                if let Err(e) = writeln!(w, "{line}") {
                    self.error = Some(e);
                    break;
                }
            }
        }
        self.rows.extend(rows);
    }
}

/// The CSV columns of a bins row: its scalar fields, then each histogram as JSON text.
const BINS_CSV: &[&str] = &[
    "interval_start",
    "interval_end",
    "server_ip",
    "server_port",
    "direction",
    "conns",
    "syn",
    "synack",
    "established",
    "rst",
    "fin_client",
    "fin_server",
    "exchanges",
    "messages_c2s",
    "messages_s2c",
    "pkts",
    "retx_pkts",
    "gap_conns",
    "connect_us_p50",
    "connect_us_p95",
    "connect_us_p99",
    "response_us_p95",
    "server_us_p95",
    "network_us_p95",
    "exchanges_per_conn_p95",
    "hist_connect_ns",
    "hist_response_ns",
    "hist_rtt_ns",
];

fn bins_csv_line(r: &serde_json::Value) -> String {
    BINS_CSV
        .iter()
        .map(|k| {
            let v = match k.strip_prefix("hist_").and_then(|h| h.strip_suffix("_ns")) {
                Some(h) => r["hist_ns"][h].to_string(),
                None => match &r[*k] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                },
            };
            if v.contains([',', '"', '\n']) {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `analyze -i`'s capture: the file it wrote, removed at the end unless -w kept it.
struct LiveCaptureFile {
    path: std::path::PathBuf,
    keep: bool,
}

impl Drop for LiveCaptureFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Captures every packet of `iface` for the duration (the packet filter in the kernel),
/// then points the analysis at the file.
fn capture_first(args: &mut AnalyzeArgs, iface: &str) -> Result<LiveCaptureFile, String> {
    let keep = args.write.is_some();
    let path = args.write.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tcpsight-analyze-{}.pcap", std::process::id()))
    });
    let file = LiveCaptureFile {
        path: path.clone(),
        keep,
    };
    // The filter runs in the kernel while capturing; the file holds only what passed.
    let filter = args.packet_filter.take();
    crate::capture::record_all(
        iface,
        &path,
        args.duration.unwrap_or(60.0),
        filter,
        &args.live,
    )?;
    args.files = vec![path.to_string_lossy().into_owned()];
    Ok(file)
}

/// The per-interval table the options ask for, with its bins file open.
fn intervals(args: &AnalyzeArgs) -> Result<Option<Intervals>, String> {
    if args.interval.is_none() && args.bins.is_none() {
        return Ok(None);
    }
    let interval = args.interval.unwrap_or(60_000_000_000);
    if interval < 1_000_000 {
        return Err("--interval must be at least 1ms".into());
    }
    let out = match args.bins.as_deref() {
        None => None,
        Some(path) => {
            let csv = path.to_ascii_lowercase().ends_with(".csv");
            let mut w: Box<dyn Write> = if path == "-" {
                Box::new(io::BufWriter::new(io::stdout()))
            } else {
                let f = std::fs::File::create(path)
                    .map_err(|e| format!("{path}: cannot create: {e}"))?;
                Box::new(io::BufWriter::with_capacity(1 << 16, f))
            };
            if csv {
                writeln!(w, "{}", BINS_CSV.join(",")).map_err(|e| format!("{path}: {e}"))?;
            }
            Some((csv, w))
        }
    };
    Ok(Some(Intervals {
        binner: Binner::new(Bins::new(args.group_by.into(), None), interval),
        rows: Vec::new(),
        out,
        error: None,
    }))
}

fn seconds(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

/// When the table is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    fn enabled(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

pub fn run(mut args: AnalyzeArgs) -> ExitCode {
    if let Err(e) = args.normalize().and_then(|_| args.validate()) {
        eprintln!("tcpsight: {e}");
        return ExitCode::from(2);
    }
    // -i: capture first, then analyse the capture like any file.
    let _capture = match args.interface.clone() {
        None => None,
        Some(iface) => match capture_first(&mut args, &iface) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("tcpsight: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let (readers, mut errors) = crate::inputs::open_all(&args.files);
    if readers.is_empty() {
        return ExitCode::from(2);
    }
    let ts_digits = readers.iter().map(|r| r.ts_digits()).max().unwrap_or(6);
    let formats: Vec<String> = readers
        .iter()
        .map(|r| {
            let f = match r.format() {
                FileFormat::Pcap => "pcap",
                FileFormat::PcapNg => "pcapng",
            };
            match r.compression() {
                "none" => f.to_string(),
                c => format!("{f}+{c}"),
            }
        })
        .collect();
    let total_size: u64 = readers.iter().filter_map(|r| r.size()).sum();
    let packet_filter = match crate::inputs::packet_filter(args.packet_filter.as_deref(), &readers)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };

    let anon = match args.privacy.anonymizer() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    let flows = match args.flows.as_deref() {
        None => None,
        Some(path) => {
            match Writer::records(path, args.flow_format().unwrap_or(FlowFormat::Jsonl)) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!("tcpsight: flows file {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    // Records or logs on stdout: the report goes to stderr.
    let flows_to_stdout = [&args.flows, &args.http_log, &args.tls_log, &args.bins]
        .iter()
        .any(|p| p.as_deref() == Some("-"));
    // Times of day in --since/--until fall on the UTC date of the first frame.
    let capture_start_ns = readers
        .iter()
        .filter_map(|r| r.current().map(|f| f.ts_ns))
        .min()
        .unwrap_or(0);
    let mut l7_logs = L7Logs::default();
    for (path, slot, http) in [
        (&args.http_log, &mut l7_logs.http, true),
        (&args.tls_log, &mut l7_logs.tls, false),
    ] {
        if let Some(path) = path {
            match log_writer(path, http) {
                Ok(w) => *slot = Some(w),
                Err(e) => {
                    eprintln!("tcpsight: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let mut extras = match crate::extras::Extras::open(&args.extra) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    let exports = match args.export.open(false) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    let mut sinks = Sinks {
        l7: args
            .wants_l7()
            .then(|| L7::default().with_details(args.http_log.is_some())),
        l7_logs,
        flows,
        exports,
        anon,
        flow_error: None,
        table: DestinationTable::new(args.group_by),
        labels: args
            .group_by
            .is_l7()
            .then(|| table::LabelTable::new(args.group_by)),
        outcomes: Outcomes::default(),
        filter: args.filter(),
        capture_start_ns,
        pending: HashMap::new(),
        seen: 0,
        summaries: args.wants_summaries().then(Vec::new),
        progress: None,
        intervals: match intervals(&args) {
            Ok(iv) => iv,
            Err(e) => {
                eprintln!("tcpsight: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let cfg = Config {
        handshake_timeout_ns: seconds(args.handshake_timeout),
        idle_timeout_ns: seconds(args.idle_timeout),
        max_connections: args.max_connections,
        payload: args.wants_l7(),
        datagrams: args.wants_l7() || extras.wants_datagrams(),
        tick_ns: sinks
            .intervals
            .as_ref()
            .map_or(0, |iv| iv.binner.interval_ns()),
        ..Config::default()
    };
    let threads = args.threads as usize;

    let progress =
        (!args.no_progress && io::stderr().is_terminal() && total_size > 32 << 20).then(|| {
            let pb = ProgressBar::new(total_size);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bar:40} {percent}% {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        });

    let mut src = FileSource::new(MergedReader::new(readers));
    sinks.progress = progress.clone();
    let limits = Limits {
        max_frames: args.count,
        ..Limits::default()
    };
    let mut runner = Runner::new(limits, packet_filter).progress_every(1 << 16);
    let mut obs = (&mut sinks, &mut extras);
    let run = if threads > 1 {
        tcpsight_pipeline::run_sharded(&mut runner, &mut src, cfg, threads, &mut obs)
            .map(|r| r.stats)
    } else {
        let mut engine = Engine::new(cfg);
        runner
            .run(&mut src, &mut engine, &mut obs)
            .map(|_| engine.stats())
    };
    let st = match run {
        Ok(st) => st,
        Err(_)
            if sinks
                .flow_error
                .as_ref()
                .is_some_and(crate::pipe::is_broken) =>
        {
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tcpsight: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    for e in src.errors() {
        eprintln!("tcpsight: {e} (everything before it was analysed)");
    }
    errors.extend(src.errors().iter().cloned());
    let packet_filter = runner.filter();

    if let Some(w) = sinks.flows.as_mut()
        && sinks.flow_error.is_none()
        && let Err(e) = w.finish()
    {
        sinks.flow_error = Some(e);
    }
    // Network exports: one line each on what was delivered; records not delivered
    // make the exit status 2, after the report.
    let mut export_lost = false;
    for x in &mut sinks.exports {
        match x.finish() {
            Err(e) => {
                eprintln!("tcpsight: {e}");
                export_lost = true;
            }
            Ok(()) => {
                if let Some(line) = x.report() {
                    eprintln!("tcpsight: {line}");
                }
            }
        }
    }
    sinks.l7_logs.finish();
    if let Err(e) = extras.finish() {
        eprintln!("tcpsight: {e}");
        return ExitCode::from(2);
    }
    if let Some(iv) = sinks.intervals.as_mut() {
        let rows = iv.binner.finish();
        iv.take(rows);
        if let Some((_, w)) = iv.out.as_mut()
            && iv.error.is_none()
            && let Err(e) = w.flush()
        {
            iv.error = Some(e);
        }
        if let Some(e) = &iv.error
            && !crate::pipe::is_broken(e)
        {
            eprintln!("tcpsight: writing the bins: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some((what, e)) = &sinks.l7_logs.error
        && !crate::pipe::is_broken(e)
    {
        eprintln!("tcpsight: writing {what}: {e}");
        return ExitCode::from(2);
    }
    if let Some(e) = &sinks.flow_error {
        if crate::pipe::is_broken(e) {
            return ExitCode::SUCCESS;
        }
        eprintln!("tcpsight: writing flows: {e}");
        return ExitCode::from(2);
    }

    let input = InputInfo {
        files: args.files.clone(),
        formats,
        ts_digits,
        packet_filter: packet_filter
            .as_ref()
            .map(|f| (f.expr().to_string(), f.rejected)),
    };
    let span_s = match (st.first_ns, st.last_ns) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let rows = match &sinks.labels {
        Some(l) => l.rows(span_s, args.sort, args.reverse),
        None => sinks.table.rows(span_s, args.sort, args.reverse),
    };
    // With flows on stdout, the report goes to stderr so the two never mix.
    let mut report: Box<dyn Write> = if flows_to_stdout || extras.to_stdout() {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let summaries = sinks.summaries.take().unwrap_or_default();
    let buckets = args
        .buckets
        .map(|by| Buckets::new(by, args.bucket_size, args.bucket_count));
    let detail = match (buckets, args.details) {
        (Some(b), Some(n)) => Some((n, dist::in_bucket(&b, &summaries, n))),
        _ => None,
    };
    let retried: Option<Vec<&ConnSummary>> = args
        .min_syns
        .map(|n| summaries.iter().filter(|c| c.syn_count >= n).collect());
    let filtered = sinks.filter.is_active().then_some(sinks.seen);
    let text = if args.json {
        let mut doc = summary::to_json(&input, &st, &sinks.outcomes);
        if let Some(seen) = filtered {
            doc["connections_before_filter"] = seen.into();
        }
        // JSON is for scripts: every row unless a limit was asked for, and the total, so
        // a cut list never passes for the whole.
        doc["destinations"] = table::to_json(&rows, args.limit.unwrap_or(0));
        doc["destinations_total"] = rows.len().into();
        if let Some(b) = &buckets {
            doc["distribution"] = dist::to_json(b, &summaries);
        }
        if args.wants_summaries() {
            doc["syn_attempts"] = dist::syn_attempts(&summaries)
                .iter()
                .map(|(n, c)| serde_json::json!({"syns": n, "connections": c}))
                .collect();
        }
        if let Some(iv) = &sinks.intervals {
            doc["intervals"] = serde_json::Value::from(iv.rows.clone());
        }
        if let Some((n, list)) = &detail {
            doc["details"] = serde_json::json!({"bucket": n, "connections": dist::list_json(list)});
        }
        if let Some(list) = &retried {
            doc["min_syns"] = dist::list_json(list);
        }
        // Trust signals, present only when they happened.
        if st.evicted > 0 {
            doc["evicted_connections"] = st.evicted.into();
        }
        if st.stray_acks > 0 {
            doc["stray_acks"] = st.stray_acks.into();
        }
        extras.json(&mut doc);
        doc["errors"] =
            serde_json::Value::from(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else {
        let mut t = summary::render(&input, &st, &sinks.outcomes);
        if let Some(seen) = filtered {
            t.push_str(&format!(
                "  (filtered: {} of {} connections reported)\n",
                crate::format::thousands(sinks.outcomes.connections),
                crate::format::thousands(seen)
            ));
        }
        if st.evicted > 0 {
            t.push_str(&format!(
                "  evicted {} connections under memory pressure (--max-connections {}): figures incomplete\n",
                crate::format::thousands(st.evicted),
                crate::format::thousands(args.max_connections as u64)
            ));
        }
        if st.stray_acks > 0 {
            t.push_str(&format!(
                "  {} stray ACKs (beyond anything the peer could have sent) not counted as capture gaps\n",
                crate::format::thousands(st.stray_acks)
            ));
        }
        t.push_str(&extras.render());
        if !rows.is_empty() {
            t.push_str(if args.group_by == GroupBy::Client {
                "\nClients\n"
            } else {
                "\nDestinations\n"
            });
            let thresholds = table::Thresholds::default();
            let hot = args.color.enabled().then_some(&thresholds);
            t.push_str(&table::render_highlighted(
                &rows,
                args.limit.unwrap_or(20),
                hot,
            ));
        }
        if let Some(iv) = &sinks.intervals {
            t.push_str(&table::render_intervals(
                &iv.rows,
                iv.binner.interval_ns(),
                args.limit.unwrap_or(10),
            ));
        }
        if let Some(b) = &buckets {
            t.push('\n');
            t.push_str(&dist::render(b, &summaries));
        }
        if args.wants_summaries() {
            t.push('\n');
            t.push_str(&dist::render_syn_attempts(&summaries));
        }
        if let Some((n, list)) = &detail {
            t.push('\n');
            t.push_str(&dist::render_list(&format!("Bucket {n}"), list, ts_digits));
        }
        if let (Some(list), Some(n)) = (&retried, args.min_syns) {
            t.push('\n');
            t.push_str(&dist::render_list(
                &format!("Connections with {n} or more SYNs"),
                list,
                ts_digits,
            ));
        }
        t
    };
    if report
        .write_all(text.as_bytes())
        .and_then(|_| report.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    if errors.is_empty() && !export_lost {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
