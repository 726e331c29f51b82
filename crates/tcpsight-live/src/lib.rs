//! Live capture on Linux: an AF_PACKET socket with a TPACKET_V3 memory-mapped ring.
//!
//! The kernel fills blocks of frames; we walk a block's frames, hand them out one at a
//! time, and return the block when we move past it. `poll` with a finite timeout means
//! an idle interface never blocks the caller forever. Kernel drop counters
//! (PACKET_STATISTICS, reset by each read) are accumulated. No system library: the
//! ring structures are the kernel's (linux/if_packet.h), declared here.

use std::ffi::CString;
use std::io;
use std::ptr;

pub mod owners;

use tcpsight_bpf::Program;
use tcpsight_core::LinkType;

const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
/// Fanout by the kernel's symmetric flow hash: both directions of a connection reach the
/// same socket. DEFRAG: fragments are reassembled first, so they hash like their flow.
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;

#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

/// `struct tpacket_block_desc` with the v1 header: only the fields we read.
#[repr(C)]
struct BlockDesc {
    version: u32,
    offset_to_priv: u32,
    block_status: u32,
    num_pkts: u32,
    offset_to_first_pkt: u32,
}

/// `struct tpacket3_hdr` (its first fields).
#[repr(C)]
struct Tpacket3Hdr {
    tp_next_offset: u32,
    tp_sec: u32,
    tp_nsec: u32,
    tp_snaplen: u32,
    tp_len: u32,
    tp_status: u32,
    tp_mac: u16,
    tp_net: u16,
}

/// TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): where the sockaddr_ll follows.
const SLL_OFFSET: usize = 48;
/// Offsets of sll_ifindex and sll_pkttype inside struct sockaddr_ll.
const SLL_IFINDEX: usize = 4;
const SLL_PKTTYPE: usize = 10;

/// Options of a live capture.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Bytes kept of each frame (from the link header on).
    pub snaplen: u32,
    pub buffer_mb: u32,
    pub promisc: bool,
    /// A compiled filter, attached in the kernel before the socket sees any packet; it
    /// must be compiled for [`link_type`] with this snaplen (its accept return value).
    pub filter: Option<Program>,
    /// Join this PACKET_FANOUT group (several sockets share the traffic by flow).
    pub fanout_group: Option<u16>,
    /// On `any`: drop copies of a packet seen on two interfaces (a bridge and its port),
    /// counted (the pipeline's live source does it; `--keep-copies` turns it off).
    pub drop_copies: bool,
}

/// Largest snap length: what "whole frames" means.
pub const MAX_SNAPLEN: u32 = 262_144;

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            snaplen: MAX_SNAPLEN,
            buffer_mb: 64,
            promisc: false,
            filter: None,
            fanout_group: None,
            drop_copies: true,
        }
    }
}

/// The index of the interface with this name (`if_nametoindex`), if it exists.
pub fn interface_index(name: &str) -> Option<i32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string; 0 means no such interface.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i > 0).then_some(i as i32)
}

/// The name of the interface with this index (`if_indextoname`), if it still exists.
pub fn interface_name(ifindex: i32) -> Option<String> {
    if ifindex <= 0 {
        return None;
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires; the result
    // is a NUL-terminated string inside it or NULL.
    unsafe {
        let p = libc::if_indextoname(ifindex as u32, buf.as_mut_ptr());
        if p.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// The interfaces `interface` names: one, `any`, or several separated by commas (what
/// repeated `-i` options become; a comma is in no interface name the tools here make).
pub fn interface_names(interface: &str) -> Vec<&str> {
    interface.split(',').filter(|n| !n.is_empty()).collect()
}

/// Whether frames of `interface` may come from several interfaces (`any`, or a list).
pub fn mixes_interfaces(interface: &str) -> bool {
    interface == "any" || interface_names(interface).len() > 1
}

/// The link type of frames captured on `interface`: Ethernet headers on an interface
/// (lo included), raw IP on `any` or a list (a SOCK_DGRAM socket; interfaces mix link
/// types).
pub fn link_type(interface: &str) -> LinkType {
    if mixes_interfaces(interface) {
        LinkType::RAW
    } else {
        LinkType::ETHERNET
    }
}

/// A frame from the ring, valid until the next call.
pub struct LiveFrame<'a> {
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// The interface it was seen on (`sll_ifindex`): on `any`, copies of one packet from
    /// two interfaces differ only in this.
    pub ifindex: i32,
}

pub struct LiveCapture {
    fd: libc::c_int,
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    block_nr: usize,
    block: usize,
    /// Within the current block: frames left and the next frame's offset.
    left: u32,
    offset: usize,
    pub link: LinkType,
    pub interface: String,
    /// [`LiveOptions::drop_copies`].
    pub drop_copies: bool,
    /// The loopback interface's index: its packets show twice (leaving and arriving).
    loopback: i32,
    packets: u64,
    drops: u64,
}

// The ring is owned by this value alone.
unsafe impl Send for LiveCapture {}

fn os_error(what: &str) -> String {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{what}: permission denied: live capture needs root or CAP_NET_RAW")
        }
        _ => format!("{what}: {e}"),
    }
}

