//! The per-destination table (trtop's columns, computed from finished connections).

use std::collections::HashMap;

use serde_json::{Value as Json, json};
use tcpsight_core::stats::Quantiles;
use tcpsight_core::{Addr, Close, ConnRecord, ExchangeEvent, Outcome, Side};

use crate::format::{human_duration, thousands};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// Server address
    Host,
    /// Server address and port
    #[value(name = "host:port")]
    HostPort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    Host,
    Syn,
    Synack,
    Est,
    Rst,
    FinO,
    FinI,
    Qos,
    Lat,
    Out,
    In,
    Rtt,
    Retx,
    Err,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct HostKey {
    addr: Addr,
    port: Option<u16>,
}

impl std::fmt::Display for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.port, self.addr.is_v4()) {
            (None, _) => write!(f, "{}", self.addr),
            (Some(p), true) => write!(f, "{}:{p}", self.addr),
            (Some(p), false) => write!(f, "[{}]:{p}", self.addr),
        }
    }
}

/// Per-destination values: exact percentiles for up to 4,096 values, then a log-linear
/// histogram (within 6.25 %), so memory stays flat however long the capture.
type Values = Quantiles<4096, 1000>;
type Counts = Quantiles<4096, 1>;

#[derive(Default)]
struct HostStats {
    conns: u64,
    syn: u64,
    synack: u64,
    est: u64,
    rst: u64,
    fin_out: u64,
    fin_in: u64,
    exchanges: Counts,
    connect_ns: Values,
    out_msgs: u64,
    in_msgs: u64,
    response_ns: Values,
    pkts: u64,
    retx: u64,
    gap_conns: u64,
}

/// One computed row.
pub struct Row {
    pub host: String,
    pub conns: u64,
    pub syn: u64,
    pub syn_rate: f64,
    pub synack_pct: Option<f64>,
    pub est_pct: Option<f64>,
    pub rst_pct: f64,
    pub fin_out_pct: f64,
    pub fin_in_pct: f64,
    pub est_rate: f64,
    pub qos_p95: Option<u64>,
    pub qos_all_in_one: bool,
    pub lat: [Option<u64>; 3],
    pub out: u64,
    pub inb: u64,
    pub rtt_p95: Option<u64>,
    pub retx_pct: f64,
    pub err: u64,
}

pub struct DestinationTable {
    group: GroupBy,
    hosts: Vec<(HostKey, HostStats)>,
    index: HashMap<HostKey, usize, foldhash::fast::RandomState>,
    /// The last destination looked up: consecutive events mostly share it.
    last: Option<(HostKey, usize)>,
}

fn pct(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| 100.0 * n as f64 / d as f64)
}

impl DestinationTable {
    pub fn new(group: GroupBy) -> Self {
        DestinationTable {
            group,
            hosts: Vec::new(),
            index: HashMap::default(),
            last: None,
        }
    }

    fn host(&mut self, k: HostKey) -> &mut HostStats {
        let i = match self.last {
            Some((lk, i)) if lk == k => i,
            _ => {
                let n = self.hosts.len();
                let i = *self.index.entry(k).or_insert(n);
                if i == n {
                    self.hosts.push((k, HostStats::default()));
                }
                self.last = Some((k, i));
                i
            }
        };
        &mut self.hosts[i].1
    }

    fn key(&self, addr: Addr, port: u16) -> HostKey {
        HostKey {
            addr,
            port: (self.group == GroupBy::HostPort).then_some(port),
        }
    }

    pub fn on_exchange(&mut self, e: &ExchangeEvent) {
        let k = self.key(e.server.addr, e.server.port);
        self.host(k).response_ns.add(e.response_ns);
    }

    pub fn on_connection(&mut self, r: &ConnRecord) {
        let k = self.key(r.server, r.server_port);
        let h = self.host(k);
        h.conns += 1;
        if r.syn_count > 0 {
            h.syn += 1;
            if r.synack_count > 0 {
                h.synack += 1;
            }
            if r.outcome == Outcome::Established {
                h.est += 1;
            }
        }
        if r.close == Close::Rst {
            h.rst += 1;
        }
        match (r.closed_by, r.close_first) {
            (Some(Side::Client), Some(Close::Fin)) => h.fin_out += 1,
            (Some(Side::Server), Some(Close::Fin)) => h.fin_in += 1,
            _ => {}
        }
        if r.outcome == Outcome::Established || r.outcome == Outcome::Midstream {
            h.exchanges.add(r.exchanges as u64);
        }
        if let Some(c) = r.connect_ns {
            h.connect_ns.add(c);
        }
        h.out_msgs += r.c2s.messages as u64;
        h.in_msgs += r.s2c.messages as u64;
        h.pkts += r.c2s.pkts + r.s2c.pkts;
        h.retx += (r.c2s.retx_pkts + r.s2c.retx_pkts) as u64;
        if r.c2s.gap_bytes + r.s2c.gap_bytes > 0 {
            h.gap_conns += 1;
        }
    }

