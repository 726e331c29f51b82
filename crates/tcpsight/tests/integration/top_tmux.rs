//! `tcpsight top` end to end in a real terminal: tmux runs it detached, `send-keys`
//! types, `capture-pane` reads the screen. On a replayed capture, and (root only) live on
//! a veth pair between two network namespaces the test creates. Each test uses a tmux
//! server of its own (`tmux -L`), killed at the end. Skipped, with a message, when tmux
//! (or, live, root and `ip`) is missing.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const NETNS_CAP: &str = "testdata/captures/generated/netns-25s-client.pcap.gz";

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A private tmux server with one session, `t`.
struct Tmux {
    sock: String,
}

impl Tmux {
    fn start(tag: &str, cmd: &str, w: u16, h: u16) -> Option<Tmux> {
        if !have("tmux") {
            eprintln!("skipped: tmux is not installed");
            return None;
        }
        let t = Tmux {
            sock: format!("tcpsight-test-{tag}-{}", std::process::id()),
        };
        let full = format!(
            "{cmd}; echo EXIT=$?; if stty -a | grep -q -- -icanon; then echo ICANON=off; else echo ICANON=on; fi; sleep 600"
        );
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            "sh",
            "-c",
            &full,
        ]);
        Some(t)
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.sock])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "t", k]);
        }
    }

    /// Types text literally.
    fn typed(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    fn pane(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the screen shows every needle; returns it.
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let p = self.pane();
            if needles.iter().all(|n| p.contains(n)) {
                return p;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {needles:?}; screen:\n{p}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// After the program exited: the alternate screen is left, the cursor shown, the
    /// line discipline back to canonical mode.
    fn assert_restored(&self) {
        let p = self.wait_for(&["EXIT=", "ICANON="]);
        assert!(p.contains("ICANON=on"), "terminal left in raw mode:\n{p}");
        let flags = self.tmux(&["display", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}"]);
        assert_eq!(
            flags.trim(),
            "0 1",
            "alternate screen or hidden cursor left:\n{p}"
        );
    }

    /// The pid of the program the pane's shell runs.
    fn program_pid(&self) -> i32 {
        let sh = self.tmux(&["display", "-p", "-t", "t", "#{pane_pid}"]);
        let out = Command::new("pgrep")
            .args(["-P", sh.trim()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("the program's pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.sock, "kill-server"])
            .output();
    }
}

/// A shell command running `tcpsight top ARGS` from the repository root, `prefix`
/// before it (an environment variable, `ip netns exec NS`).
fn top_cmd(prefix: &str, args: &str) -> String {
    format!(
        "cd '{}' && {prefix} '{}' top {args}",
        root().display(),
        env!("CARGO_BIN_EXE_tcpsight")
    )
}

/// The screen line of a row (its first word is `host`).
fn row<'a>(screen: &'a str, host: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&host))
}

#[test]
fn replay_keys_and_restore() {
    let Some(t) = Tmux::start(
        "replay",
        &top_cmd("", &format!("-r {NETNS_CAP} --speed max --refresh 0.2")),
        200,
        30,
    ) else {
        return;
    };
    let s = t.wait_for(&["end of capture", "10.77.0.2"]);
    assert!(s.contains("tcpsight top netns-25s-client.pcap.gz (replay max)"));
    assert!(s.contains("GAPS 17"), "{s}");
    let r = row(&s, "10.77.0.2").unwrap();
    assert_eq!(&r[1..5], ["9,012", "306.78", "99.8", "99.7"], "{s}");
    // Sort by the next column, then reverse.
    t.keys(&[">"]);
    t.wait_for(&["sort SynAck% desc"]);
    t.keys(&["i"]);
    let s = t.wait_for(&["sort SynAck% asc"]);
    let first = s.lines().nth(3).unwrap();
    assert!(first.contains("  0.0"), "lowest SynAck% first: {first}");
    t.keys(&["i", "<"]);
    t.wait_for(&["sort Syn desc"]);
    // Filter.
    t.keys(&["/"]);
    t.typed("host:^fd77::2$");
    t.wait_for(&["filter> host:^fd77::2$_"]);
    t.keys(&["Enter"]);
    let s = t.wait_for(&["filter host:^fd77::2$", "| 1 row "]);
    assert!(row(&s, "fd77::2").is_some());
    assert!(row(&s, "10.77.0.2").is_none());
    // Drill down and back.
    t.keys(&["Enter"]);
    let s = t.wait_for(&["fd77::2: 26 recent connections", "Esc back"]);
    assert!(s.contains("[fd77::2]:80"));
    t.keys(&["Escape"]);
    t.wait_for(&["| 1 row ", "Enter details"]);
    // Pause, help.
    t.keys(&["Space"]);
    t.wait_for(&["PAUSED"]);
    t.keys(&["?"]);
    t.wait_for(&["Help", "reverse the sort order"]);
    t.keys(&["x"]);
    // Resize: fewer columns, same rows.
    t.tmux(&["resize-window", "-t", "t", "-x", "70", "-y", "20"]);
    let s = t.wait_for(&["Host"]);
    assert!(
        !s.contains("Rtt p95"),
        "narrow screen shows fewer columns:\n{s}"
    );
    assert!(row(&s, "fd77::2").is_some());
    t.keys(&["q"]);
    t.assert_restored();
    let s = t.pane();
    assert!(s.contains("EXIT=0"), "{s}");
    // The final table on stdout, with its filter.
    assert!(s.contains("filter: host:^fd77::2$"), "{s}");
    assert!(row(&s, "fd77::2").is_some(), "{s}");
}

/// Regression: when the terminal went away (tmux killed, window closed), crossterm
/// read the hung-up terminal's end-of-file in an endless loop inside its poll and the
/// program spun at 100 % CPU forever. It must exit.
#[test]
fn exits_when_the_terminal_hangs_up() {
    let Some(t) = Tmux::start(
        "hangup",
        &top_cmd("", &format!("-r {NETNS_CAP} --speed 1")),
        160,
        20,
    ) else {
        return;
    };
    t.wait_for(&["(replay 1x)"]);
    let pid = t.program_pid();
    drop(t); // kills the tmux server: the pty closes
    let deadline = Instant::now() + Duration::from_secs(5);
    // Gone, or a zombie nobody reaps (its parent shell died with the pty).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| !st.split(") ").nth(1).unwrap_or("").starts_with('Z'))
            .unwrap_or(false)
    };
    while alive() {
        assert!(
            Instant::now() < deadline,
            "top still running 5 s after its terminal closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_restores_the_terminal() {
    let Some(t) = Tmux::start(
        "sigterm",
        &top_cmd("", &format!("-r {NETNS_CAP} --speed 1 --refresh 0.2")),
        160,
        20,
    ) else {
        return;
    };
    t.wait_for(&["(replay 1x)"]);
    let pid = t.program_pid();
    // SAFETY: kill with a pid we just read from our own tmux pane.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    t.assert_restored();
    let s = t.pane();
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("tcpsight top: netns-25s-client.pcap.gz"), "{s}");
}

#[test]
fn panic_restores_the_terminal() {
    let Some(t) = Tmux::start(
        "panic",
        &top_cmd(
            "TCPSIGHT_TOP_TEST_PANIC=1",
            &format!("-r {NETNS_CAP} --speed max"),
        ),
        160,
        20,
    ) else {
        return;
    };
    t.assert_restored();
    let s = t.pane();
    assert!(s.contains("EXIT=101"), "{s}");
    assert!(s.contains("TCPSIGHT_TOP_TEST_PANIC is set"), "{s}");
}

/// Two network namespaces joined by a veth pair, deleted on drop.
struct Netns {
    client: String,
    server: String,
}

impl Netns {
    fn ip(args: &[&str]) -> bool {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn create() -> Option<Netns> {
        let id = std::process::id() % 100_000;
        let n = Netns {
            client: format!("tstop-c-{id}"),
            server: format!("tstop-s-{id}"),
        };
        let (vc, vs) = (format!("tt{id}c"), format!("tt{id}s"));
        let ok = Self::ip(&["netns", "add", &n.client])
            && Self::ip(&["netns", "add", &n.server])
            && Self::ip(&[
                "link", "add", &vc, "netns", &n.client, "type", "veth", "peer", "name", &vs,
                "netns", &n.server,
            ])
            && Self::ip(&["-n", &n.client, "addr", "add", "10.213.7.1/24", "dev", &vc])
            && Self::ip(&["-n", &n.server, "addr", "add", "10.213.7.2/24", "dev", &vs])
            && Self::ip(&["-n", &n.client, "link", "set", &vc, "up"])
            && Self::ip(&["-n", &n.server, "link", "set", &vs, "up"])
            && Self::ip(&["-n", &n.client, "link", "set", "lo", "up"])
            && Self::ip(&["-n", &n.server, "link", "set", "lo", "up"]);
        ok.then_some(n)
    }

    fn iface(&self) -> String {
        format!("tt{}c", std::process::id() % 100_000)
    }

    /// Runs `f` on a thread inside namespace `name`.
    fn run<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{name}");
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap();
            // SAFETY: setns on a namespace file we own; it moves only this thread.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Self::ip(&["netns", "del", &self.client]);
        Self::ip(&["netns", "del", &self.server]);
    }
}

#[test]
fn live_in_a_network_namespace() {
    if !is_root() || !have("ip") {
        eprintln!("skipped: live top needs root and ip(8)");
        return;
    }
    if !have("tmux") {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let Some(ns) = Netns::create() else {
        eprintln!("skipped: could not create network namespaces");
        return;
    };
    let cmd = top_cmd(
        &format!("ip netns exec {}", ns.client),
        &format!("-i {} --group-by host:port --refresh 0.2", ns.iface()),
    );
    let Some(t) = Tmux::start("live", &cmd, 200, 24) else {
        return;
    };
    t.wait_for(&["(live)", "no connections yet"]);

    // A small server: 10 requests answered, then it stops. Port 8081 is closed (RST).
    let server = Netns::run(&ns.server, || {
        let l = TcpListener::bind("10.213.7.2:8080").unwrap();
        for _ in 0..10 {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = Netns::run(&ns.client, || {
        for _ in 0..10 {
            let mut s = TcpStream::connect_timeout(
                &"10.213.7.2:8080".parse().unwrap(),
                Duration::from_secs(5),
            )
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
        }
        let refused =
            TcpStream::connect_timeout(&"10.213.7.2:8081".parse().unwrap(), Duration::from_secs(5));
        assert!(refused.is_err());
    });
    client.join().unwrap();
    server.join().unwrap();

    // The handshakes show at once; the records (Out, In, Fin) after the close linger.
    let s = t.wait_for(&["10.213.7.2:8080", "10.213.7.2:8081"]);
    let r = row(&s, "10.213.7.2:8080").unwrap();
    assert_eq!(r[1], "10", "{s}");
    assert_eq!(r[4], "100.0", "Est% {s}");
    let r = row(&s, "10.213.7.2:8081").unwrap();
    assert_eq!((r[1], r[3], r[4]), ("1", "0.0", "0.0"), "{s}");
    assert!(s.contains("drops 0"), "{s}");
    // Records arrive: 10 requests out, 10 responses in.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = t.pane();
        let r = row(&s, "10.213.7.2:8080").unwrap();
        if r.get(13) == Some(&"10") && r.get(14) == Some(&"10") {
            break;
        }
        assert!(Instant::now() < deadline, "Out/In never reached 10:\n{s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Drill into the first row.
    t.keys(&["Enter"]);
    let s = t.wait_for(&["10.213.7.2:8080: 10 recent connections"]);
    assert!(s.contains("established"), "{s}");
    t.keys(&["Escape"]);
    t.wait_for(&["Enter details"]);
    t.keys(&["q"]);
    t.assert_restored();
    let s = t.pane();
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("tcpsight top: tt"), "{s}");
    assert!(row(&s, "10.213.7.2:8080").is_some(), "{s}");
}
