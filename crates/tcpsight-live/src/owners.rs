//! Which process owns a local TCP socket, for live faces: the kernel's socket tables
//! (`/proc/net/tcp` and `tcp6`: a connection's four-tuple to a socket inode) and every
//! process's descriptors (`/proc/PID/fd` -> `socket:[INODE]`, `/proc/PID/comm`), read
//! by a thread of its own, never on the packet path, and cached.
//!
//! The tables are those of the network namespace tcpsight runs in: connections of
//! processes in other namespaces (containers) are found only when tcpsight runs in
//! theirs. A socket that opens and closes between two scans is missed; a scan is asked
//! for whenever a new connection is seen ([`SocketOwners::nudge`]), at most
//! `MAX_SCANS_PER_S` a second, and otherwise runs every `refresh`. An owner stays in the
//! cache for `KEEP` after its socket is gone, so a connection's record (written when it
//! ends, when the socket may already be closed) still finds it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most this many scans a second, however many connections start. A scan costs the
/// kernel a walk of its whole TCP hash table, whatever the namespace holds: 20 ms on a
/// machine with 262,144 buckets (`/proc/net/tcp` and `tcp6`; `ss`'s sock_diag costs 6
/// ms for the same walk), so 4 a second is 8 % of a core at most.
pub const MAX_SCANS_PER_S: u32 = 4;
/// How long an owner is remembered after its socket is gone.
pub const KEEP: Duration = Duration::from_secs(120);

/// A process owning a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// The command name (`/proc/PID/comm`, at most 15 bytes).
    pub comm: Arc<str>,
}

/// A socket's (local, remote) ends.
type Ends = (SocketAddr, SocketAddr);

#[derive(Default)]
struct Cache {
    owners: HashMap<Ends, (Owner, Instant)>,
}

