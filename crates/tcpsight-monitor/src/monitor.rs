//! The monitor's observer: connection records (final and interim), the L7 logs, time
//! bins and a summary per rotation period, in an [`OutputDir`], all in capture time, so
//! a replay of a capture writes the same bytes as the live run that saw its traffic.
//!
//! Time: the engine ticks at every `interval` boundary of capture time
//! (`Config::tick_ns`); at each tick the interval's bins are written, and at a rotation
//! boundary the period's files are committed (renamed to their final names) and the
//! retention limits applied. A period opens at the first event in it, so hours without
//! traffic leave no empty folders.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use tcpsight_agg::Grouping;
use tcpsight_anon::Anonymizer;
use tcpsight_core::record::field_names;
use tcpsight_core::{
    ConnRecord, Datagram, EngineCounts, ExchangeEvent, HandshakeEvent, Observer, Payload, Schema,
    Value,
};
use tcpsight_export::lines::{FlowFormat, FlowWriter, RECORD_TS_DIGITS};
use tcpsight_export::parquet::ParquetWriter;
use tcpsight_l7::observe::{Context, Logged, http_log_fields, tls_log_fields};
use tcpsight_l7::{Anonymized, HttpTransaction, L7, L7Log, TlsHandshake};

use crate::bins::{Binner, Bins};
use crate::chunked::ChunkedFile;
use crate::local::{Direction, LocalNets};
use crate::metrics::Health;
use crate::outdir::{OutputDir, write_atomic};

/// How the record files are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormat {
    /// JSON Lines compressed with zstd (`.jsonl.zst`), the default.
    JsonlZst,
    Jsonl,
    Csv,
    /// Typed columns (tcpsight-export's Parquet writer; zstd inside).
    Parquet,
}

impl RecordFormat {
    fn ext(self) -> &'static str {
        match self {
            RecordFormat::JsonlZst => "jsonl.zst",
            RecordFormat::Jsonl => "jsonl",
            RecordFormat::Csv => "csv",
            RecordFormat::Parquet => "parquet",
        }
    }
}

#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// Bins per this much capture time.
    pub interval_ns: u64,
    /// A new period folder per this much capture time (a multiple of the interval).
    pub rotate_ns: u64,
    /// Remove periods that started longer than this before the current one.
    pub keep_ns: Option<u64>,
    /// Remove the oldest periods while the directory holds more than this.
    pub max_bytes: Option<u64>,
    pub local: Option<LocalNets>,
    pub grouping: Grouping,
    pub format: RecordFormat,
    /// Application-layer analysis (records' L7 fields) and the HTTP and TLS logs.
    pub l7: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval_ns: 60_000_000_000,
            rotate_ns: 3_600_000_000_000,
            keep_ns: None,
            max_bytes: None,
            local: None,
            grouping: Grouping::Host,
            format: RecordFormat::JsonlZst,
            l7: false,
        }
    }
}

/// A connection record as the monitor writes it: the record's fields, then whether it
/// is `final` or `interim` (a long-lived connection's figures so far) and, with
/// `--local`, its direction.
pub struct MonitorRecord<'a> {
    pub rec: &'a ConnRecord,
    pub interim: bool,
    pub direction: Option<Direction>,
    /// The local process owning the connection (live only).
    pub owner: Option<&'a (u32, Arc<str>)>,
}

/// Which local process owns a connection: the live faces' socket-table lookup
/// (tcpsight-live's `SocketOwners`), behind a trait so this crate stays free of it.
pub trait OwnerLookup {
    /// The owner of the connection between these two ends, either way round.
    fn owner(&self, a: SocketAddr, b: SocketAddr) -> Option<(u32, Arc<str>)>;
    /// A connection was just established: look soon, while its socket is open.
    fn nudge(&self);
}

impl Schema for MonitorRecord<'_> {
    fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, mut f: F) {
        self.rec.for_each_field(&mut f);
        f(
            "record",
            Value::Str(if self.interim { "interim" } else { "final" }),
        );
        f(
            "direction",
            self.direction.map_or(Value::Null, |d| Value::Str(d.name())),
        );
        f(
            "pid",
            self.owner.map_or(Value::Null, |o| Value::U64(o.0 as u64)),
        );
        f(
            "process",
            self.owner.map_or(Value::Null, |o| Value::Str(&o.1)),
        );
    }
}

