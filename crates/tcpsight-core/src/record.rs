//! The finished-connection record and its one schema, shared by every output format.

use crate::addr::Addr;
use crate::flow::Side;

/// How the handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// SYN, SYN/ACK and the ACK completing the handshake were seen.
    Established,
    /// A RST ended the handshake.
    Rejected,
    /// An ICMP/ICMPv6 destination-unreachable or time-exceeded quoted the SYN.
    Unreachable,
    /// No answer within the handshake timeout (capture time).
    Timeout,
    /// The trace ended before the handshake could complete or time out.
    Pending,
    /// The connection was already open when the capture saw it (no SYN).
    Midstream,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Rejected => "rejected",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::Pending => "pending",
            Outcome::Midstream => "midstream",
        }
    }

    pub const ALL: [Outcome; 6] = [
        Outcome::Established,
        Outcome::Rejected,
        Outcome::Unreachable,
        Outcome::Timeout,
        Outcome::Pending,
        Outcome::Midstream,
    ];
}

/// How an established (or midstream) connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Close {
    Fin,
    Rst,
    Open,
}

impl Close {
    pub fn name(self) -> &'static str {
        match self {
            Close::Fin => "fin",
            Close::Rst => "rst",
            Close::Open => "open",
        }
    }
}

/// Per-direction figures. `c2s` is data sent by the client, `s2c` by the server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirRecord {
    pub pkts: u64,
    pub payload_bytes: u64,
    pub unique_bytes: u64,
    pub retx_pkts: u32,
    pub retx_bytes: u64,
    pub fast_retx_pkts: u32,
    pub spurious_retx_pkts: u32,
    pub out_of_order_pkts: u32,
    pub lost_segments: u32,
    pub dup_acks: u32,
    pub zero_windows: u32,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_ok: bool,
    pub ts_ok: bool,
    pub rtt_min_ns: Option<u64>,
    pub rtt_avg_ns: Option<f64>,
    pub rtt_max_ns: Option<u64>,
    pub rtt_std_ns: Option<f64>,
    pub rtt_samples: u32,
    pub gap_bytes: u64,
    pub messages: u32,
    pub fin_pkts: u32,
    pub rst_pkts: u32,
    /// ACKs of this direction's data far beyond anything it could have sent (not in
    /// the schema: the capture summary counts them).
    pub stray_acks: u32,
    /// Lowest and highest IP TTL / hop limit (null without packets).
    pub ttl_min: Option<u8>,
    pub ttl_max: Option<u8>,
    /// Advertised window of the first packet, lowest and highest (bytes, scaled once
    /// both SYNs offered scaling; RSTs left out; null when no window was seen).
    pub win_first: Option<u32>,
    pub win_min: Option<u32>,
    pub win_max: Option<u32>,
    /// SACK blocks sent (RFC 2018), summed over packets.
    pub sack_blocks: u32,
    /// Packets with ACK and nothing else: no payload, no SYN, FIN or RST.
    pub pure_acks: u32,
    /// Packets carrying payload (retransmissions included).
    pub data_pkts: u32,
    /// First and last packet with payload, after the first SYN (first packet without
    /// one); null without payload.
    pub first_payload_ns: Option<u64>,
    pub last_payload_ns: Option<u64>,
    /// Largest in-flight estimate: highest sequence sent minus the peer's latest ACK,
    /// taken at each data packet.
    pub inflight_max: u32,
}

