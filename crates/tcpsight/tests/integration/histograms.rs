//! `analyze --histograms`: each histogram recomputed from the connection records of the
//! same run (the bundled capture has microsecond timestamps, so the records' whole
//! microseconds are the engine's exact nanoseconds): every value lies in a listed
//! bucket, and every bucket's count is the number of values within its bounds. The
//! plots: one file per quantity, titled with its count.

use serde_json::Value;

use crate::golden::analyze;

const CAPTURE: &str = "testdata/captures/generated/netns-25s-client.pcap.gz";

/// The values a quantity takes over the records, as the histogram should hold them.
fn values(records: &[Value], name: &str) -> Vec<u64> {
    let u = |r: &Value, k: &str| r[k].as_u64();
    records
        .iter()
        .filter_map(|r| match name {
            "connect" => u(r, "connect_us").map(|v| v * 1000),
            "duration" => u(r, "duration_us").map(|v| v * 1000),
            "client_bytes" => u(r, "c2s_unique_bytes"),
            "server_bytes" => u(r, "s2c_unique_bytes"),
            "retx_rate" => {
                let pkts = u(r, "c2s_pkts")? + u(r, "s2c_pkts")?;
                let re = u(r, "c2s_retx_pkts")? + u(r, "s2c_retx_pkts")?;
                (pkts > 0).then(|| re * 1_000_000 / pkts)
            }
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn histograms_hold_exactly_the_records_values() {
    let path = format!("{}/hist.json", env!("CARGO_TARGET_TMPDIR"));
    let (code, out, err) = analyze(CAPTURE, &["--flows", "-", "--histograms", &path]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    let records: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 9092);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let h = &doc["histograms"];
    for name in [
        "connect",
        "duration",
        "client_bytes",
        "server_bytes",
        "retx_rate",
    ] {
        let vals = values(&records, name);
        let q = &h[name];
        assert_eq!(q["count"], vals.len() as u64, "{name}");
        assert_eq!(
            q["zero"],
            vals.iter().filter(|v| **v == 0).count() as u64,
            "{name}"
        );
        assert_eq!(q["min"], *vals.iter().min().unwrap(), "{name}");
        assert_eq!(q["max"], *vals.iter().max().unwrap(), "{name}");
        let buckets = q["buckets"].as_array().unwrap();
        let mut listed = 0;
        for b in buckets {
            let (lo, hi) = (b["lower"].as_f64().unwrap(), b["upper"].as_f64().unwrap());
            let n = vals
                .iter()
                .filter(|v| lo < **v as f64 && **v as f64 <= hi)
                .count() as u64;
            assert_eq!(b["count"], n, "{name} bucket ({lo}, {hi}]");
            listed += n;
        }
        assert_eq!(
            listed + q["zero"].as_u64().unwrap(),
            vals.len() as u64,
            "{name}"
        );
        // The native layout is the same buckets.
        assert_eq!(
            q["scale"], 3,
            "{name}: 160 buckets at scale 3 hold this capture"
        );
        let dense: u64 = q["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(dense, listed, "{name}");
    }
    // RTT: one value per record with a client-data RTT; responses: one per exchange.
    let rtts = records
        .iter()
        .filter(|r| r["c2s_rtt_avg_us"].is_number())
        .count();
    assert_eq!(h["rtt"]["count"], rtts as u64);
    let exchanges: u64 = records
        .iter()
        .map(|r| r["exchanges"].as_u64().unwrap())
        .sum();
    assert_eq!(h["response"]["count"], exchanges);
}

#[test]
fn histogram_plots_one_file_per_quantity() {
    let dir = format!("{}/hist-plots", env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, _, err) = analyze(CAPTURE, &["--histogram-plots", &dir]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    for q in tcpsight_agg::recordhist::QUANTITIES {
        let svg = std::fs::read_to_string(format!("{dir}/{}.svg", q.name)).unwrap();
        let texts = tcpsight_probe::plot::svg_texts(&svg);
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with(&format!("{} (", q.name)) && t.contains(" values")),
            "{}: {texts:?}",
            q.name
        );
    }
    let (code, _, _) = analyze(
        CAPTURE,
        &["--histogram-plots", &dir, "--plot-format", "png"],
    );
    assert_eq!(code, Some(0));
    let size = tcpsight_probe::plot::png_size(std::path::Path::new(&format!("{dir}/connect.png")));
    assert_eq!(size, Some((900, 500)));
}
