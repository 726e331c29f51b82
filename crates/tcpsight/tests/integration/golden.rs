//! Golden files: `tcpsight analyze` on a few captures, compared byte for byte with
//! testdata/golden/. Every output of the command is pinned: the text report, `--json`,
//! `--flows - --format jsonl|csv` (whose report, on stderr, must be the plain one) and a
//! grouped, sorted table. The captures are named relative to the repository root and the
//! binary runs there, so no path of the machine gets into an output.
//!
//! `TCPSIGHT_BLESS=1 cargo test --profile test-release -p tcpsight --test integration golden::`
//! rewrites the files. Goldens over 256 KiB are stored gzip-compressed (NAME.gz).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Goldens bigger than this are stored compressed.
const COMPRESS_OVER: usize = 256 << 10;

/// The runs of one capture: (golden file suffix, arguments after the capture).
const RUNS: &[(&str, &[&str])] = &[
    ("report.txt", &[]),
    ("json", &["--json"]),
    ("flows.jsonl", &["--flows", "-", "--format", "jsonl"]),
    ("flows.csv", &["--flows", "-", "--format", "csv"]),
    (
        "host-port-lat.txt",
        &["--group-by", "host:port", "--sort", "lat", "--limit", "0"],
    ),
];

/// Runs `tcpsight analyze CAPTURE ARGS` in the repository root; returns (exit code,
/// stdout, stderr).
pub fn analyze(capture: &str, args: &[&str]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .current_dir(root())
        .env("TZ", "UTC")
        .env_remove("COLUMNS")
        .arg("analyze")
        .arg(capture)
        .args(args)
        .output()
        .expect("tcpsight runs");
    (out.status.code(), out.stdout, out.stderr)
}

fn read_golden(path: &Path) -> Option<Vec<u8>> {
    if let Ok(b) = std::fs::read(path) {
        return Some(b);
    }
    let gz = std::fs::File::open(gz_path(path)).ok()?;
    let mut b = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut b)
        .unwrap_or_else(|e| panic!("{}.gz: {e}", path.display()));
    Some(b)
}

fn gz_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".gz");
    PathBuf::from(p)
}

fn bless(path: &Path, got: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(gz_path(path));
    if got.len() > COMPRESS_OVER {
        let f = std::fs::File::create(gz_path(path)).unwrap();
        let mut z = flate2::write::GzEncoder::new(f, flate2::Compression::best());
        z.write_all(got).unwrap();
        z.finish().unwrap();
    } else {
        std::fs::write(path, got).unwrap();
    }
}

/// A short account of how `got` differs from `want`: sizes and the first differing line.
fn difference(want: &[u8], got: &[u8]) -> String {
    let clip = |l: &[u8]| {
        let s = String::from_utf8_lossy(l);
        let mut c: String = s.chars().take(200).collect();
        if c.len() < s.len() {
            c.push_str("...");
        }
        c
    };
    let (w, g): (Vec<&[u8]>, Vec<&[u8]>) = (
        want.split(|&b| b == b'\n').collect(),
        got.split(|&b| b == b'\n').collect(),
    );
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let line = |v: &[&[u8]]| v.get(at).map_or("(end of output)".to_string(), |l| clip(l));
    format!(
        "{} bytes / {} lines expected, got {} bytes / {} lines; first difference at line {}:\n    \
         expected: {}\n    got:      {}",
        want.len(),
        w.len(),
        got.len(),
        g.len(),
        at + 1,
        line(&w),
        line(&g),
    )
}