/// One finished connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    /// The engine's id of the connection (not in the schema: it joins a connection's
    /// events and record inside one run).
    pub id: crate::engine::ConnId,
    pub ts_first_ns: u64,
    pub ts_last_ns: u64,
    pub client: Addr,
    pub client_port: u16,
    pub server: Addr,
    pub server_port: u16,
    pub vlan: u32,
    /// The encapsulations the connection's first packet came through, outermost first
    /// (`vxlan:4711>gre`; docs/decode.md), None outside tunnels.
    pub tunnel: Option<String>,
    pub outcome: Outcome,
    pub close: Close,
    pub closed_by: Option<Side>,
    /// Whether `closed_by` closed with a FIN or a RST (not in the schema: `close` and
    /// `closed_by` say it, except for a FIN later followed by a RST).
    pub close_first: Option<Close>,
    pub syn_count: u32,
    pub synack_count: u32,
    /// SYNs and SYN/ACKs seen when the handshake was decided, as its event said (not in
    /// the schema: the summaries' duplicate counts come from it, so analyze and watch
    /// count duplicates alike; `syn_count`/`synack_count` count every one).
    pub counts_at_decision: Option<(u32, u32)>,
    pub connect_ns: Option<u64>,
    pub server_rtt_ns: Option<u64>,
    pub client_rtt_ns: Option<u64>,
    pub syn_retry_ns: Option<u64>,
    /// From the first SYN (or first packet) to the last FIN or RST.
    pub closed_after_ns: Option<u64>,
    pub c2s: DirRecord,
    pub s2c: DirRecord,
    pub exchanges: u32,
    pub response_p50_ns: Option<u64>,
    pub response_max_ns: Option<u64>,
    /// Where the exchanges' time went (null without exchanges): the server's time
    /// (total and largest), the requests' transfers (total), the responses' transfers
    /// (total and largest).
    pub server_total_ns: Option<u64>,
    pub server_max_ns: Option<u64>,
    pub request_transfer_total_ns: Option<u64>,
    pub response_transfer_total_ns: Option<u64>,
    pub response_transfer_max_ns: Option<u64>,
    pub conn_state: &'static str,
    pub history: String,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Seen through a control-only capture (SYN, FIN and RST packets alone; see
    /// `Conn::control_only`): the figures such a trace cannot give (connect time, RTT,
    /// retransmissions, gaps, messages, exchanges) are null, not wrong.
    pub control_only: bool,
    /// The interface of the connection's first packet, where the input names it (a
    /// pcapng interface's if_name; live, the interface, on `any` each packet's own).
    pub interface: Option<std::sync::Arc<str>>,
    /// What the application layer showed (filled by an L7 observer; null without one).
    pub app: AppFields,
}

/// Application-layer figures of one connection (docs/l7.md). The engine leaves them
/// empty; an L7 observer (tcpsight-l7) fills them before the record reaches a sink.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppFields {
    /// From the first payload bytes, never from the port alone: "http", "tls", ...
    pub app_proto: Option<&'static str>,
    /// The TLS SNI, else the HTTP Host, else `dns_name`.
    pub server_name: Option<Box<str>>,
    /// The name the client resolved to the server's address (a DNS answer seen before).
    pub dns_name: Option<Box<str>>,
    pub http_requests: Option<u32>,
    pub http_4xx: Option<u32>,
    pub http_5xx: Option<u32>,
    /// The TLS version the server chose ("TLSv1.3", ...).
    pub tls_version: Option<&'static str>,
}

impl ConnRecord {
    pub fn duration_ns(&self) -> u64 {
        self.ts_last_ns.saturating_sub(self.ts_first_ns)
    }

    /// Total payload bytes in both directions.
    pub fn payload_bytes(&self) -> u64 {
        self.c2s.payload_bytes + self.s2c.payload_bytes
    }
}

/// A field value, typed so each writer (JSON, CSV, table) formats it its own way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    U64(u64),
    /// Seconds since the epoch, from nanoseconds.
    Epoch(u64),
    /// A duration given in nanoseconds, reported in microseconds.
    Micros(u64),
    /// A fractional duration in nanoseconds, reported in microseconds.
    MicrosF(f64),
    Str(&'a str),
    Addr(Addr),
}

fn opt<T, F: FnOnce(T) -> Value<'static>>(v: Option<T>, f: F) -> Value<'static> {
    v.map_or(Value::Null, f)
}

/// A record with one schema: its fields, named, in output order. Connection records
/// and the L7 logs' records implement it, so every writer (JSON Lines, CSV, Parquet)
/// serves each of them from the same definition.
///
/// Values may borrow from temporaries (a list joined for the call), so a visitor uses
/// each value at once.
pub trait Schema {
    fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, f: F);
}

