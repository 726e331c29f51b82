//! The export sinks against the real engines that read them (docs/export.md): Parquet
//! files read by DuckDB and chDB, IPFIX received by nfdump's nfcapd and decoded by
//! tshark, rows inserted into a ClickHouse server started here; and anonymization
//! applied to every output.
//!
//! Outside CI a missing engine skips its test with a line saying what to install; with
//! TCPSIGHT_REQUIRE_EXPORT set (CI installs them all: .ci/run) a missing one fails.
//! DuckDB and chDB come from a Python environment: TCPSIGHT_PYTHON, or
//! target/export-venv/bin/python as .ci/run makes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{data, tcpsight, text};

/// Skips (prints why, returns None) or, when CI requires the engines, fails.
pub fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("TCPSIGHT_REQUIRE_EXPORT").is_some() {
        panic!("TCPSIGHT_REQUIRE_EXPORT is set but {what}");
    }
    eprintln!("skipped: {what}");
    None
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with duckdb and chdb.
pub(crate) fn python() -> Option<PathBuf> {
    let p = std::env::var_os("TCPSIGHT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/export-venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import duckdb, chdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(p)
    } else {
        missing(&format!(
            "no Python with duckdb and chdb at {} (python3 -m venv target/export-venv && target/export-venv/bin/pip install duckdb chdb, or set TCPSIGHT_PYTHON)",
            p.display()
        ))
    }
}

/// Runs a Python script with arguments; its stdout parsed as JSON.
pub(crate) fn run_python(py: &Path, script: &str, args: &[&str]) -> Value {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "python failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

/// Per column of a Parquet file, as DuckDB and chDB read it: its type, the number of
/// non-null values and their sum (integers; booleans' trues; instants in microseconds;
/// text: total bytes), as decimal strings (sums overflow 64 bits).
const READ_PARQUET: &str = r#"
import json, sys
import duckdb, chdb
res = {}
for f in sys.argv[1:]:
    con = duckdb.connect()
    cols = con.execute(f"describe select * from read_parquet('{f}')").fetchall()
    d = {"types": {}, "cols": {}}
    exprs = ["count(*)"]
    for name, ty, *_ in cols:
        d["types"][name] = ty
        if ty == "BOOLEAN":
            e = f'sum("{name}"::int)'
        elif ty.startswith("TIMESTAMP"):
            e = f'sum(epoch_us("{name}"))'
        elif ty == "VARCHAR":
            e = f'sum(strlen("{name}"))'
        else:
            e = f'sum("{name}"::hugeint)'
        exprs += [e, f'count("{name}")']
    row = con.execute(f"select {', '.join(exprs)} from read_parquet('{f}')").fetchone()
    d["rows"] = row[0]
    for i, (name, *_) in enumerate(cols):
        d["cols"][name] = [str(row[1 + 2 * i] or 0), row[2 + 2 * i]]
    h = {"types": {}, "cols": {}}
    desc = json.loads(str(chdb.query(f"describe file('{f}', Parquet)", "JSONCompact")))["data"]
    exprs = ["count()"]
    for name, ty, *_ in desc:
        h["types"][name] = ty
        base = ty.removeprefix("Nullable(").removesuffix(")")
        if base == "Bool":
            e = f"sum(toUInt8(`{name}`))"
        elif base.startswith("DateTime64"):
            e = f"sum(toInt128(toUnixTimestamp64Micro(`{name}`)))"
        elif base == "String":
            e = f"sum(length(`{name}`))"
        else:
            e = f"sum(toInt128(`{name}`))"
        exprs += [f"toString({e})", f"count(`{name}`)"]
    q = f"select {', '.join(exprs)} from file('{f}', Parquet)"
    row = json.loads(str(chdb.query(q, "JSONCompact")))["data"][0]
    h["rows"] = int(row[0])
    for i, (name, *_) in enumerate(desc):
        h["cols"][name] = [str(row[1 + 2 * i] or 0), int(row[2 + 2 * i])]
    res[f] = {"duckdb": d, "chdb": h}
print(json.dumps(res))
"#;

/// The same figures from a JSON Lines file: per field, the non-null count and the sum
/// as the typed columns hold it (`ts_first`/`ts_last` and the logs' instants from their
/// 6-decimal text, in microseconds).
fn jsonl_figures(path: &Path) -> (u64, BTreeMap<String, (i128, u64)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cols: BTreeMap<String, (i128, u64)> = BTreeMap::new();
    let mut rows = 0;
    for line in text.lines() {
        rows += 1;
        let v: Value = serde_json::from_str(line).unwrap();
        for (k, v) in v.as_object().unwrap() {
            let e = cols.entry(k.clone()).or_default();
            let add = match v {
                Value::Null => continue,
                Value::Bool(b) => *b as i128,
                Value::Number(n) if n.is_u64() => n.as_u64().unwrap() as i128,
                // Epoch seconds with 6 decimals: exact in microseconds.
                Value::Number(n) => (n.as_f64().unwrap() * 1e6).round() as i128,
                Value::String(s) => s.len() as i128,
                other => panic!("{k}: unexpected {other}"),
            };
            e.0 += add;
            e.1 += 1;
        }
    }
    (rows, cols)
}

/// Checks one engine's reading of a Parquet file against the JSON Lines of the same
/// run; returns how many columns were compared.
fn compare(engine: &str, got: &Value, rows: u64, want: &BTreeMap<String, (i128, u64)>) -> usize {
    assert_eq!(got["rows"].as_u64(), Some(rows), "{engine}: row count");
    let cols = got["cols"].as_object().unwrap();
    let mut n = 0;
    for (name, v) in cols {
        let sum: i128 = v[0].as_str().unwrap().parse().unwrap();
        let count = v[1].as_u64().unwrap();
        let (wsum, wcount) = want.get(name).copied().unwrap_or((0, 0));
        assert_eq!(count, wcount, "{engine}: non-null {name}");
        // A float's microseconds may be off by one from the exact integer when the
        // epoch float rounds; ts_*_ns check the instants exactly.
        let tol = if got["types"][name].as_str().unwrap_or("").contains("TIME")
            || got["types"][name]
                .as_str()
                .unwrap_or("")
                .contains("DateTime")
        {
            count as i128
        } else {
            0
        };
        assert!(
            (sum - wsum).abs() <= tol,
            "{engine}: sum of {name}: {sum} vs {wsum}"
        );
        n += 1;
    }
    for name in want.keys() {
        assert!(cols.contains_key(name), "{engine}: no column {name}");
    }
    n
}

/// The type every engine gives each kind of column (docs/export.md).
fn expected_type(engine: &str, json_type: &str, nullable: bool, name: &str) -> String {
    let t = match (engine, json_type) {
        ("duckdb", "int") => "BIGINT",
        ("duckdb", "bool") => "BOOLEAN",
        ("duckdb", "str") => "VARCHAR",
        ("duckdb", "ts") => "TIMESTAMP WITH TIME ZONE",
        ("chdb", "int") => "Int64",
        ("chdb", "bool") => "Bool",
        ("chdb", "str") => "String",
        ("chdb", "ts") => "DateTime64(6, 'UTC')",
        _ => panic!("{engine} {json_type} ({name})"),
    };
    if engine == "chdb" && nullable {
        format!("Nullable({t})")
    } else {
        t.to_string()
    }
}

/// Each record field's kind, from `tcpsight fields --long` (docs/fields.md's types).
fn record_kinds() -> BTreeMap<String, &'static str> {
    let out = tcpsight(&["fields", "--long"]);
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    for line in text(&out.stdout).lines() {
        let (name, ty) = line.split_once(' ').unwrap();
        let ty = ty.trim();
        let kind = if ty.starts_with("boolean") {
            "bool"
        } else if ty.starts_with("float, epoch") {
            "ts"
        } else if ty.starts_with("string") {
            "str"
        } else {
            "int"
        };
        m.insert(name.to_string(), kind);
    }
    m
}