/// The Parquet columns of the monitor's record files.
pub fn monitor_record_columns() -> Result<Vec<tcpsight_export::columns::Column>, String> {
    let owner: (u32, Arc<str>) = (1, Arc::from("x"));
    let (full, empty) = (
        tcpsight_export::columns::full_record(),
        tcpsight_export::columns::empty_record(),
    );
    tcpsight_export::columns::of(
        &MonitorRecord {
            rec: &full,
            interim: false,
            direction: Some(Direction::Out),
            owner: Some(&owner),
        },
        &MonitorRecord {
            rec: &empty,
            interim: false,
            direction: None,
            owner: None,
        },
    )
}

/// The field names of the monitor's record files.
pub fn monitor_record_fields() -> Vec<&'static str> {
    let mut v = field_names();
    v.extend(["record", "direction", "pid", "process"]);
    v
}

type Lines = FlowWriter<ChunkedFile>;

/// A record file: lines (JSON Lines or CSV) or Parquet.
enum RecordFile {
    Lines(Lines),
    Parquet {
        w: Box<ParquetWriter<ChunkedFile>>,
        rows: u64,
        /// A write error: a Parquet file cannot lose a part and stay readable, so every
        /// row of it counts as lost.
        failed: Option<std::io::Error>,
    },
}

impl RecordFile {
    fn write<R: Schema>(&mut self, r: &R) {
        match self {
            RecordFile::Lines(w) => {
                let _ = w.write(r);
            }
            RecordFile::Parquet { w, rows, failed } => {
                *rows += 1;
                if let Err(e) = w.write(r) {
                    failed.get_or_insert(e);
                }
            }
        }
    }

    fn take_error(&mut self) -> Option<std::io::Error> {
        match self {
            RecordFile::Lines(w) => w.get_mut().take_error(),
            RecordFile::Parquet { w, failed, .. } => {
                let e = w.get_mut().and_then(ChunkedFile::take_error);
                e.inspect(|e| {
                    failed.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
                })
            }
        }
    }

    /// The file to commit, and the rows lost beyond what the file itself counts.
    fn into_file(self) -> (Option<ChunkedFile>, u64, Option<std::io::Error>) {
        match self {
            // into_inner only flushes a ChunkedFile, which cannot fail.
            RecordFile::Lines(w) => (w.into_inner().ok(), 0, None),
            RecordFile::Parquet { w, rows, failed } => {
                let closed = w.into_inner();
                match (closed, failed) {
                    (Ok(mut f), None) => match f.take_error() {
                        None => (Some(f), 0, None),
                        e => (Some(f), rows, e),
                    },
                    (Ok(f), Some(e)) => (Some(f), rows, Some(e)),
                    (Err(e), _) => (None, rows, Some(e)),
                }
            }
        }
    }
}

/// One period's open files and counts.
struct Period {
    start_ns: u64,
    dir: PathBuf,
    flows: Option<RecordFile>,
    http: Option<Lines>,
    tls: Option<Lines>,
    bins: Option<ChunkedFile>,
    records: u64,
    interim: u64,
    bins_rows: u64,
    http_records: u64,
    tls_records: u64,
}

/// What committing a period's files found.
#[derive(Default)]
struct Commit {
    lost: u64,
    problems: Vec<String>,
    files: Vec<String>,
}

impl Commit {
    fn commit(&mut self, f: ChunkedFile, what: &str) {
        let (r, (_, l), err) = f.commit();
        self.lost += l;
        if let Some(e) = err {
            self.problems.push(format!("{what}: {e}"));
        }
        match r {
            Ok(path) => self.files.push(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            Err(e) => self.problems.push(format!("{what}: cannot rename: {e}")),
        }
    }
}

/// The L7 logs of the open period.
struct PeriodLogs<'a> {
    period: Option<&'a mut Period>,
}

