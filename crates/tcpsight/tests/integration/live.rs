//! Live capture on the loopback interface (root or CAP_NET_RAW; skipped otherwise).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `tcpsight watch -i IFACE --json` with `extra` arguments and waits until it
/// listens.
fn start_watch(iface: &str, extra: &[&str]) -> std::process::Child {
    // Tests run in parallel: each watch gets a socket of its own unless given one.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let own = std::env::temp_dir().join(format!(
        "tcpsight-test-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if !extra.contains(&"-U") {
        args.extend(["-U".to_string(), own.to_str().unwrap().to_string()]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["watch", "-i", iface, "--json"])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first stderr line says it is watching; read it byte by byte.
    let mut err = child.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while err.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    assert!(line.contains(&format!("watching {iface} live")), "{line}");
    child
}

/// A real kernel connection on loopback: handshake, one exchange, close.
fn connect_and_talk() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut a, _) = l.accept().unwrap();
    c.write_all(b"GET").unwrap();
    let mut buf = [0u8; 3];
    a.read_exact(&mut buf).unwrap();
    a.write_all(b"200").unwrap();
    c.read_exact(&mut buf).unwrap();
    port
}

/// A port nobody listens on: bind one, note it, close it.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn live_watch_on_loopback_sees_success_and_refusal() {
    if !is_root() {
        eprintln!("skipped: live capture needs root (CI runs as root)");
        return;
    }
    let child = start_watch("lo", &["-t", "2"]);
    std::thread::sleep(Duration::from_millis(200));
    let ok_port = connect_and_talk();
    let refused = closed_port();
    assert!(TcpStream::connect(("127.0.0.1", refused)).is_err());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = lines(&out.stdout);
    let server = |p: u16| format!("127.0.0.1:{p}");
    let ok = v
        .iter()
        .find(|l| l["server"] == server(ok_port))
        .expect("the successful handshake");
    assert_eq!(ok["result"], "success");
    // Loopback: a handshake takes microseconds, well under 50 ms.
    assert!(ok["handshake_us"].as_f64().unwrap() < 50_000.0);
    let rej = v
        .iter()
        .find(|l| l["server"] == server(refused))
        .expect("the refused handshake");
    assert_eq!(rej["result"], "rejected");
    let summary = &v.last().unwrap()["summary"];
    assert_eq!(summary["capture"]["kernel_drops"], 0);
    // Live, the interface's addresses are "this host": default filters RX and TX, and a
    // loopback connection is both (its client and its server are local).
    let f = summary["filters"].as_array().unwrap();
    assert_eq!(f[0]["filter"], "RX");
    assert_eq!(f[1]["filter"], "TX");
    for x in f {
        assert!(x["success"]["total"].as_u64().unwrap() >= 1, "{x}");
        assert!(x["failure"]["reject"].as_u64().unwrap() >= 1, "{x}");
    }
}