impl Schema for ConnRecord {
    #[inline]
    fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, f: F) {
        ConnRecord::for_each_field(self, f)
    }
}

/// The names of every record field, in output order.
pub fn field_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    let r = ConnRecord::example();
    r.for_each_field(|name, _| names.push(name));
    names
}

impl DirRecord {
    /// Zeroes what only data and ACK packets show (a control-only trace has none).
    fn forget_unmeasured(&mut self) {
        let kept = DirRecord {
            pkts: self.pkts,
            payload_bytes: self.payload_bytes,
            unique_bytes: self.unique_bytes,
            mss: self.mss,
            wscale: self.wscale,
            sack_ok: self.sack_ok,
            ts_ok: self.ts_ok,
            fin_pkts: self.fin_pkts,
            rst_pkts: self.rst_pkts,
            ttl_min: self.ttl_min,
            ttl_max: self.ttl_max,
            win_first: self.win_first,
            ..DirRecord::default()
        };
        *self = kept;
    }
}

impl ConnRecord {
    /// Marks the record control-only and drops what such a trace cannot measure.
    pub fn forget_unmeasured(&mut self) {
        self.control_only = true;
        self.connect_ns = None;
        self.client_rtt_ns = None;
        self.c2s.forget_unmeasured();
        self.s2c.forget_unmeasured();
        self.exchanges = 0;
        self.response_p50_ns = None;
        self.response_max_ns = None;
        self.server_total_ns = None;
        self.server_max_ns = None;
        self.request_transfer_total_ns = None;
        self.response_transfer_total_ns = None;
        self.response_transfer_max_ns = None;
    }

