//! The per-destination table's aggregation: trtop's columns, computed from finished
//! connections and exchanges. Ordering and rendering the rows is the caller's (the CLI's
//! sort columns implement [`RowOrder`]).

use std::collections::HashMap;

use tcpsight_core::{Addr, Close, ConnRecord, ExchangeEvent, Outcome, Side};

use crate::loglinear::LogLinear;
use crate::percentiles::Percentiles;

/// What a destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// Server address.
    Host,
    /// Server address and port.
    HostPort,
    /// Client address (who is having trouble, rather than with whom).
    Client,
}

/// A destination: a server address, with its port when grouping by host and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostKey {
    addr: Addr,
    port: Option<u16>,
}

impl HostKey {
    pub fn new(addr: Addr, port: Option<u16>) -> HostKey {
        HostKey { addr, port }
    }

    pub fn addr(&self) -> Addr {
        self.addr
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }
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

/// Per-destination durations (ns): exact percentiles for up to 4,096 values, then a
/// log-linear histogram in microseconds (within 6.25 %), so memory stays flat however
/// long the capture. These are the figures `tcpsight_core::stats::Quantiles<4096, 1000>`
/// gave, so the table's numbers are unchanged; `Percentiles<4096>` (an exponential
/// histogram beyond the limit) would change them beyond 4,096 values.
pub type Values = Percentiles<4096, LogLinear<1000>>;
/// Per-destination counts (exchanges per connection), likewise.
pub type Counts = Percentiles<4096, LogLinear<1>>;

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
    /// Retransmitted packets, not counting repeated SYNs and SYN/ACKs (a handshake
    /// retried into a blackhole is a failure, not a retransmission of data).
    pub retx: u32,
    pub gap: bool,
    /// Payload bytes client to server and server to client.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// The connection's wire RTT ([`wire_rtt_ns`]).
    pub rtt_ns: Option<u64>,
    /// How the handshake failed, if it did.
    pub failure: Option<Failure>,
    /// Seen through a control-only capture (the record's `control_only`): its
    /// retransmissions, gaps and messages are unknown, not zero, and its bytes come from
    /// sequence numbers.
    pub control_only: bool,
}

/// How a handshake failed: the kinds an operator tells apart (a refusing port, an
/// unreachable host, a blackhole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Refused,
    Unreachable,
    TimedOut,
}

