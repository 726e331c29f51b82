//! Records inserted into ClickHouse over its HTTP interface, in batches.
//!
//! `http://host:8123/?table=tcpsight.connections` (other parameters of the URL are
//! passed on, e.g. `database=`); user and password from TCPSIGHT_CLICKHOUSE_USER and
//! TCPSIGHT_CLICKHOUSE_PASSWORD (HTTP basic authentication). Rows are TabSeparated,
//! columns named, from the record's schema ([`crate::columns`]); [`ddl`] gives the
//! matching table (types every ClickHouse since 18.x has: instants as DateTime('UTC')
//! seconds beside the exact `ts_*_ns`, booleans as UInt8).
//!
//! The caller's thread only encodes a row and queues it ([`crate::worker`]): a full
//! queue drops the record and counts it. The sender thread inserts a batch when it has
//! [`BATCH_ROWS`] rows or its first row is [`BATCH_AGE`] old; a failed insert (server
//! down, slow, an error or garbage in answer) is retried with a doubling backoff up to
//! [`MAX_BACKOFF`], the batch kept, new rows waiting in the queue meanwhile. Memory is
//! bounded by the queue and one batch.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tcpsight_core::{ConnRecord, Schema, Value};

use crate::RecordSink;
use crate::columns::{self, Column, Kind};
use crate::worker::{Stats, Warn, Worker, sleep_unless_deadline, stderr_warn};

pub const BATCH_ROWS: usize = 10_000;
pub const BATCH_AGE: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Rows waiting for the sender thread before new ones are dropped (about 600 bytes
/// each: 30 MB).
pub const DEFAULT_QUEUE: usize = 50_000;
/// Connect, write and read limits of one request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// host:port
    pub host: String,
    /// The path and the URL's other parameters, for the request line.
    pub path_query: String,
    pub table: String,
    pub auth: Option<String>,
}

/// Parses `http://host[:port]/[path]?table=db.name[&more]`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs (ClickHouse's HTTP interface)"))?;
    let (hostport, pq) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let host = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_string()
    } else {
        format!("{hostport}:8123")
    };
    let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
    let mut table = None;
    let mut kept = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("table", t)) => table = Some(t.to_string()),
            _ => kept.push(p),
        }
    }
    let table = table.unwrap_or_else(|| "tcpsight.connections".to_string());
    if !table
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return Err(format!(
            "{url}: table name {table:?}: letters, digits, _ and ."
        ));
    }
    let path = if path.is_empty() { "/" } else { path };
    let path_query = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let auth = std::env::var("TCPSIGHT_CLICKHOUSE_USER").ok().map(|u| {
        let p = std::env::var("TCPSIGHT_CLICKHOUSE_PASSWORD").unwrap_or_default();
        base64(format!("{u}:{p}").as_bytes())
    });
    Ok(Target {
        host,
        path_query,
        table,
        auth,
    })
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The ClickHouse type of a column.
pub fn column_type(c: &Column) -> String {
    let t = match c.kind {
        Kind::Int => "Int64",
        Kind::Timestamp => "DateTime('UTC')",
        Kind::Bool => "UInt8",
        Kind::Str => "String",
    };
    if c.nullable {
        format!("Nullable({t})")
    } else {
        t.to_string()
    }
}

/// The table for connection records: MergeTree, a partition per day, ordered for
/// per-destination queries (docs/export.md has it with a Distributed table).
pub fn ddl(table: &str) -> String {
    let cols = columns::conn_records();
    let body: Vec<String> = cols
        .iter()
        .map(|c| format!("    {} {}", c.name, column_type(c)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table}\n(\n{}\n)\nENGINE = MergeTree\nPARTITION BY toYYYYMMDD(ts_first)\nORDER BY (server_ip, server_port, ts_first)",
        body.join(",\n")
    )
}

/// Appends one record as a TabSeparated row (no line end).
pub fn tsv_row<R: Schema>(r: &R, out: &mut String) {
    let mut first = true;
    r.for_each_field(|_, v| {
        if !first {
            out.push('\t');
        }
        first = false;
        match v {
            Value::Null => out.push_str("\\N"),
            Value::Bool(b) => out.push(if b { '1' } else { '0' }),
            Value::U64(n) => crate::text::int(n.min(i64::MAX as u64), out),
            Value::Micros(ns) => crate::text::int(ns.saturating_add(500) / 1000, out),
            Value::MicrosF(ns) => crate::text::int((ns.max(0.0) / 1000.0).round() as u64, out),
            Value::Epoch(ns) => crate::text::int(ns / 1_000_000_000, out),
            Value::Addr(a) => crate::text::addr(a, out),
            Value::Str(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\0' => out.push_str("\\0"),
                        c => out.push(c),
                    }
                }
            }
        }
    });
}

