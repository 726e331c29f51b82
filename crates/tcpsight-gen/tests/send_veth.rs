//! tcpsight-send over a real link, root only: the test makes two network namespaces joined
//! by a veth pair, sends N frames into one end with each method, and counts (with a plain
//! AF_PACKET socket in the other namespace) that N frames, byte for byte the right
//! lengths, arrive. Without root it skips with a message. It sends nowhere else: the
//! sender runs inside the test's own namespace, on the veth the test made.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The test frames' EtherType (IEEE local experimental): the counter takes only these.
const ETHERTYPE: u16 = 0x88b5;
const FRAMES_IN_FILE: usize = 64;

fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair (A in `tx`, B in `rx`), removed on drop.
struct Pair {
    tx: String,
    rx: String,
    a: String,
    b: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let id = std::process::id();
        let p = Pair {
            tx: format!("tsst{id}{tag}tx"),
            rx: format!("tsst{id}{tag}rx"),
            a: format!("tsA{id}{tag}"),
            b: format!("tsB{id}{tag}"),
        };
        ip(&["netns", "add", &p.tx]);
        ip(&["netns", "add", &p.rx]);
        // No IPv6 on the pair (its neighbour discovery would add frames); best effort.
        for ns in [&p.tx, &p.rx] {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw"])
                .args(["net.ipv6.conf.default.disable_ipv6=1"])
                .status();
        }
        ip(&[
            "link", "add", &p.a, "netns", &p.tx, "type", "veth", "peer", "name", &p.b, "netns",
            &p.rx,
        ]);
        ip(&["-n", &p.tx, "link", "set", &p.a, "up"]);
        ip(&["-n", &p.rx, "link", "set", &p.b, "up"]);
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.tx]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.rx]).status();
    }
}

/// A pcap of FRAMES_IN_FILE Ethernet frames of 60 to 1509 bytes; returns it and the
/// frames' lengths.
fn write_pcap(path: &std::path::Path) -> Vec<usize> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65_535u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    let mut lens = Vec::new();
    for k in 0..FRAMES_IN_FILE {
        let len = 60 + 23 * k;
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        f[14] = k as u8;
        v.extend_from_slice(&(k as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v.extend_from_slice(&f);
        lens.push(len);
    }
    std::fs::write(path, v).unwrap();
    lens
}

/// Counts ETHERTYPE frames arriving on `iface` in namespace `ns` until `want` have come
/// or none came for a second: (frames, bytes). Runs in its own thread (setns changes the
/// calling thread's namespace only); `ready` is sent once the socket is bound.
fn count_in(ns: String, iface: String, want: u64, ready: mpsc::Sender<()>) -> (u64, u64) {
    let nsf = File::open(format!("/var/run/netns/{ns}")).expect("open the namespace");
    // SAFETY: plain libc calls with valid arguments; results checked.
    unsafe {
        assert_eq!(libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET), 0, "setns");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, ETHERTYPE.to_be() as i32);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let buf: libc::c_int = 256 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &buf as *const _ as *const libc::c_void,
            4,
        );
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let name = std::ffi::CString::new(iface).unwrap();
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETHERTYPE.to_be();
        sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        assert!(sll.sll_ifindex > 0);
        assert_eq!(
            libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ),
            0
        );
        ready.send(()).unwrap();
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut last = Instant::now();
        let mut b = vec![0u8; 65_536];
        while n < want && last.elapsed() < Duration::from_secs(1) {
            let r = libc::recv(fd, b.as_mut_ptr() as *mut libc::c_void, b.len(), 0);
            if r > 0 {
                n += 1;
                bytes += r as u64;
                last = Instant::now();
            }
        }
        libc::close(fd);
        (n, bytes)
    }
}

fn send_and_count(method: &str, pps: u64, n: u64) {
    let pair = Pair::new(&method[..1]);
    let dir = std::env::temp_dir().join(format!("tcpsight-send-{}-{method}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frames.pcap");
    let lens = write_pcap(&file);
    let want_bytes: u64 = (0..n as usize).map(|i| lens[i % lens.len()] as u64).sum();

    let (tx, rx) = mpsc::channel();
    let (ns, b) = (pair.rx.clone(), pair.b.clone());
    let counter = std::thread::spawn(move || count_in(ns, b, n, tx));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("counter ready");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.tx,
            env!("CARGO_BIN_EXE_tcpsight-send"),
        ])
        .args(["-i", &pair.a, "--method", method, "--count", &n.to_string()])
        .args(["--pps", &pps.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{method}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, got_bytes) = counter.join().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("{method} at {pps} pps: {stdout}");
    let field = |k: &str| {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(String::from))
            .unwrap_or_default()
    };
    assert_eq!(field("sent"), n.to_string(), "{method}: {stdout}");
    assert_eq!(field("errors"), "0", "{method}: {stdout}");
    // The interface's own count (IPv6 may add a frame or two where it cannot be off).
    let if_tx: u64 = field("if_tx_packets").parse().unwrap_or(0);
    assert!(if_tx >= n, "{method}: {stdout}");
    assert_eq!(got, n, "{method}: frames arrived");
    assert_eq!(got_bytes, want_bytes, "{method}: bytes arrived");
    if pps > 0 {
        // Paced: it took about n / pps seconds (not much less: it did not run ahead).
        let el: f64 = field("elapsed_s").parse().unwrap();
        let want = (n - 1) as f64 / pps as f64;
        assert!(el >= want * 0.99, "{method}: {el} s for {want} s of frames");
    }
}

#[test]
fn sends_n_frames_over_a_veth_pair() {
    if !is_root() {
        eprintln!("send_veth: skipped (needs root: it makes network namespaces)");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("send_veth: skipped (no `ip` command)");
        return;
    }
    // Paced (the counter, a plain socket, keeps up at this rate on a loaded machine),
    // then the ring as fast as it goes.
    for method in ["ring", "mmsg", "sendto"] {
        send_and_count(method, 100_000, 20_000);
    }
    send_and_count("ring", 0, 20_000);
}
