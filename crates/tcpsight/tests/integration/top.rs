//! `tcpsight top` headless: `--once --json` (and text) on captures, cross-checked against
//! `tcpsight analyze` on the same files, and its errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const NETNS: &str = "testdata/captures/generated/netns-25s-client.pcap.gz";

#[test]
fn once_json_agrees_with_analyze() {
    for cap in [
        NETNS,
        "testdata/captures/ndpi/alexa-app.pcapng",
        "testdata/captures/ndpi/gnutella.pcap",
        "testdata/captures/zeek/wikipedia.pcap",
    ] {
        let top = json(&["top", "-r", cap, "--once", "--json", "--cumulative"]);
        let an = json(&["analyze", "--json", "--limit", "0", cap]);
        assert_eq!(
            top["destinations"], an["destinations"],
            "{cap}: top's cumulative table is analyze's"
        );
        assert_eq!(top["capture"]["frames"], an["frames"], "{cap}");
        // Per server address and port too.
        let g = "host:port";
        let top = json(&[
            "top",
            "-r",
            cap,
            "--once",
            "--json",
            "--cumulative",
            "--group-by",
            g,
        ]);
        let an = json(&["analyze", "--json", "--limit", "0", "--group-by", g, cap]);
        assert_eq!(top["destinations"], an["destinations"], "{cap} by {g}");
    }
}

#[test]
fn once_json_values_of_the_netns_capture() {
    // A file read at once shows the whole capture; the 25 s capture also fits in the
    // 60 s window, so the window gives the same rows.
    let v = json(&["top", "-r", NETNS, "--once", "--json"]);
    assert_eq!(v["mode"], "cumulative");
    let w = json(&["top", "-r", NETNS, "--once", "--json", "--window", "60"]);
    assert_eq!(w["mode"], "window");
    assert_eq!(w["window_s"], 60.0);
    assert_eq!(w["destinations"], v["destinations"]);
    let d = v["destinations"].as_array().unwrap();
    assert_eq!(d.len(), 56);
    let first = &d[0];
    assert_eq!(first["host"], "10.77.0.2");
    assert_eq!(first["syn"], 9012);
    assert_eq!(first["out"], 14655);
    assert_eq!(first["in"], 14637);
    assert_eq!(first["err"], 17);
    assert_eq!(first["qos_p95"], 1);
    let v6 = &d[1];
    assert_eq!(v6["host"], "fd77::2");
    assert_eq!(v6["qos_p95"], 1000);
    assert_eq!(v["capture"]["gap_connections"], 17);
    assert_eq!(
        v["capture"]["kernel_drops"],
        Value::Null,
        "a file has no kernel drops"
    );
    let c = json(&["top", "-r", NETNS, "--once", "--json", "--cumulative"]);
    assert_eq!(c["destinations"], v["destinations"]);

    // A 5 s window holds only the end of the capture.
    let w = json(&["top", "-r", NETNS, "--once", "--json", "--window", "5"]);
    let syn = w["destinations"][0]["syn"].as_u64().unwrap();
    assert!(syn > 100 && syn < 3000, "{syn}");

    // --only and --sort; a filter by name in the json.
    let o = json(&[
        "top",
        "-r",
        NETNS,
        "--once",
        "--json",
        "--only",
        "fd77::/16",
        "--sort",
        "rst",
    ]);
    let hosts: Vec<&str> = o["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert!(hosts.iter().all(|h| h.starts_with("fd77:")), "{hosts:?}");
    assert_eq!(hosts[0], "fd77::2", "the only host with resets sorts first");
}

#[test]
fn once_text_and_save() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("t.json");
    let text_path = dir.path().join("t.txt");
    let out = run(&[
        "top",
        "-r",
        NETNS,
        "--once",
        "--save",
        json_path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("tcpsight top: netns-25s-client.pcap.gz (replay max); cumulative;"),
        "{}",
        text.lines().next().unwrap_or_default()
    );
    assert!(text.contains("\nHost "));
    assert!(text.contains("\n10.77.0.2   9,012  306.78"));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(saved["destinations"][0]["syn"], 9012);
    let out = run(&[
        "top",
        "-r",
        NETNS,
        "--once",
        "--save",
        text_path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&text_path).unwrap(), text);
}

#[test]
fn group_by_filter_and_client() {
    let v = json(&[
        "top",
        "-r",
        NETNS,
        "--once",
        "--json",
        "--group-by",
        "filter",
        "--filter",
        "web:TX@*:80",
        "--filter",
        "alt:TX@*:8000",
        "--local",
        "10.77.0.1",
        "--local",
        "fd77::1",
    ]);
    let rows: Vec<(String, u64)> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_string(),
                r["syn"].as_u64().unwrap(),
            )
        })
        .collect();
    // tcpeek's TX total leads, beside the named filters (issue 15, 1.12).
    assert_eq!(
        rows,
        [
            ("TX".to_string(), 9092),
            ("web".to_string(), 8741),
            ("alt".to_string(), 315)
        ]
    );
    let v = json(&[
        "top",
        "-r",
        NETNS,
        "--once",
        "--json",
        "--group-by",
        "client",
    ]);
    assert_eq!(v["destinations"].as_array().unwrap().len(), 2);
}