impl L7Log for PeriodLogs<'_> {
    fn http(&mut self, ctx: &Context, t: &HttpTransaction) {
        if let Some(p) = self.period.as_deref_mut()
            && let Some(w) = p.http.as_mut()
        {
            let _ = w.write(&Logged { ctx, event: t });
            p.http_records += 1;
        }
    }
    fn tls(&mut self, ctx: &Context, t: &TlsHandshake) {
        if let Some(p) = self.period.as_deref_mut()
            && let Some(w) = p.tls.as_mut()
        {
            let _ = w.write(&Logged { ctx, event: t });
            p.tls_records += 1;
        }
    }
}

/// A bins row with its destination anonymized: the binner keys by real addresses (its
/// `--local` directions need them), the file shows what the records show.
fn anonymize_bin(a: &mut Anonymizer, row: &mut serde_json::Value) {
    if let Some(ip) = row["server_ip"]
        .as_str()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
    {
        row["server_ip"] = json!(a.addr(ip.into()).ip().to_string());
    }
    if a.hashes_names()
        && let Some(name) = row.get("name").and_then(|n| n.as_str()).map(str::to_owned)
    {
        row["name"] = json!(a.name(&name));
    }
}

/// Totals over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorTotals {
    pub records: u64,
    pub interim: u64,
    pub lost: u64,
    pub periods: u64,
    pub bins_rows: u64,
}

pub struct Monitor {
    cfg: MonitorConfig,
    out: OutputDir,
    period: Option<Period>,
    bins: Binner,
    clock_ns: u64,
    l7: Option<L7>,
    /// Frames and wire bytes per period start, counted as they arrive.
    frames: BTreeMap<u64, (u64, u64)>,
    /// The counts of the period frames are arriving in: (start, frames, wire bytes).
    frames_now: (u64, u64, u64),
    kernel: Option<(u64, u64)>,
    /// The kernel's counters when the last summary was written: each summary says
    /// what they grew by since, so drops before the first period opened (or between
    /// periods) are not lost and the periods add up to the run's total.
    kernel_said: (u64, u64),
    /// Frames dropped as copies from another interface (live `any` or a list), and
    /// their count when the last summary was written.
    copies: Option<u64>,
    copies_said: u64,
    /// The engines' counts as last reported, and the part of them already said in a
    /// period's summary.
    engine: EngineCounts,
    engine_said: EngineCounts,
    totals: MonitorTotals,
    health: Option<Health>,
    /// Capture time of the last write-error message (at most one a minute).
    warned_at: Option<u64>,
    /// Lines said about the run (rotations, retention, errors), for the caller's log.
    pub log: Vec<String>,
    owners: Option<Box<dyn OwnerLookup>>,
    /// `--anonymize`: what every file shows of addresses (and names). The analysis,
    /// `--local` and the owner lookups see the real ones.
    anon: Option<Anonymizer>,
    /// Network exports (IPFIX, ClickHouse): each final record as the files show it.
    exports: Vec<Box<dyn tcpsight_export::RecordSink + Send>>,
}

impl Monitor {
    pub fn new(cfg: MonitorConfig, out: OutputDir) -> Result<Monitor, String> {
        if cfg.interval_ns == 0
            || cfg.rotate_ns == 0
            || !cfg.rotate_ns.is_multiple_of(cfg.interval_ns)
        {
            return Err(format!(
                "--rotate ({} s) must be a whole number of --interval ({} s)",
                cfg.rotate_ns / 1_000_000_000,
                cfg.interval_ns / 1_000_000_000
            ));
        }
        Ok(Monitor {
            bins: Binner::new(Bins::new(cfg.grouping, cfg.local.clone()), cfg.interval_ns),
            l7: cfg.l7.then(|| L7::default().with_details(true)),
            cfg,
            out,
            period: None,
            clock_ns: 0,
            frames: BTreeMap::new(),
            frames_now: (0, 0, 0),
            kernel: None,
            kernel_said: (0, 0),
            copies: None,
            copies_said: 0,
            engine: EngineCounts::default(),
            engine_said: EngineCounts::default(),
            totals: MonitorTotals::default(),
            health: None,
            warned_at: None,
            log: Vec::new(),
            owners: None,
            anon: None,
            exports: Vec::new(),
        })
    }

    /// Every file (records, bins, L7 logs) shows addresses (and names, when hashed) as
    /// `anon` maps them.
    pub fn with_anonymizer(mut self, anon: Anonymizer) -> Self {
        self.anon = Some(anon);
        self
    }