    /// Visits every field in schema order. This is the one definition of the schema:
    /// JSON Lines, CSV and the documentation's field list all come from it.
    pub fn for_each_field<'a>(&'a self, mut f: impl FnMut(&'static str, Value<'a>)) {
        f("ts_first", Value::Epoch(self.ts_first_ns));
        f("ts_last", Value::Epoch(self.ts_last_ns));
        // Exact whatever the capture's precision (a float64 of epoch seconds is not).
        f("ts_first_ns", Value::U64(self.ts_first_ns));
        f("ts_last_ns", Value::U64(self.ts_last_ns));
        f("client_ip", Value::Addr(self.client));
        f("client_port", Value::U64(self.client_port as u64));
        f("server_ip", Value::Addr(self.server));
        f("server_port", Value::U64(self.server_port as u64));
        f("vlan", Value::U64(self.vlan as u64));
        f(
            "interface",
            self.interface.as_deref().map_or(Value::Null, Value::Str),
        );
        f(
            "tunnel",
            self.tunnel.as_deref().map_or(Value::Null, Value::Str),
        );
        f("outcome", Value::Str(self.outcome.name()));
        f("close", Value::Str(self.close.name()));
        f("closed_by", opt(self.closed_by, |s| Value::Str(s.name())));
        f("duration_us", Value::Micros(self.duration_ns()));
        f("syn_count", Value::U64(self.syn_count as u64));
        f("synack_count", Value::U64(self.synack_count as u64));
        f("connect_us", opt(self.connect_ns, Value::Micros));
        f("server_rtt_us", opt(self.server_rtt_ns, Value::Micros));
        f("client_rtt_us", opt(self.client_rtt_ns, Value::Micros));
        f("syn_retry_us", opt(self.syn_retry_ns, Value::Micros));
        f("closed_after_us", opt(self.closed_after_ns, Value::Micros));
        f("control_only", Value::Bool(self.control_only));
        let measured = !self.control_only;
        for (prefix, d) in [("c2s_", &self.c2s), ("s2c_", &self.s2c)] {
            dir_fields(prefix, d, measured, &mut f);
        }
        f(
            "exchanges",
            measure(measured, Value::U64(self.exchanges as u64)),
        );
        f("response_us_p50", opt(self.response_p50_ns, Value::Micros));
        f("response_us_max", opt(self.response_max_ns, Value::Micros));
        f("server_us_total", opt(self.server_total_ns, Value::Micros));
        f("server_us_max", opt(self.server_max_ns, Value::Micros));
        f(
            "request_transfer_us_total",
            opt(self.request_transfer_total_ns, Value::Micros),
        );
        f(
            "response_transfer_us_total",
            opt(self.response_transfer_total_ns, Value::Micros),
        );
        f(
            "response_transfer_us_max",
            opt(self.response_transfer_max_ns, Value::Micros),
        );
        f("conn_state", Value::Str(self.conn_state));
        f("history", Value::Str(&self.history));
        f("icmp_type", opt(self.icmp_type, |v| Value::U64(v as u64)));
        f("icmp_code", opt(self.icmp_code, |v| Value::U64(v as u64)));
        let reason = self
            .icmp_type
            .zip(self.icmp_code)
            .and_then(|(t, c)| icmp_reason(!self.client.is_v4(), t, c));
        f("icmp_reason", opt(reason, Value::Str));
        let a = &self.app;
        f("app_proto", opt(a.app_proto, Value::Str));
        f(
            "server_name",
            a.server_name.as_deref().map_or(Value::Null, Value::Str),
        );
        f(
            "dns_name",
            a.dns_name.as_deref().map_or(Value::Null, Value::Str),
        );
        f(
            "http_requests",
            opt(a.http_requests, |v| Value::U64(v as u64)),
        );
        f("http_4xx", opt(a.http_4xx, |v| Value::U64(v as u64)));
        f("http_5xx", opt(a.http_5xx, |v| Value::U64(v as u64)));
        f("tls_version", opt(a.tls_version, Value::Str));
    }

    /// A record with every optional field set, for schema listings and tests.
    pub fn example() -> ConnRecord {
        ConnRecord {
            id: Default::default(),
            ts_first_ns: 0,
            ts_last_ns: 0,
            client: Addr::from_v4([0, 0, 0, 0]),
            client_port: 0,
            server: Addr::from_v4([0, 0, 0, 0]),
            server_port: 0,
            vlan: 0,
            tunnel: Some("vxlan:4711>gre".into()),
            outcome: Outcome::Established,
            close: Close::Fin,
            closed_by: Some(Side::Client),
            close_first: Some(Close::Fin),
            syn_count: 0,
            synack_count: 0,
            counts_at_decision: Some((1, 1)),
            connect_ns: Some(0),
            server_rtt_ns: Some(0),
            client_rtt_ns: Some(0),
            syn_retry_ns: Some(0),
            closed_after_ns: Some(0),
            c2s: DirRecord::default(),
            s2c: DirRecord::default(),
            exchanges: 0,
            response_p50_ns: Some(0),
            response_max_ns: Some(0),
            server_total_ns: Some(0),
            server_max_ns: Some(0),
            request_transfer_total_ns: Some(0),
            response_transfer_total_ns: Some(0),
            response_transfer_max_ns: Some(0),
            conn_state: "SF",
            history: String::new(),
            icmp_type: Some(0),
            icmp_code: Some(0),
            control_only: false,
            interface: Some("eth0".into()),
            app: AppFields {
                app_proto: Some("http"),
                server_name: Some("".into()),
                dns_name: Some("".into()),
                http_requests: Some(0),
                http_4xx: Some(0),
                http_5xx: Some(0),
                tls_version: Some("TLSv1.3"),
            },
        }
    }
}

