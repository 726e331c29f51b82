//! `tcpsight probe`: real kernel traffic traced through tracefs (root; skipped with a
//! message otherwise), and the file commands on the stored samples (anyone).
//!
//! Traffic goes only to 127.0.0.1, in the root namespace or in a network namespace the
//! test creates for one thread (unshare), whose `lo` it takes down mid-transfer to make
//! the kernel retransmit.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

const TRACEFS: &str = "/sys/kernel/tracing";

/// Tests that trace run one at a time: each checks the instance list.
static TRACING: Mutex<()> = Mutex::new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tcpsight")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Root and a usable tracefs, or a printed reason to skip.
fn can_trace(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root");
        return false;
    }
    if !Path::new(TRACEFS).join("instances").is_dir()
        || !Path::new(TRACEFS).join("events/tcp/tcp_probe").is_dir()
    {
        eprintln!("skipping {test}: no tracefs with tcp events at {TRACEFS}");
        return false;
    }
    true
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    TRACING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything of the global tracing state a tracer could change.
fn global_state() -> String {
    global_state_but(None)
}

/// The same, not listing the instance `running` (a tracer's own, while it runs).
fn global_state_but(running: Option<&Path>) -> String {
    let root = Path::new(TRACEFS);
    let mut s = String::new();
    for f in [
        "set_event",
        "tracing_on",
        "buffer_size_kb",
        "current_tracer",
        "events/enable",
        "events/tcp/enable",
        "events/tcp/filter",
        "events/tcp/tcp_probe/enable",
        "events/tcp/tcp_probe/filter",
        "events/tcp/tcp_retransmit_skb/enable",
        "events/tcp/tcp_send_reset/enable",
        "events/tcp/tcp_receive_reset/enable",
        "events/sock/inet_sock_set_state/enable",
    ] {
        let v = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| format!("<{e}>"));
        s.push_str(&format!("{f}: {v}\n"));
    }
    let mut inst: Vec<String> = std::fs::read_dir(root.join("instances"))
        .unwrap()
        .flatten()
        .filter(|e| Some(e.path().as_path()) != running)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    inst.sort();
    s.push_str(&format!("instances: {inst:?}\n"));
    s
}

struct Tracer {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    stdout: Option<JoinHandle<String>>,
    instance: PathBuf,
}