impl Failure {
    pub fn of(o: Outcome) -> Option<Failure> {
        match o {
            Outcome::Rejected => Some(Failure::Refused),
            Outcome::Unreachable => Some(Failure::Unreachable),
            Outcome::Timeout => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

/// A connection's wire RTT: the mean of its client-to-server RTT samples (a data
/// segment to the ACK covering it, as seen at the capture point). The table's RTT
/// column, the bins' and the metrics' `wire_rtt` histograms all use this one figure.
pub fn wire_rtt_ns(r: &ConnRecord) -> Option<u64> {
    r.c2s.rtt_avg_ns.map(|v| v.max(0.0) as u64)
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
            exchanges: (!r.control_only
                && (r.outcome == Outcome::Established || r.outcome == Outcome::Midstream))
                .then_some(r.exchanges),
            connect_ns: r.connect_ns,
            out_msgs: r.c2s.messages,
            in_msgs: r.s2c.messages,
            pkts: r.c2s.pkts + r.s2c.pkts,
            // The records count a repeated SYN or SYN/ACK as a retransmission (tshark's
            // class); the table's Retx% is about data.
            retx: (r.c2s.retx_pkts + r.s2c.retx_pkts)
                .saturating_sub(r.syn_count.saturating_sub(1) + r.synack_count.saturating_sub(1)),
            gap: r.c2s.gap_bytes + r.s2c.gap_bytes > 0,
            // Without the data packets the sequence numbers still tell the bytes sent.
            bytes_out: if r.control_only {
                r.c2s.unique_bytes
            } else {
                r.c2s.payload_bytes
            },
            bytes_in: if r.control_only {
                r.s2c.unique_bytes
            } else {
                r.s2c.payload_bytes
            },
            rtt_ns: wire_rtt_ns(r),
            failure: Failure::of(r.outcome),
            control_only: r.control_only,
        }
    }
}

/// One destination's accumulated figures.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// The server's part of each response time, and the rest (the network's).
    server_ns: Values,
    network_ns: Values,
    pkts: u64,
    retx: u64,
    gap_conns: u64,
    bytes_out: u64,
    bytes_in: u64,
    rtt_ns: Values,
    refused: u64,
    unreachable: u64,
    timed_out: u64,
    /// Connections seen through a control-only capture, and the packets of the others
    /// (Retx%'s denominator: the packets whose retransmissions could be counted).
    control_only: u64,
    measured_pkts: u64,
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
        if f.control_only {
            self.control_only += 1;
        } else {
            self.measured_pkts += f.pkts;
            self.retx += f.retx as u64;
            self.gap_conns += f.gap as u64;
        }
        self.bytes_out += f.bytes_out;
        self.bytes_in += f.bytes_in;
        if let Some(r) = f.rtt_ns {
            self.rtt_ns.add(r);
        }
        match f.failure {
            Some(Failure::Refused) => self.refused += 1,
            Some(Failure::Unreachable) => self.unreachable += 1,
            Some(Failure::TimedOut) => self.timed_out += 1,
            None => {}
        }
    }

    pub fn add_response(&mut self, response_ns: u64) {
        self.response_ns.add(response_ns);
    }

    /// How one response time split: the server's time, and the network's (the rest).
    pub fn add_split(&mut self, response_ns: u64, server_ns: u64) {
        self.server_ns.add(server_ns);
        self.network_ns.add(response_ns.saturating_sub(server_ns));
    }

    /// Adds everything `other` counted: the same as adding its connections and responses.
    pub fn merge(&mut self, other: &HostStats) {
        self.conns += other.conns;
        self.syn += other.syn;
        self.synack += other.synack;
        self.est += other.est;
        self.rst += other.rst;
        self.fin_out += other.fin_out;
        self.fin_in += other.fin_in;
        self.exchanges.merge(&other.exchanges);
        self.busy_conns += other.busy_conns;
        self.connect_ns.merge(&other.connect_ns);
        self.out_msgs += other.out_msgs;
        self.in_msgs += other.in_msgs;
        self.response_ns.merge(&other.response_ns);
        self.server_ns.merge(&other.server_ns);
        self.network_ns.merge(&other.network_ns);
        self.pkts += other.pkts;
        self.retx += other.retx;
        self.gap_conns += other.gap_conns;
        self.bytes_out += other.bytes_out;
        self.bytes_in += other.bytes_in;
        self.rtt_ns.merge(&other.rtt_ns);
        self.refused += other.refused;
        self.unreachable += other.unreachable;
        self.timed_out += other.timed_out;
        self.control_only += other.control_only;
        self.measured_pkts += other.measured_pkts;
    }

    /// The destination's counters as counts (the row gives most as percentages):
    /// what a time-binned log or a metrics exporter adds up across intervals.
    pub fn counters(&self) -> HostCounters {
        HostCounters {
            conns: self.conns,
            syn: self.syn,
            synack: self.synack,
            est: self.est,
            rst: self.rst,
            fin_out: self.fin_out,
            fin_in: self.fin_in,
            exchanges: self.response_ns.count(),
            out_msgs: self.out_msgs,
            in_msgs: self.in_msgs,
            pkts: self.pkts,
            retx: self.retx,
            gap_conns: self.gap_conns,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
            refused: self.refused,
            unreachable: self.unreachable,
            timed_out: self.timed_out,
        }
    }

    /// Connections counted.
    pub fn connections(&self) -> u64 {
        self.conns
    }

    /// Connect times (SYN to handshake ACK), nanoseconds.
    pub fn connect_times(&self) -> &Values {
        &self.connect_ns
    }

    /// Response times (request end to response start), nanoseconds.
    pub fn response_times(&self) -> &Values {
        &self.response_ns
    }

    /// The row's figures (a snapshot); `span_s` is the time the rates are over.
    pub fn row(&self, host: String, span_s: f64) -> Row {
        let span = if span_s > 0.0 { span_s } else { 1.0 };
        let h = self;
        // With control-only connections the destination's messages, retransmissions and
        // gaps are unknown (blank): partial counts would read as whole ones.
        let any_measured = h.control_only == 0;
        let measured = |v: u64| any_measured.then_some(v);
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
            qos_p95: h.exchanges.percentile(95.0).filter(|_| any_measured),
            // trtop's `*`: one connection carried every exchange (others, refused or
            // idle, may exist), so the percentile says nothing about reuse.
            qos_all_in_one: h.busy_conns == 1 && h.exchanges.max() > Some(1),
            lat: [50.0, 95.0, 99.0].map(|p| h.connect_ns.percentile(p)),
            out: measured(h.out_msgs),
            inb: measured(h.in_msgs),
            resp_p95: h.response_ns.percentile(95.0),
            rtt: [50.0, 95.0].map(|p| h.rtt_ns.percentile(p)),
            bytes_out: h.bytes_out,
            bytes_in: h.bytes_in,
            refused: h.refused,
            unreachable: h.unreachable,
            timed_out: h.timed_out,
            server: [50.0, 95.0].map(|p| h.server_ns.percentile(p)),
            network: [50.0, 95.0].map(|p| h.network_ns.percentile(p)),
            retx_pct: any_measured.then(|| pct(h.retx, h.measured_pkts).unwrap_or(0.0)),
            err: measured(h.gap_conns),
        }
    }
}