/// The owners of this namespace's TCP sockets, kept up to date by a thread.
pub struct SocketOwners {
    cache: Arc<RwLock<Cache>>,
    nudge: SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SocketOwners {
    /// Starts the scanning thread over `/proc`, scanning every `refresh`.
    pub fn start(refresh: Duration) -> SocketOwners {
        SocketOwners::start_at(PathBuf::from("/proc"), refresh)
    }

    /// The same over another proc tree (tests give a fake one).
    pub fn start_at(proc_root: PathBuf, refresh: Duration) -> SocketOwners {
        let cache = Arc::new(RwLock::new(Cache::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<()>(1);
        let (c, s) = (cache.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("socket-owners".into())
            .spawn(move || scanner(&proc_root, refresh, &c, &s, rx))
            .ok();
        SocketOwners {
            cache,
            nudge: tx,
            stop,
            thread,
        }
    }

    /// A new connection was seen: scan soon (never blocks).
    pub fn nudge(&self) {
        let _ = self.nudge.try_send(());
    }

    /// The owner of the socket between `a` and `b`, in either orientation (the local
    /// end may be the client or the server).
    pub fn lookup(&self, a: SocketAddr, b: SocketAddr) -> Option<Owner> {
        let c = self.cache.read().ok()?;
        c.owners
            .get(&(a, b))
            .or_else(|| c.owners.get(&(b, a)))
            .map(|(o, _)| o.clone())
    }

    /// Scans now, on this thread, and waits (tests).
    pub fn scan_now(&self, proc_root: &Path) {
        update(&self.cache, scan(proc_root));
    }
}

impl Drop for SocketOwners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.nudge.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn scanner(
    root: &Path,
    refresh: Duration,
    cache: &RwLock<Cache>,
    stop: &AtomicBool,
    nudges: Receiver<()>,
) {
    let min_gap = Duration::from_secs(1) / MAX_SCANS_PER_S;
    let mut last = Instant::now() - refresh;
    while !stop.load(Ordering::Relaxed) {
        let since = last.elapsed();
        if since < min_gap {
            std::thread::sleep(min_gap - since);
        }
        last = Instant::now();
        update(cache, scan(root));
        // Until the next refresh or a nudge, whichever first.
        let _ = nudges.recv_timeout(refresh);
    }
}

fn update(cache: &RwLock<Cache>, found: HashMap<Ends, Owner>) {
    let now = Instant::now();
    let Ok(mut c) = cache.write() else { return };
    for (ends, owner) in found {
        c.owners.insert(ends, (owner, now));
    }
    c.owners
        .retain(|_, (_, seen)| now.duration_since(*seen) < KEEP);
}

/// Every established-or-closing TCP socket with a process holding it.
pub fn scan(root: &Path) -> HashMap<Ends, Owner> {
    let mut by_inode: HashMap<u64, Ends> = HashMap::new();
    for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(root.join(file)) {
            for line in text.lines().skip(1) {
                if let Some((ends, inode)) = parse_tcp_line(line, v6) {
                    by_inode.insert(inode, ends);
                }
            }
        }
    }
    let mut out = HashMap::new();
    if by_inode.is_empty() {
        return out;
    }
    let Ok(procs) = std::fs::read_dir(root) else {
        return out;
    };
    for p in procs.filter_map(Result::ok) {
        let name = p.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let mut comm: Option<Arc<str>> = None;
        for fd in fds.filter_map(Result::ok) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(ends) = by_inode.get(&inode) {
                let comm = comm
                    .get_or_insert_with(|| {
                        std::fs::read_to_string(p.path().join("comm"))
                            .map(|c| c.trim_end().to_string())
                            .unwrap_or_default()
                            .into()
                    })
                    .clone();
                out.insert(*ends, Owner { pid, comm });
            }
        }
    }
    out
}

/// One line of `/proc/net/tcp{,6}`: `sl local rem st ... inode ...`, addresses as hex
/// words in host byte order, ports in hex. Listening sockets (state 0A) and sockets
/// without an inode are skipped.
fn parse_tcp_line(line: &str, v6: bool) -> Option<(Ends, u64)> {
    let mut f = line.split_whitespace();
    let _sl = f.next()?;
    let local = parse_end(f.next()?, v6)?;
    let remote = parse_end(f.next()?, v6)?;
    let state = f.next()?;
    if state == "0A" {
        return None;
    }
    // tx:rx queue, tr:when, retrnsmt, uid, timeout, inode
    let inode: u64 = f.nth(5)?.parse().ok()?;
    (inode != 0).then_some(((local, remote), inode))
}

fn parse_end(s: &str, v6: bool) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        if addr.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake proc tree (bandwhich's way: the OS's input faked, the code real).
    fn fake_proc(dir: &Path) {
        std::fs::create_dir_all(dir.join("net")).unwrap();
        // 10.201.47.1:40000 -> 10.201.47.2:80 established (01), inode 5555; a listener.
        let word = |ip: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(ip));
        let tcp = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: {}:9C40 {}:0050 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 30 10 -1\n   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1\n",
            word([10, 201, 47, 1]),
            word([10, 201, 47, 2])
        );
        std::fs::write(dir.join("net/tcp"), tcp).unwrap();
        let v6: Ipv6Addr = "fd20:47::1".parse().unwrap();
        let o = v6.octets();
        let w6: String = (0..4)
            .map(|i| word([o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]]))
            .collect();
        let r6: Ipv6Addr = "fd20:47::2".parse().unwrap();
        let o = r6.octets();
        let wr6: String = (0..4)
            .map(|i| word([o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]]))
            .collect();
        std::fs::write(
            dir.join("net/tcp6"),
            format!("  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: {w6}:9C41 {wr6}:01BB 01 00000000:00000000 00:00000000 00000000     0        0 6666 1\n"),
        )
        .unwrap();
        for (pid, comm, inodes) in [
            (42u32, "curl", vec![5555u64]),
            (43, "nginx", vec![6666, 7777]),
            (44, "idle", vec![]),
        ] {
            let p = dir.join(pid.to_string());
            std::fs::create_dir_all(p.join("fd")).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            for (i, ino) in inodes.iter().enumerate() {
                std::os::unix::fs::symlink(
                    format!("socket:[{ino}]"),
                    p.join("fd").join(i.to_string()),
                )
                .unwrap();
            }
            std::os::unix::fs::symlink("/dev/null", p.join("fd").join("9")).unwrap();
        }
        std::fs::create_dir_all(dir.join("self")).unwrap();
    }

    #[test]
    fn owners_of_fake_sockets_both_ways_and_families() {
        let tmp = tempfile_dir();
        fake_proc(&tmp);
        let found = scan(&tmp);
        assert_eq!(found.len(), 2, "{found:?}");
        let owners = SocketOwners::start_at(tmp.clone(), Duration::from_secs(3600));
        owners.scan_now(&tmp);
        let c: SocketAddr = "10.201.47.1:40000".parse().unwrap();
        let s: SocketAddr = "10.201.47.2:80".parse().unwrap();
        let o = owners.lookup(c, s).unwrap();
        assert_eq!((o.pid, &*o.comm), (42, "curl"));
        // Either orientation.
        assert_eq!(owners.lookup(s, c).unwrap().pid, 42);
        let c6: SocketAddr = "[fd20:47::1]:40001".parse().unwrap();
        let s6: SocketAddr = "[fd20:47::2]:443".parse().unwrap();
        assert_eq!(&*owners.lookup(s6, c6).unwrap().comm, "nginx");
        assert!(owners.lookup(c, s6).is_none());
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for l in [
            "",
            "0:",
            "  0: zz:1 00:0 01 a b c d e 1",
            "  0: 0100007F:0050 0100007F:9C40 01 x x x x x notanumber",
        ] {
            assert!(parse_tcp_line(l, false).is_none(), "{l}");
        }
        assert!(parse_tcp_line("  0: 0100007F:0050 0100007F:9C40 01 x x x x x 12", true).is_none());
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tcpsight-owners-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