/// A figure only data and ACK packets give: null in a control-only record.
fn measure(measured: bool, v: Value<'_>) -> Value<'_> {
    if measured { v } else { Value::Null }
}

/// Per-direction fields with a prefix. Names are built once, at first use. Without
/// `measured` (a control-only record) what only data and ACK packets show is null.
fn dir_fields<'a>(
    prefix: &'static str,
    d: &'a DirRecord,
    measured: bool,
    f: &mut impl FnMut(&'static str, Value<'a>),
) {
    let names = if prefix == "c2s_" { &C2S } else { &S2C };
    let m = |v| measure(measured, v);
    let values: [Value<'a>; DIR_FIELDS.len()] = [
        Value::U64(d.pkts),
        Value::U64(d.payload_bytes),
        Value::U64(d.unique_bytes),
        m(Value::U64(d.retx_pkts as u64)),
        m(Value::U64(d.retx_bytes)),
        m(Value::U64(d.fast_retx_pkts as u64)),
        m(Value::U64(d.spurious_retx_pkts as u64)),
        m(Value::U64(d.out_of_order_pkts as u64)),
        m(Value::U64(d.lost_segments as u64)),
        m(Value::U64(d.dup_acks as u64)),
        m(Value::U64(d.zero_windows as u64)),
        opt(d.mss, |v| Value::U64(v as u64)),
        opt(d.wscale, |v| Value::U64(v as u64)),
        Value::Bool(d.sack_ok),
        Value::Bool(d.ts_ok),
        opt(d.rtt_min_ns, Value::Micros),
        opt(d.rtt_avg_ns, Value::MicrosF),
        opt(d.rtt_max_ns, Value::Micros),
        opt(d.rtt_std_ns, Value::MicrosF),
        m(Value::U64(d.rtt_samples as u64)),
        m(Value::U64(d.gap_bytes)),
        m(Value::U64(d.messages as u64)),
        Value::U64(d.fin_pkts as u64),
        Value::U64(d.rst_pkts as u64),
        opt(d.ttl_min, |v| Value::U64(v as u64)),
        opt(d.ttl_max, |v| Value::U64(v as u64)),
        opt(d.win_first, |v| Value::U64(v as u64)),
        opt(d.win_min, |v| Value::U64(v as u64)),
        opt(d.win_max, |v| Value::U64(v as u64)),
        m(Value::U64(d.sack_blocks as u64)),
        m(Value::U64(d.pure_acks as u64)),
        m(Value::U64(d.data_pkts as u64)),
        opt(d.first_payload_ns, Value::Micros),
        opt(d.last_payload_ns, Value::Micros),
        m(Value::U64(d.inflight_max as u64)),
    ];
    for (name, v) in names.iter().zip(values) {
        f(name, v);
    }
}

const DIR_FIELDS: [&str; 35] = [
    "pkts",
    "payload_bytes",
    "unique_bytes",
    "retx_pkts",
    "retx_bytes",
    "fast_retx_pkts",
    "spurious_retx_pkts",
    "out_of_order_pkts",
    "lost_segments",
    "dup_acks",
    "zero_windows",
    "mss",
    "wscale",
    "sack_ok",
    "ts_ok",
    "rtt_min_us",
    "rtt_avg_us",
    "rtt_max_us",
    "rtt_std_us",
    "rtt_samples",
    "gap_bytes",
    "messages",
    "fin_pkts",
    "rst_pkts",
    "ttl_min",
    "ttl_max",
    "win_first",
    "win_min",
    "win_max",
    "sack_blocks",
    "pure_acks",
    "data_pkts",
    "first_payload_us",
    "last_payload_us",
    "inflight_max_bytes",
];

macro_rules! prefixed {
    ($p:literal) => {
        [
            concat!($p, "pkts"),
            concat!($p, "payload_bytes"),
            concat!($p, "unique_bytes"),
            concat!($p, "retx_pkts"),
            concat!($p, "retx_bytes"),
            concat!($p, "fast_retx_pkts"),
            concat!($p, "spurious_retx_pkts"),
            concat!($p, "out_of_order_pkts"),
            concat!($p, "lost_segments"),
            concat!($p, "dup_acks"),
            concat!($p, "zero_windows"),
            concat!($p, "mss"),
            concat!($p, "wscale"),
            concat!($p, "sack_ok"),
            concat!($p, "ts_ok"),
            concat!($p, "rtt_min_us"),
            concat!($p, "rtt_avg_us"),
            concat!($p, "rtt_max_us"),
            concat!($p, "rtt_std_us"),
            concat!($p, "rtt_samples"),
            concat!($p, "gap_bytes"),
            concat!($p, "messages"),
            concat!($p, "fin_pkts"),
            concat!($p, "rst_pkts"),
            concat!($p, "ttl_min"),
            concat!($p, "ttl_max"),
            concat!($p, "win_first"),
            concat!($p, "win_min"),
            concat!($p, "win_max"),
            concat!($p, "sack_blocks"),
            concat!($p, "pure_acks"),
            concat!($p, "data_pkts"),
            concat!($p, "first_payload_us"),
            concat!($p, "last_payload_us"),
            concat!($p, "inflight_max_bytes"),
        ]
    };
}

