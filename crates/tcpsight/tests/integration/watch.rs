//! `tcpsight watch -r`: tcpeek's handshake monitor replayed from captures.

use std::process::{Command, Output};

use crate::common::data;

use serde_json::Value;

fn watch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .arg("watch")
        .args(args)
        .output()
        .unwrap()
}

const GEN: &str = "captures/generated/netns-25s-client.pcap.gz";

fn json_lines(out: &Output) -> (Vec<Value>, Value) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = v.pop().unwrap();
    (v, summary)
}

#[test]
fn one_line_per_decided_handshake_matching_analyze() {
    let (lines, summary) = json_lines(&watch(&["-r", &data(GEN), "--json"]));
    let count = |r: &str| lines.iter().filter(|l| l["result"] == r).count();
    // The same outcomes `analyze` reports for this capture (cli.rs).
    assert_eq!(count("success"), 9009);
    assert_eq!(count("rejected"), 29);
    assert_eq!(count("unreachable"), 28);
    assert_eq!(lines.len(), 9009 + 29 + 28);
    let all = &summary["summary"]["filters"][0];
    assert_eq!(all["filter"], "ALL");
    assert_eq!(all["success"]["total"], 9009);
    assert_eq!(all["failure"]["reject"], 29);
    assert_eq!(all["failure"]["unreach"], 28);
    assert_eq!(all["pending"], 26);
    // Every unreachable line carries the ICMP type and code it came from.
    for l in lines.iter().filter(|l| l["result"] == "unreachable") {
        let t = l["icmp"]["type"].as_u64().unwrap();
        assert!(t == 3 || t == 1, "{l}");
    }
    // Handshakes over a 20 ms link: the server side of the capture point takes ~20 ms.
    let ok: Vec<f64> = lines
        .iter()
        .filter(|l| l["result"] == "success")
        .map(|l| l["server_rtt_us"].as_f64().unwrap())
        .collect();
    let mut sorted = ok.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!((20_000.0..22_000.0).contains(&median), "{median}");
}

#[test]
fn named_filters_count_rx_tx_and_exclusions() {
    let (_, s) = json_lines(&watch(&[
        "-r",
        &data(GEN),
        "--json",
        "-q",
        "--local",
        "10.77.0.1/32",
        "--local",
        "fd77::1/128",
        "web:TX@*:80",
        "tls:TX@*:443",
        "in:RX@*:*",
        ":TX@10.77.8.0/24:*",
    ]));
    let f = s["summary"]["filters"].as_array().unwrap();
    let by = |name: &str| f.iter().find(|x| x["filter"] == name).unwrap().clone();
    // The IPv4 unreachables all go to 10.77.8.0/24, which is excluded; the IPv6 ones stay.
    let web = by("web");
    assert!(web["failure"]["unreach"].as_u64().unwrap() > 0);
    assert!(web["failure"]["unreach"].as_u64().unwrap() < 28);
    assert!(by("tls")["success"]["total"].as_u64().unwrap() > 0);
    // The capture is taken at the client: nothing connects to it.
    assert_eq!(by("in")["success"]["total"], 0);
}

#[test]
fn text_layout_and_quiet() {
    let out = watch(&["-r", &data("captures/zeek/tcp-syn-then-rst.pcap")]);
    let s = String::from_utf8(out.stdout).unwrap();
    let mut lines = s.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .contains("RESULTS      | DUP SYN  DUP S/A |  RTT(ms)")
    );
    lines.next();
    let row = lines.next().unwrap();
    assert!(row.contains("failure (reject)"), "{row}");
    assert!(row.contains("1.1.1.1:"), "{row}");
    assert!(s.contains("Connection Rejected   :      1"));
    let quiet = watch(&["-r", &data("captures/zeek/tcp-syn-then-rst.pcap"), "-q"]);
    let q = String::from_utf8(quiet.stdout).unwrap();
    assert!(!q.contains("failure (reject)"));
    assert!(q.contains("Connection Rejected   :      1"));
}

#[test]
fn bad_filters_are_refused() {
    for (args, msg) in [
        (vec!["x:IN@*:80"], "direction must be RX or TX"),
        (vec!["x:RX@*:80"], "give --local"),
        (
            vec!["x:TX@10.0.0.0/33:80", "--local", "10.0.0.1"],
            "bad prefix length",
        ),
    ] {
        let mut a = vec!["-r", "/dev/null"];
        a.extend(args);
        let out = watch(&a);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
