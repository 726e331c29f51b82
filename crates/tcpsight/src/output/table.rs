//! The per-destination table (trtop's columns, computed from finished connections): its
//! columns, sort orders and rendering. The aggregation ([`DestinationTable`],
//! [`HostStats`], [`ConnFacts`], [`Row`]) is `tcpsight_agg::table`'s, re-exported here.

use serde_json::{Value as Json, json};
pub use tcpsight_agg::table::{
    ConnFacts, DestinationTable, Grouping, HostKey, HostStats, Row, RowOrder,
};

use crate::format::{human_bytes, human_duration, thousands};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// Server address
    Host,
    /// Server address and port
    #[value(name = "host:port")]
    HostPort,
    /// Client address
    Client,
    /// The server's name: TLS SNI, else HTTP Host, else the name the client resolved in
    /// DNS, else its address (no reverse lookup; implies --l7)
    Name,
    /// The application protocol (implies --l7)
    App,
}

impl GroupBy {
    /// Whether the rows are keyed by what the application layer showed.
    pub fn is_l7(self) -> bool {
        matches!(self, GroupBy::Name | GroupBy::App)
    }
}

/// The per-destination table keyed by a label the application layer gives (a server
/// name, an application protocol): the same figures as [`DestinationTable`], whose key
/// is an address. A connection's exchanges wait for its record, which carries the label.
pub struct LabelTable {
    group: GroupBy,
    hosts: std::collections::BTreeMap<String, HostStats>,
    pending: std::collections::HashMap<tcpsight_core::ConnId, Vec<(u64, u64)>>,
}

impl LabelTable {
    pub fn new(group: GroupBy) -> LabelTable {
        LabelTable {
            group,
            hosts: Default::default(),
            pending: Default::default(),
        }
    }

    pub fn on_exchange(&mut self, e: &tcpsight_core::ExchangeEvent) {
        self.pending
            .entry(e.id)
            .or_default()
            .push((e.response_ns, e.server_ns));
    }

    /// The record's exchanges, taken back whether or not the record is counted.
    pub fn take_exchanges(&mut self, r: &tcpsight_core::ConnRecord) -> Vec<(u64, u64)> {
        self.pending.remove(&r.id).unwrap_or_default()
    }

    pub fn on_connection(&mut self, r: &tcpsight_core::ConnRecord, exchanges: &[(u64, u64)]) {
        let label = match self.group {
            GroupBy::App => r.app.app_proto.unwrap_or("-").to_string(),
            _ => match &r.app.server_name {
                Some(n) => n.to_string(),
                None => r.server.to_string(),
            },
        };
        let h = self.hosts.entry(label).or_default();
        h.add_connection(&ConnFacts::of(r));
        for &(resp, server) in exchanges {
            h.add_response(resp);
            h.add_split(resp, server);
        }
    }

    pub fn rows(&self, span_s: f64, sort: SortBy, reverse: bool) -> Vec<Row> {
        let mut rows: Vec<(String, Row)> = self
            .hosts
            .iter()
            .map(|(k, h)| (k.clone(), h.row(k.clone(), span_s)))
            .collect();
        sort_rows(&mut rows, sort, reverse);
        rows.into_iter().map(|(_, r)| r).collect()
    }
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
    /// Client messages
    Out,
    /// Server messages
    In,
    /// Payload bytes client to server
    BytesOut,
    /// Payload bytes server to client
    BytesIn,
    /// Wire RTT p50 (data segment to its ACK)
    Rtt,
    /// Response time p95 (request to response)
    Resp,
    Retx,
    /// Failed handshakes (refused, unreachable, timed out)
    Fail,
    Err,
}

impl From<GroupBy> for Grouping {
    fn from(g: GroupBy) -> Grouping {
        match g {
            GroupBy::HostPort => Grouping::HostPort,
            GroupBy::Client => Grouping::Client,
            // Name and app rows come from a LabelTable; the address table is unused.
            GroupBy::Host | GroupBy::Name | GroupBy::App => Grouping::Host,
        }
    }
}

/// The table's rows ordered by a column: [`sort_rows`].
impl RowOrder for SortBy {
    fn sort(&self, rows: &mut [(HostKey, Row)], reverse: bool) {
        sort_rows(rows, *self, reverse)
    }
}

