//! Issue 13 §4: `--anonymize` in the long-running faces. monitor's records, bins and
//! L7 logs, watch's lines and metrics labels, top's rows show each address as CryptoPAn
//! maps it under the key (the same mapping analyze uses), while `--local` and the
//! filters keep working on the real addresses: the anonymized outputs are the plain
//! ones with addresses mapped, and nothing else changed.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{data, first_stderr_line, tcpsight, text};
use crate::export::KEY;
use crate::monitor::{files, http_get, unzstd};

fn keyfile(dir: &Path) -> String {
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let p = dir.join("key");
    std::fs::write(&p, hex).unwrap();
    p.to_str().unwrap().to_string()
}

fn map(ip: &str) -> String {
    tcpsight_anon::CryptoPan::new(&KEY)
        .ip(ip.parse().unwrap())
        .to_string()
}

/// `ip:port` or `[ip6]:port`, mapped.
fn map_endpoint(e: &str) -> String {
    let (ip, port) = e.rsplit_once(':').unwrap();
    match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
        Some(v6) => format!("[{}]:{port}", map(v6)),
        None => format!("{}:{port}", map(ip)),
    }
}

/// Every JSON line of every file whose name ends with `suffix`, in file order.
fn lines_of(dir: &Path, suffix: &str) -> Vec<Value> {
    files(dir)
        .into_iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .flat_map(|(k, v)| {
            let t = if k.ends_with(".zst") {
                unzstd(&v)
            } else {
                String::from_utf8(v).unwrap()
            };
            t.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `plain` with the values of `keys` mapped equals `anon`, line for line; returns how
/// many addresses were compared.
fn same_but_mapped(what: &str, plain: &[Value], anon: &[Value], keys: &[&str]) -> usize {
    assert_eq!(plain.len(), anon.len(), "{what}");
    assert!(!plain.is_empty(), "{what}: nothing to compare");
    let mut n = 0;
    for (p, a) in plain.iter().zip(anon) {
        let mut want = p.clone();
        for k in keys {
            if let Some(s) = p[*k].as_str() {
                want[*k] = if s.contains(':') && s.contains('.') || s.starts_with('[') {
                    map_endpoint(s).into()
                } else {
                    map(s).into()
                };
                assert_ne!(a[*k], p[*k], "{what}: {k} not mapped");
                n += 1;
            }
        }
        assert_eq!(&want, a, "{what}");
    }
    n
}

#[test]
fn monitor_records_bins_and_l7_logs_are_anonymized_and_local_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keyfile(tmp.path());
    let cap = data("captures/generated/l7-mix.pcap");
    let run = |tag: &str, extra: &[&str]| {
        let out = tmp.path().join(tag);
        let mut args = vec!["monitor", "-r", &cap, "-o", out.to_str().unwrap()];
        args.extend([
            "--l7",
            "--local",
            "10.78.0.1/32,fd78::1/128",
            "--format",
            "jsonl",
        ]);
        args.extend(extra);
        let o = tcpsight(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        out
    };
    let plain = run("plain", &[]);
    let anon = run("anon", &["--anonymize", &key]);
    let mut n = 0;
    let records = lines_of(&plain, "flows.jsonl");
    // --local was applied to the real addresses: the directions are there.
    assert!(
        records.iter().all(|r| r["direction"] == "out"),
        "{records:#?}"
    );
    n += same_but_mapped(
        "records",
        &records,
        &lines_of(&anon, "flows.jsonl"),
        &["client_ip", "server_ip"],
    );
    n += same_but_mapped(
        "bins",
        &lines_of(&plain, "bins.jsonl"),
        &lines_of(&anon, "bins.jsonl"),
        &["server_ip"],
    );
    for log in ["http.jsonl", "tls.jsonl"] {
        n += same_but_mapped(
            log,
            &lines_of(&plain, log),
            &lines_of(&anon, log),
            &["client_ip", "server_ip"],
        );
    }
    assert!(n >= 40, "{n} addresses compared");
}

#[test]
fn watch_lines_and_metrics_and_top_rows_are_anonymized() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keyfile(tmp.path());
    let cap = data("captures/generated/netns-25s-client.pcap.gz");
    // watch: the lines; a filter on a real address still counts.
    let watch = |extra: &[&str]| {
        let mut args = vec!["watch", "-r", &cap, "--json", "web:TX@10.77.0.2:80"];
        args.extend(["--local", "10.77.0.1"]);
        args.extend(extra);
        let o = tcpsight(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let mut v: Vec<Value> = text(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary = v.pop().unwrap();
        (v, summary)
    };
    let (plain, plain_summary) = watch(&[]);
    let (anon, anon_summary) = watch(&["--anonymize", &key]);
    same_but_mapped("watch lines", &plain, &anon, &["client", "server"]);
    assert_eq!(plain_summary, anon_summary);
    // The filter names a real address and still matches (8,650 successes on port 80).
    let web = anon_summary["summary"]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filter"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web["success"]["total"], 8650, "{web}");

    // top: the rows.
    let top = |extra: &[&str]| {
        let mut args = vec!["top", "-r", &cap, "--once", "--json"];
        args.extend(extra);
        let o = tcpsight(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["destinations"].as_array().unwrap().clone()
    };
    let rows = same_but_mapped(
        "top rows",
        &top(&[]),
        &top(&["--anonymize", &key]),
        &["host"],
    );
    assert!(rows >= 3, "{rows} rows");
    let o = tcpsight(&[
        "top",
        "-r",
        &cap,
        "--once",
        "--resolve",
        "--anonymize",
        &key,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--resolve would ask DNS"),
        "{}",
        text(&o.stderr)
    );
    let o = tcpsight(&["watch", "-r", &cap, "--anonymize", &key, "-w", "/dev/null"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("-w keeps packets as they were seen"));

    // watch --metrics: the server labels are the mapped addresses, never the real ones.
    let mut w = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["watch", "-r", &cap, "-q", "--metrics", "127.0.0.1:0"])
        .args(["--anonymize", &key])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_stderr_line(&mut w);
    let addr = first
        .split("metrics at http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let mut exposition = String::new();
    for _ in 0..100 {
        exposition = http_get(&addr, "/metrics");
        if exposition.contains(&map("10.77.0.2")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = w.kill();
    let _ = w.wait();
    assert!(
        exposition.contains(&format!("server=\"{}\"", map("10.77.0.2"))),
        "{exposition}"
    );
    assert!(!exposition.contains("10.77.0.2\""), "{exposition}");
}
