//! Distributions, filters and drill-down; a control-only capture agrees with the full one.

use std::collections::HashMap;
use std::process::Command;

use crate::common::data;

use serde_json::Value;

fn run(args: &[&str]) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v = if args.contains(&"--json") {
        serde_json::from_str(&text).unwrap()
    } else {
        Value::Null
    };
    (v, text)
}

fn flows(path: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["analyze", path, "--flows", "-"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const FULL: &str = "captures/generated/netns-25s-client.pcap.gz";
const CONTROL: &str = "derived/netns-25s-control-only.pcap.gz";

/// yconalyzer's promise, kept exactly: SYN, FIN and RST packets alone give each
/// connection's bytes (from the SYN and FIN sequence numbers) and its duration (first
/// SYN to last FIN/RST), the same as the full capture.
#[test]
fn control_only_capture_gives_the_same_bytes_and_durations() {
    let full = flows(&data(FULL));
    let control = flows(&data(CONTROL));
    let key = |r: &Value| {
        (
            r["client_ip"].to_string(),
            r["client_port"].as_u64(),
            r["ts_first"].to_string(),
        )
    };
    let control: HashMap<_, _> = control.iter().map(|r| (key(r), r)).collect();
    let mut compared = 0;
    for r in &full {
        // Closed by FINs both ways, no RST: the control packets carry the whole story.
        if r["close"] != "fin" || r["c2s_fin_pkts"] == 0 || r["s2c_fin_pkts"] == 0 {
            continue;
        }
        let c = control
            .get(&key(r))
            .unwrap_or_else(|| panic!("missing in control-only: {r}"));
        // (connect_us is not among them: the handshake's last ACK is not a control packet.)
        for f in [
            "c2s_unique_bytes",
            "s2c_unique_bytes",
            "closed_after_us",
            "syn_count",
            "synack_count",
            "outcome",
        ] {
            assert_eq!(r[f], c[f], "{f} of {}:{}", r["client_ip"], r["client_port"]);
        }
        compared += 1;
    }
    assert!(compared > 8_500, "compared {compared}");
}

#[test]
fn duration_buckets_are_consistent() {
    let (v, _) = run(&[
        "analyze",
        &data(FULL),
        "--json",
        "--buckets",
        "duration",
        "--bucket-size",
        "50",
    ]);
    let d = &v["distribution"];
    let b = d["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 11, "10 buckets and the overflow one");
    let total: u64 = b.iter().map(|x| x["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 9092);
    assert_eq!(d["connections"], 9092);
    assert!((b.last().unwrap()["cum_pct"].as_f64().unwrap() - 100.0).abs() < 1e-9);
    // 20 ms each way: most one-request connections take 2 to 3 round trips, 40-50 ms.
    assert!(b[0]["count"].as_u64().unwrap() > 8_000);
    // ab's 1 KiB responses: about 1,350 bytes from the server on average (headers too).
    let s = b[0]["avg_server_bytes"].as_f64().unwrap();
    assert!((1_200.0..1_500.0).contains(&s), "{s}");
    let syns = v["syn_attempts"].as_array().unwrap();
    assert_eq!(syns[0]["syns"], 1);
    let with_syn: u64 = syns
        .iter()
        .map(|x| x["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(with_syn, 9092);
}

#[test]
fn details_list_one_bucket_with_tcpdump_filters() {
    let (v, text) = run(&[
        "analyze",
        &data(FULL),
        "--json",
        "--buckets",
        "server-bytes",
        "--bucket-size",
        "1000000",
        "--details",
        "3",
    ]);
    let want = v["distribution"]["buckets"][2]["count"].as_u64().unwrap();
    let list = v["details"]["connections"].as_array().unwrap();
    assert_eq!(list.len() as u64, want);
    assert!(want > 0);
    for c in list {
        let sb = c["server_bytes"].as_u64().unwrap();
        assert!((2_000_000..3_000_000).contains(&sb), "{sb}");
        let f = c["tcpdump_filter"].as_str().unwrap();
        assert_eq!(
            f,
            format!(
                "host {} and host {} and port {}",
                c["client_ip"].as_str().unwrap(),
                c["server_ip"].as_str().unwrap(),
                c["client_port"]
            )
        );
    }
    assert!(text.contains("\"tcpdump_filter\": \"host 10.77.0.1 and host 10.77.0.2 and port "));
}

#[test]
fn min_syns_lists_retried_connections() {
    let (v, _) = run(&["analyze", &data(FULL), "--json", "--min-syns", "3"]);
    let list = v["min_syns"].as_array().unwrap();
    let from_attempts: u64 = v["syn_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["syns"].as_u64().unwrap() >= 3)
        .map(|x| x["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(list.len() as u64, from_attempts);
    assert!(!list.is_empty());
    for c in list {
        assert!(c["syn_count"].as_u64().unwrap() >= 3);
        // This kernel retries a SYN every second at first (tcp_syn_linear_timeouts): at
        // least two seconds lost to retries.
        assert!(c["syn_retry_us"].as_f64().unwrap() >= 1_900_000.0, "{c}");
    }
}

#[test]
fn filters_restrict_every_report() {
    let (all, _) = run(&["analyze", &data(FULL), "--json"]);
    let (https, _) = run(&["analyze", &data(FULL), "--json", "--port", "443"]);
    let (big, _) = run(&[
        "analyze",
        &data(FULL),
        "--json",
        "--server-bytes-min",
        "1000000",
    ]);
    let (late, _) = run(&["analyze", &data(FULL), "--json", "--since", "12:01:20"]);
    let (early, _) = run(&[
        "analyze",
        &data(FULL),
        "--json",
        "--until",
        "2026-11-22 12:01:20",
    ]);
    let n = |v: &Value| v["connections"].as_u64().unwrap();
    assert_eq!(n(&all), 9092);
    assert_eq!(https["connections_before_filter"], 9092);
    assert!(n(&https) > 0 && n(&https) < 100);
    for d in https["destinations"].as_array().unwrap() {
        assert!(d["host"].as_str().is_some());
    }
    assert!(n(&big) > 0 && n(&big) < 200);
    assert_eq!(
        n(&late) + n(&early),
        9092,
        "since and until split the trace"
    );
    let flows = flows(&data(FULL));
    let expected_big = flows
        .iter()
        .filter(|r| r["s2c_unique_bytes"].as_u64().unwrap() >= 1_000_000)
        .count();
    assert_eq!(n(&big) as usize, expected_big);
}

#[test]
fn bad_times_are_rejected_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["analyze", &data(FULL), "--since", "25:99"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected HH:MM:SS"));
}