impl LiveCapture {
    /// Opens `interface` (e.g. `lo`, `eth0`), every interface with `any`, or several
    /// (`eth0,eth1`): one ring bound to all interfaces, where a filter in the kernel
    /// keeps the listed ones' packets only, so they arrive in one stream in time order.
    pub fn open(interface: &str, opts: LiveOptions) -> Result<LiveCapture, String> {
        let names = interface_names(interface);
        let list = names.len() > 1;
        if list && names.contains(&"any") {
            return Err(format!(
                "{interface}: `any` already means every interface: give it alone or list interfaces"
            ));
        }
        let mut listed = Vec::new();
        if list {
            for n in &names {
                match interface_index(n) {
                    Some(i) => listed.push(i as u32),
                    None => return Err(format!("{n}: no such interface")),
                }
            }
        }
        let any = interface == "any" || list;
        let name =
            CString::new(interface).map_err(|_| format!("{interface:?}: bad interface name"))?;
        // SAFETY: plain libc calls with valid arguments; every result is checked.
        unsafe {
            let ifindex = if any {
                0
            } else {
                libc::if_nametoindex(name.as_ptr())
            };
            if ifindex == 0 && !any {
                return Err(format!("{interface}: no such interface"));
            }
            let lo = CString::new("lo").expect("no NUL");
            let loopback = libc::if_nametoindex(lo.as_ptr()) as i32;
            // `any` mixes link types: take frames from the network header on (SOCK_DGRAM).
            let kind = if any {
                libc::SOCK_DGRAM
            } else {
                libc::SOCK_RAW
            };
            // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL, so no
            // packet of another interface, or one the filter rejects, slips in while the
            // ring and the filter are set up.
            let fd = libc::socket(libc::AF_PACKET, kind, 0);
            if fd < 0 {
                return Err(os_error("cannot open a packet socket"));
            }
            let close_err = |msg: String| {
                libc::close(fd);
                msg
            };
            let v: libc::c_int = TPACKET_V3;
            if libc::setsockopt(
                fd,
                SOL_PACKET,
                PACKET_VERSION,
                &v as *const _ as *const libc::c_void,
                4,
            ) != 0
            {
                return Err(close_err(os_error("TPACKET_V3 not available")));
            }
            let block_size: u32 = 1 << 22;
            let block_nr = (opts.buffer_mb.max(4) << 20) / block_size;
            let frame_size: u32 = 2048;
            let req = TpacketReq3 {
                tp_block_size: block_size,
                tp_block_nr: block_nr,
                tp_frame_size: frame_size,
                tp_frame_nr: block_size / frame_size * block_nr,
                // Hand over a partly filled block after 10 ms, so quiet traffic shows soon.
                tp_retire_blk_tov: 10,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            if libc::setsockopt(
                fd,
                SOL_PACKET,
                PACKET_RX_RING,
                &req as *const _ as *const libc::c_void,
                std::mem::size_of::<TpacketReq3>() as libc::socklen_t,
            ) != 0
            {
                return Err(close_err(os_error("cannot set up the capture ring")));
            }
            let map_len = (block_size * block_nr) as usize;
            let map = libc::mmap(
                ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if map == libc::MAP_FAILED {
                return Err(close_err(os_error("cannot map the capture ring")));
            }
            // The filter: the expression's program, or one keeping `snaplen` bytes; for
            // a list of interfaces, behind a test of the packet's interface.
            let program = match (&opts.filter, opts.snaplen) {
                (Some(p), _) => Some(p.clone()),
                (None, s) if s < MAX_SNAPLEN || list => Some(Program::accept_all(s.max(1))),
                (None, _) => None,
            };
            let program = match program {
                Some(p) if list => Some(only_interfaces(&listed, &p)),
                p => p,
            };
            if let Some(p) = &program {
                let fprog = libc::sock_fprog {
                    len: p.insns.len() as u16,
                    filter: p.insns.as_ptr() as *mut libc::sock_filter,
                };
                if libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    &fprog as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                ) != 0
                {
                    libc::munmap(map, map_len);
                    return Err(close_err(os_error("cannot attach the packet filter")));
                }
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ETH_P_ALL.to_be();
            sll.sll_ifindex = ifindex as i32;
            if libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                libc::munmap(map, map_len);
                return Err(close_err(os_error(&format!("cannot bind to {interface}"))));
            }
            if let Some(group) = opts.fanout_group {
                let arg: u32 =
                    group as u32 | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
                if libc::setsockopt(
                    fd,
                    SOL_PACKET,
                    PACKET_FANOUT,
                    &arg as *const _ as *const libc::c_void,
                    4,
                ) != 0
                {
                    libc::munmap(map, map_len);
                    return Err(close_err(os_error("cannot join the PACKET_FANOUT group")));
                }
            }
            if opts.promisc {
                let each = if list { listed.clone() } else { vec![ifindex] };
                for i in each {
                    let mreq = libc::packet_mreq {
                        mr_ifindex: i as i32,
                        mr_type: libc::PACKET_MR_PROMISC as u16,
                        mr_alen: 0,
                        mr_address: [0; 8],
                    };
                    libc::setsockopt(
                        fd,
                        SOL_PACKET,
                        libc::PACKET_ADD_MEMBERSHIP,
                        &mreq as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
                    );
                }
            }
            Ok(LiveCapture {
                fd,
                map: map as *mut u8,
                map_len,
                block_size: block_size as usize,
                block_nr: block_nr as usize,
                block: 0,
                left: 0,
                offset: 0,
                // SOCK_RAW frames carry the link header: Ethernet on Ethernet and on lo;
                // SOCK_DGRAM frames start at the IP header.
                link: link_type(interface),
                interface: interface.to_string(),
                drop_copies: opts.drop_copies,
                loopback,
                packets: 0,
                drops: 0,
            })
        }
    }

    fn desc(&self, block: usize) -> *mut BlockDesc {
        // SAFETY: block < block_nr, inside the mapping.
        unsafe { self.map.add(block * self.block_size) as *mut BlockDesc }
    }

    /// The next frame, or `None` after `timeout_ms` without one.
    #[inline]
    pub fn next(&mut self, timeout_ms: i32) -> Result<Option<LiveFrame<'_>>, String> {
        self.next_where(timeout_ms, |_| true)
    }

