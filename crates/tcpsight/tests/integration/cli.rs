//! End-to-end runs of the `tcpsight` binary on captures in testdata/.

use std::process::{Command, Output, Stdio};

use crate::common::{data, tcpsight, text};

const GENERATED: &str = "captures/generated/netns-25s-client.pcap.gz";

#[test]
fn quick_start_capture_summary() {
    let out = tcpsight(&["analyze", &data(GENERATED)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    // Frames and connections as tshark counts them (testdata/oracle/SUMMARY.md): 9,092
    // streams; 28 ICMP unreachables, all quoting a SYN (capture manifest).
    assert!(
        s.contains("239,962 frames, 239,924 TCP, 28 ICMP errors (28 matched a connection)"),
        "{s}"
    );
    assert!(s.contains("Connections 9,092"), "{s}");
    assert!(s.contains("unreachable        28"), "{s}");
    assert!(s.contains("success           9,009"), "{s}");
    assert!(s.contains("pcap+gzip"), "{s}");
    assert!(s.contains("Destinations"), "{s}");
    assert!(
        s.lines()
            .any(|l| l.starts_with("10.77.0.2 ") && l.contains("9,012")),
        "{s}"
    );
}

#[test]
fn json_document_is_complete() {
    let out = tcpsight(&["analyze", &data(GENERATED), "--json", "--limit", "0"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["connections"], 9092);
    assert_eq!(v["frames"], 239_962);
    let o = &v["outcomes"];
    let total: u64 = [
        "established",
        "rejected",
        "unreachable",
        "timeout",
        "pending",
        "midstream",
    ]
    .iter()
    .map(|k| o[k].as_u64().unwrap())
    .sum();
    assert_eq!(total, 9092);
    let dest = v["destinations"].as_array().unwrap();
    let syn: u64 = dest.iter().map(|d| d["syn"].as_u64().unwrap()).sum();
    let conns: u64 = dest
        .iter()
        .map(|d| d["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(conns, 9092);
    assert!(syn <= conns && syn > 9000);
    let top = &dest[0];
    assert_eq!(top["host"], "10.77.0.2");
    // 20 ms of added one-way delay: the median handshake is a little over 20 ms.
    let p50 = top["lat_us_p50"].as_f64().unwrap();
    assert!((20_000.0..23_000.0).contains(&p50), "{p50}");
}

#[test]
fn flows_as_jsonl_and_csv_agree() {
    let j = tcpsight(&[
        "analyze",
        &data("captures/zeek/wikipedia.pcap"),
        "--flows",
        "-",
    ]);
    let c = tcpsight(&[
        "analyze",
        &data("captures/zeek/wikipedia.pcap"),
        "--flows",
        "-",
        "--format",
        "csv",
    ]);
    assert!(j.status.success() && c.status.success());
    // With flows on stdout, the report goes to stderr.
    assert!(text(&j.stderr).contains("Connections 10"));
    let lines: Vec<serde_json::Value> = text(&j.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 10);
    let csv = text(&c.stdout);
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let fields = text(&tcpsight(&["fields"]).stdout);
    assert_eq!(header, fields.lines().collect::<Vec<_>>());
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), 10);
    for (row, json) in rows.iter().zip(&lines) {
        assert_eq!(row.len(), header.len());
        for (name, cell) in header.iter().zip(row) {
            let v = &json[*name];
            match v {
                serde_json::Value::Null => assert_eq!(*cell, "", "field {name}"),
                serde_json::Value::String(s) => assert_eq!(s, cell, "field {name}"),
                serde_json::Value::Number(n) => {
                    assert_eq!(n.as_f64(), cell.parse::<f64>().ok(), "field {name}")
                }
                other => assert_eq!(&other.to_string(), cell, "field {name}"),
            }
        }
    }
    // Microsecond capture: 6 decimals, kept exactly (not through a float).
    assert!(text(&j.stdout).contains("\"ts_first\":1300475168.652003,"));
}

/// Issue 15.7: a nanosecond capture gives the same column types as a microsecond one
/// (integer microseconds, 6-decimal epoch seconds), and its nanoseconds stay exact in
/// the integer `ts_first_ns`.
#[test]
fn record_fields_have_one_type_whatever_the_timestamp_precision() {
    let fields = |capture: &str| -> serde_json::Map<String, serde_json::Value> {
        let out = tcpsight(&["analyze", &data(capture), "--flows", "-"]);
        let line = text(&out.stdout).lines().next().unwrap().to_string();
        serde_json::from_str(&line).unwrap()
    };
    let nano = fields("captures/tcpdump/tcp-handshake-nano.pcap");
    let micro = fields("captures/zeek/wikipedia.pcap");
    let text_of = |m: &serde_json::Map<String, serde_json::Value>, k: &str| m[k].to_string();
    assert_eq!(
        text_of(&nano, "ts_first").split('.').nth(1).unwrap().len(),
        6
    );
    let ns = nano["ts_first_ns"].as_u64().unwrap();
    assert_ne!(ns % 1000, 0, "nanoseconds kept: {ns}");
    for (k, v) in &nano {
        let (a, b) = (v, &micro[k]);
        if a.is_null() || b.is_null() {
            continue;
        }
        assert_eq!(
            (a.is_u64(), a.is_f64(), a.is_string(), a.is_boolean()),
            (b.is_u64(), b.is_f64(), b.is_string(), b.is_boolean()),
            "{k}: {a} vs {b}"
        );
        if k.ends_with("_us") {
            assert!(a.is_u64(), "{k}: {a}");
        }
    }
}

#[test]
fn several_files_are_one_trace_and_compression_is_detected_by_magic() {
    let a = tcpsight(&["analyze", &data("derived/wikipedia.pcap.zst"), "--json"]);
    let b = tcpsight(&[
        "analyze",
        &data("derived/sites-22-interfaces.pcapng.gz"),
        "--json",
    ]);
    let ab = tcpsight(&[
        "analyze",
        &data("derived/sites-22-interfaces.pcapng.gz"),
        &data("derived/wikipedia.pcap.zst"),
        "--json",
    ]);
    let n = |o: &Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["connections"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(n(&a), 10);
    assert_eq!(n(&b), 60);
    assert_eq!(n(&ab), 70);
    // And the zstd copy says exactly what the original says.
    let orig = tcpsight(&[
        "analyze",
        &data("captures/zeek/wikipedia.pcap"),
        "--flows",
        "-",
    ]);
    let zst = tcpsight(&[
        "analyze",
        &data("derived/wikipedia.pcap.zst"),
        "--flows",
        "-",
    ]);
    assert_eq!(orig.stdout, zst.stdout);
}

#[test]
fn stdin_is_read_with_dash() {
    let bytes = std::fs::read(data("captures/zeek/wikipedia.pcap")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["analyze", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connections"], 10);
}

/// Runs a damaged input: exit code 2, one line on stderr naming the file (and offset).
fn bad(rel: &str, expect: &str) -> Output {
    let path = data(rel);
    let out = tcpsight(&["analyze", &path]);
    assert_eq!(out.status.code(), Some(2), "{rel}");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&path), "names the file: {err}");
    assert!(err.contains(expect), "{rel}: {err}");
    assert!(!err.contains("panicked"));
    out
}

#[test]
fn bad_inputs_give_one_clear_line_and_exit_2() {
    bad("bad/empty.pcap", "empty file");
    bad("bad/garbage.bin", "byte 0: not a pcap or pcapng file");
    bad(
        "bad/unknown-linktype.pcap",
        "link type USER0 (147) not supported",
    );
    bad("bad", "is a directory");
    bad("bad/does-not-exist.pcap", "no such file");
}

#[test]
fn damaged_files_report_everything_before_the_damage() {
    let out = bad(
        "bad/truncated-mid-record.pcap",
        "byte 717: file ends in the middle of a record",
    );
    assert!(
        text(&out.stdout).contains("5 frames"),
        "{}",
        text(&out.stdout)
    );
    let out = bad(
        "bad/impossible-record-length.pcap",
        "byte 127: record length 4294967280 is impossible",
    );
    assert!(
        text(&out.stdout).contains("1 frames"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_bad_file_does_not_stop_the_good_ones() {
    let out = tcpsight(&[
        "analyze",
        &data("bad/garbage.bin"),
        &data("captures/zeek/wikipedia.pcap"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connections"], 10);
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
}

#[test]
fn snaplen_cut_packets_are_counted_and_still_analysed() {
    let out = tcpsight(&[
        "analyze",
        &data("captures/zeek/tcp-truncated-header-snaplen68.pcap"),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["frames"], 24);
    assert_eq!(v["tcp_packets"], 24);
    assert!(v["truncated"].as_u64().unwrap() > 0);
    assert_eq!(v["undecodable"], 0);
}

#[test]
fn every_link_type_in_the_corpus_decodes() {
    for (rel, link) in [
        ("captures/ndpi/KakaoTalk_talk-sll.pcap", "LINUX_SLL"),
        ("captures/suricata-verify/decode-sll2-02.pcap", "LINUX_SLL2"),
        ("captures/zeek/tls-openjdk-sll2.pcap", "LINUX_SLL2"),
        ("captures/gopacket/test_loopback-null.pcap", "NULL"),
        (
            "captures/suricata-verify/http-range-multiflows.pcap",
            "NULL",
        ),
        ("captures/zeek/http-qinq-0.pcap", "EN10MB"),
    ] {
        let out = tcpsight(&["analyze", &data(rel), "--json"]);
        assert!(out.status.success(), "{rel}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["link_types"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == link),
            "{rel}"
        );
        assert_eq!(v["undecodable"], 0, "{rel}");
        assert!(v["connections"].as_u64().unwrap() > 0, "{rel}");
    }
}

#[test]
fn table_sorts_limits_and_groups() {
    let path = data(GENERATED);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["analyze", path.as_str(), "--json"];
        a.extend_from_slice(args);
        serde_json::from_slice(&tcpsight(&a).stdout).unwrap()
    };
    let v = json(&["--sort", "lat", "--limit", "0"]);
    let lat: Vec<f64> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["lat_us_p95"].as_f64())
        .collect();
    assert!(lat.len() >= 2);
    assert!(lat.windows(2).all(|w| w[0] >= w[1]), "descending: {lat:?}");
    let v = json(&["--sort", "lat", "--reverse", "--limit", "0"]);
    let rev: Vec<f64> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["lat_us_p95"].as_f64())
        .collect();
    assert!(rev.windows(2).all(|w| w[0] <= w[1]), "ascending: {rev:?}");
    let v = json(&["--limit", "3"]);
    assert_eq!(v["destinations"].as_array().unwrap().len(), 3);
    let v = json(&["--group-by", "host:port", "--limit", "0"]);
    let hosts: Vec<&str> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["host"].as_str().unwrap())
        .collect();
    assert!(hosts.contains(&"10.77.0.2:80"), "{hosts:?}");
    assert!(hosts.contains(&"[fd77::2]:80"), "{hosts:?}");
    assert!(hosts.iter().any(|h| h.ends_with(":443")), "{hosts:?}");
}