/// Starts `tcpsight probe trace ARGS` and waits until it traces.
fn start_trace(args: &[&str]) -> Tracer {
    let mut child = Command::new(bin())
        .args(["probe", "trace"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while err.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    assert!(line.contains("tracing 6 events in "), "{line}");
    let instance = PathBuf::from(TRACEFS)
        .join("instances")
        .join(format!("tcpsight-{}", child.id()));
    assert!(line.contains(instance.to_str().unwrap()), "{line}");
    let stderr = std::thread::spawn(move || {
        let mut s = line + "\n";
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    Tracer {
        child,
        stderr: Some(stderr),
        stdout: Some(stdout),
        instance,
    }
}

/// A test that fails while its tracer runs still stops it (SIGTERM: it cleans up).
impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

impl Tracer {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: a child of ours.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits for the exit (at most 20 s); returns (success, stdout, stderr).
    fn finish(&mut self) -> (bool, String, String) {
        let mut status = None;
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                panic!("tracer did not exit");
            }
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        (status.success(), out, err)
    }
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn port_of(v: &Value, key: &str) -> Option<u16> {
    v[key].as_str()?.rsplit(':').next()?.parse().ok()
}

#[test]
fn refused_connect_gives_send_and_receive_reset() {
    if !can_trace("refused_connect_gives_send_and_receive_reset") {
        return;
    }
    let _g = lock();
    let before = global_state();
    let port = closed_port();
    let p = port.to_string();
    let mut t = start_trace(&["--port", &p, "--json"]);
    assert!(t.instance.is_dir());
    let e = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    std::thread::sleep(Duration::from_millis(300));
    t.signal(libc::SIGINT);
    let instance = t.instance.clone();
    let (ok, out, err) = t.finish();
    assert!(ok, "{err}");
    let ev = json_lines(&out);
    let sent: Vec<_> = ev
        .iter()
        .filter(|v| v["event"] == "tcp_send_reset" && port_of(v, "local") == Some(port))
        .collect();
    let received: Vec<_> = ev
        .iter()
        .filter(|v| v["event"] == "tcp_receive_reset" && port_of(v, "remote") == Some(port))
        .collect();
    assert_eq!(sent.len(), 1, "{out}");
    assert_eq!(received.len(), 1, "{out}");
    assert_eq!(sent[0]["reason"], "NO_SOCKET");
    assert_eq!(received[0]["dport"], port as u64);
    // The client's socket: SYN_SENT, then CLOSE.
    assert!(ev.iter().any(|v| v["event"] == "inet_sock_set_state"
        && v["oldstate"] == "TCP_SYN_SENT"
        && v["newstate"] == "TCP_CLOSE"
        && v["dport"] == port as u64));
    assert!(
        ev.iter()
            .all(|v| port_of(v, "local") == Some(port) || port_of(v, "remote") == Some(port)),
        "--port let other connections through: {out}"
    );
    assert!(err.contains("removed"), "{err}");
    assert!(!instance.exists());
    assert_eq!(global_state(), before);
}

/// Unshares the calling thread's network namespace and sets its `lo` up or down.
fn set_lo(up: bool) -> std::io::Result<()> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            let flags = ifr.ifr_ifru.ifru_flags;
            ifr.ifr_ifru.ifru_flags = if up {
                flags | libc::IFF_UP as libc::c_short
            } else {
                flags & !(libc::IFF_UP as libc::c_short)
            };
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 { Err(e) } else { Ok(()) }
    }
}

/// In a namespace of its own: a listener on 127.0.0.1 (its port is sent back), then on
/// `go` a 400 KB transfer during which `lo` goes down for 0.7 s. Returns bytes received.
fn lossy_transfer(
    port_tx: std::sync::mpsc::Sender<u16>,
    go: std::sync::mpsc::Receiver<()>,
) -> Result<usize, String> {
    // SAFETY: unshare affects this thread's namespaces only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    set_lo(true).map_err(|e| format!("lo up: {e}"))?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    port_tx.send(l.local_addr().unwrap().port()).unwrap();
    go.recv().map_err(|e| e.to_string())?;
    let mut c = TcpStream::connect(l.local_addr().unwrap()).map_err(|e| e.to_string())?;
    let (mut a, _) = l.accept().map_err(|e| e.to_string())?;
    a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut n = 0;
        while let Ok(k) = a.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    let chunk = [b'y'; 1000];
    let mut flap = None;
    for i in 0..400 {
        if i == 50 {
            // Spawned from this thread, so in the same namespace.
            flap = Some(std::thread::spawn(|| {
                let down = set_lo(false);
                std::thread::sleep(Duration::from_millis(700));
                down.and(set_lo(true))
            }));
        }
        c.write_all(&chunk).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_micros(500));
    }
    flap.unwrap()
        .join()
        .unwrap()
        .map_err(|e| format!("lo flap: {e}"))?;
    c.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    Ok(reader.join().unwrap())
}

#[test]
fn lossy_transfer_gives_srtt_and_retransmissions() {
    if !can_trace("lossy_transfer_gives_srtt_and_retransmissions") {
        return;
    }
    let _g = lock();
    let before = global_state();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || lossy_transfer(port_tx, go_rx));
    let Ok(port) = port_rx.recv() else {
        let e = h.join().unwrap().unwrap_err();
        eprintln!("skipping lossy_transfer_gives_srtt_and_retransmissions: {e}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lossy.txt");
    let p = port.to_string();
    let mut t = start_trace(&["--port", &p, "-o", file.to_str().unwrap()]);
    go_tx.send(()).unwrap();
    let got = h.join().unwrap().unwrap();
    assert_eq!(got, 400_000);
    std::thread::sleep(Duration::from_millis(300));
    t.signal(libc::SIGINT);
    let (ok, _, err) = t.finish();
    assert!(ok, "{err}");
    assert_eq!(global_state(), before);

    // The text trace, through the file commands.
    let out = Command::new(bin())
        .args(["probe", "parse", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ev = json_lines(&String::from_utf8_lossy(&out.stdout));
    let ours = |v: &&Value| port_of(v, "local") == Some(port) || port_of(v, "remote") == Some(port);
    let probes: Vec<&Value> = ev
        .iter()
        .filter(ours)
        .filter(|v| v["event"] == "tcp_probe")
        .collect();
    let with_srtt = probes
        .iter()
        .filter(|v| v["srtt"].as_u64().unwrap() > 0)
        .count();
    let retx = ev
        .iter()
        .filter(ours)
        .filter(|v| v["event"] == "tcp_retransmit_skb")
        .count();
    eprintln!(
        "lossy transfer: {} events, {} tcp_probe ({with_srtt} with srtt > 0), {retx} retransmissions",
        ev.len(),
        probes.len()
    );
    assert!(with_srtt > 10, "{} probes", probes.len());
    assert!(retx >= 1, "no retransmission");
    assert!(
        probes
            .iter()
            .all(|v| v["snd_cwnd"].is_u64() && v["snd_nxt"].is_u64())
    );

    let out = Command::new(bin())
        .args(["probe", "summary", "--json", file.to_str().unwrap()])
        .output()
        .unwrap();
    let conns = json_lines(&String::from_utf8_lossy(&out.stdout));
    let sender = conns
        .iter()
        .find(|c| port_of(c, "remote") == Some(port))
        .expect("the sender's socket");
    assert_eq!(sender["retransmits"].as_u64().unwrap() as usize, retx);
    assert!(sender["srtt_p50_us"].as_u64().unwrap() > 0);
    assert!(sender["cwnd_min"].as_u64().unwrap() < sender["cwnd_max"].as_u64().unwrap());

    let plots = dir.path().join("plots");
    let out = Command::new(bin())
        .args(["probe", "plot", file.to_str().unwrap(), "--out"])
        .arg(&plots)
        .arg(format!("--conn=-> 127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&plots).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(png_size(&files[0].path()), (1200, 900));
}

fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&b[12..16], b"IHDR");
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
}

#[test]
fn signals_remove_the_instance_and_leave_global_state() {
    if !can_trace("signals_remove_the_instance_and_leave_global_state") {
        return;
    }
    let _g = lock();
    let before = global_state();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut t = start_trace(&["--buffer", "2000", "--port", "9"]);
        // The instance has its own buffer (the kernel rounds it up to whole pages); the
        // global one is untouched.
        let kb: u64 = std::fs::read_to_string(t.instance.join("buffer_size_kb"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!((2000..2100).contains(&kb), "{kb}");
        assert_eq!(
            std::fs::read_to_string(t.instance.join("events/tcp/tcp_probe/enable"))
                .unwrap()
                .trim(),
            "1"
        );
        assert_eq!(
            std::fs::read_to_string(t.instance.join("events/tcp/tcp_probe/filter"))
                .unwrap()
                .trim(),
            "(sport == 9 || dport == 9)"
        );
        assert_eq!(
            global_state_but(Some(&t.instance)),
            before,
            "changed while tracing"
        );
        let instance = t.instance.clone();
        t.signal(sig);
        let (ok, _, err) = t.finish();
        assert!(ok, "signal {sig}: {err}");
        assert!(!instance.exists(), "signal {sig}: instance left");
        assert_eq!(global_state(), before, "changed after signal {sig}");
    }
}

#[test]
fn duration_ends_the_trace_and_cleans_up() {
    if !can_trace("duration_ends_the_trace_and_cleans_up") {
        return;
    }
    let _g = lock();
    let before = global_state();
    let mut t = start_trace(&["-t", "0.5", "sport == 9 || dport == 9"]);
    let instance = t.instance.clone();
    let (ok, _, err) = t.finish();
    assert!(ok, "{err}");
    assert!(err.contains("events written"), "{err}");
    assert!(!instance.exists());
    assert_eq!(global_state(), before);
}

#[test]
fn rejected_filter_is_a_clear_error_and_cleans_up() {
    if !can_trace("rejected_filter_is_a_clear_error_and_cleans_up") {
        return;
    }
    let _g = lock();
    let before = global_state();
    let out = Command::new(bin())
        .args(["probe", "trace", "-t", "1", "sport == == 3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("the kernel rejected filter"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(global_state(), before);
}

#[test]
fn with_capture_joins_kernel_and_wire() {
    if !can_trace("with_capture_joins_kernel_and_wire") {
        return;
    }
    let _g = lock();
    let before = global_state();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let p = port.to_string();
    let mut t = start_trace(&[
        "--port",
        &p,
        "--json",
        "--with-capture",
        "lo",
        "--report",
        report.to_str().unwrap(),
    ]);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut a, _) = l.accept().unwrap();
    let data = vec![7u8; 200_000];
    let w = std::thread::spawn(move || {
        c.write_all(&data).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        c
    });
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 200_000);
    drop(w.join().unwrap());
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    t.signal(libc::SIGINT);
    let (ok, _, err) = t.finish();
    assert!(ok, "{err}");
    assert_eq!(global_state(), before);
    let rows = json_lines(&std::fs::read_to_string(&report).unwrap());
    let sender = rows
        .iter()
        .find(|r| port_of(r, "remote") == Some(port))
        .expect("the client's socket");
    eprintln!("joined: {sender}");
    assert!(sender["kernel"]["srtt_p50_us"].as_u64().unwrap() > 0);
    let wire = &sender["wire"];
    assert!(wire.is_object(), "not matched on the wire: {sender}");
    assert!(wire["rtt_samples"].as_u64().unwrap() > 0);
    assert!(wire["rtt_avg_us"].as_f64().unwrap() > 0.0);
    assert!(wire["pkts"].as_u64().unwrap() > 0);
    assert_eq!(
        wire["retx_pkts"].as_u64().unwrap(),
        sender["kernel"]["retransmits"].as_u64().unwrap()
    );
    let last = rows.last().unwrap();
    assert!(last["join"]["matched"].as_u64().unwrap() >= 2, "{last}");
}

#[test]
fn mounts_tracefs_when_not_mounted() {
    if !can_trace("mounts_tracefs_when_not_mounted") {
        return;
    }
    if !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipping mounts_tracefs_when_not_mounted: no unshare(1)");
        return;
    }
    // tracefs is one superblock: the instance shows in every mount of it.
    let _g = lock();
    // In a private mount namespace, so the machine's tracefs mount is not touched.
    let script = format!(
        "umount /sys/kernel/tracing || exit 99; \
         if grep -q ' tracefs ' /proc/self/mounts; then exit 98; fi; \
         {} probe trace -t 0.3 --port 9; rc=$?; \
         grep -c ' tracefs ' /proc/self/mounts; exit $rc",
        bin()
    );
    let out = Command::new("/usr/bin/unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(99) | Some(98) => {
            eprintln!(
                "skipping mounts_tracefs_when_not_mounted: cannot unmount tracefs here: {err}"
            );
            return;
        }
        Some(0) => {}
        other => panic!("{other:?}: {err}"),
    }
    assert!(
        err.contains("mounted tracefs at /sys/kernel/tracing"),
        "{err}"
    );
    assert!(err.contains("events written"), "{err}");
    // Unmounted again on exit.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(Path::new(TRACEFS).join("instances").is_dir());
}

#[test]
fn errors_without_tracefs_root_or_events() {
    // No tracefs there.
    let out = Command::new(bin())
        .args([
            "probe",
            "trace",
            "--tracefs",
            "/nonexistent/tracefs",
            "-t",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/tracefs is not a tracefs"),
        "{err}"
    );
    // A tracefs whose kernel lacks the events.
    let fake = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fake.path().join("instances")).unwrap();
    std::fs::create_dir_all(fake.path().join("events/sock")).unwrap();
    let out = Command::new(bin())
        .args(["probe", "trace", "-t", "1", "--tracefs"])
        .arg(fake.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("event tcp:tcp_probe is not available on this kernel"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    // Not root.
    if is_root() && Path::new(TRACEFS).join("instances").is_dir() {
        use std::os::unix::process::CommandExt;
        let out = match Command::new(bin())
            .args(["probe", "trace", "-t", "1"])
            .uid(65534)
            .gid(65534)
            .output()
        {
            Ok(out) => out,
            // A checkout under a directory other users cannot enter (a 0700 home).
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!(
                    "skipping the non-root case: uid 65534 cannot reach {} ({e})",
                    bin()
                );
                return;
            }
            Err(e) => panic!("running {} as uid 65534: {e}", bin()),
        };
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("needs root"), "{err}");
    } else {
        eprintln!("skipping the non-root case: needs root to drop to another user");
    }
}

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/probe")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn file_commands_on_the_samples() {
    let f = sample("tcp_probe-format.txt");
    // JSON lines: every event, typed; garbage reported in one line on stderr.
    let out = Command::new(bin())
        .args(["probe", "parse", &f])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // Columns first, then the fields in printed order.
    assert!(
        text.starts_with(
            "{\"ts\":1312.37142,\"event\":\"tcp_probe\",\"task\":\"iperf3\",\"pid\":2140,\"cpu\":1,\"local\":\"10.0.1.1:58760\",\"remote\":\"10.0.0.1:5201\",\"src\":"
        ),
        "{text}"
    );
    let ev = json_lines(&text);
    assert_eq!(ev.len(), 25);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 of 31 lines are not trace lines and were skipped (first: line 11"),
        "{err}"
    );
    assert!(err.contains("12 events lost"), "{err}");
    assert_eq!(ev[0]["task"], "iperf3");
    assert_eq!(ev[0]["snd_cwnd"], 10);
    assert_eq!(ev[0]["snd_nxt"], 0x3d9e3a5);
    assert_eq!(ev[0]["local"], "10.0.1.1:58760");
    // An event the bundled formats do not know keeps its fields, as strings.
    let destroy = ev
        .iter()
        .find(|v| v["event"] == "tcp_destroy_sock")
        .unwrap();
    assert_eq!(destroy["sock_cookie"], "4002");

    // CSV: one column per field seen.
    let out = Command::new(bin())
        .args([
            "probe",
            "parse",
            "--csv",
            &sample("loopback-lossy-6.18.txt.gz"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..7],
        &["ts", "event", "task", "pid", "cpu", "local", "remote"]
    );
    for col in ["snd_cwnd", "srtt", "oldstate", "reason", "err"] {
        assert!(header.contains(&col), "{col}");
    }
    assert_eq!(lines.count(), 198);
    assert!(out.stderr.is_empty());

    // Summary table.
    let out = Command::new(bin())
        .args(["probe", "summary", &sample("loopback-lossy-6.18.txt")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("4 connections; events: inet_sock_set_state 14, tcp_probe 177, tcp_receive_reset 1, tcp_retransmit_skb 5, tcp_send_reset 1"),
        "{table}"
    );

    // SVG plots with a size of our choosing; ssh kept on request.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "probe",
            "plot",
            &f,
            "--svg",
            "--include-ssh",
            "--width",
            "640",
            "--height",
            "480",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for p in &listed {
        let svg = std::fs::read_to_string(p).unwrap();
        assert!(svg.contains("width=\"640\"") && svg.contains("height=\"480\""));
        for name in ["snd_cwnd", "srtt", "snd_wnd", "rcv_wnd"] {
            assert!(svg.contains(&format!("\n{name}\n</text>")), "{p}: {name}");
        }
    }
    // A missing file is one clear line.
    let out = Command::new(bin())
        .args(["probe", "summary", "/nonexistent/trace.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "tcpsight: /nonexistent/trace.txt: No such file or directory (os error 2)"
    );
}