struct Case {
    capture: &'static str,
    l7: bool,
}

const CASES: &[Case] = &[
    Case {
        capture: "captures/generated/netns-25s-client.pcap.gz",
        l7: false,
    },
    Case {
        capture: "captures/generated/l7-mix.pcap",
        l7: true,
    },
    Case {
        capture: "captures/ndpi/reddit-ipv6.pcap",
        l7: true,
    },
    Case {
        capture: "captures/suricata-verify/filestore-5408-icmp-unreach.pcap",
        l7: false,
    },
];

/// `--flows x.parquet` (and the L7 logs as Parquet) read by DuckDB and chDB: the same
/// rows, non-null counts and sums in every column as the JSON Lines of the same run,
/// the documented types, and the record count and outcomes of `analyze --json`.
#[test]
fn parquet_read_by_duckdb_and_chdb_matches_json() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut expect = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let p = |n: &str| dir.path().join(format!("{i}-{n}"));
        let cap = data(c.capture);
        let mut base = vec!["analyze", cap.as_str(), "--no-progress"];
        if c.l7 {
            base.push("--l7");
        }
        let (fj, fp) = (p("flows.jsonl"), p("flows.parquet"));
        let (hj, hp) = (p("http.jsonl"), p("http.parquet"));
        let (tj, tp) = (p("tls.jsonl"), p("tls.parquet"));
        let mut a = base.clone();
        a.extend(["--json", "--flows", fj.to_str().unwrap()]);
        if c.l7 {
            a.extend(["--http-log", hj.to_str().unwrap()]);
            a.extend(["--tls-log", tj.to_str().unwrap()]);
        }
        let out = tcpsight(&a);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut a = base.clone();
        a.extend(["--flows", fp.to_str().unwrap()]);
        if c.l7 {
            a.extend(["--http-log", hp.to_str().unwrap()]);
            a.extend(["--tls-log", tp.to_str().unwrap()]);
        }
        let out = tcpsight(&a);
        assert!(out.status.success(), "{}", text(&out.stderr));
        files.push(fp.to_str().unwrap().to_string());
        expect.push((fp.clone(), fj, Some(report), "records"));
        if c.l7 {
            files.push(hp.to_str().unwrap().to_string());
            expect.push((hp, hj, None, "http"));
            files.push(tp.to_str().unwrap().to_string());
            expect.push((tp, tj, None, "tls"));
        }
    }
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let got = run_python(&py, READ_PARQUET, &args);
    let record_kinds = record_kinds();
    let mut compared = 0;
    for (parquet, jsonl, report, schema) in &expect {
        let (rows, want) = jsonl_figures(jsonl);
        let g = &got[parquet.to_str().unwrap()];
        for engine in ["duckdb", "chdb"] {
            compared += compare(engine, &g[engine], rows, &want);
        }
        if let Some(report) = report {
            assert_eq!(report["connections"].as_u64(), Some(rows));
            // Types: the documented kind of every field, nullable where the JSON had
            // nulls or the field is documented nullable (chDB shows Nullable()).
            assert_eq!(
                g["duckdb"]["types"].as_object().unwrap().len(),
                record_kinds.len()
            );
            for (name, kind) in &record_kinds {
                let duck = g["duckdb"]["types"][name].as_str().unwrap();
                assert_eq!(duck, expected_type("duckdb", kind, false, name), "{name}");
                let ch = g["chdb"]["types"][name].as_str().unwrap();
                let nullable = ch.starts_with("Nullable(");
                assert_eq!(ch, expected_type("chdb", kind, nullable, name), "{name}");
                // A field with a null in this capture must be nullable.
                let (_, count) = want.get(name).copied().unwrap_or((0, 0));
                if count < rows {
                    assert!(nullable, "{name} has nulls but is not Nullable");
                }
            }
        }
        assert!(
            rows > 0 || *schema != "records",
            "{} empty",
            jsonl.display()
        );
    }
    // Outcome counts: DuckDB's grouping of the Parquet file against analyze --json.
    let first = &expect[0];
    let q = format!(
        "import duckdb, json; print(json.dumps(dict(duckdb.sql(\"select outcome, count(*) from '{}' group by 1\").fetchall())))",
        first.0.display()
    );
    let by_outcome = run_python(&py, &q, &[]);
    let report = first.2.as_ref().unwrap();
    for (k, v) in report["outcomes"].as_object().unwrap() {
        assert_eq!(
            by_outcome[k].as_u64().unwrap_or(0),
            v.as_u64().unwrap(),
            "outcome {k}"
        );
    }
    eprintln!(
        "compared {compared} columns of {} Parquet files with DuckDB and chDB",
        expect.len()
    );
}

