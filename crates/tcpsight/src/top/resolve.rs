//! `--resolve`: reverse DNS names, looked up on a background thread (libc `getnameinfo`,
//! so the system's resolver configuration and /etc/hosts apply) and cached. The screen
//! only ever reads the cache: a slow or dead DNS server never blocks it (trtop's resolver
//! ran inline, per packet; bandwhich and ngrep users report the same stall, see
//! docs/top.md).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// How names are found (a fake in tests, as bandwhich injects its DNS client).
pub trait Lookup: Send + 'static {
    fn lookup(&mut self, ip: IpAddr) -> Option<String>;
}

/// The system resolver.
pub struct System;

impl Lookup for System {
    fn lookup(&mut self, ip: IpAddr) -> Option<String> {
        reverse(ip)
    }
}

/// One reverse lookup through getnameinfo (NI_NAMEREQD: no name, no answer).
pub fn reverse(ip: IpAddr) -> Option<String> {
    let sa = SocketAddr::new(ip, 0);
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: the sockaddr is built from a std SocketAddr of the matching family and its
    // exact size; getnameinfo writes a NUL-terminated name into `host` within its length.
    let rc = unsafe {
        match sa {
            SocketAddr::V4(v4) => {
                let mut s: libc::sockaddr_in = std::mem::zeroed();
                s.sin_family = libc::AF_INET as libc::sa_family_t;
                s.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                libc::getnameinfo(
                    &s as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
            SocketAddr::V6(v6) => {
                let mut s: libc::sockaddr_in6 = std::mem::zeroed();
                s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                s.sin6_addr.s6_addr = v6.ip().octets();
                libc::getnameinfo(
                    &s as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    let name = name.to_string_lossy().into_owned();
    (!name.is_empty() && name.parse::<IpAddr>().is_err()).then_some(name)
}

type Cache = Arc<Mutex<HashMap<IpAddr, Option<String>>>>;

/// Asynchronous, cached names.
pub struct Resolver {
    cache: Cache,
    asked: HashSet<IpAddr>,
    tx: Option<Sender<IpAddr>>,
}

impl Resolver {
    /// Starts the lookup thread.
    pub fn start(mut lookup: impl Lookup) -> Resolver {
        let cache: Cache = Default::default();
        let (tx, rx): (Sender<IpAddr>, Receiver<IpAddr>) = channel();
        let c = cache.clone();
        let spawned = std::thread::Builder::new()
            .name("tcpsight-resolve".into())
            .spawn(move || {
                while let Ok(ip) = rx.recv() {
                    let name = lookup.lookup(ip);
                    if let Ok(mut g) = c.lock() {
                        g.insert(ip, name);
                    }
                }
            })
            .is_ok();
        Resolver {
            cache,
            asked: HashSet::new(),
            tx: spawned.then_some(tx),
        }
    }

    /// The cached name of `ip`; the first call queues a lookup and answers `None`.
    pub fn name(&mut self, ip: IpAddr) -> Option<String> {
        if let Ok(g) = self.cache.lock()
            && let Some(n) = g.get(&ip)
        {
            return n.clone();
        }
        if self.asked.insert(ip)
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(ip);
        }
        None
    }

    /// Cached names only, never queueing (for drawing).
    pub fn cached(&self) -> HashMap<IpAddr, String> {
        self.cache
            .lock()
            .map(|g| {
                g.iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    struct Slow;
    impl Lookup for Slow {
        fn lookup(&mut self, ip: IpAddr) -> Option<String> {
            std::thread::sleep(Duration::from_millis(300));
            Some(format!("host-{ip}"))
        }
    }

    #[test]
    fn lookups_never_block_and_are_cached() {
        let mut r = Resolver::start(Slow);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert_eq!(r.name(ip), None);
        assert_eq!(r.name(ip), None);
        assert!(t.elapsed() < Duration::from_millis(100), "name() blocked");
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.name(ip).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(r.name(ip).as_deref(), Some("host-127.0.0.1"));
        assert_eq!(
            r.cached().get(&ip).map(String::as_str),
            Some("host-127.0.0.1")
        );
    }
}