/// The value a row is sorted by (descending), for every column but Host; `None` for an
/// empty cell (`-`), which sorts last whichever the direction.
pub fn sort_value(r: &Row, sort: SortBy) -> Option<f64> {
    let d = |v: Option<u64>| v.map(|v| v as f64);
    match sort {
        SortBy::Host => Some(0.0),
        SortBy::Syn => Some(r.syn as f64 + r.conns as f64 * 1e-9),
        SortBy::Synack => r.synack_pct,
        SortBy::Est => r.est_pct,
        SortBy::Rst => Some(r.rst_pct),
        SortBy::FinO => Some(r.fin_out_pct),
        SortBy::FinI => Some(r.fin_in_pct),
        SortBy::Qos => d(r.qos_p95),
        SortBy::Lat => d(r.lat[1]),
        SortBy::LatP50 => d(r.lat[0]),
        SortBy::LatP99 => d(r.lat[2]),
        SortBy::EstRate => Some(r.est_rate),
        SortBy::Out => r.out.map(|v| v as f64),
        SortBy::In => r.inb.map(|v| v as f64),
        SortBy::BytesOut => Some(r.bytes_out as f64),
        SortBy::BytesIn => Some(r.bytes_in as f64),
        SortBy::Rtt => d(r.rtt[0]),
        SortBy::Resp => d(r.resp_p95),
        SortBy::Retx => r.retx_pct,
        SortBy::Fail => Some((r.refused + r.unreachable + r.timed_out) as f64),
        SortBy::Err => r.err.map(|v| v as f64),
    }
}

/// Sorts keyed rows by `sort`: descending, except by host (the key's order); ties by key.
/// `reverse` turns the order around, but rows with an empty cell stay last.
pub fn sort_rows<K: Ord>(rows: &mut [(K, Row)], sort: SortBy, reverse: bool) {
    rows.sort_by(|(ka, a), (kb, b)| {
        if sort == SortBy::Host {
            let ord = ka.cmp(kb);
            return if reverse { ord.reverse() } else { ord };
        }
        match (sort_value(a, sort), sort_value(b, sort)) {
            (Some(x), Some(y)) => {
                let ord = y.total_cmp(&x).then_with(|| ka.cmp(kb));
                if reverse { ord.reverse() } else { ord }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => ka.cmp(kb),
        }
    });
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}"))
}

fn opt_dur(v: Option<u64>) -> String {
    v.map_or("-".into(), human_duration)
}

/// The failed handshakes of a row by kind: `12r` refused (RST), `3u` unreachable (ICMP
/// error), `5t` timed out; `-` when none failed.
pub fn failures(r: &Row) -> String {
    let parts: Vec<String> = [(r.refused, 'r'), (r.unreachable, 'u'), (r.timed_out, 't')]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, k)| format!("{}{k}", thousands(*n)))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// The number of columns.
pub const COLUMNS: usize = 22;

/// The table's column titles, in order.
pub const HEADER: [&str; COLUMNS] = [
    "Host",
    "Syn",
    "Syn/s",
    "SynAck%",
    "Est%",
    "Rst%",
    "Fin_O%",
    "Fin_I%",
    "Est/s",
    "QoS",
    "Lat p50",
    "p95",
    "p99",
    "Out",
    "In",
    "Bytes out",
    "in",
    "RTT p50",
    "Resp p95",
    "Retx%",
    "Fail",
    "Err",
];

/// The column each [`HEADER`] entry sorts by.
pub const COLUMN_SORT: [SortBy; COLUMNS] = [
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
    SortBy::BytesOut,
    SortBy::BytesIn,
    SortBy::Rtt,
    SortBy::Resp,
    SortBy::Retx,
    SortBy::Fail,
    SortBy::Err,
];

/// One row's cells as text, in [`HEADER`] order.
pub fn cells(r: &Row) -> [String; COLUMNS] {
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
        opt_count(r.out),
        opt_count(r.inb),
        human_bytes(r.bytes_out),
        human_bytes(r.bytes_in),
        opt_dur(r.rtt[0]),
        opt_dur(r.resp_p95),
        r.retx_pct.map_or("-".into(), |p| format!("{p:.2}")),
        failures(r),
        opt_count(r.err),
    ]
}

/// A count, or "-" where the capture could not show it (control-only traces).
fn opt_count(v: Option<u64>) -> String {
    v.map_or("-".into(), thousands)
}