/// Compares `got` with testdata/golden/NAME (or NAME.gz); under TCPSIGHT_BLESS rewrites
/// it. A mismatch is returned as a message (and the output left in the target directory
/// for a real diff).
pub fn check(name: &str, got: &[u8]) -> Option<String> {
    let path = root().join("testdata/golden").join(name);
    if std::env::var_os("TCPSIGHT_BLESS").is_some() {
        bless(&path, got);
        return None;
    }
    let Some(want) = read_golden(&path) else {
        return Some(format!(
            "{name}: no golden file testdata/golden/{name}[.gz] (TCPSIGHT_BLESS=1 writes it)"
        ));
    };
    if want == got {
        return None;
    }
    let actual = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("golden")
        .join(name);
    std::fs::create_dir_all(actual.parent().unwrap()).unwrap();
    std::fs::write(&actual, got).unwrap();
    Some(format!(
        "{name}: differs from testdata/golden/{name} (output written to {}): {}",
        actual.display(),
        difference(&want, got)
    ))
}

/// Every run of one capture; all differences are reported together.
fn golden(tag: &str, capture: &str) {
    let mut failures = Vec::new();
    let mut report = None;
    for (suffix, args) in RUNS {
        let (code, out, err) = analyze(capture, args);
        assert_eq!(
            code,
            Some(0),
            "analyze {capture} {args:?}: {}",
            String::from_utf8_lossy(&err)
        );
        assert!(!out.is_empty(), "analyze {capture} {args:?}: no output");
        failures.extend(check(&format!("{tag}.{suffix}"), &out));
        if *suffix == "report.txt" {
            assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
            report = Some(out);
        } else if suffix.starts_with("flows.") {
            // With the flows on stdout, the report goes to stderr, the same bytes.
            assert_eq!(
                Some(&err),
                report.as_ref(),
                "{capture} {args:?}: the report on stderr is the plain report"
            );
        } else {
            assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_netns_25s() {
    golden(
        "netns-25s-client",
        "testdata/captures/generated/netns-25s-client.pcap.gz",
    );
}

#[test]
fn golden_http_pipelined() {
    golden(
        "http-pipelined-requests",
        "testdata/captures/zeek/http-pipelined-requests.pcap",
    );
}

#[test]
fn golden_retransmit_fast() {
    golden(
        "tcp-retransmit-fast009",
        "testdata/captures/zeek/tcp-retransmit-fast009.pcap",
    );
}

#[test]
fn golden_synscan() {
    golden("synscan", "testdata/captures/ndpi/synscan.pcap");
}

#[test]
fn golden_icmp_unreachable() {
    golden(
        "filestore-5408-icmp-unreach",
        "testdata/captures/suricata-verify/filestore-5408-icmp-unreach.pcap",
    );
}

#[test]
fn golden_ipv6_fragments() {
    golden(
        "ipv6-http-atomic-frag",
        "testdata/captures/zeek/ipv6-http-atomic-frag.pcap",
    );
}

/// The application layer (`--l7`, `--http-log`, `--tls-log`): the records' L7 fields and
/// both logs, in JSON Lines and CSV, pinned on captures with HTTP, TLS and DNS (checked
/// against tshark in l7.rs).
fn golden_l7(tag: &str, capture: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (code, out, err) = analyze(capture, &["--l7", "--flows", "-"]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    failures.extend(check(&format!("{tag}.l7.flows.jsonl"), &out));
    for ext in ["jsonl", "csv"] {
        let http = dir.path().join(format!("http.{ext}"));
        let tls = dir.path().join(format!("tls.{ext}"));
        let (code, _, err) = analyze(
            capture,
            &[
                "--http-log",
                http.to_str().unwrap(),
                "--tls-log",
                tls.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
        failures.extend(check(
            &format!("{tag}.http.{ext}"),
            &std::fs::read(&http).unwrap(),
        ));
        failures.extend(check(
            &format!("{tag}.tls.{ext}"),
            &std::fs::read(&tls).unwrap(),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_l7_mix() {
    golden_l7("l7-mix", "testdata/captures/generated/l7-mix.pcap");
}

#[test]
fn golden_l7_http_pipelined() {
    golden_l7(
        "http-pipelined-requests",
        "testdata/captures/zeek/http-pipelined-requests.pcap",
    );
}

#[test]
fn golden_l7_tls_subjectaltname() {
    golden_l7(
        "tls-subjectaltname",
        "testdata/captures/suricata-verify/tls-subjectaltname.pcap",
    );
}