static C2S: [&str; DIR_FIELDS.len()] = prefixed!("c2s_");
static S2C: [&str; DIR_FIELDS.len()] = prefixed!("s2c_");

/// The name of an ICMP (or ICMPv6, when `v6`) error by type and code, as RFC 792,
/// RFC 1812 and RFC 4443 name them; `None` for other messages.
pub fn icmp_reason(v6: bool, icmp_type: u8, code: u8) -> Option<&'static str> {
    Some(match (v6, icmp_type, code) {
        (false, 3, 0) => "net unreachable",
        (false, 3, 1) => "host unreachable",
        (false, 3, 2) => "protocol unreachable",
        (false, 3, 3) => "port unreachable",
        (false, 3, 4) => "fragmentation needed",
        (false, 3, 5) => "source route failed",
        (false, 3, 6) => "destination network unknown",
        (false, 3, 7) => "destination host unknown",
        (false, 3, 9) | (false, 3, 10) => "administratively prohibited (host/net)",
        (false, 3, 11) => "network unreachable for TOS",
        (false, 3, 12) => "host unreachable for TOS",
        (false, 3, 13) => "administratively prohibited",
        (false, 3, 14) => "host precedence violation",
        (false, 3, 15) => "precedence cutoff",
        (false, 3, _) => "destination unreachable",
        (false, 11, 0) => "TTL exceeded in transit",
        (false, 11, 1) => "fragment reassembly time exceeded",
        (false, 11, _) => "time exceeded",
        (true, 1, 0) => "no route to destination",
        (true, 1, 1) => "administratively prohibited",
        (true, 1, 2) => "beyond scope of source address",
        (true, 1, 3) => "address unreachable",
        (true, 1, 4) => "port unreachable",
        (true, 1, 5) => "source address failed policy",
        (true, 1, 6) => "reject route to destination",
        (true, 1, _) => "destination unreachable",
        (true, 3, 0) => "hop limit exceeded in transit",
        (true, 3, 1) => "fragment reassembly time exceeded",
        (true, 3, _) => "time exceeded",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_names_match_the_base_list() {
        for (i, base) in DIR_FIELDS.iter().enumerate() {
            assert_eq!(C2S[i], format!("c2s_{base}"));
            assert_eq!(S2C[i], format!("s2c_{base}"));
        }
    }

    #[test]
    fn schema_has_the_required_fields() {
        let names = field_names();
        for required in [
            "ts_first",
            "ts_last",
            "client_ip",
            "client_port",
            "server_ip",
            "server_port",
            "vlan",
            "outcome",
            "close",
            "closed_by",
            "duration_us",
            "syn_count",
            "synack_count",
            "connect_us",
            "server_rtt_us",
            "client_rtt_us",
            "c2s_pkts",
            "s2c_payload_bytes",
            "c2s_unique_bytes",
            "s2c_retx_pkts",
            "c2s_retx_bytes",
            "s2c_fast_retx_pkts",
            "c2s_spurious_retx_pkts",
            "s2c_out_of_order_pkts",
            "c2s_dup_acks",
            "s2c_zero_windows",
            "c2s_mss",
            "s2c_wscale",
            "c2s_sack_ok",
            "s2c_ts_ok",
            "c2s_rtt_min_us",
            "c2s_rtt_avg_us",
            "c2s_rtt_max_us",
            "c2s_rtt_std_us",
            "s2c_rtt_samples",
            "c2s_gap_bytes",
            "exchanges",
            "response_us_p50",
            "response_us_max",
            "conn_state",
            "history",
            "icmp_type",
            "icmp_code",
        ] {
            assert!(names.contains(&required), "missing {required}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate field names");
    }
}