    /// The next frame that `keep` accepts (the others are passed over, as if the kernel
    /// had not delivered them), or `None` after `timeout_ms` without one.
    #[inline]
    pub fn next_where(
        &mut self,
        timeout_ms: i32,
        mut keep: impl FnMut(&LiveFrame) -> bool,
    ) -> Result<Option<LiveFrame<'_>>, String> {
        loop {
            if self.left == 0 {
                // SAFETY: the descriptor lies in our mapping; the status word is shared
                // with the kernel, hence the volatile accesses and fences.
                unsafe {
                    let d = self.desc(self.block);
                    if self.offset != 0 {
                        // Done with this block: give it back, move on.
                        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
                        ptr::write_volatile(&mut (*d).block_status, TP_STATUS_KERNEL);
                        self.offset = 0;
                        self.block = (self.block + 1) % self.block_nr;
                        continue;
                    }
                    let status = ptr::read_volatile(&(*d).block_status);
                    if status & TP_STATUS_USER == 0 {
                        let mut pfd = libc::pollfd {
                            fd: self.fd,
                            events: libc::POLLIN | libc::POLLERR,
                            revents: 0,
                        };
                        let r = libc::poll(&mut pfd, 1, timeout_ms);
                        if r < 0 {
                            let e = io::Error::last_os_error();
                            if e.kind() == io::ErrorKind::Interrupted {
                                return Ok(None);
                            }
                            return Err(format!("poll: {e}"));
                        }
                        let status = ptr::read_volatile(&(*d).block_status);
                        if status & TP_STATUS_USER == 0 {
                            return Ok(None);
                        }
                    }
                    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                    self.left = (*d).num_pkts;
                    self.offset = (*d).offset_to_first_pkt as usize;
                    if self.left == 0 {
                        // An empty retired block: mark it consumed on the next turn.
                        self.offset = self.offset.max(1);
                        continue;
                    }
                }
            }
            // SAFETY: offsets come from the kernel and stay inside the block.
            unsafe {
                let base = self.map.add(self.block * self.block_size);
                let h = base.add(self.offset) as *const Tpacket3Hdr;
                let next = (*h).tp_next_offset as usize;
                let pkttype = *(h as *const u8).add(SLL_OFFSET + SLL_PKTTYPE);
                let ifindex = ptr::read_unaligned(
                    (h as *const u8).add(SLL_OFFSET + SLL_IFINDEX) as *const i32
                );
                let mac = (*h).tp_mac as usize;
                let snap = (*h).tp_snaplen as usize;
                let len = (*h).tp_len;
                let ts_ns = (*h).tp_sec as u64 * 1_000_000_000 + (*h).tp_nsec as u64;
                self.left -= 1;
                let at = self.offset;
                self.offset = if next == 0 { at.max(1) } else { at + next };
                // On lo every packet shows twice, leaving and arriving: keep one.
                if pkttype == PACKET_OUTGOING && ifindex == self.loopback {
                    continue;
                }
                if at + mac + snap > self.block_size {
                    continue;
                }
                let data = std::slice::from_raw_parts(base.add(at + mac), snap);
                let frame = LiveFrame {
                    ts_ns,
                    data,
                    orig_len: len,
                    ifindex,
                };
                if !keep(&frame) {
                    continue;
                }
                self.packets += 1;
                return Ok(Some(frame));
            }
        }
    }

    /// The ring's size in bytes (the requested size, rounded to whole 4 MB blocks, at
    /// least one block).
    pub fn ring_bytes(&self) -> usize {
        self.map_len
    }

    /// (frames delivered, frames the kernel dropped) since the capture opened.
    pub fn stats(&mut self) -> (u64, u64) {
        let mut st = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `st`.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                SOL_PACKET,
                PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if r == 0 {
            // The kernel resets its counters on every read: accumulate.
            self.drops += st.tp_drops as u64;
        }
        (self.packets, self.drops)
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // SAFETY: the mapping and the socket are ours.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.map_len);
            libc::close(self.fd);
        }
    }
}

