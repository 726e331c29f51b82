//! Histograms of the record's main quantities over a whole run (`analyze
//! --histograms`, Tstat's histogram files): connect time, response time, wire RTT,
//! duration, client and server bytes, retransmission rate. Each is an [`ExpHistogram`]
//! with the layout and starting resolution of the monitor's bins (scale 3: bucket
//! bounds 2^(1/8) apart, 160 buckets before it coarsens), so the files, the bins and
//! the Prometheus native histograms read alike.

use serde_json::{Value, json};
use tcpsight_core::{ConnRecord, ExchangeEvent};

use crate::ExpHistogram;

pub const HIST_BUCKETS: usize = 160;
pub const HIST_SCALE: i32 = 3;

/// One quantity: its name in the file, its unit, what it measures.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    pub name: &'static str,
    pub unit: &'static str,
    pub what: &'static str,
}

pub const QUANTITIES: [Quantity; 7] = [
    Quantity {
        name: "connect",
        unit: "ns",
        what: "first SYN to the handshake's last ACK (connect_us), established connections",
    },
    Quantity {
        name: "response",
        unit: "ns",
        what: "each exchange's first request byte to first response byte",
    },
    Quantity {
        name: "rtt",
        unit: "ns",
        what: "wire RTT: the mean of the client's data to the server's ACK (c2s_rtt_avg_us)",
    },
    Quantity {
        name: "duration",
        unit: "ns",
        what: "first to last packet (duration_us), every connection",
    },
    Quantity {
        name: "client_bytes",
        unit: "bytes",
        what: "unique payload bytes sent by the client (c2s_unique_bytes), every connection",
    },
    Quantity {
        name: "server_bytes",
        unit: "bytes",
        what: "unique payload bytes sent by the server (s2c_unique_bytes), every connection",
    },
    Quantity {
        name: "retx_rate",
        unit: "ppm",
        what: "retransmitted packets per million packets, both directions, connections with packets",
    },
];

/// The histograms, in [`QUANTITIES`]' order.
#[derive(Clone, Debug)]
pub struct RecordHistograms {
    hists: [ExpHistogram; QUANTITIES.len()],
}

impl Default for RecordHistograms {
    fn default() -> Self {
        RecordHistograms {
            hists: std::array::from_fn(|_| ExpHistogram::new(HIST_BUCKETS, HIST_SCALE)),
        }
    }
}

impl RecordHistograms {
    pub fn on_connection(&mut self, r: &ConnRecord) {
        let [connect, _, rtt, duration, cb, sb, retx] = &mut self.hists;
        if let Some(c) = r.connect_ns {
            connect.add(c);
        }
        if let Some(v) = crate::table::wire_rtt_ns(r) {
            rtt.add(v);
        }
        duration.add(r.duration_ns());
        cb.add(r.c2s.unique_bytes);
        sb.add(r.s2c.unique_bytes);
        let pkts = r.c2s.pkts + r.s2c.pkts;
        let re = (r.c2s.retx_pkts + r.s2c.retx_pkts) as u64;
        if let Some(ppm) = re.saturating_mul(1_000_000).checked_div(pkts) {
            retx.add(ppm);
        }
    }

    pub fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.hists[1].add(e.response_ns);
    }

    pub fn merge(&mut self, o: &RecordHistograms) {
        for (a, b) in self.hists.iter_mut().zip(&o.hists) {
            a.merge(b);
        }
    }

    /// Each quantity with its histogram.
    pub fn iter(&self) -> impl Iterator<Item = (&Quantity, &ExpHistogram)> {
        QUANTITIES.iter().zip(&self.hists)
    }

    /// The JSON document: per quantity its unit, count, sum, min, max, nearest-rank
    /// p50/p95/p99 estimates, the native layout (scale, zero count, offset, counts) and
    /// the same buckets spelled out with their bounds.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (q, h) in self.iter() {
            m.insert(q.name.to_string(), hist_json(q, h));
        }
        Value::Object(m)
    }
}

fn hist_json(q: &Quantity, h: &ExpHistogram) -> Value {
    let buckets: Vec<Value> = h
        .nonempty_buckets()
        .map(|(lo, hi, c)| json!({"lower": lo, "upper": hi, "count": c}))
        .collect();
    json!({
        "unit": q.unit,
        "what": q.what,
        "count": h.count(),
        "sum": h.sum() as f64,
        "min": h.min(),
        "max": h.max(),
        "p50": h.quantile(0.5),
        "p95": h.quantile(0.95),
        "p99": h.quantile(0.99),
        "scale": h.scale(),
        "base": h.base(),
        "zero": h.zero_count(),
        "offset": h.positive_offset(),
        "counts": h.positive_counts(),
        "buckets": buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_counts_where_it_has_the_quantity() {
        let mut h = RecordHistograms::default();
        let mut r = ConnRecord::example();
        r.ts_first_ns = 0;
        r.ts_last_ns = 3_000_000;
        r.connect_ns = Some(1_000_000);
        r.c2s.pkts = 9;
        r.s2c.pkts = 11;
        r.s2c.retx_pkts = 1;
        r.s2c.unique_bytes = 1000;
        h.on_connection(&r);
        r.connect_ns = None;
        r.c2s.pkts = 0;
        r.s2c.pkts = 0;
        h.on_connection(&r);
        let j = h.to_json();
        assert_eq!(j["connect"]["count"], 2 - 1);
        assert_eq!(j["duration"]["count"], 2);
        assert_eq!(j["retx_rate"]["count"], 1);
        assert_eq!(j["retx_rate"]["min"], 50_000);
        assert_eq!(j["server_bytes"]["max"], 1000);
        assert_eq!(j["client_bytes"]["zero"], 2);
        // The buckets spelled out hold every positive value.
        let listed: u64 = j["duration"]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(listed, 2);
        let b = &j["duration"]["buckets"][0];
        assert!(b["lower"].as_f64().unwrap() < 3e6 && 3e6 <= b["upper"].as_f64().unwrap());
    }
}
