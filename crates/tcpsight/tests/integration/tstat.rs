//! Tstat's per-flow columns against tshark, and the keep-alive rule against tcptrace.
//!
//! testdata/oracle/tstat-columns.csv holds, per connection and direction, what tshark's
//! dissected fields give for TTL, windows, SACK blocks, pure ACKs, data packets, payload
//! times and the in-flight maximum (tools/oracle/tstat_columns.py computes them with the
//! definitions of docs/fields.md). Every connection seen from its SYN must agree exactly.

use std::collections::HashMap;

use tcpsight_core::{ConnRecord, Value};

use crate::oracle::{analyse, root};

fn field(r: &ConnRecord, name: &str) -> String {
    let mut s = None;
    r.for_each_field(|n, v| {
        if n == name {
            s = Some(match v {
                Value::Null => String::new(),
                Value::U64(x) => x.to_string(),
                Value::Micros(ns) => ns.saturating_add(500).div_euclid(1000).to_string(),
                other => format!("{other:?}"),
            });
        }
    });
    s.unwrap_or_else(|| panic!("no field {name}"))
}

#[test]
fn tstat_columns_agree_with_tshark_fields() {
    let text = std::fs::read_to_string(root().join("testdata/oracle/tstat-columns.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<HashMap<&str, &str>> = lines
        .map(|l| header.iter().copied().zip(l.split(',')).collect())
        .collect();
    let mut by_capture: HashMap<&str, Vec<&HashMap<&str, &str>>> = HashMap::new();
    for r in &rows {
        by_capture.entry(r["capture"]).or_default().push(r);
    }
    let (mut compared, mut mismatches) = (0, Vec::new());
    for (cap, rows) in &by_capture {
        let records = analyse(&root().join("testdata/captures").join(cap));
        let key = |ip: String, p: u64, sip: String, sp: u64| format!("{ip}:{p}>{sip}:{sp}");
        let mut recs: HashMap<String, Vec<&ConnRecord>> = HashMap::new();
        for r in &records {
            let k = key(
                r.client.to_string(),
                r.client_port as u64,
                r.server.to_string(),
                r.server_port as u64,
            );
            recs.entry(k).or_default().push(r);
        }
        let mut tuples: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let k = format!(
                "{}:{}>{}:{}",
                row["client_ip"], row["client_port"], row["server_ip"], row["server_port"]
            );
            *tuples.entry(k).or_default() += 1;
        }
        for row in rows {
            let k = format!(
                "{}:{}>{}:{}",
                row["client_ip"], row["client_port"], row["server_ip"], row["server_port"]
            );
            // Port reuse: tuples with several connections are matched by the oracle test.
            let Some([rec]) = recs.get(&k).map(|v| v.as_slice()) else {
                continue;
            };
            if tuples[&k] != 1 {
                continue;
            }
            compared += 1;
            for col in &header[5..] {
                let ours = field(rec, col);
                if ours != row[col] {
                    mismatches.push(format!("{cap} {k} {col}: ours {ours}, tshark {}", row[col]));
                }
            }
        }
    }
    assert!(compared >= 500, "only {compared} connections compared");
    assert!(
        mismatches.is_empty(),
        "{} of {} connections' columns differ:\n{}",
        mismatches.len(),
        compared,
        mismatches[..mismatches.len().min(40)].join("\n")
    );
}

/// A one-byte segment at the next sequence number minus one is a keep-alive only when
/// that byte was already acknowledged. On the loopback echo capture, 22 such bytes are
/// sent again before any ACK covered them (200 ms retransmission timeouts): tshark 4.0
/// flags them `tcp.analysis.keep_alive` (the client ports below), tcptrace counts them as
/// retransmissions, and so does tcpsight. tcptrace's "rexmt data pkts" counts a
/// retransmitted SYN too: every connection's `c2s_retx_pkts` equals it.
#[test]
fn unacknowledged_byte_resent_is_a_retransmission_not_a_keep_alive() {
    const RESENT: [u16; 22] = [
        37786, 37818, 37828, 37844, 37874, 37886, 37910, 37916, 37938, 37942, 37998, 38058, 38060,
        38118, 38202, 38230, 38276, 38304, 38306, 38316, 38318, 38326,
    ];
    let records = analyse(&root().join("testdata/captures/zeek/echo-connections.pcap"));
    let text =
        std::fs::read_to_string(root().join("testdata/oracle/zeek__echo-connections.tcptrace.csv"))
            .unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut expected: HashMap<u16, u64> = HashMap::new();
    for l in lines {
        let row: HashMap<&str, &str> = header.iter().copied().zip(l.split(',')).collect();
        expected.insert(
            row["client_port"].parse().unwrap(),
            row["c2s_rexmt_data_pkts"].parse().unwrap(),
        );
    }
    assert_eq!(records.len(), 500);
    for r in &records {
        assert_eq!(
            r.c2s.retx_pkts as u64, expected[&r.client_port],
            "port {}",
            r.client_port
        );
    }
    let mut checked = 0;
    for r in records.iter().filter(|r| RESENT.contains(&r.client_port)) {
        // Data retransmissions: SYN retransmissions left out.
        let data = r.c2s.retx_pkts as u64 - r.syn_count.saturating_sub(1) as u64;
        assert!(data >= 1, "port {}", r.client_port);
        if r.client_port == 37844 {
            // Frame 6442: the byte of frame 1428 again, 200 ms later, unacknowledged.
            assert_eq!((r.c2s.retx_pkts, r.c2s.retx_bytes), (1, 1));
            assert!(r.history.contains('T'), "{}", r.history);
        }
        checked += 1;
    }
    assert_eq!(checked, RESENT.len());
}
