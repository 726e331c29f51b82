//! The application layer end to end (`analyze --l7 --http-log --tls-log`) on real kernel
//! traffic (testdata/captures/generated/l7-mix.pcap, tools/gen-l7-capture.sh), checked
//! against tshark's dissection of the same capture (testdata/oracle/l7, made by
//! tools/oracle/l7.sh) and against what the generator did.

use std::collections::HashMap;
use std::process::Command;

use crate::common::data;

use serde_json::Value;

/// Runs analyze with both logs and flows; returns (flows, http, tls) as JSON objects.
fn run(capture: &str) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["analyze", &data(capture), "--flows", &p("f.jsonl")])
        .args(["--http-log", &p("h.jsonl"), "--tls-log", &p("t.jsonl")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = |n: &str| -> Vec<Value> {
        std::fs::read_to_string(p(n))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    (lines("f.jsonl"), lines("h.jsonl"), lines("t.jsonl"))
}

/// tshark's rows of an oracle TSV, as maps from column name to value.
fn oracle(name: &str) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(data(&format!("oracle/l7/{name}"))).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[test]
fn http_transactions_are_the_requests_and_responses_tshark_dissects() {
    let (_, http, _) = run("captures/generated/l7-mix.pcap");
    let rows = oracle("l7-mix.http.tsv");
    // Requests in the order each client sent them: method, host, URI.
    let mut want: Vec<(String, String, String, String)> = rows
        .iter()
        .filter(|r| r["http.request"] == "1")
        .map(|r| {
            let uri = r["http.request.uri"].clone();
            (
                r["tcp.srcport"].clone(),
                r["http.request.method"].clone(),
                r["http.host"].clone(),
                uri,
            )
        })
        .collect();
    let mut got: Vec<_> = http
        .iter()
        .map(|t| {
            (
                s(t, "client_port"),
                s(t, "method"),
                s(t, "host"),
                s(t, "uri"),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(got.len(), 13);
    // Final status codes per connection, in order (tshark lists the 100 Continue as a
    // response of its own; the transaction keeps it as info_code).
    let mut want_codes: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows.iter().filter(|r| r["http.response"] == "1") {
        if r["http.response.code"] != "100" {
            want_codes
                .entry(r["tcp.dstport"].clone())
                .or_default()
                .push(r["http.response.code"].clone());
        }
    }
    let mut got_codes: HashMap<String, Vec<String>> = HashMap::new();
    for t in &http {
        got_codes
            .entry(s(t, "client_port"))
            .or_default()
            .push(s(t, "status_code"));
    }
    assert_eq!(got_codes, want_codes);
    let post = http.iter().find(|t| s(t, "method") == "POST").unwrap();
    assert_eq!(
        (s(post, "info_code"), s(post, "status_code")),
        ("100".into(), "200".into())
    );
    assert_eq!(post["request_body_len"], 2000);
    // The generator's server waits 200 ms before answering /slow.
    let slow = http.iter().find(|t| s(t, "uri") == "/slow").unwrap();
    let us = slow["response_us"].as_u64().unwrap();
    assert!((200_000..230_000).contains(&us), "{us}");
    // Chunked, and delimited by the connection's close.
    let chunked = http.iter().find(|t| s(t, "uri") == "/chunked").unwrap();
    assert!(chunked["response_body_len"].as_u64().unwrap() > 0);
    let close = http.iter().find(|t| s(t, "uri") == "/close").unwrap();
    assert!(s(close, "flags").contains("resp_until_close"), "{close}");
}

#[test]
fn tls_handshakes_have_tsharks_server_names_alpn_and_fingerprints() {
    let (_, _, tls) = run("captures/generated/l7-mix.pcap");
    let rows = oracle("l7-mix.tls.tsv");
    let mut want: Vec<_> = rows
        .iter()
        .filter(|r| r["tls.handshake.type"].split(';').next() == Some("1"))
        .map(|r| {
            let alpn = r["tls.handshake.extensions_alpn_str"].replace(';', ",");
            (
                r["tcp.srcport"].clone(),
                r["tls.handshake.extensions_server_name"].clone(),
                alpn,
                r["tls.handshake.ja3"].clone(),
            )
        })
        .collect();
    let mut got: Vec<_> = tls
        .iter()
        .map(|t| {
            (
                s(t, "client_port"),
                s(t, "server_name"),
                s(t, "alpn_offered"),
                s(t, "ja3"),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(got.len(), 5);
    let ja3s: Vec<String> = rows
        .iter()
        .filter(|r| r["tls.handshake.type"].split(';').next() == Some("2"))
        .map(|r| r["tls.handshake.ja3s"].clone())
        .collect();
    for t in &tls {
        assert!(ja3s.contains(&s(t, "ja3s")), "{t}");
        assert_eq!(t["established"], true, "{t}");
    }
    let versions: Vec<String> = tls.iter().map(|t| s(t, "version")).collect();
    assert_eq!(versions.iter().filter(|v| *v == "TLSv1.2").count(), 1);
    assert_eq!(versions.iter().filter(|v| *v == "TLSv1.3").count(), 4);
}

#[test]
fn records_name_their_protocol_and_the_name_the_client_resolved() {
    let (flows, _, _) = run("captures/generated/l7-mix.pcap");
    let by_port =
        |port: u64| -> Vec<&Value> { flows.iter().filter(|f| f["server_port"] == port).collect() };
    for (port, proto) in [
        (80, "http"),
        (443, "tls"),
        (8080, "http"),
        (22, "ssh"),
        (25, "smtp"),
        (6379, "redis"),
        (53, "dns"),
    ] {
        let conns = by_port(port);
        assert!(!conns.is_empty(), "port {port}");
        for c in conns {
            assert_eq!(s(c, "app_proto"), proto, "{c}");
        }
    }
    for c in by_port(443) {
        assert_eq!(s(c, "server_name"), "l7.test");
    }
    // The DNS answers came after the first connections to 10.78.0.2 began: those have
    // no dns_name; the connection made after resolving www.l7.test (a CNAME chain)
    // carries the name asked for.
    let www = flows
        .iter()
        .find(|f| s(f, "dns_name") == "www.l7.test" && f["server_port"] == 80)
        .unwrap();
    assert_eq!(s(www, "server_name"), "www.l7.test");
    // api.l7.test's AAAA went to the client's IPv4 address; it connected from its IPv6
    // one: another client address, so no name (DN-Hunter keys by client address, as
    // Tstat does), though the Host header still names the server.
    let api = flows
        .iter()
        .find(|f| s(f, "server_ip") == "fd78::2" && f["server_port"] == 80)
        .unwrap();
    assert!(api["dns_name"].is_null(), "{api}");
    assert_eq!(s(api, "server_name"), "api.l7.test");
    let first = flows
        .iter()
        .min_by_key(|f| f["ts_first_ns"].as_u64())
        .unwrap();
    assert!(first["dns_name"].is_null(), "{first}");
    let http = by_port(80)
        .into_iter()
        .find(|f| f["client_port"] == 36668)
        .unwrap();
    assert_eq!(
        (http["http_requests"].as_u64(), http["http_4xx"].as_u64()),
        (Some(5), Some(1))
    );
}

#[test]
fn l7_is_off_by_default_and_records_then_carry_nulls() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args([
            "analyze",
            &data("captures/generated/l7-mix.pcap"),
            "--flows",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 14);
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(
            v["app_proto"].is_null() && v["server_name"].is_null(),
            "{l}"
        );
    }
}

/// Issue 11, section 4: where each exchange's time went. On l7-mix the server sleeps
/// 200 ms before answering /slow; on netns-25s the userspace wire delays every frame to
/// the client by 20 ms and the servers answer at once (nginx from memory).
#[test]
fn exchange_time_splits_into_server_time_and_network_time() {
    let (flows, http, _) = run("captures/generated/l7-mix.pcap");
    let slow = http.iter().find(|t| s(t, "uri") == "/slow").unwrap();
    let port = slow["client_port"].clone();
    let conn = flows.iter().find(|f| f["client_port"] == port).unwrap();
    let server_max = conn["server_us_max"].as_u64().unwrap();
    assert!((199_000..215_000).contains(&server_max), "{conn}");
    // The other exchanges of that connection took no server time to speak of.
    let rest = conn["server_us_total"].as_u64().unwrap() - server_max;
    assert!(rest < 10_000, "{conn}");
    assert!(conn["response_transfer_us_total"].as_u64().is_some());

    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args([
            "analyze",
            &data("captures/generated/netns-25s-client.pcap.gz"),
            "--json",
        ])
        .output()
        .unwrap();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = j["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == "10.77.0.2")
        .unwrap();
    let f = |k: &str| web[k].as_f64().unwrap();
    assert!(f("server_us_p50") < 2_000.0, "{web}");
    assert!((19_000.0..30_000.0).contains(&f("network_us_p50")), "{web}");
}

/// `--group-by name` and `--group-by app`: the per-destination table keyed by what the
/// application layer showed, with no reverse-DNS lookup; every connection in some row.
#[test]
fn the_table_groups_by_server_name_or_application_protocol() {
    let json = |g: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
            .args([
                "analyze",
                &data("captures/generated/l7-mix.pcap"),
                "--json",
                "--group-by",
                g,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let rows = |v: &Value| -> HashMap<String, u64> {
        v["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (s(r, "host"), r["connections"].as_u64().unwrap()))
            .collect()
    };
    let apps = rows(&json("app"));
    let want: HashMap<String, u64> = [
        ("http", 5),
        ("tls", 5),
        ("dns", 1),
        ("ssh", 1),
        ("smtp", 1),
        ("redis", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(apps, want);
    let names = rows(&json("name"));
    assert_eq!(names["l7.test"], 6, "{names:?}");
    assert_eq!(names["api.l7.test"], 1, "{names:?}");
    assert!(names.contains_key("www.l7.test"), "{names:?}");
    let total: u64 = names.values().sum();
    assert_eq!(total, 14, "every connection in some row");
}