    /// Rows sorted by `sort` (descending, except by host), `span_s` the capture span.
    pub fn rows(&self, span_s: f64, sort: SortBy, reverse: bool) -> Vec<Row> {
        let span = if span_s > 0.0 { span_s } else { 1.0 };
        let mut rows: Vec<(HostKey, Row)> = self
            .hosts
            .iter()
            .map(|(k, h)| {
                let qos_all_in_one =
                    h.exchanges.count() == 1 && h.conns == 1 && h.exchanges.max() > Some(1);
                let row = Row {
                    host: k.to_string(),
                    conns: h.conns,
                    syn: h.syn,
                    syn_rate: h.syn as f64 / span,
                    synack_pct: pct(h.synack, h.syn),
                    est_pct: pct(h.est, h.syn),
                    rst_pct: pct(h.rst, h.conns).unwrap_or(0.0),
                    fin_out_pct: pct(h.fin_out, h.conns).unwrap_or(0.0),
                    fin_in_pct: pct(h.fin_in, h.conns).unwrap_or(0.0),
                    est_rate: h.est as f64 / span,
                    qos_p95: h.exchanges.percentile(95.0),
                    qos_all_in_one,
                    lat: [50.0, 95.0, 99.0].map(|p| h.connect_ns.percentile(p)),
                    out: h.out_msgs,
                    inb: h.in_msgs,
                    rtt_p95: h.response_ns.percentile(95.0),
                    retx_pct: pct(h.retx, h.pkts).unwrap_or(0.0),
                    err: h.gap_conns,
                };
                (*k, row)
            })
            .collect();
        let num = |r: &Row| -> f64 {
            match sort {
                SortBy::Host => 0.0,
                SortBy::Syn => r.syn as f64 + r.conns as f64 * 1e-9,
                SortBy::Synack => r.synack_pct.unwrap_or(-1.0),
                SortBy::Est => r.est_pct.unwrap_or(-1.0),
                SortBy::Rst => r.rst_pct,
                SortBy::FinO => r.fin_out_pct,
                SortBy::FinI => r.fin_in_pct,
                SortBy::Qos => r.qos_p95.map_or(-1.0, |v| v as f64),
                SortBy::Lat => r.lat[1].map_or(-1.0, |v| v as f64),
                SortBy::Out => r.out as f64,
                SortBy::In => r.inb as f64,
                SortBy::Rtt => r.rtt_p95.map_or(-1.0, |v| v as f64),
                SortBy::Retx => r.retx_pct,
                SortBy::Err => r.err as f64,
            }
        };
        rows.sort_by(|(ka, a), (kb, b)| {
            let ord = if sort == SortBy::Host {
                ka.cmp(kb)
            } else {
                num(b).total_cmp(&num(a)).then_with(|| ka.cmp(kb))
            };
            if reverse { ord.reverse() } else { ord }
        });
        rows.into_iter().map(|(_, r)| r).collect()
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}"))
}

fn opt_dur(v: Option<u64>) -> String {
    v.map_or("-".into(), human_duration)
}

/// Renders rows as an aligned text table.
pub fn render(rows: &[Row], limit: usize) -> String {
    let header = [
        "Host", "Syn", "Syn/s", "SynAck%", "Est%", "Rst%", "Fin_O%", "Fin_I%", "Est/s", "QoS",
        "Lat p50", "p95", "p99", "Out", "In", "Rtt p95", "Retx%", "Err",
    ];
    let shown = if limit == 0 {
        rows.len()
    } else {
        rows.len().min(limit)
    };
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in &rows[..shown] {
        let qos = match r.qos_p95 {
            Some(q) if r.qos_all_in_one => format!("{q}*"),
            Some(q) => q.to_string(),
            None => "-".into(),
        };
        cells.push(vec![
            r.host.clone(),
            thousands(r.syn),
            format!("{:.2}", r.syn_rate),
            opt_pct(r.synack_pct),
            opt_pct(r.est_pct),
            format!("{:.1}", r.rst_pct),
            format!("{:.1}", r.fin_out_pct),
            format!("{:.1}", r.fin_in_pct),
            format!("{:.2}", r.est_rate),
            qos,
            opt_dur(r.lat[0]),
            opt_dur(r.lat[1]),
            opt_dur(r.lat[2]),
            thousands(r.out),
            thousands(r.inb),
            opt_dur(r.rtt_p95),
            format!("{:.2}", r.retx_pct),
            thousands(r.err),
        ]);
    }
    let ncol = header.len();
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                line.push_str(&format!("  {cell:>w$}", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if shown < rows.len() {
        out.push_str(&format!(
            "({} more destinations; --limit 0 shows all)\n",
            thousands((rows.len() - shown) as u64)
        ));
    }
    out
}

/// Rows as JSON (durations in microseconds).
pub fn to_json(rows: &[Row], limit: usize) -> Json {
    let shown = if limit == 0 {
        rows.len()
    } else {
        rows.len().min(limit)
    };
    let us = |v: Option<u64>| v.map(|ns| ns as f64 / 1000.0);
    Json::Array(
        rows[..shown]
            .iter()
            .map(|r| {
                json!({
                    "host": r.host,
                    "connections": r.conns,
                    "syn": r.syn,
                    "syn_per_s": r.syn_rate,
                    "synack_pct": r.synack_pct,
                    "est_pct": r.est_pct,
                    "rst_pct": r.rst_pct,
                    "fin_out_pct": r.fin_out_pct,
                    "fin_in_pct": r.fin_in_pct,
                    "est_per_s": r.est_rate,
                    "qos_p95": r.qos_p95,
                    "lat_us_p50": us(r.lat[0]),
                    "lat_us_p95": us(r.lat[1]),
                    "lat_us_p99": us(r.lat[2]),
                    "out": r.out,
                    "in": r.inb,
                    "rtt_us_p95": us(r.rtt_p95),
                    "retx_pct": r.retx_pct,
                    "err": r.err,
                })
            })
            .collect(),
    )
}