/// One POST; Ok when ClickHouse answered 200.
fn post(t: &Target, body: &[u8], timeout: Duration) -> Result<(), String> {
    let addr = t
        .host
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", t.host))?
        .next()
        .ok_or_else(|| format!("{}: no address", t.host))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n",
        t.path_query,
        t.host,
        body.len()
    );
    if let Some(a) = &t.auth {
        head.push_str(&format!("Authorization: Basic {a}\r\n"));
    }
    head.push_str("\r\n");
    // A server that refuses the insert (no such table) answers and closes before the
    // body is all sent: its answer is still read, and says why.
    let sent = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut resp = Vec::new();
    // The answer is short (empty on success, an exception's text otherwise).
    let read = (&mut s).take(64 * 1024).read_to_end(&mut resp);
    if resp.is_empty() {
        if let Err(e) = sent {
            return Err(e.to_string());
        }
        read.map_err(|e| format!("reading the answer: {e}"))?;
    }
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(200) => Ok(()),
        Some(code) => {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            let first = body.lines().next().unwrap_or("");
            Err(format!(
                "HTTP {code}: {}",
                first.chars().take(300).collect::<String>()
            ))
        }
        None => Err(format!(
            "not an HTTP answer: {:?}",
            text.chars().take(60).collect::<String>()
        )),
    }
}

#[derive(Clone)]
pub struct ClickHouseOptions {
    pub queue: usize,
    pub batch_rows: usize,
    /// CREATE DATABASE / TABLE IF NOT EXISTS before the first insert.
    pub create: bool,
    /// A full queue waits while inserts succeed (a face reading files); live faces
    /// leave it off, so the packet path never waits.
    pub wait_when_full: bool,
    pub warn: Warn,
}

impl Default for ClickHouseOptions {
    fn default() -> Self {
        ClickHouseOptions {
            queue: DEFAULT_QUEUE,
            batch_rows: BATCH_ROWS,
            create: false,
            wait_when_full: false,
            warn: stderr_warn(),
        }
    }
}

/// The ClickHouse sink.
pub struct ClickHouseSink {
    worker: Worker<String>,
    url: String,
    row: String,
    wait: Duration,
}

impl ClickHouseSink {
    pub fn new(url: &str, opts: ClickHouseOptions) -> Result<ClickHouseSink, String> {
        let target = parse_url(url)?;
        let name = format!("ClickHouse {url}");
        // `queue` bounds every record held: the queue and the batch being inserted.
        let mut opts = opts;
        opts.batch_rows = opts.batch_rows.min(opts.queue / 2).max(1);
        let capacity = opts.queue.saturating_sub(opts.batch_rows).max(1);
        let wait_when_full = opts.wait_when_full;
        let worker = Worker::start("tcpsight-clickhouse", capacity, move |rx, stats| {
            insert_loop(rx, stats, target, opts, name)
        })
        .map_err(|e| e.to_string())?
        .wait_when_full(wait_when_full);
        Ok(ClickHouseSink {
            worker,
            url: url.to_string(),
            row: String::with_capacity(1024),
            wait: Duration::from_secs(10),
        })
    }

    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    pub fn stats(&self) -> &Stats {
        &self.worker.stats
    }
}

