//! Network namespaces for live tests: a client and a server namespace joined by a veth
//! pair, made by the test and removed when it ends. Root only; nothing outside the
//! namespaces is touched.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::time::Duration;

/// A path under testdata/, as a string argument.
pub fn data(rel: &str) -> String {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel);
    p.to_str().unwrap().to_string()
}

/// Runs the binary with `args` to its end.
pub fn tcpsight(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpsight"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Client namespace `c`, server namespace `s`; veth `cif` (client side) and `sif`.
/// Addresses: 10.201.N.1 (client), 10.201.N.2 (server), fd20:N::1/2.
/// Behind the server: 10.202.N.0/24 answers with ICMP "administratively prohibited"
/// (a prohibit route), 10.203.N.0/24 drops silently (a blackhole route).
pub struct NetPair {
    pub client_ns: String,
    pub server_ns: String,
    pub client_if: String,
    pub n: u8,
}

impl NetPair {
    /// Makes the pair, or says why not (not root, no `ip`) and returns None: the
    /// caller skips.
    pub fn new(n: u8) -> Option<NetPair> {
        if !is_root() {
            eprintln!("skipped: network namespaces need root (CI runs as root)");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipped: the ip command (iproute2) is not installed");
            return None;
        }
        let id = std::process::id() % 100_000;
        let p = NetPair {
            client_ns: format!("tsc{id}n{n}"),
            server_ns: format!("tss{id}n{n}"),
            client_if: format!("tc{id}n{n}"),
            n,
        };
        let sif = format!("ts{id}n{n}");
        let (c, s, cif) = (&p.client_ns, &p.server_ns, &p.client_if);
        let net = |h: u8| format!("10.201.{n}.{h}");
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", c])?;
            ip(&["netns", "add", s])?;
            ip(&[
                "link", "add", cif, "netns", c, "type", "veth", "peer", "name", &sif, "netns", s,
            ])?;
            ip(&[
                "-n",
                c,
                "addr",
                "add",
                &format!("{}/24", net(1)),
                "dev",
                cif,
            ])?;
            ip(&[
                "-n",
                s,
                "addr",
                "add",
                &format!("{}/24", net(2)),
                "dev",
                &sif,
            ])?;
            ip(&[
                "-n",
                c,
                "-6",
                "addr",
                "add",
                &format!("fd20:{n}::1/64"),
                "dev",
                cif,
                "nodad",
            ])?;
            ip(&[
                "-n",
                s,
                "-6",
                "addr",
                "add",
                &format!("fd20:{n}::2/64"),
                "dev",
                &sif,
                "nodad",
            ])?;
            for (ns, dev) in [(c, cif.as_str()), (s, sif.as_str())] {
                ip(&["-n", ns, "link", "set", dev, "up"])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
            }
            // The server namespace routes for the two unreachable nets.
            let fwd = Command::new("ip")
                .args(["netns", "exec", s, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
                .status()
                .map_err(|e| e.to_string())?;
            if !fwd.success() {
                return Err("sysctl net.ipv4.ip_forward in the server namespace".into());
            }
            ip(&[
                "-n",
                s,
                "route",
                "add",
                "prohibit",
                &format!("10.202.{n}.0/24"),
            ])?;
            ip(&[
                "-n",
                s,
                "route",
                "add",
                "blackhole",
                &format!("10.203.{n}.0/24"),
            ])?;
            for dst in [format!("10.202.{n}.0/24"), format!("10.203.{n}.0/24")] {
                ip(&["-n", c, "route", "add", &dst, "via", &net(2)])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            drop(p);
            panic!("setting up network namespaces: {e}");
        }
        Some(p)
    }

    pub fn client_ip(&self) -> IpAddr {
        format!("10.201.{}.1", self.n).parse().unwrap()
    }
    pub fn server_ip(&self) -> IpAddr {
        format!("10.201.{}.2", self.n).parse().unwrap()
    }
    pub fn server_ip6(&self) -> IpAddr {
        format!("fd20:{}::2", self.n).parse().unwrap()
    }
    /// An address behind a prohibit route: connecting gets ICMP unreachable (code 13).
    pub fn prohibited_ip(&self) -> IpAddr {
        format!("10.202.{}.9", self.n).parse().unwrap()
    }
    /// An address behind a blackhole route: a SYN gets no answer at all.
    pub fn blackholed_ip(&self) -> IpAddr {
        format!("10.203.{}.9", self.n).parse().unwrap()
    }

    /// Runs `f` on a thread that has joined namespace `ns` (a thread's network
    /// namespace is its own: sockets it opens live there).
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns on a namespace file descriptor, for this thread only.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// A server in the server namespace on `addr`: each connection gets one reply of
    /// `reply_len` bytes per request line, until the client closes. Runs until the
    /// namespace goes.
    pub fn serve(&self, addr: SocketAddr, reply_len: usize) {
        let (tx, rx) = std::sync::mpsc::channel();
        Self::in_ns(&self.server_ns, move || {
            let l = TcpListener::bind(addr).expect("bind in the server namespace");
            tx.send(()).unwrap();
            for c in l.incoming() {
                let Ok(mut c) = c else { break };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if buf[..n].contains(&b'\n') && c.write_all(&vec![b'x'; reply_len]).is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server listening");
    }

    /// Runs `tcpsight ARGS` inside the client namespace.
    pub fn tcpsight_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.client_ns,
            env!("CARGO_BIN_EXE_tcpsight"),
        ]);
        c.args(args);
        c
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth end, and so the pair.
        let _ = ip(&["netns", "del", &self.client_ns]);
        let _ = ip(&["netns", "del", &self.server_ns]);
    }
}

/// One request and its reply on a new connection, then a clean close.
pub fn request(to: SocketAddr, reply_len: usize) -> std::io::Result<()> {
    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    c.write_all(b"GET\n")?;
    let mut got = vec![0u8; reply_len];
    c.read_exact(&mut got)?;
    Ok(())
}

/// A connection attempt that gives up after `wait` without an answer; dropping a socket
/// in SYN-SENT sends nothing, so the handshake is left to time out.
pub fn abandoned_connect(to: SocketAddr, wait: Duration) -> std::io::Result<()> {
    match TcpStream::connect_timeout(&to, wait) {
        Ok(_) => Err(std::io::Error::other("connected to a blackholed address")),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits for a child's first stderr line (a live command says it started there) and
/// returns it; the rest of stderr is left in the pipe.
pub fn first_stderr_line(child: &mut std::process::Child) -> String {
    let err = child.stderr.as_mut().expect("stderr piped");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while err.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Sends SIGINT (Ctrl-C) and collects the output.
pub fn interrupt(child: std::process::Child) -> Output {
    // SAFETY: kill with a pid we own.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    child.wait_with_output().expect("child exits")
}