/// The reference key of the CryptoPAn distribution (tests of tcpsight-anon check it
/// against the published sample trace).
pub(crate) const KEY: [u8; 32] = [
    21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16, 216, 152, 143, 131, 121,
    121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2,
];

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `--anonymize KEYFILE`: every output (records, both L7 logs, the destinations table
/// in --json) is the plain run's with each address mapped by CryptoPAn under the key,
/// and nothing else changed; IPv6 too; --keep-clear leaves its blocks alone and
/// --anonymize-names hashes the names.
#[test]
fn anonymize_maps_every_output_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let key_hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, format!("{key_hex}\n")).unwrap();
    let pan = tcpsight_anon::CryptoPan::new(&KEY);
    let map = |s: &str| pan.ip(s.parse().unwrap()).to_string();
    let mut mapped_addrs = 0;
    for (i, cap) in [
        "captures/generated/l7-mix.pcap",
        "captures/generated/netns-25s-client.pcap.gz",
        "captures/ndpi/reddit-ipv6.pcap",
    ]
    .iter()
    .enumerate()
    {
        let cap = data(cap);
        let run = |tag: &str, extra: &[&str]| {
            let p = |n: &str| dir.path().join(format!("{i}-{tag}-{n}"));
            let (f, h, t) = (p("f.jsonl"), p("h.jsonl"), p("t.jsonl"));
            let mut a = vec![
                "analyze",
                cap.as_str(),
                "--no-progress",
                "--json",
                "--limit",
                "0",
                "--flows",
                f.to_str().unwrap(),
                "--http-log",
                h.to_str().unwrap(),
                "--tls-log",
                t.to_str().unwrap(),
            ];
            a.extend(extra);
            let out = tcpsight(&a);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            (report, lines(&f), lines(&h), lines(&t))
        };
        let plain = run("plain", &[]);
        let anon = run("anon", &["--anonymize", keyfile.to_str().unwrap()]);
        // Records and logs: equal after mapping the plain run's addresses.
        for (what, p, a) in [
            ("records", &plain.1, &anon.1),
            ("http log", &plain.2, &anon.2),
            ("tls log", &plain.3, &anon.3),
        ] {
            assert_eq!(p.len(), a.len(), "{what}");
            for (p, a) in p.iter().zip(a) {
                let mut want = p.clone();
                for k in ["client_ip", "server_ip"] {
                    let orig = p[k].as_str().unwrap();
                    want[k] = map(orig).into();
                    assert_ne!(a[k].as_str().unwrap(), orig, "{what} {k} not mapped");
                    mapped_addrs += 1;
                }
                assert_eq!(a, &want, "{what}");
            }
        }
        // The table: the same rows, hosts mapped.
        let rows = |r: &Value| -> BTreeMap<String, Value> {
            r["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (d["host"].as_str().unwrap().to_string(), d.clone()))
                .collect()
        };
        let (pt, at) = (rows(&plain.0), rows(&anon.0));
        assert_eq!(pt.len(), at.len());
        for (host, row) in &pt {
            let mut want = row.clone();
            want["host"] = map(host).into();
            assert_eq!(at.get(&map(host)), Some(&want), "table row {host}");
        }
        // Everything but the table is the same summary.
        let strip = |r: &Value| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("destinations");
            r
        };
        assert_eq!(strip(&plain.0), strip(&anon.0));
        if i == 0 {
            // --keep-clear: the server block stays; --anonymize-names: names hashed.
            let kept = run(
                "kept",
                &[
                    "--anonymize",
                    keyfile.to_str().unwrap(),
                    "--keep-clear",
                    "10.0.0.0/8,fd00::/8",
                    "--anonymize-names",
                ],
            );
            let mut names = 0;
            for (p, k) in plain.1.iter().zip(&kept.1) {
                assert_eq!(p["server_ip"], k["server_ip"]);
                if let Some(n) = p["server_name"].as_str() {
                    let h = k["server_name"].as_str().unwrap();
                    assert!(h.ends_with(".anon") && !h.contains(n), "{n} -> {h}");
                    names += 1;
                }
            }
            assert!(names > 0, "l7-mix has server names");
            for (p, k) in plain.3.iter().zip(&kept.3) {
                if let Some(n) = p["server_name"].as_str() {
                    assert!(k["server_name"].as_str().unwrap().ends_with(".anon"), "{n}");
                }
            }
            for (p, k) in plain.2.iter().zip(&kept.2) {
                if let Some(n) = p["host"].as_str() {
                    assert!(k["host"].as_str().unwrap().ends_with(".anon"), "{n}");
                }
            }
        }
    }
    assert!(mapped_addrs > 18_000, "{mapped_addrs} addresses mapped");
    // A bad key is refused in one line, before any work.
    std::fs::write(&keyfile, "too short").unwrap();
    let out = tcpsight(&[
        "analyze",
        &data("captures/generated/l7-mix.pcap"),
        "--anonymize",
        keyfile.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("a key is 32 bytes"), "{err}");
}