/// Highlight thresholds (trtop's highlighted entries). trtop highlighted Lat on the
/// *mean* while showing the 95th percentile; here every threshold applies to the value
/// shown.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// SynAck% below this.
    pub synack_pct: f64,
    /// Est% below this.
    pub est_pct: f64,
    /// Rst% above this.
    pub rst_pct: f64,
    /// QoS p95 below this (0: never).
    pub qos: u64,
    /// Lat p95 above this many ms.
    pub lat_ms: f64,
    /// Resp p95 above this many ms.
    pub rtt_ms: f64,
    /// Retx% above this.
    pub retx_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            synack_pct: 90.0,
            est_pct: 90.0,
            rst_pct: 10.0,
            qos: 0,
            lat_ms: 20.0,
            rtt_ms: 100.0,
            retx_pct: 2.0,
        }
    }
}

impl Thresholds {
    /// Whether cell `col` (in `table::HEADER` order) of `r` is over its threshold.
    pub fn hot(&self, col: usize, r: &Row) -> bool {
        let ms = |v: Option<u64>, lim: f64| v.is_some_and(|ns| ns as f64 / 1e6 > lim);
        match HEADER[col] {
            "SynAck%" => r.synack_pct.is_some_and(|p| p < self.synack_pct),
            "Est%" => r.est_pct.is_some_and(|p| p < self.est_pct),
            "Rst%" => r.rst_pct > self.rst_pct,
            "QoS" => self.qos > 0 && r.qos_p95.is_some_and(|q| q < self.qos),
            "p95" => ms(r.lat[1], self.lat_ms),
            "Resp p95" => ms(r.resp_p95, self.rtt_ms),
            "Retx%" => r.retx_pct.is_some_and(|p| p > self.retx_pct),
            "Fail" => r.refused + r.unreachable + r.timed_out > 0,
            "Err" => r.err.is_some_and(|e| e > 0),
            _ => false,
        }
    }
}

/// Renders rows as an aligned text table.
pub fn render(rows: &[Row], limit: usize) -> String {
    render_highlighted(rows, limit, None)
}

/// Renders rows as an aligned text table, the cells over `hot`'s thresholds in bold
/// red (ANSI; for a terminal) as top highlights them.
pub fn render_highlighted(rows: &[Row], limit: usize, hot: Option<&Thresholds>) -> String {
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
    for (i, row) in cells.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let padded = if c == 0 {
                format!("{cell:<w$}", w = widths[c])
            } else {
                format!("  {cell:>w$}", w = widths[c])
            };
            // Row 0 is the header; the padding stays outside the colour.
            match hot {
                Some(t) if i > 0 && t.hot(c, &rows[i - 1]) => {
                    let text = padded.trim_start();
                    line.push_str(&padded[..padded.len() - text.len()]);
                    line.push_str(&format!("\x1b[1;31m{text}\x1b[0m"));
                }
                _ => line.push_str(&padded),
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
                    "payload_bytes_out": r.bytes_out,
                    "payload_bytes_in": r.bytes_in,
                    "rtt_us_p50": us(r.rtt[0]),
                    "rtt_us_p95": us(r.rtt[1]),
                    "response_us_p95": us(r.resp_p95),
                    "server_us_p50": us(r.server[0]),
                    "server_us_p95": us(r.server[1]),
                    "network_us_p50": us(r.network[0]),
                    "network_us_p95": us(r.network[1]),
                    "retx_pct": r.retx_pct,
                    "refused": r.refused,
                    "unreachable": r.unreachable,
                    "timed_out": r.timed_out,
                    "err": r.err,
                })
            })
            .collect(),
    )
}

