//! Prometheus metrics of what the engine finds, per destination, with
//! prometheus-client (the Prometheus project's Rust client): counters, and histograms
//! that carry both classic buckets (the text exposition) and native buckets (the
//! protobuf exposition, which Prometheus negotiates with
//! `--enable-feature=native-histograms`).
//!
//! The observer runs on the thread that feeds the engine (a sharded run replays every
//! shard's events into it); the registry is shared with the HTTP server's threads.
//! Per destination the metric handles are looked up once and kept, so a record costs
//! one hash lookup and a few atomic additions.
//!
//! Label cardinality is bounded: the first `max_destinations` label sets get their own
//! series, later ones are counted under `server="other"`. A destination is never moved
//! from one series to another later (a counter that shrank would read as a reset), so
//! admission is first come, first served; `tcpsight_metric_destinations_folded_total`
//! says how many were folded.
//!
//! Interim records (a long-lived connection's figures so far, every
//! `--active-timeout`): the volume counters (payload bytes, packets, retransmitted
//! packets, capture gaps) move by what the connection added since the last count, so a
//! day-long transfer shows in `rate()` while it lasts; the final record adds the rest.
//! Everything else about a connection (its outcome, close, SYN retransmissions, connect
//! time and RTT) is counted once, at the final record. Either way a connection's
//! figures are counted exactly once in total.

use std::collections::HashMap;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tcpsight_anon::Anonymizer;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
use prometheus_client::registry::{Registry, Unit};
use tcpsight_core::{
    Addr, ConnId, ConnRecord, DirRecord, ExchangeEvent, HandshakeEvent, Observer, Outcome,
};

use crate::bins::wire_rtt_ns;
use crate::local::LocalNets;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Classic bucket bounds in seconds (text exposition), from 100 µs to a minute.
const CLASSIC_BOUNDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Native buckets: schema 3 (bounds 2^(1/8) = 1.09 apart: a quantile is within 9 % of
/// the true value's bucket), at most 160 buckets before the resolution halves.
pub const NATIVE_SCHEMA: i8 = 3;
const NATIVE_MAX_BUCKETS: usize = 160;

fn new_histogram() -> Histogram {
    Histogram::new_classic_and_native(
        CLASSIC_BOUNDS,
        NativeHistogramConfig::with_schema(NATIVE_SCHEMA).max_buckets(NATIVE_MAX_BUCKETS),
    )
}

/// Which labels a destination's series carry.
#[derive(Clone)]
pub struct MetricsConfig {
    /// Series per destination, at most (label sets beyond it go to `server="other"`).
    pub max_destinations: usize,
    /// A `port` label (the server's port).
    pub port: bool,
    /// A `direction` label, from the local networks.
    pub local: Option<LocalNets>,
    /// `app` and `name` labels (the application protocol and the server's name), from
    /// the L7 analysis.
    pub app: bool,
    /// `--anonymize`: the `server` (and `name`) label values as the records show them;
    /// series are still kept per real destination (and `direction` from real ones).
    pub anonymize: Option<Anonymizer>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_destinations: 500,
            port: false,
            local: None,
            app: false,
            anonymize: None,
        }
    }
}

/// The metric families, registered once.
struct Families {
    handshakes: Family<Labels, Counter>,
    connections: Family<Labels, Counter>,
    closes: Family<Labels, Counter>,
    syn_retx: Family<Labels, Counter>,
    synack_retx: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    packets: Family<Labels, Counter>,
    retx_packets: Family<Labels, Counter>,
    gap_bytes: Family<Labels, Counter>,
    exchanges: Family<Labels, Counter>,
    connect: HistFamily,
    response: HistFamily,
    rtt: HistFamily,
}

/// Capture health, set by the run loop.
#[derive(Clone, Default)]
pub struct Health {
    pub frames: Counter,
    pub tcp_packets: Counter,
    pub kernel_drops: Counter,
    /// Connections reported early at the engine's memory bound (`--max-connections`).
    pub evicted: Counter,
    pub undecodable: Counter,
    pub records_not_written: Counter,
    pub destinations: Gauge,
    pub destinations_folded: Counter,
    pub destinations_limit: Gauge,
    /// Capture time of the last frame, seconds since the epoch.
    pub capture_time: Gauge<f64, AtomicU64>,
}

