//! Connection distributions and drill-down (yconalyzer's reports, exact): duration,
//! bytes and throughput buckets, SYN attempts, and per-bucket connection listings with a
//! ready-to-paste tcpdump filter.

use serde_json::{Value as Json, json};
use tcpsight_core::{Addr, ConnRecord};

use crate::format::{human_duration, thousands, utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BucketBy {
    /// First SYN to the last FIN or RST (to the last packet when neither), in ms
    Duration,
    /// Bytes the client sent (unique, exact), in bytes
    ClientBytes,
    /// Bytes the server sent (unique, exact), in bytes
    ServerBytes,
    /// Client and server bytes over the duration, in KB/s
    Throughput,
}

impl BucketBy {
    fn default_size(self) -> f64 {
        match self {
            BucketBy::Duration => 100.0,
            BucketBy::ClientBytes | BucketBy::ServerBytes => 1024.0,
            BucketBy::Throughput => 100.0,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            BucketBy::Duration => "ms",
            BucketBy::ClientBytes | BucketBy::ServerBytes => "B",
            BucketBy::Throughput => "KB/s",
        }
    }

    fn title(self) -> &'static str {
        match self {
            BucketBy::Duration => "Duration (first SYN to last FIN/RST)",
            BucketBy::ClientBytes => "Client bytes",
            BucketBy::ServerBytes => "Server bytes",
            BucketBy::Throughput => "Throughput",
        }
    }
}

/// What the distributions need of one connection.
#[derive(Clone, Debug)]
pub struct ConnSummary {
    pub start_ns: u64,
    pub client: Addr,
    pub client_port: u16,
    pub server: Addr,
    pub server_port: u16,
    pub duration_ns: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub syn_count: u32,
    pub syn_retry_ns: Option<u64>,
    pub outcome: &'static str,
}

impl ConnSummary {
    pub fn of(r: &ConnRecord) -> ConnSummary {
        ConnSummary {
            start_ns: r.ts_first_ns,
            client: r.client,
            client_port: r.client_port,
            server: r.server,
            server_port: r.server_port,
            duration_ns: r.closed_after_ns.unwrap_or_else(|| r.duration_ns()),
            client_bytes: r.c2s.unique_bytes,
            server_bytes: r.s2c.unique_bytes,
            syn_count: r.syn_count,
            syn_retry_ns: r.syn_retry_ns,
            outcome: r.outcome.name(),
        }
    }

    /// Client and server bytes per second over the duration (0 for an instant).
    fn throughput_bps(&self) -> f64 {
        if self.duration_ns == 0 {
            0.0
        } else {
            (self.client_bytes + self.server_bytes) as f64 / (self.duration_ns as f64 / 1e9)
        }
    }

    fn metric(&self, by: BucketBy) -> f64 {
        match by {
            BucketBy::Duration => self.duration_ns as f64 / 1e6,
            BucketBy::ClientBytes => self.client_bytes as f64,
            BucketBy::ServerBytes => self.server_bytes as f64,
            BucketBy::Throughput => self.throughput_bps() / 1000.0,
        }
    }

    /// `host A and host B and port P`: this connection in tcpdump syntax (the client
    /// port tells it from the others between the same hosts).
    pub fn tcpdump_filter(&self) -> String {
        format!(
            "host {} and host {} and port {}",
            self.client, self.server, self.client_port
        )
    }
}

/// Bucketing parameters.
#[derive(Clone, Copy, Debug)]
pub struct Buckets {
    pub by: BucketBy,
    pub size: f64,
    pub count: usize,
}

impl Buckets {
    pub fn new(by: BucketBy, size: Option<f64>, count: usize) -> Buckets {
        Buckets {
            by,
            size: size.filter(|s| *s > 0.0).unwrap_or(by.default_size()),
            count: count.max(1),
        }
    }

    /// Bucket index (0-based); `count` is the overflow bucket.
    fn index(&self, c: &ConnSummary) -> usize {
        ((c.metric(self.by) / self.size).floor() as usize).min(self.count)
    }
}

struct Row {
    from: f64,
    to: Option<f64>,
    count: u64,
    client_bytes: u64,
    server_bytes: u64,
    throughput_sum: f64,
}

fn rows(b: &Buckets, conns: &[ConnSummary]) -> Vec<Row> {
    let mut rows: Vec<Row> = (0..=b.count)
        .map(|i| Row {
            from: i as f64 * b.size,
            to: (i < b.count).then(|| (i + 1) as f64 * b.size),
            count: 0,
            client_bytes: 0,
            server_bytes: 0,
            throughput_sum: 0.0,
        })
        .collect();
    for c in conns {
        let r = &mut rows[b.index(c)];
        r.count += 1;
        r.client_bytes += c.client_bytes;
        r.server_bytes += c.server_bytes;
        r.throughput_sum += c.throughput_bps();
    }
    rows
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        thousands(v as u64)
    } else {
        format!("{v:.1}")
    }
}

fn avg(sum: u64, n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        thousands((sum as f64 / n as f64).round() as u64)
    }
}