    /// Final records also go to these sinks (interim ones do not: a database would count
    /// a connection twice).
    pub fn with_exports(
        mut self,
        exports: Vec<Box<dyn tcpsight_export::RecordSink + Send>>,
    ) -> Self {
        self.exports = exports;
        self
    }

    /// Ends the exports: for each, the line on what it delivered, or why some records
    /// were lost (`Err`).
    pub fn finish_exports(&mut self) -> Vec<Result<String, String>> {
        let mut said = Vec::new();
        for x in &mut self.exports {
            match x.finish() {
                Err(e) => said.push(Err(e.to_string())),
                Ok(()) => said.extend(x.report().map(Ok)),
            }
        }
        said
    }

    /// Records get the owning process from `owners` (live).
    pub fn with_owners(mut self, owners: Box<dyn OwnerLookup>) -> Self {
        self.owners = Some(owners);
        self
    }

    /// Counts records not written in these metrics too.
    pub fn with_health(mut self, h: Health) -> Self {
        self.health = Some(h);
        self
    }

    /// The engine's tick: the interval's length.
    pub fn tick_ns(&self) -> u64 {
        self.cfg.interval_ns
    }

    pub fn totals(&self) -> MonitorTotals {
        self.totals
    }

    /// A frame arrived (before the engine sees it): counted in its period's summary.
    /// Per frame: the period's counts are kept apart and folded into the map only when
    /// the frame's period changes, so the packet path touches no tree.
    pub fn count_frame(&mut self, ts_ns: u64, wire_len: u32) {
        let start = ts_ns - ts_ns % self.cfg.rotate_ns;
        if self.frames_now.0 != start {
            self.fold_frames();
            self.frames_now.0 = start;
        }
        self.frames_now.1 += 1;
        self.frames_now.2 += wire_len as u64;
    }

    fn fold_frames(&mut self) {
        let (start, n, bytes) = std::mem::take(&mut self.frames_now);
        if n > 0 {
            let e = self.frames.entry(start).or_default();
            e.0 += n;
            e.1 += bytes;
        }
    }

    /// The kernel's (delivered, dropped) counters (live).
    pub fn set_kernel(&mut self, k: (u64, u64)) {
        self.kernel = Some(k);
    }

    /// Frames dropped so far as copies of one seen on another interface (live).
    pub fn set_copies(&mut self, copies: u64) {
        self.copies = Some(copies);
    }

    /// The engines' counts so far (evictions, undecodable frames): each period's
    /// summary says what they grew by since the one before, so the periods add up to
    /// the run's totals.
    pub fn set_engine_counts(&mut self, c: EngineCounts) {
        self.engine = c;
    }

    fn advance(&mut self, ts_ns: u64) {
        if ts_ns > self.clock_ns {
            self.clock_ns = ts_ns;
        }
        self.bins.see(self.clock_ns);
    }

    fn period(&mut self) -> Option<&mut Period> {
        if self.period.is_none() {
            let t = self.clock_ns;
            self.open_period(t - t % self.cfg.rotate_ns);
        }
        self.period.as_mut()
    }

