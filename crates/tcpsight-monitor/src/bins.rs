//! Time bins: the per-destination table per interval (the same `DestinationTable` that
//! `analyze` prints), with counts and histogram buckets, one JSON line per destination
//! (and direction, with `--local`) per interval. Used by the monitor's `bins` files and
//! by `analyze --interval`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tcpsight_agg::{DestinationTable, ExpHistogram, Grouping, HostKey};
use tcpsight_core::{Addr, ConnRecord, ExchangeEvent};

use crate::local::{Direction, LocalNets};

/// Buckets per histogram and the starting scale: scale 3 (bucket bounds a factor
/// 2^(1/8) = 1.09 apart) holds 160 buckets over 2^20, from microseconds to minutes
/// before it has to coarsen.
const HIST_BUCKETS: usize = 160;
const HIST_SCALE: i32 = 3;

/// Connect time, response time and wire RTT of one destination, in nanoseconds.
#[derive(Clone, Debug)]
struct Hists {
    connect: ExpHistogram,
    response: ExpHistogram,
    rtt: ExpHistogram,
}

impl Default for Hists {
    fn default() -> Self {
        let h = || ExpHistogram::new(HIST_BUCKETS, HIST_SCALE);
        Hists {
            connect: h(),
            response: h(),
            rtt: h(),
        }
    }
}

/// One direction's table and histograms.
struct Side {
    table: DestinationTable,
    hists: BTreeMap<HostKey, Hists>,
}

/// The figures of one interval, by direction and destination.
pub struct Bins {
    grouping: Grouping,
    local: Option<LocalNets>,
    sides: BTreeMap<Option<Direction>, Side>,
}

pub use tcpsight_agg::table::wire_rtt_ns;

impl Bins {
    pub fn new(grouping: Grouping, local: Option<LocalNets>) -> Bins {
        Bins {
            grouping,
            local,
            sides: BTreeMap::new(),
        }
    }

    fn direction(&self, client: &Addr, server: &Addr) -> Option<Direction> {
        self.local.as_ref().map(|l| l.direction(client, server))
    }

    fn side(&mut self, dir: Option<Direction>) -> &mut Side {
        let grouping = self.grouping;
        self.sides.entry(dir).or_insert_with(|| Side {
            table: DestinationTable::new(grouping),
            hists: BTreeMap::new(),
        })
    }

    pub fn on_connection(&mut self, r: &ConnRecord) {
        let dir = self.direction(&r.client, &r.server);
        let side = self.side(dir);
        side.table.on_connection(r);
        let key = side.table.key(r.client, r.server, r.server_port);
        let h = side.hists.entry(key).or_default();
        if let Some(c) = r.connect_ns {
            h.connect.add(c);
        }
        if let Some(v) = wire_rtt_ns(r) {
            h.rtt.add(v);
        }
    }

    pub fn on_exchange(&mut self, e: &ExchangeEvent) {
        let dir = self.direction(&e.client.addr, &e.server.addr);
        let side = self.side(dir);
        side.table.on_exchange(e);
        let key = side.table.key(e.client.addr, e.server.addr, e.server.port);
        side.hists
            .entry(key)
            .or_default()
            .response
            .add(e.response_ns);
    }

    pub fn is_empty(&self) -> bool {
        self.sides.values().all(|s| s.table.is_empty())
    }

    /// The interval's rows, in (direction, destination) order; the bins are emptied.
    /// `start_ns..end_ns` is the interval (rates are per second of it).
    pub fn take_rows(&mut self, start_ns: u64, end_ns: u64) -> Vec<Value> {
        let span_s = end_ns.saturating_sub(start_ns) as f64 / 1e9;
        let mut out = Vec::new();
        for (dir, side) in std::mem::take(&mut self.sides) {
            let mut keyed = side.table.keyed_rows(span_s);
            keyed.sort_by_key(|(k, _)| *k);
            let stats: BTreeMap<HostKey, _> = side
                .table
                .hosts()
                .map(|(k, s)| (*k, s.counters()))
                .collect();
            for (key, row) in keyed {
                let c = stats.get(&key).copied().unwrap_or_default();
                let mut m = Map::new();
                m.insert("interval_start".into(), epoch(start_ns));
                m.insert("interval_end".into(), epoch(end_ns));
                let addr_field = if self.grouping == Grouping::Client {
                    "client_ip"
                } else {
                    "server_ip"
                };
                m.insert(addr_field.into(), json!(key.addr().to_string()));
                if let Some(p) = key.port() {
                    m.insert("server_port".into(), json!(p));
                }
                if let Some(d) = dir {
                    m.insert("direction".into(), json!(d.name()));
                }
                let fields = [
                    ("conns", c.conns),
                    ("syn", c.syn),
                    ("synack", c.synack),
                    ("established", c.est),
                    ("rst", c.rst),
                    ("fin_client", c.fin_out),
                    ("fin_server", c.fin_in),
                    ("exchanges", c.exchanges),
                    ("messages_c2s", c.out_msgs),
                    ("messages_s2c", c.in_msgs),
                    ("pkts", c.pkts),
                    ("retx_pkts", c.retx),
                    ("gap_conns", c.gap_conns),
                    ("payload_bytes_c2s", c.bytes_out),
                    ("payload_bytes_s2c", c.bytes_in),
                    ("refused", c.refused),
                    ("unreachable", c.unreachable),
                    ("timed_out", c.timed_out),
                ];
                for (k, v) in fields {
                    m.insert(k.into(), json!(v));
                }
                let us = |v: Option<u64>| v.map_or(Value::Null, |ns| json!((ns + 500) / 1000));
                m.insert("connect_us_p50".into(), us(row.lat[0]));
                m.insert("connect_us_p95".into(), us(row.lat[1]));
                m.insert("connect_us_p99".into(), us(row.lat[2]));
                m.insert("response_us_p95".into(), us(row.resp_p95));
                m.insert("rtt_us_p50".into(), us(row.rtt[0]));
                m.insert("rtt_us_p95".into(), us(row.rtt[1]));
                m.insert("server_us_p95".into(), us(row.server[1]));
                m.insert("network_us_p95".into(), us(row.network[1]));
                m.insert("exchanges_per_conn_p95".into(), json!(row.qos_p95));
                let h = side.hists.get(&key).cloned().unwrap_or_default();
                m.insert(
                    "hist_ns".into(),
                    json!({
                        "connect": hist(&h.connect),
                        "response": hist(&h.response),
                        "rtt": hist(&h.rtt),
                    }),
                );
                out.push(Value::Object(m));
            }
        }
        out
    }
}