pub fn render(b: &Buckets, conns: &[ConnSummary]) -> String {
    let total = conns.len() as u64;
    let mut s = format!(
        "{}, buckets of {} {}: {} connections\n",
        b.by.title(),
        num(b.size),
        b.by.unit(),
        thousands(total)
    );
    s.push_str(&format!(
        "  {:>3}  {:>22}  {:>9}  {:>6}  {:>6}  {:>12}  {:>12}  {:>10}\n",
        "#", "range", "count", "%", "cum %", "avg client B", "avg server B", "avg KB/s"
    ));
    let mut cum = 0u64;
    for (i, r) in rows(b, conns).iter().enumerate() {
        cum += r.count;
        let range = match r.to {
            Some(to) => format!("{} - {} {}", num(r.from), num(to), b.by.unit()),
            None => format!(">= {} {}", num(r.from), b.by.unit()),
        };
        let pct = |n: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * n as f64 / total as f64
            }
        };
        let kbps = if r.count == 0 {
            "-".into()
        } else {
            format!("{:.1}", r.throughput_sum / r.count as f64 / 1000.0)
        };
        s.push_str(&format!(
            "  {:>3}  {:>22}  {:>9}  {:>6.1}  {:>6.1}  {:>12}  {:>12}  {:>10}\n",
            i + 1,
            range,
            thousands(r.count),
            pct(r.count),
            pct(cum),
            avg(r.client_bytes, r.count),
            avg(r.server_bytes, r.count),
            kbps
        ));
    }
    s
}

pub fn to_json(b: &Buckets, conns: &[ConnSummary]) -> Json {
    let total = conns.len() as f64;
    let mut cum = 0u64;
    let buckets: Vec<Json> = rows(b, conns)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            cum += r.count;
            json!({
                "bucket": i + 1,
                "from": r.from,
                "to": r.to,
                "count": r.count,
                "pct": if total > 0.0 { 100.0 * r.count as f64 / total } else { 0.0 },
                "cum_pct": if total > 0.0 { 100.0 * cum as f64 / total } else { 0.0 },
                "avg_client_bytes": (r.count > 0).then(|| r.client_bytes as f64 / r.count as f64),
                "avg_server_bytes": (r.count > 0).then(|| r.server_bytes as f64 / r.count as f64),
                "avg_throughput_bps": (r.count > 0).then(|| r.throughput_sum / r.count as f64),
            })
        })
        .collect();
    json!({ "by": format!("{:?}", b.by).to_lowercase(), "unit": b.by.unit(), "size": b.size, "connections": conns.len(), "buckets": buckets })
}

/// Connections that needed 1, 2, 3... SYNs (connections opened by a SYN).
pub fn syn_attempts(conns: &[ConnSummary]) -> Vec<(u32, u64)> {
    let mut m = std::collections::BTreeMap::new();
    for c in conns.iter().filter(|c| c.syn_count > 0) {
        *m.entry(c.syn_count).or_insert(0u64) += 1;
    }
    m.into_iter().collect()
}

pub fn render_syn_attempts(conns: &[ConnSummary]) -> String {
    let v = syn_attempts(conns);
    let total: u64 = v.iter().map(|x| x.1).sum();
    let mut s = format!(
        "SYN attempts: {} connections opened by a SYN\n",
        thousands(total)
    );
    for (n, c) in v {
        s.push_str(&format!(
            "  {:>3} SYN{}  {:>9}  {:>6.2} %\n",
            n,
            if n == 1 { " " } else { "s" },
            thousands(c),
            100.0 * c as f64 / total.max(1) as f64
        ));
    }
    s
}

/// Lines for a listing of connections (drill-down), each with its tcpdump filter.
pub fn render_list(title: &str, conns: &[&ConnSummary], digits: u8) -> String {
    let mut s = format!("{title}: {} connections\n", thousands(conns.len() as u64));
    for c in conns {
        let retry = c
            .syn_retry_ns
            .filter(|r| *r > 0)
            .map(|r| format!(", SYN retry {}", human_duration(r)))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {}  {} -> {}  {}  {}  client {} B, server {} B, {} SYN{}{}\n    {}\n",
            utc(c.start_ns, digits),
            endpoint(c.client, c.client_port),
            endpoint(c.server, c.server_port),
            c.outcome,
            human_duration(c.duration_ns),
            thousands(c.client_bytes),
            thousands(c.server_bytes),
            c.syn_count,
            if c.syn_count == 1 { "" } else { "s" },
            retry,
            c.tcpdump_filter()
        ));
    }
    s
}

/// `a.b.c.d:port` or `[v6]:port`.
fn endpoint(a: Addr, port: u16) -> String {
    if a.is_v4() {
        format!("{a}:{port}")
    } else {
        format!("[{a}]:{port}")
    }
}

pub fn list_json(conns: &[&ConnSummary]) -> Json {
    Json::Array(
        conns
            .iter()
            .map(|c| {
                json!({
                    "start_ns": c.start_ns,
                    "client_ip": c.client.to_string(),
                    "client_port": c.client_port,
                    "server_ip": c.server.to_string(),
                    "server_port": c.server_port,
                    "outcome": c.outcome,
                    "duration_us": c.duration_ns as f64 / 1000.0,
                    "client_bytes": c.client_bytes,
                    "server_bytes": c.server_bytes,
                    "syn_count": c.syn_count,
                    "syn_retry_us": c.syn_retry_ns.map(|r| r as f64 / 1000.0),
                    "tcpdump_filter": c.tcpdump_filter(),
                })
            })
            .collect(),
    )
}

/// The connections in bucket `n` (1-based, as printed).
pub fn in_bucket<'a>(b: &Buckets, conns: &'a [ConnSummary], n: usize) -> Vec<&'a ConnSummary> {
    conns.iter().filter(|c| b.index(c) + 1 == n).collect()
}