    fn open_period(&mut self, start_ns: u64) {
        let dir = match self.out.new_period(start_ns) {
            Ok(d) => d,
            Err(e) => {
                self.warn(format!(
                    "{}: cannot create a period folder: {e}",
                    self.out.root().display()
                ));
                return;
            }
        };
        let fmt = self.cfg.format;
        let compress = matches!(fmt, RecordFormat::JsonlZst | RecordFormat::Parquet);
        let lines = if fmt == RecordFormat::Csv {
            FlowFormat::Csv
        } else {
            FlowFormat::Jsonl
        };
        let mut errors = Vec::new();
        let parquet = if fmt == RecordFormat::Parquet {
            let name = "flows.parquet";
            let made = ChunkedFile::create(&dir, name, false).and_then(|f| {
                let cols = monitor_record_columns().map_err(std::io::Error::other)?;
                ParquetWriter::with_columns(f.binary(), cols)
            });
            match made {
                Ok(w) => Some(RecordFile::Parquet {
                    w: Box::new(w),
                    rows: 0,
                    failed: None,
                }),
                Err(e) => {
                    errors.push(format!("{}: cannot create {name}: {e}", dir.display()));
                    None
                }
            }
        } else {
            None
        };
        let mut open = |name: String, names: Vec<&'static str>| match ChunkedFile::create(
            &dir, &name, compress,
        ) {
            Ok(f) => Some(FlowWriter::new(f, lines, RECORD_TS_DIGITS).with_names(names)),
            Err(e) => {
                errors.push(format!("{}: cannot create {name}: {e}", dir.display()));
                None
            }
        };
        let flows = match parquet {
            Some(p) => Some(p),
            None if fmt == RecordFormat::Parquet => None,
            None => {
                open(format!("flows.{}", fmt.ext()), monitor_record_fields()).map(RecordFile::Lines)
            }
        };
        // The L7 logs are lines (zstd JSON Lines for Parquet record files).
        let (http, tls) = if self.cfg.l7 {
            let ext = if fmt == RecordFormat::Parquet {
                RecordFormat::JsonlZst.ext()
            } else {
                fmt.ext()
            };
            (
                open(format!("http.{ext}"), http_log_fields()),
                open(format!("tls.{ext}"), tls_log_fields()),
            )
        } else {
            (None, None)
        };
        let bins = match ChunkedFile::create(&dir, "bins.jsonl", false) {
            Ok(f) => Some(f),
            Err(e) => {
                errors.push(format!("{}: cannot create bins.jsonl: {e}", dir.display()));
                None
            }
        };
        for e in errors {
            self.warn(e);
        }
        self.period = Some(Period {
            start_ns,
            dir,
            flows,
            http,
            tls,
            bins,
            records: 0,
            interim: 0,
            bins_rows: 0,
            http_records: 0,
            tls_records: 0,
        });
    }

    /// Says a problem on the log, at most once a minute of capture time for write
    /// errors (a full disk would otherwise say it per record).
    fn warn(&mut self, msg: String) {
        let now = self.clock_ns;
        if self
            .warned_at
            .is_some_and(|t| now.saturating_sub(t) < 60_000_000_000)
        {
            return;
        }
        self.warned_at = Some(now);
        self.log.push(msg);
    }

    fn write_record(&mut self, r: &ConnRecord, interim: bool) {
        let direction = self
            .cfg
            .local
            .as_ref()
            .map(|l| l.direction(&r.client, &r.server));
        let owner = self.owners.as_ref().and_then(|o| {
            o.owner(
                SocketAddr::new(r.client.ip(), r.client_port),
                SocketAddr::new(r.server.ip(), r.server_port),
            )
        });
        let anonymized;
        let r = match self.anon.as_mut() {
            Some(a) => {
                let mut c = r.clone();
                a.record(&mut c);
                anonymized = c;
                &anonymized
            }
            None => r,
        };
        if !interim {
            for x in &mut self.exports {
                // Network sinks never fail a write: they count what they could not send.
                let _ = x.write(r);
            }
        }
        let Some(p) = self.period() else {
            self.lost(1);
            return;
        };
        if interim {
            p.interim += 1;
        } else {
            p.records += 1;
        }
        let Some(w) = p.flows.as_mut() else {
            self.lost(1);
            return;
        };
        w.write(&MonitorRecord {
            rec: r,
            interim,
            direction,
            owner: owner.as_ref(),
        });
        self.check_errors();
    }

    fn lost(&mut self, n: u64) {
        self.totals.lost += n;
        if let Some(h) = &self.health {
            h.records_not_written.inc_by(n);
        }
    }

    /// Write errors of the open files: said (rate-limited) and their lost lines counted.
    fn check_errors(&mut self) {
        let Some(p) = self.period.as_mut() else {
            return;
        };
        let mut errs: Vec<_> = [p.http.as_mut(), p.tls.as_mut()]
            .into_iter()
            .flatten()
            .filter_map(|w| w.get_mut().take_error())
            .collect();
        errs.extend(p.flows.as_mut().and_then(RecordFile::take_error));
        let dir = p.dir.display().to_string();
        for e in errs {
            self.warn(format!(
                "{dir}: cannot write records: {e}; measuring goes on, records not written are counted"
            ));
        }
    }

    /// Writes an interval's rows into the open period's bins file.
    fn write_bins(&mut self, rows: Vec<serde_json::Value>) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        let mut rows = rows;
        if let Some(a) = self.anon.as_mut() {
            for row in &mut rows {
                anonymize_bin(a, row);
            }
        }
        if let Some(p) = self.period()
            && let Some(f) = p.bins.as_mut()
        {
            for row in rows {
                let _ = writeln!(f, "{row}");
            }
            p.bins_rows += n;
        }
        self.totals.bins_rows += n;
    }

    /// Commits the open period's files, writes its summary and applies retention.
    fn close_period(&mut self, end_ns: u64) {
        let Some(p) = self.period.take() else {
            return;
        };
        let mut c = Commit::default();
        if let Some(flows) = p.flows {
            let (f, more_lost, e) = flows.into_file();
            c.lost += more_lost;
            if let Some(e) = e {
                c.problems.push(format!("records: {e}"));
            }
            if let Some(f) = f {
                c.commit(f, "records");
            }
        }
        for (w, what) in [(p.http, "HTTP log"), (p.tls, "TLS log")] {
            // into_inner only flushes a ChunkedFile, which cannot fail.
            if let Some(Ok(f)) = w.map(FlowWriter::into_inner) {
                c.commit(f, what);
            }
        }
        if let Some(b) = p.bins {
            c.commit(b, "bins");
        }
        let Commit {
            lost,
            problems,
            files,
        } = c;
        self.fold_frames();
        let (frames, wire_bytes) = self
            .frames
            .range(p.start_ns..end_ns.max(p.start_ns + 1))
            .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        self.frames = self.frames.split_off(&end_ns);
        let drops = match self.kernel {
            Some(k) => {
                let grew = k.1.saturating_sub(self.kernel_said.1);
                self.kernel_said = k;
                json!(grew)
            }
            None => serde_json::Value::Null,
        };
        let copies = self.copies.map(|c| {
            let grew = c.saturating_sub(self.copies_said);
            self.copies_said = c;
            grew
        });
        let (evicted, undecodable) = (
            self.engine.evicted.saturating_sub(self.engine_said.evicted),
            self.engine
                .undecodable
                .saturating_sub(self.engine_said.undecodable),
        );
        self.engine_said = self.engine;
        let summary = json!({
            "period_start": p.start_ns / 1_000_000_000,
            "period_end": end_ns / 1_000_000_000,
            "records": p.records,
            "interim_records": p.interim,
            "records_lost": lost,
            "http_records": self.cfg.l7.then_some(p.http_records),
            "tls_records": self.cfg.l7.then_some(p.tls_records),
            "bins_rows": p.bins_rows,
            "frames": frames,
            "wire_bytes": wire_bytes,
            "kernel_drops": drops,
            "copies_dropped": copies,
            "evicted_connections": evicted,
            "undecodable_frames": undecodable,
            "files": files,
            "problems": problems,
        });
        if lost > 0 {
            self.lost(lost);
        }
        for pr in &problems {
            self.log.push(format!("{}: {pr}", p.dir.display()));
        }
        if let Err(e) = write_atomic(&p.dir, "summary.json", format!("{summary:#}\n").as_bytes()) {
            self.log.push(format!(
                "{}: cannot write summary.json: {e}",
                p.dir.display()
            ));
        }
        self.totals.records += p.records;
        self.totals.interim += p.interim;
        self.totals.periods += 1;
        if self.cfg.keep_ns.is_some() || self.cfg.max_bytes.is_some() {
            // The period just closed is the newest: never removed.
            let said = self.out.retain(
                end_ns,
                self.cfg.keep_ns,
                self.cfg.max_bytes,
                Some(p.dir.as_path()),
            );
            self.log.extend(said);
        }
    }

    /// SIGHUP: ends the interval and the period now (capture time) and starts new ones.
    pub fn rotate_now(&mut self) {
        let now = self.clock_ns;
        let rows = self.bins.close(now);
        self.write_bins(rows);
        self.close_period(now);
        if self.cfg.l7 || self.period.is_none() {
            self.open_period(now);
        }
    }

    /// End of input or a stop signal: the last bins, the period's files committed.
    pub fn finish(&mut self) {
        let now = self.clock_ns;
        let rows = self.bins.finish();
        self.write_bins(rows);
        // A period spans its whole rotation, as its bins do (a live run's period closed
        // by the idle clock and a replay's closed at the end say the same).
        let end = self
            .period
            .as_ref()
            .map_or(now, |p| p.start_ns + self.cfg.rotate_ns);
        self.close_period(end);
    }
}

