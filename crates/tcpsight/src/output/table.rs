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
    /// Connect time p95 (the middle Lat column)
    Lat,
    LatP50,
    LatP99,
    /// Established connections per second
    EstRate,
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

/// What one connection adds to its destination's row: the few figures of a
/// [`ConnRecord`] the table uses (`tcpsight top` keeps these for its sliding window).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ConnFacts {
    pub syn: bool,
    pub synack: bool,
    pub est: bool,
    pub rst: bool,
    pub fin_out: bool,
    pub fin_in: bool,
    /// Exchanges of an established or midstream connection (QoS); `None` otherwise, or
    /// while the connection is still open.
    pub exchanges: Option<u32>,
    pub connect_ns: Option<u64>,
    pub out_msgs: u32,
    pub in_msgs: u32,
    pub pkts: u64,
    pub retx: u32,
    pub gap: bool,
}

impl ConnFacts {
    pub fn of(r: &ConnRecord) -> ConnFacts {
        let syn = r.syn_count > 0;
        ConnFacts {
            syn,
            synack: syn && r.synack_count > 0,
            est: syn && r.outcome == Outcome::Established,
            rst: r.close == Close::Rst,
            fin_out: matches!(
                (r.closed_by, r.close_first),
                (Some(Side::Client), Some(Close::Fin))
            ),
            fin_in: matches!(
                (r.closed_by, r.close_first),
                (Some(Side::Server), Some(Close::Fin))
            ),
            exchanges: (r.outcome == Outcome::Established || r.outcome == Outcome::Midstream)
                .then_some(r.exchanges),
            connect_ns: r.connect_ns,
            out_msgs: r.c2s.messages,
            in_msgs: r.s2c.messages,
            pkts: r.c2s.pkts + r.s2c.pkts,
            retx: r.c2s.retx_pkts + r.s2c.retx_pkts,
            gap: r.c2s.gap_bytes + r.s2c.gap_bytes > 0,
        }
    }
}

/// One destination's accumulated figures.
#[derive(Default)]
pub struct HostStats {
    conns: u64,
    syn: u64,
    synack: u64,
    est: u64,
    rst: u64,
    fin_out: u64,
    fin_in: u64,
    exchanges: Counts,
    /// Connections that carried at least one exchange (for QoS's `*`).
    busy_conns: u64,
    connect_ns: Values,
    out_msgs: u64,
    in_msgs: u64,
    response_ns: Values,
    pkts: u64,
    retx: u64,
    gap_conns: u64,
}

impl HostStats {
    pub fn add_connection(&mut self, f: &ConnFacts) {
        self.conns += 1;
        self.syn += f.syn as u64;
        self.synack += f.synack as u64;
        self.est += f.est as u64;
        self.rst += f.rst as u64;
        self.fin_out += f.fin_out as u64;
        self.fin_in += f.fin_in as u64;
        if let Some(x) = f.exchanges {
            self.exchanges.add(x as u64);
            self.busy_conns += (x > 0) as u64;
        }
        if let Some(c) = f.connect_ns {
            self.connect_ns.add(c);
        }
        self.out_msgs += f.out_msgs as u64;
        self.in_msgs += f.in_msgs as u64;
        self.pkts += f.pkts;
        self.retx += f.retx as u64;
        self.gap_conns += f.gap as u64;
    }

    pub fn add_response(&mut self, response_ns: u64) {
        self.response_ns.add(response_ns);
    }

    /// The row's figures; `span_s` is the time the rates are over.
    pub fn row(&self, host: String, span_s: f64) -> Row {
        let span = if span_s > 0.0 { span_s } else { 1.0 };
        let h = self;
        Row {
            host,
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
            // trtop's `*`: one connection carried every exchange (others, refused or
            // idle, may exist), so the percentile says nothing about reuse.
            qos_all_in_one: h.busy_conns == 1 && h.exchanges.max() > Some(1),
            lat: [50.0, 95.0, 99.0].map(|p| h.connect_ns.percentile(p)),
            out: h.out_msgs,
            inb: h.in_msgs,
            rtt_p95: h.response_ns.percentile(95.0),
            retx_pct: pct(h.retx, h.pkts).unwrap_or(0.0),
            err: h.gap_conns,
        }
    }
}

/// One computed row.
#[derive(Clone, Debug)]
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
        self.host(k).add_response(e.response_ns);
    }

    pub fn on_connection(&mut self, r: &ConnRecord) {
        let k = self.key(r.server, r.server_port);
        self.host(k).add_connection(&ConnFacts::of(r));
    }

    /// Rows sorted by `sort` (descending, except by host), `span_s` the capture span.
    pub fn rows(&self, span_s: f64, sort: SortBy, reverse: bool) -> Vec<Row> {
        let mut rows: Vec<(HostKey, Row)> = self
            .hosts
            .iter()
            .map(|(k, h)| (*k, h.row(k.to_string(), span_s)))
            .collect();
        sort_rows(&mut rows, sort, reverse);
        rows.into_iter().map(|(_, r)| r).collect()
    }
}