#[test]
fn sigterm_stops_cleanly_with_a_summary() {
    if !is_root() {
        eprintln!("skipped: live capture needs root (CI runs as root)");
        return;
    }
    let child = start_watch("lo", &[]);
    std::thread::sleep(Duration::from_millis(200));
    let port = connect_and_talk();
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    let v = lines(&out.stdout);
    assert!(
        v.iter()
            .any(|l| l["server"] == format!("127.0.0.1:{port}") && l["result"] == "success")
    );
    assert!(
        v.last().unwrap()["summary"]["filters"][0]["success"]["total"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// `-i any`: every interface, frames from the IP header on (cooked), loopback's second
/// copy of each packet skipped, so a connection is seen exactly once.
#[test]
fn live_watch_on_any_interface() {
    if !is_root() {
        eprintln!("skipped: live capture needs root (CI runs as root)");
        return;
    }
    let child = start_watch("any", &["-t", "2"]);
    std::thread::sleep(Duration::from_millis(200));
    let port = connect_and_talk();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = lines(&out.stdout);
    let mine: Vec<_> = v
        .iter()
        .filter(|l| l["server"] == format!("127.0.0.1:{port}"))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["result"], "success");
    assert_eq!(mine[0]["dup_syn"], 0);
    assert_eq!(mine[0]["dup_synack"], 0);
}

#[test]
fn missing_interface_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["watch", "-i", "no-such-if0", "-t", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-if0: no such interface"), "{err}");
}

/// One request line on the socket, one reply line back.
fn ask(stream: &mut std::os::unix::net::UnixStream, req: &str) -> serde_json::Value {
    use std::io::BufRead;
    stream.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn stats_socket_totals_deltas_errors_and_stale_file() {
    if !is_root() {
        eprintln!("skipped: live capture needs root (CI runs as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("watch.sock");
    // A stale socket file (its listener is gone) is replaced.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let sock_arg = sock.to_str().unwrap().to_string();
    let child = start_watch("lo", &["-t", "3", "-q", "-U", &sock_arg]);
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    // A second watch on the same socket is refused: someone listens.
    let second = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["watch", "-i", "lo", "-t", "1", "-U", &sock_arg])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another tcpsight watch is listening") && err.contains("-U PATH"),
        "{err}"
    );

    let mut a = UnixStream::connect(&sock).unwrap();
    let mut b = UnixStream::connect(&sock).unwrap();
    let d0 = ask(&mut a, r#"{"cmd":"delta"}"#);
    assert_eq!(d0["delta"], true);
    connect_and_talk();
    std::thread::sleep(Duration::from_millis(300));
    // A bad request gets an error reply and the connection keeps working.
    let err = ask(&mut b, "HELLO");
    assert!(err["error"].as_str().unwrap().contains("unknown request"));
    let total = ask(&mut b, r#"{"cmd":"get"}"#);
    let ok = |v: &serde_json::Value| v["filters"][0]["success"]["total"].as_u64().unwrap();
    assert!(ok(&total) >= 1);
    let d1 = ask(&mut a, "REFRESH");
    assert!(ok(&d1) >= 1, "the connection made since the last delta");
    let d2 = ask(&mut b, r#"{"cmd":"delta"}"#);
    assert_eq!(
        ok(&d2),
        0,
        "nothing new since the previous delta (another client's)"
    );
    // `tcpsight stat` reads the same.
    let stat = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["stat", "-U", &sock_arg, "--json"])
        .output()
        .unwrap();
    assert!(stat.status.success());
    let v: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(ok(&v), ok(&total));
    // And in the Prometheus text format, for node_exporter's textfile collector.
    let prom = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["stat", "-U", &sock_arg, "--prometheus"])
        .output()
        .unwrap();
    assert!(prom.status.success());
    let prom = String::from_utf8(prom.stdout).unwrap();
    let filter = v["filters"][0]["filter"].as_str().unwrap();
    let line = format!(
        "tcpsight_watch_handshakes_total{{filter=\"{filter}\",outcome=\"success\"}} {}\n",
        ok(&total)
    );
    assert!(prom.contains(&line), "{prom}");
    if let Ok(mut check) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write as _;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(prom.as_bytes())
            .unwrap();
        let o = check.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(!sock.exists(), "the socket is removed on exit");
}

#[test]
fn stat_without_a_watch_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(["stat", "-U", "/nonexistent/tcpsight.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `tcpsight watch -i` running?"));
}

#[test]
fn user_drops_privileges_and_capture_goes_on() {
    if !is_root() {
        eprintln!("skipped: live capture needs root (CI runs as root)");
        return;
    }
    let child = start_watch("lo", &["-t", "2", "--user", "nobody"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let port = connect_and_talk();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = lines(&out.stdout);
    assert!(
        v.iter()
            .any(|l| l["server"] == format!("127.0.0.1:{port}") && l["result"] == "success")
    );
}

/// Issue 15.8: `watch --user nobody` removes its socket when it stops, though it runs as
/// nobody by then (the socket and the directory made for it were given to that user).
#[test]
fn watch_with_user_removes_its_socket_when_it_stops() {
    if !is_root() {
        eprintln!("skipped: live capture and --user need root (CI runs as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // nobody must reach the socket's directory to remove the socket in it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("made-here").join("watch.sock");
    let sock_arg = sock.to_str().unwrap().to_string();
    let child = start_watch(
        "lo",
        &["-t", "1", "-q", "-U", &sock_arg, "--user", "nobody"],
    );
    assert!(sock.exists(), "the socket is there while watch runs");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!sock.exists(), "socket left behind: {err}");
    assert!(!err.contains("cannot remove"), "{err}");
}

/// Issue 12 §4: `watch --process` names the local process of each established
/// connection (this test's, at both ends on lo); a line waits for the socket scan its
/// handshake asked for, and lines keep their order. A refused one has no owner.
#[test]
fn watch_process_names_the_owner_of_each_connection_in_order() {
    if !is_root() {
        eprintln!("skipped: live capture needs root (CI runs as root)");
        return;
    }
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    let me = me.trim().to_string();
    let child = start_watch("lo", &["-t", "4", "--process"]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let refused = closed_port();
    let mut order = Vec::new();
    for i in 0..4 {
        if i == 2 {
            assert!(TcpStream::connect(("127.0.0.1", refused)).is_err());
            order.push(refused);
        }
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_a, _) = l.accept().unwrap();
        order.push(port);
        // Open past the next scan, as a connection worth naming is.
        std::thread::sleep(Duration::from_millis(500));
        drop(c);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = lines(&out.stdout);
    let ours: Vec<&serde_json::Value> = v
        .iter()
        .filter(|l| {
            l["server"] == format!("127.0.0.1:{port}")
                || l["server"] == format!("127.0.0.1:{refused}")
        })
        .collect();
    let ports: Vec<u16> = ours
        .iter()
        .map(|l| {
            l["server"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(ports, order, "{ours:#?}");
    for l in &ours {
        if l["result"] == "success" {
            assert_eq!(l["process"], me.as_str(), "{l}");
            assert_eq!(l["pid"], std::process::id(), "{l}");
        } else {
            assert_eq!(l["result"], "rejected", "{l}");
            assert!(l["process"].is_null(), "{l}");
        }
    }
}