/// Where the run loop's counts stand, as the health counters follow them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// Frames after the packet filter.
    pub frames: u64,
    pub engine: tcpsight_core::EngineCounts,
    /// The kernel's drops (live).
    pub kernel_drops: u64,
}

impl Health {
    /// Moves the counters on from `was` to `now` (a counter never goes back).
    pub fn advance(&self, was: &HealthCounts, now: &HealthCounts) {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        self.frames.inc_by(d(was.frames, now.frames));
        self.tcp_packets
            .inc_by(d(was.engine.tcp_packets, now.engine.tcp_packets));
        self.evicted
            .inc_by(d(was.engine.evicted, now.engine.evicted));
        self.undecodable
            .inc_by(d(was.engine.undecodable, now.engine.undecodable));
        self.kernel_drops
            .inc_by(d(was.kernel_drops, now.kernel_drops));
    }
}

/// The registry and its families: shared by the observer and the HTTP server.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    families: Arc<Families>,
    pub health: Health,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("tcpsight");
        let hist = || HistFamily::new_with_constructor(new_histogram as fn() -> Histogram);
        let f = Families {
            handshakes: Family::default(),
            connections: Family::default(),
            closes: Family::default(),
            syn_retx: Family::default(),
            synack_retx: Family::default(),
            bytes: Family::default(),
            packets: Family::default(),
            retx_packets: Family::default(),
            gap_bytes: Family::default(),
            exchanges: Family::default(),
            connect: hist(),
            response: hist(),
            rtt: hist(),
        };
        r.register(
            "handshakes",
            "Handshakes by outcome, counted when decided (the ACK, RST, ICMP error, timeout)",
            f.handshakes.clone(),
        );
        r.register(
            "connections",
            "Connections by outcome, counted when their record ends",
            f.connections.clone(),
        );
        r.register(
            "closes",
            "Ended connections by how they closed (fin, rst, open) and who closed first",
            f.closes.clone(),
        );
        r.register(
            "syn_retransmissions",
            "SYNs sent again (a connection's SYN count less one)",
            f.syn_retx.clone(),
        );
        r.register(
            "synack_retransmissions",
            "SYN/ACKs sent again",
            f.synack_retx.clone(),
        );
        r.register_with_unit(
            "payload",
            "TCP payload bytes by direction (c2s: client to server)",
            Unit::Bytes,
            f.bytes.clone(),
        );
        r.register("packets", "TCP packets by direction", f.packets.clone());
        r.register(
            "retransmitted_packets",
            "Retransmitted packets by direction (tshark's analysis.retransmission)",
            f.retx_packets.clone(),
        );
        r.register_with_unit(
            "capture_gap",
            "Bytes the capture missed (acknowledged, never seen) by direction",
            Unit::Bytes,
            f.gap_bytes.clone(),
        );
        r.register(
            "exchanges",
            "Request/response exchanges (response times measured)",
            f.exchanges.clone(),
        );
        r.register_with_unit(
            "connect",
            "Connect time: first SYN to the ACK completing the handshake",
            Unit::Seconds,
            f.connect.clone(),
        );
        r.register_with_unit(
            "response",
            "Response time: a request's first byte to the response's first byte",
            Unit::Seconds,
            f.response.clone(),
        );
        r.register_with_unit(
            "wire_rtt",
            "Wire RTT per connection: the client's data segments to the server's ACKs (mean)",
            Unit::Seconds,
            f.rtt.clone(),
        );
        let h = Health::default();
        r.register(
            "frames",
            "Frames read (after the packet filter)",
            h.frames.clone(),
        );
        r.register("tcp_packets", "TCP packets analysed", h.tcp_packets.clone());
        r.register(
            "kernel_drops",
            "Packets the kernel dropped (ring full; live only)",
            h.kernel_drops.clone(),
        );
        r.register(
            "evicted_connections",
            "Connections reported early and forgotten because --max-connections were tracked",
            h.evicted.clone(),
        );
        r.register(
            "undecodable_frames",
            "Frames that could not be decoded (too short, malformed headers, unknown link type)",
            h.undecodable.clone(),
        );
        r.register(
            "records_not_written",
            "Records that could not be written (full disk, dead collector)",
            h.records_not_written.clone(),
        );
        r.register(
            "metric_destinations",
            "Destination label sets with their own series",
            h.destinations.clone(),
        );
        r.register(
            "metric_destinations_limit",
            "The most destination label sets with their own series (--metrics-max-destinations)",
            h.destinations_limit.clone(),
        );
        r.register(
            "metric_destinations_folded",
            "Records and events counted under server=\"other\" because the limit was reached",
            h.destinations_folded.clone(),
        );
        r.register(
            "capture_time",
            "Capture time of the latest event, seconds since the epoch",
            h.capture_time.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            families: Arc::new(f),
            health: h,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition (OpenMetrics, which Prometheus and promtool read; classic
    /// buckets for the histograms).
    pub fn encode_text(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// The Prometheus text format 0.0.4, for scrapers and tools that do not ask for
    /// OpenMetrics (curl, promtool, node_exporter's textfile collector): the OpenMetrics
    /// text with counter families named by their samples (`X_total`), and without the
    /// `# UNIT` and `# EOF` lines that format does not have.
    pub fn encode_prometheus_text(&self) -> String {
        openmetrics_to_prometheus(&self.encode_text())
    }

    /// The Prometheus protobuf exposition (length-delimited MetricFamily messages),
    /// with native histograms.
    pub fn encode_protobuf(&self) -> Result<Vec<u8>, String> {
        prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&self.registry)
            .map_err(|e| format!("encoding metrics: {e}"))
    }
}

/// OpenMetrics text to the Prometheus text format (see
/// [`Metrics::encode_prometheus_text`]).
pub fn openmetrics_to_prometheus(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((tag, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(&format!("{tag}{name}_total {tail}\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A destination's series, looked up once.
struct Dest {
    labels: Labels,
    handshakes: [Option<Counter>; 6],
    connections: [Option<Counter>; 6],
    /// By close (fin, rst, open) and closer (client, server, none).
    closes: [Option<Counter>; 9],
    syn_retx: Counter,
    synack_retx: Counter,
    bytes: [Counter; 2],
    packets: [Counter; 2],
    retx: [Counter; 2],
    gaps: [Counter; 2],
    exchanges: Counter,
    connect: Histogram,
    response: Histogram,
    rtt: Histogram,
}

fn with(labels: &Labels, k: &'static str, v: &str) -> Labels {
    let mut l = labels.clone();
    l.push((k, v.to_string()));
    l
}

impl Dest {
    fn new(f: &Families, labels: Labels) -> Dest {
        let c = |fam: &Family<Labels, Counter>| fam.get_or_create_owned(&labels);
        let dirs = |fam: &Family<Labels, Counter>| {
            ["c2s", "s2c"].map(|d| fam.get_or_create_owned(&with(&labels, "dir", d)))
        };
        Dest {
            handshakes: Default::default(),
            connections: Default::default(),
            closes: Default::default(),
            syn_retx: c(&f.syn_retx),
            synack_retx: c(&f.synack_retx),
            bytes: dirs(&f.bytes),
            packets: dirs(&f.packets),
            retx: dirs(&f.retx_packets),
            gaps: dirs(&f.gap_bytes),
            exchanges: c(&f.exchanges),
            connect: f.connect.get_or_create_owned(&labels),
            response: f.response.get_or_create_owned(&labels),
            rtt: f.rtt.get_or_create_owned(&labels),
            labels,
        }
    }
}

/// The counter in `slot`, made on first use as `family`'s series of `labels` plus one
/// more label: series a destination may never need (an outcome, a kind of close) are not
/// exported as zeros for every destination.
fn lazy<'a>(
    slot: &'a mut Option<Counter>,
    family: &Family<Labels, Counter>,
    labels: &Labels,
    extra: &[(&'static str, &str)],
) -> &'a Counter {
    slot.get_or_insert_with(|| {
        let mut l = labels.clone();
        l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        family.get_or_create_owned(&l)
    })
}

fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
}

/// What identifies a destination's label set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DestKey {
    server: Addr,
    port: Option<u16>,
    direction: Option<&'static str>,
    app: Option<&'static str>,
    name: Option<Box<str>>,
}

/// A direction's volume counters as far as they were counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Volume {
    payload_bytes: u64,
    pkts: u64,
    retx_pkts: u64,
    gap_bytes: u64,
}

impl Volume {
    fn of(d: &DirRecord) -> Volume {
        Volume {
            payload_bytes: d.payload_bytes,
            pkts: d.pkts,
            retx_pkts: d.retx_pkts as u64,
            gap_bytes: d.gap_bytes,
        }
    }

    /// What `self` (now) adds to `was` (each figure only forward).
    fn since(self, was: Volume) -> Volume {
        Volume {
            payload_bytes: self.payload_bytes.saturating_sub(was.payload_bytes),
            pkts: self.pkts.saturating_sub(was.pkts),
            retx_pkts: self.retx_pkts.saturating_sub(was.retx_pkts),
            gap_bytes: self.gap_bytes.saturating_sub(was.gap_bytes),
        }
    }
}

/// Feeds engine events into the metrics.
pub struct MetricsObserver {
    metrics: Metrics,
    cfg: MetricsConfig,
    dests: HashMap<DestKey, Dest, foldhash::fast::RandomState>,
    other: Option<Dest>,
    /// Open connections that had interim records: their volume counted so far (c2s,
    /// s2c). Removed at the final record; at most the engine's connections.
    counted: HashMap<ConnId, [Volume; 2], foldhash::fast::RandomState>,
}

impl MetricsObserver {
    pub fn new(metrics: Metrics, cfg: MetricsConfig) -> MetricsObserver {
        metrics
            .health
            .destinations_limit
            .set(cfg.max_destinations as i64);
        MetricsObserver {
            metrics,
            cfg,
            dests: HashMap::default(),
            other: None,
            counted: HashMap::default(),
        }
    }

    /// Connections whose volume was partly counted at interim records and whose final
    /// record has not come yet.
    pub fn partly_counted(&self) -> usize {
        self.counted.len()
    }

    /// Adds a record's volume not counted yet to `d`'s counters.
    fn count_volume(d: &mut Dest, now: [Volume; 2], was: [Volume; 2]) {
        for i in 0..2 {
            let v = now[i].since(was[i]);
            d.bytes[i].inc_by(v.payload_bytes);
            d.packets[i].inc_by(v.pkts);
            d.retx[i].inc_by(v.retx_pkts);
            d.gaps[i].inc_by(v.gap_bytes);
        }
    }

    fn record_key(&self, r: &ConnRecord) -> DestKey {
        let name = r.app.server_name.as_deref().or(r.app.dns_name.as_deref());
        self.key(&r.client, &r.server, r.server_port, r.app.app_proto, name)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn key(
        &self,
        client: &Addr,
        server: &Addr,
        port: u16,
        app: Option<&'static str>,
        name: Option<&str>,
    ) -> DestKey {
        DestKey {
            server: *server,
            port: self.cfg.port.then_some(port),
            direction: self
                .cfg
                .local
                .as_ref()
                .map(|l| l.direction(client, server).name()),
            app: if self.cfg.app {
                app.or(Some("unknown"))
            } else {
                None
            },
            name: if self.cfg.app {
                name.map(Box::from)
            } else {
                None
            },
        }
    }

    fn labels(&self, k: &DestKey, server: String) -> Labels {
        let mut l: Labels = vec![("server", server)];
        if let Some(p) = k.port {
            l.push(("port", p.to_string()));
        }
        if let Some(d) = k.direction {
            l.push(("direction", d.to_string()));
        }
        if let Some(a) = k.app {
            l.push(("app", a.to_string()));
            l.push(("name", k.name.as_deref().unwrap_or("").to_string()));
        }
        l
    }

    /// The series of `k`: its own while there is room, else `server="other"` (with no
    /// other label, so the fold is bounded too).
    fn dest(&mut self, k: DestKey) -> &mut Dest {
        if self.dests.contains_key(&k) || self.dests.len() < self.cfg.max_destinations {
            if !self.dests.contains_key(&k) {
                let mut labels = match self.cfg.anonymize.as_mut() {
                    Some(a) => {
                        let shown = a.addr(k.server).to_string();
                        self.labels(&k, shown)
                    }
                    None => self.labels(&k, k.server.to_string()),
                };
                if let Some(a) = self.cfg.anonymize.as_ref().filter(|a| a.hashes_names()) {
                    for (name, value) in &mut labels {
                        if *name == "name" && !value.is_empty() {
                            *value = a.name(value);
                        }
                    }
                }
                let d = Dest::new(&self.metrics.families, labels);
                self.dests.insert(k.clone(), d);
                self.metrics
                    .health
                    .destinations
                    .set(self.dests.len() as i64);
            }
            return self.dests.get_mut(&k).expect("inserted above");
        }
        self.metrics.health.destinations_folded.inc();
        let families = self.metrics.families.clone();
        // Every label of the fold says `other`: one series set, whatever was folded.
        let labels: Labels = self
            .labels(&k, String::new())
            .into_iter()
            .map(|(name, _)| (name, "other".to_string()))
            .collect();
        self.other
            .get_or_insert_with(|| Dest::new(&families, labels))
    }
}

impl Observer for MetricsObserver {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        let k = self.key(&e.client.addr, &e.server.addr, e.server.port, None, None);
        let k = DestKey {
            app: None,
            name: None,
            ..k
        };
        let families = self.metrics.families.clone();
        let d = self.dest(k);
        let slot = &mut d.handshakes[outcome_index(e.outcome)];
        lazy(
            slot,
            &families.handshakes,
            &d.labels,
            &[("outcome", e.outcome.name())],
        )
        .inc();
        self.metrics.health.capture_time.set(e.ts_ns as f64 / 1e9);
    }

    fn on_exchange(&mut self, e: &ExchangeEvent) {
        // Exchanges carry no L7 fields: counted under the destination's plain series.
        let k = self.key(&e.client.addr, &e.server.addr, e.server.port, None, None);
        let k = DestKey {
            app: k.app.map(|_| ""),
            name: None,
            ..k
        };
        let d = self.dest(k);
        d.exchanges.inc();
        d.response.observe(e.response_ns as f64 / 1e9);
    }

    fn on_connection(&mut self, r: &ConnRecord) {
        let k = self.record_key(r);
        let was = self.counted.remove(&r.id).unwrap_or_default();
        let families = self.metrics.families.clone();
        let d = self.dest(k);
        let slot = &mut d.connections[outcome_index(r.outcome)];
        lazy(
            slot,
            &families.connections,
            &d.labels,
            &[("outcome", r.outcome.name())],
        )
        .inc();
        if matches!(r.outcome, Outcome::Established | Outcome::Midstream) {
            let ci = match r.close {
                tcpsight_core::Close::Fin => 0,
                tcpsight_core::Close::Rst => 1,
                tcpsight_core::Close::Open => 2,
            };
            let (bi, by) = match r.closed_by {
                Some(tcpsight_core::Side::Client) => (0, "client"),
                Some(tcpsight_core::Side::Server) => (1, "server"),
                None => (2, "none"),
            };
            let slot = &mut d.closes[ci * 3 + bi];
            let extra = [("close", r.close.name()), ("by", by)];
            lazy(slot, &families.closes, &d.labels, &extra).inc();
        }
        d.syn_retx.inc_by(r.syn_count.saturating_sub(1) as u64);
        d.synack_retx
            .inc_by(r.synack_count.saturating_sub(1) as u64);
        Self::count_volume(d, [Volume::of(&r.c2s), Volume::of(&r.s2c)], was);
        if let Some(c) = r.connect_ns {
            d.connect.observe(c as f64 / 1e9);
        }
        if let Some(v) = wire_rtt_ns(r) {
            d.rtt.observe(v as f64 / 1e9);
        }
    }

    /// A long-lived connection's figures so far: its volume since the last count.
    fn on_interim(&mut self, r: &ConnRecord) {
        let k = self.record_key(r);
        let now = [Volume::of(&r.c2s), Volume::of(&r.s2c)];
        let was = self.counted.insert(r.id, now).unwrap_or_default();
        let d = self.dest(k);
        Self::count_volume(d, now, was);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_has_the_families_and_folds_beyond_the_limit() {
        let m = Metrics::new();
        let mut o = MetricsObserver::new(
            m.clone(),
            MetricsConfig {
                max_destinations: 2,
                ..Default::default()
            },
        );
        let mut r = ConnRecord::example();
        r.connect_ns = Some(1_500_000);
        for last in 1..=4u8 {
            r.server = Addr::from_v4([192, 0, 2, last]);
            o.on_connection(&r);
        }
        let t = m.encode_text();
        assert!(t.contains("# TYPE tcpsight_connections counter"), "{t}");
        assert!(
            t.contains(
                "tcpsight_connections_total{server=\"192.0.2.1\",outcome=\"established\"} 1"
            ),
            "{t}"
        );
        assert!(
            t.contains("tcpsight_connections_total{server=\"other\",outcome=\"established\"} 2"),
            "{t}"
        );
        assert!(!t.contains("192.0.2.3"), "{t}");
        assert!(
            t.contains("tcpsight_metric_destinations_folded_total 2"),
            "{t}"
        );
        assert!(
            t.contains("tcpsight_connect_seconds_count{server=\"192.0.2.2\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("tcpsight_connect_seconds_bucket{le=\"0.0025\",server=\"192.0.2.2\"} 1")
                || t.contains(
                    "tcpsight_connect_seconds_bucket{server=\"192.0.2.2\",le=\"0.0025\"} 1"
                ),
            "{t}"
        );
        assert!(!m.encode_protobuf().unwrap().is_empty());
    }

    /// The value of the one sample named `series` (labels included) in `t`.
    fn sample(t: &str, series: &str) -> Option<f64> {
        t.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn interim_records_count_volume_as_it_grows_and_the_connection_once() {
        let m = Metrics::new();
        let mut o = MetricsObserver::new(m.clone(), MetricsConfig::default());
        let mut r = ConnRecord::example();
        r.server = Addr::from_v4([192, 0, 2, 1]);
        r.connect_ns = Some(1_000_000);
        let bytes = "tcpsight_payload_bytes_total{server=\"192.0.2.1\",dir=\"c2s\"}";
        let back = "tcpsight_payload_bytes_total{server=\"192.0.2.1\",dir=\"s2c\"}";
        let pkts = "tcpsight_packets_total{server=\"192.0.2.1\",dir=\"c2s\"}";
        let conns = "tcpsight_connections_total{server=\"192.0.2.1\",outcome=\"established\"}";
        let connect = "tcpsight_connect_seconds_count{server=\"192.0.2.1\"}";
        // Two interim records of one connection, then its final record (cumulative
        // figures, as the engine gives them).
        for (c2s, s2c, p) in [(1_000, 50, 10), (5_000, 70, 30)] {
            r.c2s.payload_bytes = c2s;
            r.s2c.payload_bytes = s2c;
            r.c2s.pkts = p;
            o.on_interim(&r);
            let t = m.encode_text();
            assert_eq!(sample(&t, bytes), Some(c2s as f64), "{t}");
            assert_eq!(sample(&t, back), Some(s2c as f64), "{t}");
            assert_eq!(sample(&t, pkts), Some(p as f64), "{t}");
            // Not a connection yet: counted when it ends.
            assert_eq!(sample(&t, conns), None, "{t}");
            assert_eq!(sample(&t, connect), Some(0.0), "{t}");
        }
        assert_eq!(o.partly_counted(), 1);
        r.c2s.payload_bytes = 9_000;
        r.s2c.payload_bytes = 70;
        r.c2s.pkts = 44;
        o.on_connection(&r);
        assert_eq!(o.partly_counted(), 0);
        // Another connection of the same server, same slot id reused later: no interim,
        // so its record counts whole.
        let mut r2 = r.clone();
        r2.c2s.payload_bytes = 100;
        r2.s2c.payload_bytes = 1;
        r2.c2s.pkts = 2;
        o.on_connection(&r2);
        let t = m.encode_text();
        assert_eq!(sample(&t, bytes), Some(9_100.0), "{t}");
        assert_eq!(sample(&t, back), Some(71.0), "{t}");
        assert_eq!(sample(&t, pkts), Some(46.0), "{t}");
        assert_eq!(sample(&t, conns), Some(2.0), "{t}");
        assert_eq!(sample(&t, connect), Some(2.0), "{t}");
    }

    #[test]
    fn health_counters_follow_the_run_loops_counts() {
        let m = Metrics::new();
        let h = &m.health;
        let at = |frames, evicted, undecodable, drops| HealthCounts {
            frames,
            engine: tcpsight_core::EngineCounts {
                tcp_packets: frames,
                evicted,
                undecodable,
            },
            kernel_drops: drops,
        };
        h.advance(&HealthCounts::default(), &at(10, 2, 3, 1));
        h.advance(&at(10, 2, 3, 1), &at(25, 5, 3, 4));
        let t = m.encode_text();
        for (s, v) in [
            ("tcpsight_frames_total", 25.0),
            ("tcpsight_evicted_connections_total", 5.0),
            ("tcpsight_undecodable_frames_total", 3.0),
            ("tcpsight_kernel_drops_total", 4.0),
        ] {
            assert_eq!(sample(&t, s), Some(v), "{s}: {t}");
        }
    }
}