impl Monitor {
    /// The record with its application-layer fields (None when there are none to add),
    /// its HTTP and TLS log lines written: what other observers (the metrics) should
    /// see of a connection.
    pub fn record_with_l7(&mut self, r: &ConnRecord) -> Option<ConnRecord> {
        self.advance(r.ts_last_ns);
        self.l7.as_ref()?;
        if self.period.is_none() {
            let t = self.clock_ns;
            self.open_period(t - t % self.cfg.rotate_ns);
        }
        let l7 = self.l7.as_mut()?;
        let mut logs = PeriodLogs {
            period: self.period.as_mut(),
        };
        let app = match self.anon.as_mut() {
            Some(anon) => l7.finish(
                r,
                &mut Anonymized {
                    log: &mut logs,
                    anon,
                },
            ),
            None => l7.finish(r, &mut logs),
        }?;
        Some(ConnRecord { app, ..r.clone() })
    }

    /// An interim record with its application-layer fields so far (None when there are
    /// none to add): what the metrics should see of it.
    pub fn interim_with_l7(&self, r: &ConnRecord) -> Option<ConnRecord> {
        let app = self.l7.as_ref()?.so_far(r)?;
        Some(ConnRecord { app, ..r.clone() })
    }

    /// An interim record (with its L7 fields already in): written, not binned (its
    /// connection counts in the bins once, at its final record).
    pub fn on_interim_filled(&mut self, r: &ConnRecord) {
        self.advance(r.ts_last_ns);
        self.write_record(r, true);
    }