/// One destination's counts (see [`HostStats::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    pub conns: u64,
    /// Connections whose SYN, SYN/ACK, handshake ACK were seen.
    pub syn: u64,
    pub synack: u64,
    pub est: u64,
    /// Connections with a RST, with a FIN from the client, from the server.
    pub rst: u64,
    pub fin_out: u64,
    pub fin_in: u64,
    /// Request/response exchanges (response times measured).
    pub exchanges: u64,
    /// Messages (PSH-separated) client to server, server to client.
    pub out_msgs: u64,
    pub in_msgs: u64,
    pub pkts: u64,
    /// Retransmitted packets (repeated SYNs and SYN/ACKs not counted).
    pub retx: u64,
    /// Connections with a capture gap.
    pub gap_conns: u64,
    /// Payload bytes client to server, server to client.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Handshakes refused (RST), unreachable (ICMP error), timed out.
    pub refused: u64,
    pub unreachable: u64,
    pub timed_out: u64,
}

fn pct(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| 100.0 * n as f64 / d as f64)
}

/// One computed row.
#[derive(Clone, Debug, PartialEq)]
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
    /// Messages each way; None (as `retx_pct` and `err`) when every connection was
    /// seen through a control-only capture.
    pub out: Option<u64>,
    pub inb: Option<u64>,
    /// 95th percentile of response times (a request's first byte to its response's).
    pub resp_p95: Option<u64>,
    /// p50 and p95 of the connections' wire RTT ([`wire_rtt_ns`]).
    pub rtt: [Option<u64>; 2],
    /// Payload bytes client to server, server to client.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Handshakes refused (RST), unreachable (ICMP error), timed out.
    pub refused: u64,
    pub unreachable: u64,
    pub timed_out: u64,
    /// p50 and p95 of the server's part of the response times, and of the network's.
    pub server: [Option<u64>; 2],
    pub network: [Option<u64>; 2],
    pub retx_pct: Option<f64>,
    pub err: Option<u64>,
}

/// An order of the table's rows (the CLI's sort columns implement it).
pub trait RowOrder {
    fn sort(&self, rows: &mut [(HostKey, Row)], reverse: bool);
}

/// Rows in key order (the `Host` column's).
#[derive(Clone, Copy, Debug, Default)]
pub struct ByKey;

