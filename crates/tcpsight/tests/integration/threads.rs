//! `analyze --threads N` prints byte for byte what `--threads 1` prints, on every capture
//! in testdata: the report, `--json`, and the flows in JSON Lines and CSV.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn captures() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![
        PathBuf::from("testdata/captures"),
        PathBuf::from("testdata/derived"),
    ];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(root().join(&d)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let rel = d.join(&name);
            if root().join(&rel).is_dir() {
                dirs.push(rel);
            } else if name.contains(".pcap") {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn analyze(capture: &str, threads: &str, extra: &[&str]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .current_dir(root())
        .args(["analyze", "--no-progress", "--threads", threads, capture])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code(), out.stdout, out.stderr)
}

#[test]
fn every_capture_gives_the_same_output_with_any_number_of_threads() {
    let caps = captures();
    assert!(caps.len() >= 30, "{} captures", caps.len());
    let mut records = 0;
    for cap in &caps {
        for extra in [
            &["--json"][..],
            &["--flows", "-", "--format", "jsonl"][..],
            &["--flows", "-", "--format", "csv"][..],
            &["--group-by", "host:port", "--limit", "0"][..],
        ] {
            let one = analyze(cap, "1", extra);
            if extra.contains(&"jsonl") {
                records += one.1.iter().filter(|&&b| b == b'\n').count();
            }
            for n in ["2", "5"] {
                let many = analyze(cap, n, extra);
                assert!(
                    one == many,
                    "{cap} {extra:?}: --threads {n} differs from --threads 1\n1: {}\n{n}: {}",
                    String::from_utf8_lossy(&one.2),
                    String::from_utf8_lossy(&many.2)
                );
            }
        }
    }
    assert!(records > 15_000, "{records} records over the corpus");
}

/// With the application layer too: records with their L7 fields and the HTTP and TLS
/// logs are the same with any number of threads (payload and datagrams reach the
/// router in one engine's order).
#[test]
fn l7_records_and_logs_are_the_same_with_any_number_of_threads() {
    let mut lines = 0;
    for cap in captures() {
        for extra in [
            &["--l7", "--flows", "-"][..],
            &["--http-log", "-"][..],
            &["--tls-log", "-"][..],
        ] {
            let one = analyze(&cap, "1", extra);
            lines += one.1.iter().filter(|&&b| b == b'\n').count();
            let many = analyze(&cap, "3", extra);
            assert!(
                one == many,
                "{cap} {extra:?}: --threads 3 differs from --threads 1"
            );
        }
    }
    assert!(lines > 20_000, "{lines} lines");
}
