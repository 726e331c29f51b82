//! `tcpsight capture` on real traffic in network namespaces made by the test (root
//! only; skipped with a message otherwise).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::{NetPair, first_stderr_line, interrupt, request};
use serde_json::Value;

fn start(net: &NetPair, args: &[&str]) -> Child {
    let mut c = net
        .tcpsight_cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_stderr_line(&mut c);
    assert!(line.contains("capturing"), "{line}");
    // Issue 15: the start line says when it stops, and how to change it.
    let timed = args.windows(2).any(|w| w[0] == "-t" && w[1] != "0");
    if timed || !args.contains(&"-t") {
        assert!(
            line.contains("stops after") && line.contains("-t 0"),
            "{line}"
        );
    } else {
        assert!(line.contains("Ctrl-C to stop"), "{line}");
    }
    c
}

fn finish(c: Child) -> (Output, String) {
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (out, err)
}

/// "N packets written" from capture's closing line.
fn written(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("packets written"))
        .unwrap_or_else(|| panic!("{stderr}"));
    line.trim_start_matches("tcpsight: ")
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

fn flows(file: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["analyze", file.to_str().unwrap(), "--flows", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Frames in a capture file, read by tcpsight's reader through `analyze --json`.
fn frames(file: &Path) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["analyze", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["frames"].as_u64().unwrap()
}

/// tcpdump reads the file and counts the same packets (when tcpdump is installed).
fn tcpdump_agrees(file: &Path, n: u64) {
    let Ok(out) = Command::new("tcpdump")
        .args(["-nr", file.to_str().unwrap()])
        .output()
    else {
        eprintln!("tcpdump not installed: {} not cross-read", file.display());
        return;
    };
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count() as u64,
        n
    );
}

/// yconalyzer's promise, on real traffic: a control-only capture (SYN, FIN, RST) gives
/// each connection's bytes (from sequence numbers) and its SYN count and outcome as the
/// full capture of the same traffic does, and its duration to the last FIN/RST.
#[test]
fn control_only_capture_agrees_with_the_full_one() {
    let Some(net) = NetPair::new(51) else {
        return;
    };
    let server = SocketAddr::new(net.server_ip(), 80);
    net.serve(server, 30_000);
    let dir = tempfile::tempdir().unwrap();
    let (ctl, all) = (dir.path().join("ctl.pcap"), dir.path().join("all.pcapng"));
    let c1 = start(
        &net,
        &[
            "capture",
            "-i",
            &net.client_if,
            "-t",
            "0",
            "-w",
            ctl.to_str().unwrap(),
        ],
    );
    let c2 = start(
        &net,
        &[
            "capture",
            "-i",
            &net.client_if,
            "-t",
            "0",
            "--all",
            "--pcapng",
            "-w",
            all.to_str().unwrap(),
        ],
    );
    let refused = SocketAddr::new(net.server_ip(), 81);
    NetPair::in_ns(&net.client_ns, move || {
        for _ in 0..20 {
            request(server, 30_000).expect("request");
            std::net::TcpStream::connect(refused).unwrap_err();
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (o1, o2) = (interrupt(c1), interrupt(c2));
    assert!(o1.status.success() && o2.status.success());
    let (e1, e2) = (
        String::from_utf8_lossy(&o1.stderr),
        String::from_utf8_lossy(&o2.stderr),
    );
    let (n_ctl, n_all) = (written(&e1), written(&e2));
    assert_eq!(frames(&ctl), n_ctl);
    assert_eq!(frames(&all), n_all);
    tcpdump_agrees(&ctl, n_ctl);
    tcpdump_agrees(&all, n_all);
    // 20 connections of SYN, SYN-ACK, 2 FINs (maybe with their ACK... not kept) and 20
    // refused ones (SYN, RST): 80 + 40 control packets.
    assert_eq!(n_ctl, 120, "{e1}");
    assert!(n_all > 300, "{e2}");

    let key = |r: &Value| {
        (
            r["client_port"].as_u64().unwrap(),
            r["server_port"].as_u64().unwrap(),
        )
    };
    let full: HashMap<_, _> = flows(&all).into_iter().map(|r| (key(&r), r)).collect();
    let control = flows(&ctl);
    assert_eq!(control.len(), 40);
    assert_eq!(full.len(), 40);
    for c in &control {
        let f = &full[&key(c)];
        for field in [
            "outcome",
            "syn_count",
            "synack_count",
            "c2s_unique_bytes",
            "s2c_unique_bytes",
            "closed_by",
        ] {
            assert_eq!(c[field], f[field], "{field} of {:?}", key(c));
        }
        // Two sockets stamp the same packet a few microseconds apart.
        let (a, b) = (c["closed_after_us"].as_f64(), f["closed_after_us"].as_f64());
        if let (Some(a), Some(b)) = (a, b) {
            assert!((a - b).abs() < 100.0, "closed_after_us {a} vs {b}");
        }
    }
    let established: Vec<&Value> = control
        .iter()
        .filter(|c| c["outcome"] == "established")
        .collect();
    assert_eq!(established.len(), 20);
    // "GET\n" one way, 30,000 bytes the other: exact, not one byte too many.
    assert!(
        established
            .iter()
            .all(|c| c["c2s_unique_bytes"] == 4 && c["s2c_unique_bytes"] == 30_000)
    );
}

/// --count stops after N packets; --rotate-secs and --rotate-mb make numbered files,
/// each complete and readable; SIGINT loses nothing already captured.
#[test]
fn count_rotation_and_interrupt_leave_complete_files() {
    let Some(net) = NetPair::new(52) else {
        return;
    };
    let server = SocketAddr::new(net.server_ip(), 80);
    net.serve(server, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let counted = dir.path().join("count.pcap");
    let by_time = dir.path().join("t.pcap");
    let by_size = dir.path().join("s.pcap");
    let c_count = start(
        &net,
        &[
            "capture",
            "-i",
            &net.client_if,
            "-c",
            "7",
            "-w",
            counted.to_str().unwrap(),
        ],
    );
    let c_time = start(
        &net,
        &[
            "capture",
            "-i",
            &net.client_if,
            "-t",
            "0",
            "--rotate-secs",
            "0.5",
            "-w",
            by_time.to_str().unwrap(),
        ],
    );
    let c_size = start(
        &net,
        &[
            "capture",
            "-i",
            &net.client_if,
            "-t",
            "0",
            "--all",
            "--rotate-mb",
            "0.02",
            "-w",
            by_size.to_str().unwrap(),
        ],
    );
    NetPair::in_ns(&net.client_ns, move || {
        for _ in 0..40 {
            request(server, 2_000).expect("request");
            std::thread::sleep(Duration::from_millis(40));
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let (_, err) = finish(c_count);
    assert_eq!(written(&err), 7);
    assert_eq!(frames(&counted), 7);
    tcpdump_agrees(&counted, 7);

    for (child, base) in [(c_time, &by_time), (c_size, &by_size)] {
        let out = interrupt(child);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        let stem = base.file_stem().unwrap().to_str().unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{stem}-"))
            })
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{err}: {files:?}");
        assert_eq!(
            files[0].file_name().unwrap().to_str().unwrap(),
            format!("{stem}-0001.pcap")
        );
        let total: u64 = files
            .iter()
            .map(|f| {
                let n = frames(f);
                tcpdump_agrees(f, n);
                n
            })
            .sum();
        assert_eq!(total, written(&err), "{err}");
        if base == &by_size {
            // 20 KB per file, give or take the packet that crossed the line.
            for f in &files {
                assert!(
                    std::fs::metadata(f).unwrap().len() < 20_000 + 70_000,
                    "{}",
                    f.display()
                );
            }
        }
    }
}

/// --snaplen cuts packets in the kernel; the file says so and analyze still reads them.
#[test]
fn snaplen_cuts_every_packet() {
    let Some(net) = NetPair::new(53) else {
        return;
    };
    let server = SocketAddr::new(net.server_ip(), 80);
    net.serve(server, 5_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.pcap");
    let c = start(
        &net,
        &[
            "capture",
            "-i",
            &net.client_if,
            "-t",
            "0",
            "--all",
            "-s",
            "80",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    NetPair::in_ns(&net.client_ns, move || {
        request(server, 5_000).expect("request")
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = interrupt(c);
    assert!(out.status.success());
    let bytes = std::fs::read(&file).unwrap();
    // pcap header: snaplen at offset 16; records: caplen <= 80 each.
    assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 80);
    let mut at = 24;
    let mut n = 0;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let wire = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
        assert!(caplen <= 80 && caplen <= wire);
        at += 16 + caplen;
        n += 1;
    }
    assert_eq!(at, bytes.len());
    let f = flows(&file);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["s2c_unique_bytes"], 5_000);
    assert!(n >= 6);
}