/// Eight levels of a sparkline, lowest to highest.
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values` (None: nothing that interval, shown as a space), scaled to
/// their maximum.
pub fn sparkline(values: &[Option<u64>]) -> String {
    let max = values.iter().flatten().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if max == 0 => SPARKS[0],
            Some(x) => SPARKS[((x * 7 + max / 2) / max).min(7) as usize],
        })
        .collect()
}

/// A destination's total connections, and its connections and connect time p95 per
/// interval.
type HostSeries = (u64, Vec<Option<u64>>, Vec<Option<u64>>);

/// `analyze --interval`: the busiest destinations' connections and connect time p95
/// per interval, as sparklines over the capture (the rows are the monitor's bins).
pub fn render_intervals(rows: &[serde_json::Value], interval_ns: u64, limit: usize) -> String {
    use std::collections::BTreeMap;
    let mut starts: Vec<u64> = rows
        .iter()
        .filter_map(|r| r["interval_start"].as_u64())
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let Some((&first, &last)) = starts.first().zip(starts.last()) else {
        return String::new();
    };
    let step = (interval_ns / 1_000_000_000).max(1);
    let n = ((last - first) / step + 1) as usize;
    // Per destination: connections and connect p95 per interval.
    let mut by_host: BTreeMap<String, HostSeries> = BTreeMap::new();
    for r in rows {
        let addr = r.get("server_ip").or_else(|| r.get("client_ip"));
        let (Some(start), Some(host)) =
            (r["interval_start"].as_u64(), addr.and_then(|a| a.as_str()))
        else {
            continue;
        };
        let host = match r["server_port"].as_u64() {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let i = ((start - first) / step) as usize;
        if i >= n {
            continue;
        }
        let e = by_host
            .entry(host)
            .or_insert_with(|| (0, vec![None; n], vec![None; n]));
        let conns = r["conns"].as_u64().unwrap_or(0);
        e.0 += conns;
        e.1[i] = Some(e.1[i].unwrap_or(0) + conns);
        if let Some(p95) = r["connect_us_p95"].as_u64() {
            e.2[i] = Some(e.2[i].map_or(p95, |v: u64| v.max(p95)));
        }
    }
    let mut hosts: Vec<_> = by_host.into_iter().collect();
    hosts.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let shown = if limit == 0 {
        hosts.len()
    } else {
        limit.min(hosts.len())
    };
    let mut t = format!(
        "\nPer interval ({} intervals of {}; busiest {} of {} destinations)\n",
        n,
        crate::format::duration_words(step),
        shown,
        hosts.len()
    );
    let width = hosts
        .iter()
        .take(shown)
        .map(|h| h.0.len())
        .max()
        .unwrap_or(4)
        .max(4);
    t.push_str(&format!(
        "  {:<width$}  {:>8}  {:<n$}  {:>9}  {:<n$}\n",
        "Host",
        "Conns",
        "connections",
        "Conn p95",
        "connect time p95",
        width = width,
        n = n.max(16)
    ));
    for (host, (total, conns, p95)) in hosts.iter().take(shown) {
        let worst = p95.iter().flatten().max().copied();
        t.push_str(&format!(
            "  {:<width$}  {:>8}  {:<n$}  {:>9}  {:<n$}\n",
            host,
            crate::format::thousands(*total),
            sparkline(conns),
            worst.map_or("-".to_string(), |us| format!("{:.1}ms", us as f64 / 1000.0)),
            sparkline(p95),
            width = width,
            n = n.max(16)
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpsight_agg::table::Failure;

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

    fn row(host: &str, lat_p95: Option<u64>) -> (String, Row) {
        let mut h = HostStats::default();
        h.add_connection(&ConnFacts {
            syn: true,
            connect_ns: lat_p95,
            ..ConnFacts::default()
        });
        (host.to_string(), h.row(host.into(), 1.0))
    }

    /// Issue 15 (friction): empty cells sort last in both directions (they sorted
    /// first once reversed).
    #[test]
    fn empty_cells_sort_last_both_ways() {
        let mut rows = vec![
            row("a", None),
            row("b", Some(5_000)),
            row("c", Some(9_000)),
            row("d", None),
        ];
        let hosts = |rows: &[(String, Row)]| rows.iter().map(|r| r.0.clone()).collect::<String>();
        sort_rows(&mut rows, SortBy::Lat, false);
        assert_eq!(hosts(&rows), "cbad");
        sort_rows(&mut rows, SortBy::Lat, true);
        assert_eq!(hosts(&rows), "bcad");
    }

    #[test]
    fn failures_by_kind() {
        let mut h = HostStats::default();
        for f in [Failure::Refused, Failure::Refused, Failure::TimedOut] {
            h.add_connection(&ConnFacts {
                syn: true,
                failure: Some(f),
                ..ConnFacts::default()
            });
        }
        let r = h.row("h".into(), 1.0);
        assert_eq!(failures(&r), "2r 1t");
        assert_eq!(failures(&HostStats::default().row("h".into(), 1.0)), "-");
    }
}