/// [`Bins`] over consecutive intervals of capture time: which interval is open, and its
/// rows when it closes. The monitor's `bins` files and `analyze --interval` share it.
pub struct Binner {
    pub bins: Bins,
    interval_ns: u64,
    start: Option<u64>,
}

impl Binner {
    pub fn new(bins: Bins, interval_ns: u64) -> Binner {
        Binner {
            bins,
            interval_ns: interval_ns.max(1),
            start: None,
        }
    }

    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Capture time reached `ts_ns`: the first time seen opens the first interval (at the
    /// multiple of the interval below it).
    pub fn see(&mut self, ts_ns: u64) {
        if self.start.is_none() {
            self.start = Some(ts_ns - ts_ns % self.interval_ns);
        }
    }

    /// Closes the open interval at `end_ns` (the engine's tick at an interval boundary,
    /// or SIGHUP's now) and opens the next there. A bin spans its whole interval (a
    /// capture that ends, or a jump in time, leaves it partly empty), except when cut
    /// short. Returns its rows (none when nothing happened in it).
    pub fn close(&mut self, end_ns: u64) -> Vec<Value> {
        let rows = self.rows_until(end_ns);
        self.start = Some(end_ns);
        rows
    }

    /// The rows of the open interval at the end of the input (its whole length).
    pub fn finish(&mut self) -> Vec<Value> {
        self.rows_until(u64::MAX)
    }

    fn rows_until(&mut self, end_ns: u64) -> Vec<Value> {
        let Some(start) = self.start else {
            return Vec::new();
        };
        if self.bins.is_empty() {
            return Vec::new();
        }
        let end = end_ns.clamp(start, start.saturating_add(self.interval_ns));
        self.bins.take_rows(start, end)
    }
}

fn epoch(ns: u64) -> Value {
    json!(ns / 1_000_000_000)
}

/// An exponential histogram as Prometheus native histograms and OpenTelemetry lay it
/// out: bucket `offset + i` holds values in (base^(offset+i), base^(offset+i+1)],
/// base = 2^(2^-scale); `zero` counts zeros.
fn hist(h: &ExpHistogram) -> Value {
    json!({
        "count": h.count(),
        "sum": h.sum() as u64,
        "scale": h.scale(),
        "zero": h.zero_count(),
        "offset": h.positive_offset(),
        "counts": h.positive_counts(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_by_direction_and_count() {
        let local = LocalNets::parse("10.0.0.0/8").unwrap();
        let mut b = Bins::new(Grouping::Host, Some(local));
        let mut r = ConnRecord::example();
        r.client = "10.0.0.1".parse::<std::net::IpAddr>().unwrap().into();
        r.server = "192.0.2.1".parse::<std::net::IpAddr>().unwrap().into();
        r.connect_ns = Some(2_000_000);
        b.on_connection(&r);
        b.on_connection(&r);
        std::mem::swap(&mut r.client, &mut r.server);
        b.on_connection(&r);
        let rows = b.take_rows(60_000_000_000, 120_000_000_000);
        assert!(b.is_empty());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["direction"], "in");
        assert_eq!(rows[0]["server_ip"], "10.0.0.1");
        assert_eq!(rows[0]["conns"], 1);
        assert_eq!(rows[1]["direction"], "out");
        assert_eq!(rows[1]["conns"], 2);
        assert_eq!(rows[1]["connect_us_p50"], 2000);
        assert_eq!(rows[1]["interval_start"], 60);
        assert_eq!(rows[1]["hist_ns"]["connect"]["count"], 2);
    }
}