impl RowOrder for ByKey {
    fn sort(&self, rows: &mut [(HostKey, Row)], reverse: bool) {
        rows.sort_by(|a, b| {
            if reverse {
                b.0.cmp(&a.0)
            } else {
                a.0.cmp(&b.0)
            }
        });
    }
}

/// Per-destination figures of connections and exchanges.
#[derive(Clone, Debug)]
pub struct DestinationTable {
    group: Grouping,
    hosts: Vec<(HostKey, HostStats)>,
    index: HashMap<HostKey, usize, foldhash::fast::RandomState>,
    /// The last destination looked up: consecutive events mostly share it.
    last: Option<(HostKey, usize)>,
}

impl DestinationTable {
    pub fn new(group: impl Into<Grouping>) -> Self {
        DestinationTable {
            group: group.into(),
            hosts: Vec::new(),
            index: HashMap::default(),
            last: None,
        }
    }

    pub fn grouping(&self) -> Grouping {
        self.group
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

    /// The row of a connection `client` -> `server:port` under this table's grouping.
    pub fn key(&self, client: Addr, server: Addr, port: u16) -> HostKey {
        match self.group {
            Grouping::Host => HostKey {
                addr: server,
                port: None,
            },
            Grouping::HostPort => HostKey {
                addr: server,
                port: Some(port),
            },
            Grouping::Client => HostKey {
                addr: client,
                port: None,
            },
        }
    }

    pub fn on_exchange(&mut self, e: &ExchangeEvent) {
        let k = self.key(e.client.addr, e.server.addr, e.server.port);
        let h = self.host(k);
        h.add_response(e.response_ns);
        h.add_split(e.response_ns, e.server_ns);
    }

    pub fn on_connection(&mut self, r: &ConnRecord) {
        let k = self.key(r.client, r.server, r.server_port);
        self.host(k).add_connection(&ConnFacts::of(r));
    }

    /// Adds every destination's figures of `other`, which must group the same way.
    ///
    /// # Panics
    ///
    /// If the two tables group differently.
    pub fn merge(&mut self, other: &DestinationTable) {
        assert_eq!(
            self.group, other.group,
            "merging tables grouped differently"
        );
        for (k, h) in &other.hosts {
            self.host(*k).merge(h);
        }
    }

    /// Destinations in the order they were first seen.
    pub fn hosts(&self) -> impl Iterator<Item = (&HostKey, &HostStats)> {
        self.hosts.iter().map(|(k, h)| (k, h))
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Every destination's row (a snapshot), in key order; `span_s` the time rates are over.
    pub fn keyed_rows(&self, span_s: f64) -> Vec<(HostKey, Row)> {
        let mut rows: Vec<(HostKey, Row)> = self
            .hosts
            .iter()
            .map(|(k, h)| (*k, h.row(k.to_string(), span_s)))
            .collect();
        rows.sort_by_key(|a| a.0);
        rows
    }

    /// Rows ordered by `order` (reversed with `reverse`), `span_s` the capture span.
    pub fn rows(&self, span_s: f64, order: impl RowOrder, reverse: bool) -> Vec<Row> {
        let mut rows = self.keyed_rows(span_s);
        order.sort(&mut rows, reverse);
        rows.into_iter().map(|(_, r)| r).collect()
    }
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

    /// The star survives a merge only as it would the whole stream: two halves with one
    /// busy connection each make two busy connections.
    #[test]
    fn qos_star_after_merge() {
        let (mut a, mut b) = (HostStats::default(), HostStats::default());
        a.add_connection(&conn(Some(40)));
        b.add_connection(&conn(None));
        let mut m = a.clone();
        m.merge(&b);
        assert!(m.row("h".into(), 1.0).qos_all_in_one);
        b.add_connection(&conn(Some(2)));
        a.merge(&b);
        assert!(!a.row("h".into(), 1.0).qos_all_in_one);
        assert_eq!(a.connections(), 3);
    }
}