fn tool(name: &str, arg: &str) -> bool {
    Command::new(name)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The records of a run: (client, client port, server, server port) -> (c2s, s2c pkts).
fn flow_packets(records: &[Value]) -> Vec<(String, u64, String, u64, u64, u64)> {
    let mut v: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r["client_ip"].as_str().unwrap().to_string(),
                r["client_port"].as_u64().unwrap(),
                r["server_ip"].as_str().unwrap().to_string(),
                r["server_port"].as_u64().unwrap(),
                r["c2s_pkts"].as_u64().unwrap(),
                r["s2c_pkts"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `--ipfix HOST:PORT` received by nfdump's collector (nfcapd, started here on a
/// loopback port): nfdump reads back every connection, with its addresses, ports and
/// packets in each direction (RFC 5103 reverse elements), IPv4 and IPv6.
#[test]
fn ipfix_received_by_nfcapd() {
    if !tool("nfcapd", "-V") || !tool("nfdump", "-V") {
        missing::<()>("nfcapd/nfdump not installed (apt-get install nfdump)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let flows_dir = dir.path().join("nf");
    std::fs::create_dir(&flows_dir).unwrap();
    let port = free_udp_port();
    let nfcapd = Command::new("nfcapd")
        .args([
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-B",
            "8388608",
            "-w",
        ])
        .arg(&flows_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nfcapd starts");
    // Let it bind.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let target = format!("127.0.0.1:{port}");
    let mut want = Vec::new();
    for cap in [
        "captures/generated/netns-25s-client.pcap.gz",
        "captures/ndpi/reddit-ipv6.pcap",
        "captures/generated/l7-mix.pcap",
    ] {
        let f = dir.path().join("f.jsonl");
        let out = tcpsight(&[
            "analyze",
            &data(cap),
            "--no-progress",
            "--l7",
            "--flows",
            f.to_str().unwrap(),
            "--ipfix",
            &target,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        let recs = lines(&f);
        assert!(
            err.contains(&format!("IPFIX to {target}: {} records sent", recs.len())),
            "{err}"
        );
        want.extend(flow_packets(&recs));
    }
    want.sort();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SIGTERM: nfcapd writes its file and stops.
    unsafe { libc::kill(nfcapd.id() as i32, libc::SIGTERM) };
    let status = nfcapd.wait_with_output().unwrap();
    let log = text(&status.stderr);
    let file = std::fs::read_dir(&flows_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nfcapd.2"))
        })
        .unwrap_or_else(|| panic!("no nfcapd file; its log: {log}"));
    let out = Command::new("nfdump")
        .arg("-r")
        .arg(&file)
        .args(["-N", "-o", "csv"])
        .output()
        .expect("nfdump runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // CSV with a header; full IPv6 addresses (the fmt: output shortens them).
    let csv = text(&out.stdout);
    let mut rows = csv.lines();
    let head: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let (sa, sp, da, dp, ip, op, pr) = (
        col("sa"),
        col("sp"),
        col("da"),
        col("dp"),
        col("ipkt"),
        col("opkt"),
        col("pr"),
    );
    let mut got: Vec<(String, u64, String, u64, u64, u64)> = rows
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Summary"))
        .map(|l| {
            let p: Vec<&str> = l.split(',').map(str::trim).collect();
            assert!(p[pr] == "TCP" || p[pr] == "6", "{l}");
            (
                p[sa].to_string(),
                p[sp].parse().unwrap(),
                p[da].to_string(),
                p[dp].parse().unwrap(),
                p[ip].parse().unwrap(),
                p[op].parse().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "flows read back by nfdump; nfcapd: {log}"
    );
    let only_got: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    let only_want: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    assert!(
        got == want,
        "nfdump differs: {only_got:?} vs tcpsight's {only_want:?}"
    );
    assert!(want.iter().any(|f| f.0.contains(':')), "IPv6 flows too");
}

/// Writes UDP payloads as a pcap of raw IPv4 packets (127.0.0.1 -> 127.0.0.1).
fn udp_pcap(path: &Path, port: u16, payloads: &[Vec<u8>]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, p) in payloads.iter().enumerate() {
        let len = 28 + p.len();
        b.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let mut sum = 0u32;
        for c in ip.chunks(2) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        b.extend_from_slice(&ip);
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(&((8 + p.len()) as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(p);
    }
    std::fs::write(path, b).unwrap();
}

/// tshark decodes every IPFIX message tcpsight sends without a malformed packet or an
/// expert warning, finds the templates and one data record per connection.
#[test]
fn ipfix_decoded_by_tshark() {
    if !tool("tshark", "-v") {
        missing::<()>("tshark not installed (apt-get install tshark)");
        return;
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let rx = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.jsonl");
    let out = tcpsight(&[
        "analyze",
        &data("captures/generated/l7-mix.pcap"),
        "--no-progress",
        "--l7",
        "--flows",
        f.to_str().unwrap(),
        "--ipfix",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let msgs = rx.join().unwrap();
    let records = lines(&f).len();
    assert!(!msgs.is_empty());
    let pcap = dir.path().join("ipfix.pcap");
    udp_pcap(&pcap, port, &msgs);
    let decode = format!("udp.port=={port},cflow");
    let run = |extra: &[&str]| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-d", &decode])
            .args(extra)
            .output()
            .expect("tshark runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let bad = run(&["-Y", "_ws.malformed || _ws.expert.severity >= warning"]);
    assert!(bad.trim().is_empty(), "tshark found problems:\n{bad}");
    let fields = run(&[
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
        "-e",
        "cflow.version",
        "-e",
        "cflow.template_id",
        "-e",
        "cflow.srcport",
    ]);
    let mut data_records = 0;
    let mut templates = 0;
    for line in fields.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], "10", "IPFIX version: {line}");
        templates += cols
            .get(1)
            .map_or(0, |t| t.split(';').filter(|s| !s.is_empty()).count());
        data_records += cols
            .get(2)
            .map_or(0, |t| t.split(';').filter(|s| !s.is_empty()).count());
    }
    assert_eq!(data_records, records, "{fields}");
    assert!(templates >= 2, "{fields}");
}

/// A collector that is not there: the analysis is not slowed, the summary still
/// comes, and the loss is one warning line and one summary line (exit status 2).
#[test]
fn ipfix_to_a_dead_collector() {
    let port = free_udp_port();
    let cap = data("captures/generated/netns-25s-client.pcap.gz");
    let t = std::time::Instant::now();
    let out = tcpsight(&[
        "analyze",
        &cap,
        "--no-progress",
        "--ipfix",
        &format!("127.0.0.1:{port}"),
        "--export-wait",
        "1",
    ]);
    let took = t.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(text(&out.stdout).contains("9,092"), "the report is there");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() <= 3, "{err}");
    assert!(
        err.contains("not delivered") && err.contains("refused"),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP POST to a ClickHouse server: (status, body).
fn http_post(port: u16, body: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let t = text(&resp);
    let code = t.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = t.split_once("\r\n\r\n").unwrap_or((&t, ""));
    // Chunked bodies: the chunks' text without their size lines.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Ok((code, body))
}

/// A ClickHouse server of this test's own: a config in a temp directory, loopback
/// ports, a plain process (not the system service), killed when dropped.
struct ClickHouse {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    fn start() -> Option<ClickHouse> {
        if Command::new("clickhouse-server")
            .arg("--help")
            .output()
            .is_err()
        {
            return missing("clickhouse-server not installed (apt-get install clickhouse-server)");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (http, tcp) = (free_tcp_port(), free_tcp_port());
        std::fs::write(
            dir.path().join("users.xml"),
            "<yandex><profiles><default></default></profiles><users><default><password></password>\
             <networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile>\
             <quota>default</quota></default></users><quotas><default></default></quotas></yandex>",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.xml"),
            format!(
                "<yandex><logger><level>warning</level><log>{d}/server.log</log>\
                 <errorlog>{d}/error.log</errorlog><console>0</console></logger>\
                 <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port>\
                 <listen_host>127.0.0.1</listen_host><path>{d}/data/</path>\
                 <tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/files/</user_files_path>\
                 <format_schema_path>{d}/schemas/</format_schema_path>\
                 <users_config>{d}/users.xml</users_config>\
                 <default_profile>default</default_profile><default_database>default</default_database>\
                 <mark_cache_size>268435456</mark_cache_size>\
                 <uncompressed_cache_size>268435456</uncompressed_cache_size></yandex>"
            ),
        )
        .unwrap();
        let child = Command::new("clickhouse-server")
            .arg(format!("--config-file={d}/config.xml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        let ch = ClickHouse {
            child,
            port: http,
            _dir: dir,
        };
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(60) {
            if let Ok((200, _)) = http_post(http, "SELECT 1") {
                return Some(ch);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("clickhouse-server did not answer on port {http} within 60 s");
    }

    fn query(&self, q: &str) -> String {
        let (code, body) = http_post(self.port, q).unwrap();
        assert_eq!(code, 200, "{q}: {body}");
        body
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--clickhouse URL` into a real ClickHouse server (Debian's 18.16, started here):
/// the same rows come back, and every column's non-null count and sum equals the
/// JSON Lines of the same run; a missing table is one clear line, then
/// `--clickhouse-create` makes it from the schema.
#[test]
fn clickhouse_rows_read_back() {
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/?table=tcpsight.connections", ch.port);
    let dir = tempfile::tempdir().unwrap();
    let cap = data("captures/generated/netns-25s-client.pcap.gz");
    // No table yet: refused by the server, said once, analysis complete, status 2.
    let out = tcpsight(&[
        "analyze",
        &cap,
        "--no-progress",
        "--clickhouse",
        &url,
        "--export-wait",
        "1",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HTTP ") && err.contains("9092 not delivered"),
        "{err}"
    );
    assert!(err.lines().count() <= 2, "{err}");
    let mut recs = Vec::new();
    for (i, cap) in [cap.as_str(), &data("captures/generated/l7-mix.pcap")]
        .iter()
        .enumerate()
    {
        let f = dir.path().join(format!("{i}.jsonl"));
        let out = tcpsight(&[
            "analyze",
            cap,
            "--no-progress",
            "--l7",
            "--flows",
            f.to_str().unwrap(),
            "--clickhouse",
            &url,
            "--clickhouse-create",
        ]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        let n = lines(&f).len();
        assert!(err.contains(&format!("{n} records sent")), "{err}");
        recs.extend(lines(&f));
    }
    let all = dir.path().join("all.jsonl");
    std::fs::write(
        &all,
        recs.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let (rows, want) = jsonl_figures(&all);
    // Types of the table, as the server has them.
    let types: BTreeMap<String, String> = ch
        .query("SELECT name, type FROM system.columns WHERE database = 'tcpsight' AND table = 'connections' FORMAT TSV")
        .lines()
        .map(|l| {
            let (n, t) = l.split_once('\t').unwrap();
            (n.to_string(), t.to_string())
        })
        .collect();
    assert_eq!(types.len(), want.len().max(types.len()));
    let mut exprs = vec!["toString(count())".to_string()];
    for (name, ty) in &types {
        let base = ty.trim_start_matches("Nullable(").trim_end_matches(')');
        let e = match base {
            "String" => format!("sum(length({name}))"),
            b if b.starts_with("DateTime") => format!("sum(toUInt64({name}))"),
            _ if name.ends_with("_ns") => format!("sum(intDiv({name}, 1000000))"),
            _ => format!("sum({name})"),
        };
        exprs.push(format!("toString({e})"));
        exprs.push(format!("toString(count({name}))"));
    }
    let row = ch.query(&format!(
        "SELECT {} FROM tcpsight.connections FORMAT TSV",
        exprs.join(", ")
    ));
    let vals: Vec<&str> = row.trim_end().split('\t').collect();
    assert_eq!(vals[0].parse::<u64>().unwrap(), rows, "rows");
    for (i, (name, ty)) in types.iter().enumerate() {
        // The sum of a column that is null in every row is null (\N).
        let sum: i128 = match vals[1 + 2 * i] {
            "\\N" => 0,
            v => v.parse().unwrap(),
        };
        let count: u64 = vals[2 + 2 * i].parse().unwrap();
        let (wsum, wcount) = want.get(name).copied().unwrap_or((0, 0));
        assert_eq!(count, wcount, "non-null {name}");
        let wsum = if ty.contains("DateTime") {
            // Whole seconds: the JSON's 6-decimal seconds cut.
            recs.iter()
                .filter_map(|r| r[name.as_str()].as_f64())
                .map(|x| x.floor() as i128)
                .sum()
        } else if name.ends_with("_ns") {
            recs.iter()
                .filter_map(|r| r[name.as_str()].as_u64())
                .map(|x| (x / 1_000_000) as i128)
                .sum()
        } else {
            wsum
        };
        assert_eq!(sum, wsum, "sum of {name} ({ty})");
    }
    // The same rows: key, time and a few figures of each, in one order.
    let got = ch.query(
        "SELECT client_ip, client_port, server_ip, server_port, ts_first_ns, outcome, c2s_pkts, s2c_payload_bytes, ifNull(server_name, '') FROM tcpsight.connections ORDER BY ts_first_ns, client_ip, client_port, server_ip, server_port, c2s_pkts FORMAT TSV",
    );
    let mut want_rows: Vec<(u64, String)> = recs
        .iter()
        .map(|r| {
            (
                r["ts_first_ns"].as_u64().unwrap(),
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r["client_ip"].as_str().unwrap(),
                    r["client_port"],
                    r["server_ip"].as_str().unwrap(),
                    r["server_port"],
                    r["ts_first_ns"],
                    r["outcome"].as_str().unwrap(),
                    r["c2s_pkts"],
                    r["s2c_payload_bytes"],
                    r["server_name"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    want_rows.sort_by(|a, b| {
        let ka: Vec<&str> = a.1.split('\t').collect();
        let kb: Vec<&str> = b.1.split('\t').collect();
        (
            a.0,
            ka[0],
            ka[1].parse::<u64>().unwrap(),
            ka[2],
            ka[3].parse::<u64>().unwrap(),
            ka[6].parse::<u64>().unwrap(),
        )
            .cmp(&(
                b.0,
                kb[0],
                kb[1].parse::<u64>().unwrap(),
                kb[2],
                kb[3].parse::<u64>().unwrap(),
                kb[6].parse::<u64>().unwrap(),
            ))
    });
    let want_text: Vec<String> = want_rows.into_iter().map(|r| r.1).collect();
    let got_lines: Vec<&str> = got.lines().collect();
    assert_eq!(got_lines.len(), want_text.len());
    for (g, w) in got_lines.iter().zip(&want_text) {
        assert_eq!(g, w);
    }
}

/// A ClickHouse that is down, answers garbage or never answers: the analysis runs
/// to its report anyway, in about the time of `--export-wait`; records beyond the
/// queue are counted as dropped, the rest as not delivered; one warning line.
#[test]
fn clickhouse_down_garbage_or_silent() {
    let cap = data("captures/generated/netns-25s-client.pcap.gz");
    // A server that answers garbage, and one that accepts and never answers.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gport = garbage.local_addr().unwrap().port();
    let sport = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in garbage.incoming().take(50).flatten() {
            let _ = s.write_all(b"SSH-2.0-garbage\r\n");
        }
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().take(50) {
            held.push(s);
        }
    });
    let down = free_tcp_port();
    for (port, what) in [
        (down, "refused"),
        (gport, "not an HTTP answer"),
        (sport, "timed out"),
    ] {
        let t = std::time::Instant::now();
        let out = tcpsight(&[
            "analyze",
            &cap,
            "--no-progress",
            "--clickhouse",
            &format!("http://127.0.0.1:{port}/?table=t"),
            "--clickhouse-queue",
            "1000",
            "--export-wait",
            "1",
        ]);
        let took = t.elapsed();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            text(&out.stdout).contains("9,092"),
            "{what}: the report is there"
        );
        assert!(err.contains("dropped (queue full)"), "{what}: {err}");
        assert!(err.contains("not delivered"), "{what}: {err}");
        if what != "timed out" {
            assert!(err.contains(what), "{what}: {err}");
        }
        assert!(err.lines().count() <= 2, "{what}: {err}");
        assert!(took < std::time::Duration::from_secs(6), "{what}: {took:?}");
        // Counted: dropped + not delivered = every record.
        let summary = err.lines().last().unwrap_or("");
        let n = |key: &str| -> u64 {
            summary
                .split("; ")
                .find(|p| p.contains(key))
                .and_then(|p| p.split_whitespace().next())
                .and_then(|x| x.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(n("dropped") + n("not delivered"), 9092, "{what}: {err}");
    }
}

/// A full disk under a Parquet file: one line naming the problem, exit status 2.
#[test]
fn parquet_on_a_full_disk() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let out = tcpsight(&[
        "analyze",
        &data("captures/generated/netns-25s-client.pcap.gz"),
        "--flows",
        "/dev/full",
        "--format",
        "parquet",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
}

/// Issue 13: the long-running face feeds the same engines. `monitor -r` with
/// `--clickhouse` and `--ipfix` (and `--anonymize`): ClickHouse holds exactly the final
/// records of the monitor's files (interim ones stay out of the database), nfcapd as
/// many flows, and both see only the mapped addresses.
#[test]
fn monitor_feeds_clickhouse_and_nfcapd_with_its_final_records() {
    if !tool("nfcapd", "-V") || !tool("nfdump", "-V") {
        missing::<()>("nfcapd/nfdump not installed (apt-get install nfdump)");
        return;
    }
    let Some(ch) = ClickHouse::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let flows_dir = dir.path().join("nf");
    std::fs::create_dir(&flows_dir).unwrap();
    let port = free_udp_port();
    let nfcapd = Command::new("nfcapd")
        .args([
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-B",
            "8388608",
            "-w",
        ])
        .arg(&flows_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nfcapd starts");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let key_hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, key_hex).unwrap();
    let url = format!("http://127.0.0.1:{}/?table=tcpsight.monitor", ch.port);
    let out = dir.path().join("mon");
    let o = tcpsight(&[
        "monitor",
        "-r",
        &data("captures/generated/netns-25s-client.pcap.gz"),
        "-o",
        out.to_str().unwrap(),
        "--active-timeout",
        "4s",
        "--clickhouse",
        &url,
        "--clickhouse-create",
        "--ipfix",
        &format!("127.0.0.1:{port}"),
        "--anonymize",
        keyfile.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let (_, records) = crate::monitor::summaries_and_records(&out);
    let finals = records.iter().filter(|r| r["record"] == "final").count();
    let interims = records.iter().filter(|r| r["record"] == "interim").count();
    assert!(interims > 0, "the test wants interim records too");
    assert!(err.contains(&format!("{finals} records sent")), "{err}");
    let rows: usize = ch
        .query("SELECT count() FROM tcpsight.monitor")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rows, finals);
    let pan = tcpsight_anon::CryptoPan::new(&KEY);
    let server = pan.ip("10.77.0.2".parse().unwrap()).to_string();
    let q = |ip: &str| -> usize {
        ch.query(&format!(
            "SELECT count() FROM tcpsight.monitor WHERE server_ip = '{ip}'"
        ))
        .trim()
        .parse()
        .unwrap()
    };
    assert_eq!(q("10.77.0.2"), 0);
    assert!(q(&server) > 9000, "{}", q(&server));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(nfcapd.id() as i32, libc::SIGTERM) };
    let status = nfcapd.wait_with_output().unwrap();
    let file = std::fs::read_dir(&flows_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nfcapd.2"))
        })
        .unwrap_or_else(|| panic!("no nfcapd file; its log: {}", text(&status.stderr)));
    let dump = Command::new("nfdump")
        .arg("-r")
        .arg(&file)
        .args(["-N", "-o", "csv"])
        .output()
        .expect("nfdump runs");
    let csv = text(&dump.stdout);
    let flows: Vec<&str> = csv
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Summary"))
        .collect();
    assert_eq!(flows.len(), finals);
    assert!(
        flows.iter().all(|l| !l.contains("10.77.0.")),
        "real addresses reached nfcapd"
    );
}