#[test]
fn errors_are_clear() {
    let cases: &[(&[&str], &str)] = &[
        (&["top", "-r", NETNS], "needs a terminal"),
        (&["top", "-r", NETNS, "--json"], "--json goes with --once"),
        (&["top", "-r", NETNS, "--once", "--window", "0"], "--window"),
        (
            &["top", "-r", NETNS, "--once", "--window", "100000"],
            "--window",
        ),
        (
            &["top", "-r", NETNS, "--once", "--speed", "fast"],
            "positive number or max",
        ),
        (
            &["top", "-r", NETNS, "--once", "--only", "nothost"],
            "--only",
        ),
        (
            &["top", "-r", NETNS, "--once", "--filter", "x:TX@*:80"],
            "--group-by filter",
        ),
        (
            &["top", "-r", "testdata/bad/does-not-exist.pcap", "--once"],
            "does-not-exist",
        ),
    ];
    for (args, want) in cases {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn bad_captures_never_panic() {
    let dir = root().join("testdata/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/bad")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for p in files {
        let out = run(&["top", "-r", p.to_str().unwrap(), "--once", "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        // Exit 2, one line naming the file (and, for damage, the byte offset), no panic.
        assert_eq!(out.status.code(), Some(2), "{}: {err}", p.display());
        assert_eq!(err.lines().count(), 1, "{}: {err}", p.display());
        assert!(
            err.starts_with(&format!("tcpsight: {}", p.display())),
            "{}: {err}",
            p.display()
        );
    }
}

#[test]
fn several_files_are_one_trace() {
    let (a, b) = (
        "testdata/captures/zeek/wikipedia.pcap",
        "testdata/captures/ndpi/alexa-app.pcapng",
    );
    let top = json(&["top", "-r", a, b, "--once", "--json", "--cumulative"]);
    let an = json(&["analyze", "--json", "--limit", "0", a, b]);
    assert_eq!(top["destinations"], an["destinations"]);
    assert_eq!(
        top["source"],
        "wikipedia.pcap, alexa-app.pcapng (replay max)"
    );
}

#[test]
fn live_once_json_on_loopback() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: live capture needs root");
        return;
    }
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args([
            "top",
            "-i",
            "lo",
            "--once",
            "--json",
            "-t",
            "3",
            "--group-by",
            "host:port",
            "--only",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says when the ring is open; read that line byte by byte.
    let mut err = child.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while err.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    assert!(
        String::from_utf8_lossy(&line).contains("capturing on lo"),
        "{}",
        String::from_utf8_lossy(&line)
    );
    let server = std::thread::spawn(move || {
        for _ in 0..5 {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"pong");
        }
    });
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"ping").unwrap();
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v);
    }
    server.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["capture"]["kernel_drops"].is_u64(), "{v}");
    let host = format!("127.0.0.1:{port}");
    let row = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host.as_str())
        .unwrap_or_else(|| panic!("no row {host}: {v}"));
    assert_eq!(row["syn"], 5, "{row}");
    assert_eq!(row["est_pct"], 100.0, "{row}");
    assert_eq!(row["out"], 5, "{row}");
    assert_eq!(row["in"], 5, "{row}");
}

/// Live (root), issue 12 §4: `top --process` names the local process owning a row's
/// connections (the kernel's socket tables, scanned off the packet path): here this
/// test's own process, at both ends of each loopback connection. The text table shows
/// it after the endpoint; a file refuses the option.
#[test]
fn live_process_column_names_the_owning_process() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: live capture needs root");
        return;
    }
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    let me = me.trim();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let top_live = |json: bool| {
        let mut args = vec!["top", "-i", "lo", "--once", "-t", "3", "--process"];
        args.extend(["--group-by", "host:port", "--only", "127.0.0.1"]);
        if json {
            args.push("--json");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while err.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        assert!(String::from_utf8_lossy(&line).contains("capturing on lo"));
        // Each connection stays open longer than the gap between two scans, so the
        // scan asked for at its handshake sees its socket.
        for _ in 0..3 {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"pong").unwrap();
            c.read_exact(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(600));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v: Value = serde_json::from_str(&top_live(true)).unwrap();
    let host = format!("127.0.0.1:{port}");
    let row = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host.as_str())
        .unwrap_or_else(|| panic!("no row {host}: {v}"));
    assert_eq!(row["syn"], 3, "{row}");
    assert_eq!(row["process"], me, "{row}");
    let table = top_live(false);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{host} [{me}]"))),
        "{table}"
    );
    let o = super::top::run(&["top", "--once", "--process", "-r", NETNS]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--process needs a live interface"));
}