/// The value a row is sorted by (descending), for every column but Host.
pub fn sort_value(r: &Row, sort: SortBy) -> f64 {
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
        SortBy::LatP50 => r.lat[0].map_or(-1.0, |v| v as f64),
        SortBy::LatP99 => r.lat[2].map_or(-1.0, |v| v as f64),
        SortBy::EstRate => r.est_rate,
        SortBy::Out => r.out as f64,
        SortBy::In => r.inb as f64,
        SortBy::Rtt => r.rtt_p95.map_or(-1.0, |v| v as f64),
        SortBy::Retx => r.retx_pct,
        SortBy::Err => r.err as f64,
    }
}

/// Sorts keyed rows by `sort`: descending, except by host (the key's order); ties by key.
pub fn sort_rows<K: Ord>(rows: &mut [(K, Row)], sort: SortBy, reverse: bool) {
    rows.sort_by(|(ka, a), (kb, b)| {
        let ord = if sort == SortBy::Host {
            ka.cmp(kb)
        } else {
            sort_value(b, sort)
                .total_cmp(&sort_value(a, sort))
                .then_with(|| ka.cmp(kb))
        };
        if reverse { ord.reverse() } else { ord }
    });
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}"))
}

fn opt_dur(v: Option<u64>) -> String {
    v.map_or("-".into(), human_duration)
}

/// The table's column titles, in order.
pub const HEADER: [&str; 18] = [
    "Host", "Syn", "Syn/s", "SynAck%", "Est%", "Rst%", "Fin_O%", "Fin_I%", "Est/s", "QoS",
    "Lat p50", "p95", "p99", "Out", "In", "Rtt p95", "Retx%", "Err",
];

/// The column each [`HEADER`] entry sorts by.
pub const COLUMN_SORT: [SortBy; 18] = [
    SortBy::Host,
    SortBy::Syn,
    SortBy::Syn,
    SortBy::Synack,
    SortBy::Est,
    SortBy::Rst,
    SortBy::FinO,
    SortBy::FinI,
    SortBy::EstRate,
    SortBy::Qos,
    SortBy::LatP50,
    SortBy::Lat,
    SortBy::LatP99,
    SortBy::Out,
    SortBy::In,
    SortBy::Rtt,
    SortBy::Retx,
    SortBy::Err,
];

/// One row's cells as text, in [`HEADER`] order.
pub fn cells(r: &Row) -> [String; 18] {
    let qos = match r.qos_p95 {
        Some(q) if r.qos_all_in_one => format!("{q}*"),
        Some(q) => q.to_string(),
        None => "-".into(),
    };
    [
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
    ]
}

/// Renders rows as an aligned text table.
pub fn render(rows: &[Row], limit: usize) -> String {
    let shown = if limit == 0 {
        rows.len()
    } else {
        rows.len().min(limit)
    };
    let mut cells_: Vec<Vec<String>> = vec![HEADER.iter().map(|s| s.to_string()).collect()];
    for r in &rows[..shown] {
        cells_.push(cells(r).into());
    }
    let cells = cells_;
    let ncol = HEADER.len();
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
                    "qos_all_in_one": r.qos_all_in_one,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(exchanges: Option<u32>) -> ConnFacts {
        ConnFacts {
            syn: true,
            synack: exchanges.is_some(),
            est: exchanges.is_some(),
            exchanges,
            ..ConnFacts::default()
        }
    }

    /// Every column sorts by its own values (top's `<` `>` keys walk them); only Syn/s
    /// shares Syn's key, as a rate over the same span orders rows the same way.
    #[test]
    fn every_column_has_its_own_sort() {
        for (i, s) in COLUMN_SORT.iter().enumerate() {
            let first = COLUMN_SORT.iter().position(|c| c == s).unwrap();
            let want = if HEADER[i] == "Syn/s" { i - 1 } else { i };
            assert_eq!(
                first, want,
                "column {} sorts as column {}",
                HEADER[i], HEADER[first]
            );
        }
    }

    /// trtop's `*`: one connection carried every exchange, whatever other (refused,
    /// idle) connections the endpoint had; two busy connections, or one carrying a
    /// single exchange, get no star.
    #[test]
    fn qos_star_when_one_connection_carried_all() {
        let mut h = HostStats::default();
        for f in [conn(Some(40)), conn(None), conn(None), conn(Some(0))] {
            h.add_connection(&f);
        }
        let r = h.row("10.0.0.1".into(), 1.0);
        assert!(r.qos_all_in_one);
        assert_eq!(r.qos_p95, Some(40));
        h.add_connection(&conn(Some(3)));
        assert!(!h.row("10.0.0.1".into(), 1.0).qos_all_in_one);
        let mut one = HostStats::default();
        one.add_connection(&conn(Some(1)));
        assert!(!one.row("h".into(), 1.0).qos_all_in_one);
    }
}