    /// A finished connection (with its L7 fields already in): written and binned.
    pub fn on_connection_filled(&mut self, r: &ConnRecord) {
        self.advance(r.ts_last_ns);
        self.write_record(r, false);
        self.bins.bins.on_connection(r);
    }
}

impl Observer for Monitor {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.advance(e.ts_ns);
        if e.outcome == tcpsight_core::Outcome::Established
            && let Some(o) = &self.owners
        {
            o.nudge();
        }
        if let Some(l7) = self.l7.as_mut() {
            l7.on_handshake(e);
        }
    }

    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.advance(e.ts_ns);
        self.bins.bins.on_exchange(e);
    }

    fn on_connection(&mut self, r: &ConnRecord) {
        let filled = self.record_with_l7(r);
        self.on_connection_filled(filled.as_ref().unwrap_or(r));
    }

    fn on_interim(&mut self, r: &ConnRecord) {
        let filled = self.interim_with_l7(r);
        self.on_interim_filled(filled.as_ref().unwrap_or(r));
    }

    fn on_tick(&mut self, ts_ns: u64) {
        self.advance(ts_ns);
        let rows = self.bins.close(ts_ns);
        self.write_bins(rows);
        if let Some(p) = &self.period
            && ts_ns >= p.start_ns + self.cfg.rotate_ns
        {
            self.close_period(ts_ns);
        }
    }

    fn on_payload(&mut self, p: &Payload) -> bool {
        if self.l7.is_none() {
            return false;
        }
        self.advance(p.ts_ns);
        if self.period.is_none() {
            let t = self.clock_ns;
            self.open_period(t - t % self.cfg.rotate_ns);
        }
        let Some(l7) = self.l7.as_mut() else {
            return false;
        };
        let mut logs = PeriodLogs {
            period: self.period.as_mut(),
        };
        match self.anon.as_mut() {
            Some(anon) => l7.on_payload(
                p,
                &mut Anonymized {
                    log: &mut logs,
                    anon,
                },
            ),
            None => l7.on_payload(p, &mut logs),
        }
    }

    fn on_datagram(&mut self, d: &Datagram) {
        if let Some(l7) = self.l7.as_mut() {
            l7.on_datagram(d);
        }
    }
}