fn insert_loop(
    rx: Receiver<String>,
    stats: Arc<Stats>,
    target: Target,
    opts: ClickHouseOptions,
    name: String,
) {
    let names: Vec<&str> = columns::conn_records().iter().map(|c| c.name).collect();
    let head = format!(
        "INSERT INTO {} ({}) FORMAT TabSeparated\n",
        target.table,
        names.join(", ")
    );
    let mut batch = head.clone().into_bytes();
    let mut rows = 0usize;
    let mut first_at: Option<Instant> = None;
    let mut created = !opts.create;
    let mut failing = false;
    let mut closed = false;
    loop {
        if !closed && rows < opts.batch_rows {
            let got = match first_at {
                Some(t) => rx.recv_timeout(BATCH_AGE.saturating_sub(t.elapsed())),
                None => rx.recv_timeout(Duration::from_secs(3600)),
            };
            match got {
                Ok(row) => {
                    batch.extend_from_slice(row.as_bytes());
                    batch.push(b'\n');
                    rows += 1;
                    first_at.get_or_insert_with(Instant::now);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed = true,
            }
        }
        if rows == 0 {
            if closed {
                return;
            }
            continue;
        }
        // Insert the batch, retrying until it goes in or the deadline passes.
        let mut backoff = Duration::from_millis(250);
        loop {
            let timeout = remaining(&stats).map_or(IO_TIMEOUT, |r| r.min(IO_TIMEOUT));
            if timeout.is_zero() {
                return;
            }
            stats.start_request();
            let r = if created {
                post(&target, &batch, timeout)
            } else {
                create(&target, timeout)
                    .map(|_| created = true)
                    .and_then(|_| post(&target, &batch, timeout))
            };
            match r {
                Ok(()) => {
                    stats.end_request(true);
                    stats.sent.fetch_add(rows as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    if failing {
                        (opts.warn)(&format!("{name}: inserting again"));
                        failing = false;
                    }
                    break;
                }
                Err(e) => {
                    if !failing {
                        (opts.warn)(&format!(
                            "{name}: {e}; retrying, up to {} records wait (beyond that they are dropped and counted)",
                            opts.queue
                        ));
                        failing = true;
                    }
                    stats.end_request(false);
                    stats.error(e);
                    if !sleep_unless_deadline(&stats, backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        batch.truncate(head.len());
        rows = 0;
        first_at = None;
    }
}

fn remaining(stats: &Stats) -> Option<Duration> {
    let d = (*stats.deadline.lock().ok()?)?;
    Some(d.saturating_duration_since(Instant::now()))
}

fn create(t: &Target, timeout: Duration) -> Result<(), String> {
    if let Some((db, _)) = t.table.split_once('.') {
        post(
            t,
            format!("CREATE DATABASE IF NOT EXISTS {db}").as_bytes(),
            timeout,
        )?;
    }
    post(t, ddl(&t.table).as_bytes(), timeout)
}

impl RecordSink for ClickHouseSink {
    fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        self.row.clear();
        tsv_row(r, &mut self.row);
        let row = std::mem::replace(&mut self.row, String::with_capacity(1024));
        self.worker.push(row);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let peer = format!("ClickHouse {}", self.url);
        self.worker.finish_sink(self.wait, &peer, "batches")
    }

    fn report(&self) -> Option<String> {
        Some(
            self.worker
                .report(&format!("ClickHouse {}", self.url), "batches"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:9/?table=db.t&database=x").unwrap();
        assert_eq!(t.host, "127.0.0.1:9");
        assert_eq!(t.table, "db.t");
        assert_eq!(t.path_query, "/?database=x");
        let t = parse_url("http://ch").unwrap();
        assert_eq!(
            (t.host.as_str(), t.table.as_str()),
            ("ch:8123", "tcpsight.connections")
        );
        assert!(parse_url("https://x").is_err());
        assert!(parse_url("http://x/?table=a;drop").is_err());
        assert_eq!(base64(b"default:"), "ZGVmYXVsdDo=");
    }

    #[test]
    fn rows_escape_and_null() {
        let mut r = columns::empty_record();
        r.history = "a\tb\\".into();
        let mut s = String::new();
        tsv_row(&r, &mut s);
        assert!(s.contains("a\\tb\\\\"));
        assert!(s.contains("\\N"));
        assert_eq!(s.split('\t').count(), columns::conn_records().len());
        assert!(ddl("t").contains("connect_us Nullable(Int64)"));
    }
}

#[cfg(test)]
mod docs {
    /// docs/export.md shows the DDL this sink creates, exactly.
    #[test]
    fn the_documented_table_is_the_one_created() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/export.md"))
                .unwrap_or_default();
        let ddl = super::ddl("tcpsight.connections");
        if std::env::var_os("TCPSIGHT_PRINT_DDL").is_some() {
            println!("{ddl}");
        }
        assert!(doc.contains(&ddl), "docs/export.md lacks the table:\n{ddl}");
    }
}