/// The IP addresses of `interface` (of every interface for `any`): what "this host" is
/// for RX/TX filters in a live capture.
pub fn interface_addresses(interface: &str) -> Result<Vec<std::net::IpAddr>, String> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return Err(os_error("cannot list interface addresses"));
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if interface != "any" && !interface_names(interface).contains(&&*name) {
                continue;
            }
            match (*ifa.ifa_addr).sa_family as libc::c_int {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(std::net::IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    out.push(std::net::IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(head);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `then` behind a test of the packet's interface: the kernel's ancillary load of the
/// receiving interface's index (`SKF_AD_IFINDEX`), compared with each of `ifindexes`;
/// a match runs `then` (its jumps are relative, so it runs unchanged after the prefix),
/// anything else is dropped.
fn only_interfaces(ifindexes: &[u32], then: &Program) -> Program {
    use tcpsight_bpf::Insn;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SKF_AD_IFINDEX: u32 = (-0x1000i32) as u32 + 8;
    // At most 255 tests fit the 8-bit jump offsets; no host captures on more at once.
    let ifindexes = &ifindexes[..ifindexes.len().min(255)];
    let n = ifindexes.len();
    let mut insns = Vec::with_capacity(n + 2 + then.insns.len());
    insns.push(Insn {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k: SKF_AD_IFINDEX,
    });
    for (i, &ifindex) in ifindexes.iter().enumerate() {
        // Test i sits at i + 1; `then` starts at n + 2.
        insns.push(Insn {
            code: BPF_JEQ_K,
            jt: (n - i) as u8,
            jf: 0,
            k: ifindex,
        });
    }
    insns.push(Insn {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
    insns.extend_from_slice(&then.insns);
    Program { insns }
}

/// The uid and gid of `user`.
pub fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let name = std::ffi::CString::new(user).map_err(|_| format!("{user:?}: bad user name"))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; checked, and read at
    // once.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!("--user {user}: no such user"));
        }
        Ok(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// Gives `path` to `user` (chown), so that it can still remove it once privileges are
/// dropped.
pub fn give_to(path: &std::path::Path, user: &str) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let (uid, gid) = user_ids(user)?;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: bad path", path.display()))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(os_error(&format!("{}: chown to {user}", path.display())));
    }
    Ok(())
}

/// Switches to `user` (its uid, gid, no supplementary groups) once the capture socket is
/// open: the ring keeps working without the privileges that opened it.
pub fn drop_privileges(user: &str) -> Result<(), String> {
    let name = std::ffi::CString::new(user).map_err(|_| format!("{user:?}: bad user name"))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; checked.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!("--user {user}: no such user"));
        }
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        if libc::setgroups(0, ptr::null()) != 0 {
            return Err(os_error(&format!("--user {user}: setgroups")));
        }
        if libc::setgid(gid) != 0 {
            return Err(os_error(&format!("--user {user}: setgid")));
        }
        if libc::setuid(uid) != 0 {
            return Err(os_error(&format!("--user {user}: setuid")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_its_addresses() {
        let a = super::interface_addresses("lo").unwrap();
        assert!(a.contains(&"127.0.0.1".parse().unwrap()), "{a:?}");
        assert!(
            super::interface_addresses("no-such-if0")
                .unwrap()
                .is_empty()
        );
    }
}
