//! tcpsight-send: replays a capture's frames onto an interface, as fast as possible or at
//! a given rate, for the live-path benchmark (bench/live.sh). It exists because
//! tcpreplay tops out near 130k packets/s on the benchmark machine.
//!
//! ```text
//! tcpsight-send -i IFACE [--pps N] [--loops K | --count N] [--method mmsg|ring|sendto]
//!               [--batch B] [--no-bypass] FILE
//! ```
//!
//! * The whole capture (pcap or pcapng, optionally gzip/zstd, Ethernet frames) is loaded
//!   into one buffer first, so reading never limits the rate. Frames are sent as
//!   captured (a frame cut by the capture's snaplen is sent cut), in file order, the
//!   file `--loops` times over (or cycled until `--count` frames). Timestamps are ignored:
//!   the rate is `--pps` (default: as fast as the kernel takes them).
//! * Sending is an AF_PACKET SOCK_RAW socket bound to the interface with protocol 0 (it
//!   receives nothing, so it costs nothing on the receive path), with
//!   PACKET_QDISC_BYPASS (frames go straight to the driver; `--no-bypass` keeps the
//!   qdisc). Methods:
//!   - `mmsg` (default): `sendmmsg()` of up to `--batch` frames straight from the buffer.
//!   - `ring`: a PACKET_TX_RING (TPACKET_V2) memory-mapped ring; up to `--batch` frames
//!     are copied into free slots and one `send()` hands them over.
//!   - `sendto`: one `send()` per frame (the baseline).
//!
//!   mmsg is the default by measurement on a veth (2-core VM, BENCHMARKS.md): all three
//!   are bound by the kernel's per-frame path (skb allocation, veth, the receiving
//!   namespace's stack: about 3 us a frame there), and the ring is not faster because a
//!   ring frame's payload is page fragments of the ring, which the veth copies again
//!   (skb_copy_ubufs) when the frame crosses into the other namespace. Median packets
//!   per CPU second in two rounds: mmsg 342k/363k, ring 307k/328k, send 282k/303k. On a
//!   real NIC the ring would avoid that copy, but this tool is for veth pairs.
//! * Pacing: frame i is due i / pps seconds after the start; each round sends every frame
//!   already due (at most `--batch`), then sleeps until the next is due (so frames go out
//!   in bursts of up to ~0.1 ms, the sleep's slack). Behind schedule it catches up in
//!   batches; it never skips frames.
//! * Output: one line of key=value pairs on stdout: method, frames sent, bytes, send
//!   errors, elapsed seconds, achieved packets/s and Mbit/s, CPU seconds (user + sys:
//!   a veth delivers in the sender's context, so that is included) and packets per CPU
//!   second (the rate on a core of its own), and the interface's own
//!   tx_packets / tx_dropped deltas (sysfs) as a cross-check.
//!
//! Only for test interfaces (e.g. one end of a veth pair in a network namespace): it
//! refuses an interface backed by a device (a real NIC) unless `--allow-device` is given.

use std::ffi::CString;
use std::io;
use std::process::ExitCode;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tcpsight_core::LinkType;
use tcpsight_io::CaptureReader;

const SOL_PACKET: libc::c_int = 263;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): where a TX slot's frame data starts.
const TX_DATA_OFFSET: usize = 32;
/// Offset of tp_len in struct tpacket2_hdr (tp_status is at 0).
const TP_LEN_OFFSET: usize = 4;
/// Shortest frame the kernel takes on Ethernet (its link header).
const MIN_FRAME: usize = 14;
const NS: u128 = 1_000_000_000;

#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

const USAGE: &str = "\
usage: tcpsight-send -i IFACE [--pps N] [--loops K | --count N] [--method mmsg|ring|sendto]
                     [--batch B] [--ring-frames R] [--no-bypass] [--allow-device] FILE

Replays FILE's Ethernet frames (preloaded into memory) onto IFACE through an AF_PACKET
socket, as fast as possible or at N packets/s; prints one key=value line of results.
For test interfaces only (a veth in a namespace): a real NIC needs --allow-device.

  -i IFACE          interface to send on
  --pps N           packets per second (default 0: as fast as possible)
  --loops K         send the file K times (default 1)
  --count N         send exactly N frames, cycling the file (instead of --loops)
  --method M        mmsg: sendmmsg(), the default; ring: PACKET_TX_RING (TPACKET_V2);
                    sendto: one send() per frame
  --batch B         frames per system call (default 512; ring: at most --ring-frames)
  --ring-frames R   TX ring slots (default 4096)
  --no-bypass       keep the qdisc (default: PACKET_QDISC_BYPASS)
  --allow-device    allow an interface backed by a device (a real NIC)
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Ring,
    Mmsg,
    Sendto,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Ring => "ring",
            Method::Mmsg => "mmsg",
            Method::Sendto => "sendto",
        }
    }
}

#[derive(Debug)]
struct Args {
    iface: String,
    file: String,
    pps: u64,
    loops: u64,
    count: Option<u64>,
    method: Method,
    batch: usize,
    ring_frames: usize,
    bypass: bool,
    allow_device: bool,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        iface: String::new(),
        file: String::new(),
        pps: 0,
        loops: 1,
        count: None,
        method: Method::Mmsg,
        batch: 512,
        ring_frames: 4096,
        bypass: true,
        allow_device: false,
    };
    let mut it = argv.into_iter();
    let num = |name: &str, v: String| -> Result<u64, String> {
        v.parse().map_err(|_| format!("{name}: not a number: {v}"))
    };
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-i" | "--interface" => a.iface = value()?,
            "--pps" => a.pps = num("--pps", value()?)?,
            "--loops" => a.loops = num("--loops", value()?)?,
            "--count" => a.count = Some(num("--count", value()?)?),
            "--batch" => a.batch = num("--batch", value()?)?.clamp(1, 65_536) as usize,
            "--ring-frames" => {
                a.ring_frames = num("--ring-frames", value()?)?.clamp(16, 1 << 20) as usize
            }
            "--method" => {
                a.method = match value()?.as_str() {
                    "ring" => Method::Ring,
                    "mmsg" => Method::Mmsg,
                    "sendto" => Method::Sendto,
                    other => {
                        return Err(format!("--method: expected ring, mmsg or sendto: {other}"));
                    }
                }
            }
            "--no-bypass" => a.bypass = false,
            "--allow-device" => a.allow_device = true,
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown option: {s}")),
            _ if a.file.is_empty() => a.file = arg,
            _ => return Err(format!("more than one file: {arg}")),
        }
    }
    if a.iface.is_empty() {
        return Err("missing -i IFACE".into());
    }
    if a.file.is_empty() {
        return Err("missing FILE".into());
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Frames

/// A capture's frames, back to back in one buffer.
#[derive(Debug, Default)]
struct Frames {
    data: Vec<u8>,
    /// (offset, length) of each frame in `data`.
    spans: Vec<(usize, usize)>,
    /// Frames left out: shorter than an Ethernet header.
    skipped: u64,
    /// Frames the capture had cut (sent as captured, shorter than on the wire).
    cut: u64,
}

impl Frames {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let (o, l) = self.spans[i];
        &self.data[o..o + l]
    }

    fn max_len(&self) -> usize {
        self.spans.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// Loads every frame of the capture into memory; only Ethernet captures can be sent.
fn load(reader: &mut CaptureReader, name: &str) -> Result<Frames, String> {
    let mut f = Frames::default();
    while let Some(fr) = reader.current() {
        if fr.link != LinkType::ETHERNET {
            return Err(format!(
                "{name}: link type {} (only Ethernet frames can be sent)",
                fr.link.name()
            ));
        }
        if fr.data.len() < MIN_FRAME {
            f.skipped += 1;
        } else {
            if (fr.data.len() as u64) < u64::from(fr.orig_len) {
                f.cut += 1;
            }
            f.spans.push((f.data.len(), fr.data.len()));
            f.data.extend_from_slice(fr.data);
        }
        reader.advance().map_err(|e| e.to_string())?;
    }
    if f.spans.is_empty() {
        return Err(format!("{name}: no frame to send"));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------
// Pacing

/// How many frames are due `elapsed_ns` after the start at `pps` packets/s: frame i is
/// due at i / pps s, so frame 0 is due at once. `pps == 0`: all of them.
fn due(elapsed_ns: u64, pps: u64) -> u64 {
    if pps == 0 {
        return u64::MAX;
    }
    (u128::from(elapsed_ns) * u128::from(pps) / NS) as u64 + 1
}

/// When frame `i` is due, in ns after the start (the first instant `due` counts it).
fn due_at_ns(i: u64, pps: u64) -> u64 {
    if pps == 0 {
        return 0;
    }
    (u128::from(i) * NS).div_ceil(u128::from(pps)) as u64
}

/// Frames to send in the next round: those due and not yet sent, at most `batch`, at
/// most what is left.
fn round(sent: u64, total: u64, elapsed_ns: u64, pps: u64, batch: usize) -> u64 {
    due(elapsed_ns, pps)
        .min(total)
        .saturating_sub(sent)
        .min(batch as u64)
}

// ---------------------------------------------------------------------------------------
// Socket

fn os_error(what: &str) -> String {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{what}: permission denied: sending needs root or CAP_NET_RAW")
        }
        _ => format!("{what}: {e}"),
    }
}

fn sysfs_counter(iface: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Send errors: frames refused (`count`), and failed ring flushes (`calls`: the kernel
/// does not say which frames they lost; the interface counters do). The first error's
/// text is kept for the report.
#[derive(Default)]
struct Errors {
    count: u64,
    calls: u64,
    first: Option<String>,
}

impl Errors {
    fn add(&mut self, n: u64, what: impl FnOnce() -> String) {
        self.count += n;
        self.note(what);
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(what());
        }
    }
}

struct Sender {
    fd: libc::c_int,
    method: Method,
    /// The TX ring (ring method): its map, slot size, slot count and next slot.
    ring: *mut u8,
    ring_len: usize,
    slot: usize,
    slots: usize,
    head: usize,
    /// sendmmsg's buffers, reused every call.
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        // SAFETY: the map and the descriptor are this value's own.
        unsafe {
            if !self.ring.is_null() {
                libc::munmap(self.ring as *mut libc::c_void, self.ring_len);
            }
            libc::close(self.fd);
        }
    }
}

/// TX ring geometry for frames up to `max_len` bytes: (slot size, slots per block,
/// block size). Slots are a power of two of at least 2 KB; blocks at least 64 KB.
fn ring_geometry(max_len: usize) -> (usize, usize, usize) {
    let slot = (TX_DATA_OFFSET + max_len).next_power_of_two().max(2048);
    let block = slot.max(1 << 16);
    (slot, block / slot, block)
}

impl Sender {
    fn open(args: &Args, max_len: usize) -> Result<Sender, String> {
        let name = CString::new(args.iface.as_str())
            .map_err(|_| format!("{:?}: bad interface name", args.iface))?;
        // SAFETY: plain libc calls with valid arguments; every result is checked.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            if ifindex == 0 {
                return Err(format!("{}: no such interface", args.iface));
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                return Err(os_error("cannot open a packet socket"));
            }
            let mut s = Sender {
                fd,
                method: args.method,
                ring: ptr::null_mut(),
                ring_len: 0,
                slot: 0,
                slots: 0,
                head: 0,
                msgs: Vec::new(),
                iovs: Vec::new(),
            };
            let set = |opt: libc::c_int, level: libc::c_int, v: libc::c_int| {
                libc::setsockopt(
                    fd,
                    level,
                    opt,
                    &v as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if args.bypass && set(PACKET_QDISC_BYPASS, SOL_PACKET, 1) != 0 {
                return Err(os_error("PACKET_QDISC_BYPASS"));
            }
            // Room for a batch in flight (copying methods); best effort.
            set(libc::SO_SNDBUFFORCE, libc::SOL_SOCKET, 16 << 20);
            if args.method == Method::Ring {
                if set(PACKET_VERSION, SOL_PACKET, TPACKET_V2) != 0 {
                    return Err(os_error("TPACKET_V2 not available"));
                }
                let (slot, per_block, block) = ring_geometry(max_len);
                let blocks = args.ring_frames.div_ceil(per_block);
                let req = TpacketReq {
                    tp_block_size: block as u32,
                    tp_block_nr: blocks as u32,
                    tp_frame_size: slot as u32,
                    tp_frame_nr: (blocks * per_block) as u32,
                };
                if libc::setsockopt(
                    fd,
                    SOL_PACKET,
                    PACKET_TX_RING,
                    &req as *const _ as *const libc::c_void,
                    std::mem::size_of::<TpacketReq>() as libc::socklen_t,
                ) != 0
                {
                    return Err(os_error("cannot set up the TX ring"));
                }
                let len = block * blocks;
                let map = libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if map == libc::MAP_FAILED {
                    return Err(os_error("cannot map the TX ring"));
                }
                s.ring = map as *mut u8;
                s.ring_len = len;
                s.slot = slot;
                s.slots = blocks * per_block;
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = 0;
            sll.sll_ifindex = ifindex as i32;
            if libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                return Err(os_error(&format!("cannot bind to {}", args.iface)));
            }
            Ok(s)
        }
    }

    /// Sends frames `first..first + n` (indices modulo the capture) and returns how many
    /// were handed over (sent or counted in `errors`); at least one unless `n` is 0.
    fn send(&mut self, frames: &Frames, first: u64, n: u64, errors: &mut Errors) -> u64 {
        let at = |k: u64| frames.get(((first + k) % frames.len() as u64) as usize);
        match self.method {
            Method::Sendto => {
                for k in 0..n {
                    let f = at(k);
                    // SAFETY: `f` is a live slice; the socket is bound.
                    let r = unsafe { libc::send(self.fd, f.as_ptr() as *const _, f.len(), 0) };
                    if r < 0 {
                        errors.add(1, || os_error("send"));
                    }
                }
                n
            }
            Method::Mmsg => {
                let n = n as usize;
                self.iovs.clear();
                self.iovs.extend((0..n as u64).map(|k| {
                    let f = at(k);
                    libc::iovec {
                        iov_base: f.as_ptr() as *mut libc::c_void,
                        iov_len: f.len(),
                    }
                }));
                self.msgs.clear();
                for iov in &mut self.iovs {
                    // SAFETY: an all-zero mmsghdr is valid (no name, no control).
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_iov = iov;
                    m.msg_hdr.msg_iovlen = 1;
                    self.msgs.push(m);
                }
                // SAFETY: `msgs` points into `iovs`, both live for the call.
                let r = unsafe { libc::sendmmsg(self.fd, self.msgs.as_mut_ptr(), n as u32, 0) };
                if r < 0 {
                    // The first message failed: count it and go past it.
                    errors.add(1, || os_error("sendmmsg"));
                    1
                } else {
                    // A later failure shows as a short count: that message is retried
                    // first next time (and fails, and is counted, if it fails again).
                    (r as u64).max(1)
                }
            }
            Method::Ring => self.send_ring(frames, first, n, errors),
        }
    }

    fn slot_status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: slot `i` lies in the map; tp_status is its first, aligned u32, shared
        // with the kernel, hence atomic.
        unsafe { &*(self.ring.add(i * self.slot) as *const AtomicU32) }
    }

    /// Hands the ring's filled slots to the kernel (a blocking send() returns when they
    /// have all gone out).
    fn flush(&mut self, errors: &mut Errors) {
        // SAFETY: a zero-length send on a socket with a TX ring sends the ring's frames.
        let r = unsafe { libc::send(self.fd, ptr::null(), 0, 0) };
        if r < 0 {
            errors.calls += 1;
            errors.note(|| os_error("send (TX ring)"));
        }
    }

    fn send_ring(&mut self, frames: &Frames, first: u64, n: u64, errors: &mut Errors) -> u64 {
        let n = n.min(self.slots as u64);
        let mut filled = 0;
        while filled < n {
            let st = self.slot_status(self.head).load(Ordering::Acquire);
            if st == TP_STATUS_WRONG_FORMAT {
                // The kernel refused this slot's frame last time round.
                errors.add(1, || "TX ring: frame refused (wrong format)".into());
                self.slot_status(self.head)
                    .store(TP_STATUS_AVAILABLE, Ordering::Release);
            } else if st != TP_STATUS_AVAILABLE {
                // Ring full: send what we have, then wait for this slot.
                if filled > 0 {
                    break;
                }
                self.flush(errors);
                let mut pfd = libc::pollfd {
                    fd: self.fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 1) };
                continue;
            }
            let f = frames.get(((first + filled) % frames.len() as u64) as usize);
            // SAFETY: the slot is ours (AVAILABLE) and holds TX_DATA_OFFSET + the longest
            // frame (ring_geometry); tp_len is an aligned u32 of its header.
            unsafe {
                let base = self.ring.add(self.head * self.slot);
                ptr::copy_nonoverlapping(f.as_ptr(), base.add(TX_DATA_OFFSET), f.len());
                (base.add(TP_LEN_OFFSET) as *mut u32).write_volatile(f.len() as u32);
            }
            self.slot_status(self.head)
                .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.head = (self.head + 1) % self.slots;
            filled += 1;
        }
        self.flush(errors);
        filled
    }

    /// Waits until the kernel has taken every slot (ring method), counting refused ones.
    fn drain(&mut self, errors: &mut Errors) {
        if self.method != Method::Ring {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for i in 0..self.slots {
            loop {
                let st = self.slot_status(i).load(Ordering::Acquire);
                if st == TP_STATUS_WRONG_FORMAT {
                    errors.add(1, || "TX ring: frame refused (wrong format)".into());
                    self.slot_status(i)
                        .store(TP_STATUS_AVAILABLE, Ordering::Release);
                    break;
                }
                if st == TP_STATUS_AVAILABLE || Instant::now() > deadline {
                    break;
                }
                self.flush(errors);
            }
        }
    }
}

/// User + system CPU seconds of this process so far (the kernel's delivery on a veth
/// runs in the sender's context, so it is included).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

/// Refuses an interface backed by a device (a real NIC) unless allowed.
fn check_interface(args: &Args) -> Result<(), String> {
    let dev = format!("/sys/class/net/{}/device", args.iface);
    if !args.allow_device && std::path::Path::new(&dev).exists() {
        return Err(format!(
            "{}: a device-backed interface (a real NIC?); this tool floods its interface, \
             meant for a veth in a test namespace; --allow-device to insist",
            args.iface
        ));
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    check_interface(args)?;
    let mut reader = CaptureReader::open(&args.file).map_err(|e| e.to_string())?;
    let frames = load(&mut reader, &args.file)?;
    drop(reader);
    let total = args.count.unwrap_or(frames.len() as u64 * args.loops);
    let mut sender = Sender::open(args, frames.max_len())?;
    let batch = if args.method == Method::Ring {
        args.batch.min(sender.slots)
    } else {
        args.batch
    };
    let tx0 = sysfs_counter(&args.iface, "tx_packets");
    let drop0 = sysfs_counter(&args.iface, "tx_dropped");
    let mut errors = Errors::default();
    let mut done = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    while done < total {
        let el = start.elapsed().as_nanos() as u64;
        let n = round(done, total, el, args.pps, batch);
        if n == 0 {
            // Ahead of schedule: sleep until the next frame is due, and at least 50 us
            // (nanosleep oversleeps by up to ~0.1 ms anyway, its timer slack): the frames
            // due meanwhile go out together in the next round, so the rate stays exact,
            // bursts stay around 0.1 ms of frames, and no core is burnt spinning.
            let wait = due_at_ns(done, args.pps).saturating_sub(el);
            std::thread::sleep(Duration::from_nanos(wait.max(50_000)));
            continue;
        }
        let went = sender.send(&frames, done, n, &mut errors);
        for k in 0..went {
            bytes += frames
                .get(((done + k) % frames.len() as u64) as usize)
                .len() as u64;
        }
        done += went;
    }
    sender.drain(&mut errors);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds();
    let delta = |a: Option<u64>, name: &str| match (a, sysfs_counter(&args.iface, name)) {
        (Some(a), Some(b)) => (b.wrapping_sub(a)).to_string(),
        _ => "-".to_string(),
    };
    let sent = done.saturating_sub(errors.count.min(done));
    println!(
        "method={} bypass={} frames_loaded={} skipped={} cut={} offered_pps={} batch={} \
         sent={} bytes={} errors={} ring_send_errors={} elapsed_s={:.6} pps={:.0} mbps={:.1} cpu_s={:.3} pps_per_cpu_s={:.0} if_tx_packets={} \
         if_tx_dropped={}",
        args.method.name(),
        u8::from(args.bypass),
        frames.len(),
        frames.skipped,
        frames.cut,
        args.pps,
        batch,
        sent,
        bytes,
        errors.count,
        errors.calls,
        elapsed,
        sent as f64 / elapsed,
        bytes as f64 * 8.0 / elapsed / 1e6,
        cpu,
        sent as f64 / cpu.max(1e-9),
        delta(tx0, "tx_packets"),
        delta(drop0, "tx_dropped"),
    );
    if let Some(e) = errors.first {
        eprintln!(
            "tcpsight-send: {} frames refused, {} failed ring sends; first error: {e}",
            errors.count, errors.calls
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tcpsight-send: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpsight-send: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic pcap with the given link type and frames (incl_len, orig_len, data).
    fn pcap(link: u32, frames: &[(&[u8], u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65_535u32.to_le_bytes());
        v.extend_from_slice(&link.to_le_bytes());
        for (i, (d, orig)) in frames.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(&orig.to_le_bytes());
            v.extend_from_slice(d);
        }
        v
    }

    fn reader(bytes: Vec<u8>) -> CaptureReader {
        CaptureReader::from_reader("test", Box::new(io::Cursor::new(bytes))).unwrap()
    }

    #[test]
    fn loads_frames_back_to_back() {
        let a = [1u8; 60];
        let b = [2u8; 1514];
        let short = [3u8; 10];
        let c = [4u8; 96];
        let bytes = pcap(1, &[(&a, 60), (&b, 1514), (&short, 10), (&c, 1500)]);
        let f = load(&mut reader(bytes), "test").unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.get(0), &a[..]);
        assert_eq!(f.get(1), &b[..]);
        assert_eq!(f.get(2), &c[..]);
        assert_eq!(f.data.len(), 60 + 1514 + 96);
        assert_eq!(f.skipped, 1);
        assert_eq!(f.cut, 1);
        assert_eq!(f.max_len(), 1514);
    }

    #[test]
    fn refuses_other_link_types_and_empty_captures() {
        let ip = [0x45u8; 40];
        let e = load(&mut reader(pcap(101, &[(&ip, 40)])), "raw").unwrap_err();
        assert!(e.contains("only Ethernet"), "{e}");
        let e = load(&mut reader(pcap(1, &[])), "empty").unwrap_err();
        assert!(e.contains("no frame"), "{e}");
    }

    #[test]
    fn loads_the_bench_capture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/captures/generated/netns-25s-client.pcap.gz"
        );
        let mut r = CaptureReader::open(path).unwrap();
        let f = load(&mut r, path).unwrap();
        assert_eq!(f.len(), 239_962);
        assert_eq!((f.skipped, f.cut), (0, 0));
        assert!(f.max_len() <= 1514);
    }

    #[test]
    fn pacing_arithmetic() {
        // As fast as possible: everything is due at once.
        assert_eq!(due(0, 0), u64::MAX);
        assert_eq!(due_at_ns(123, 0), 0);
        // 1 M/s: frame i at i us.
        assert_eq!(due(0, 1_000_000), 1);
        assert_eq!(due(999, 1_000_000), 1);
        assert_eq!(due(1_000, 1_000_000), 2);
        assert_eq!(due(1_000_000_000, 1_000_000), 1_000_001);
        assert_eq!(due_at_ns(0, 1_000_000), 0);
        assert_eq!(due_at_ns(1, 1_000_000), 1_000);
        // 3 /s: frame 1 at 333,333,334 ns (rounded up, so it is due then and not before).
        assert_eq!(due_at_ns(1, 3), 333_333_334);
        assert_eq!(due(333_333_333, 3), 1);
        assert_eq!(due(333_333_334, 3), 2);
        // due and due_at_ns agree for many rates and frames.
        for pps in [1, 7, 1_000, 99_999, 250_000, 1_000_000, 14_880_952] {
            for i in [1u64, 2, 3, 10, 999, 123_456, 10_000_000] {
                let t = due_at_ns(i, pps);
                assert_eq!(due(t, pps), i + 1, "pps {pps} frame {i}");
                assert_eq!(due(t - 1, pps), i, "pps {pps} frame {i}");
            }
        }
        // No overflow at large elapsed times and rates (a day at 100 M/s).
        let day = 86_400 * 1_000_000_000u64;
        assert_eq!(due(day, 100_000_000), 8_640_000_000_001);
    }

    #[test]
    fn rounds_respect_batch_total_and_schedule() {
        // Unpaced: a full batch, then what is left.
        assert_eq!(round(0, 10_000, 0, 0, 512), 512);
        assert_eq!(round(9_900, 10_000, 0, 0, 512), 100);
        assert_eq!(round(10_000, 10_000, 0, 0, 512), 0);
        // 100k/s, 1 ms in: frames 0..=100 due.
        assert_eq!(round(0, 1_000_000, 1_000_000, 100_000, 512), 101);
        assert_eq!(round(101, 1_000_000, 1_000_000, 100_000, 512), 0);
        // Behind by 10 ms at 1 M/s: catch up one batch at a time, skip nothing.
        assert_eq!(round(0, 1_000_000, 10_000_000, 1_000_000, 512), 512);
        // Simulate a run at 250k/s in 37 us steps: exactly the schedule, never ahead.
        let (pps, total) = (250_000u64, 10_000u64);
        let mut sent = 0u64;
        let mut t = 0u64;
        while sent < total {
            sent += round(sent, total, t, pps, 64);
            assert!(sent <= due(t, pps));
            t += 37_000;
        }
        assert_eq!(sent, total);
        assert!(t >= due_at_ns(total - 1, pps));
    }

    #[test]
    fn ring_slots_fit_the_longest_frame() {
        assert_eq!(ring_geometry(1514), (2048, 32, 65_536));
        assert_eq!(ring_geometry(60), (2048, 32, 65_536));
        assert_eq!(ring_geometry(9000), (16_384, 4, 65_536));
        assert_eq!(ring_geometry(65_535), (131_072, 1, 131_072));
        for len in [14, 2016, 2017, 4000, 70_000] {
            let (slot, per, block) = ring_geometry(len);
            assert!(slot >= TX_DATA_OFFSET + len && slot % 16 == 0);
            assert_eq!(block % 4096, 0);
            assert_eq!(per * slot, block);
        }
    }

    #[test]
    fn arguments() {
        let a = |s: &str| parse_args(s.split_whitespace().map(String::from));
        let x = a("-i veth0 --pps 250000 --loops 3 --method mmsg --batch=64 f.pcap").unwrap();
        assert_eq!(
            (x.iface.as_str(), x.pps, x.loops, x.method, x.batch),
            ("veth0", 250_000, 3, Method::Mmsg, 64)
        );
        assert_eq!(x.file, "f.pcap");
        assert!(x.bypass && x.count.is_none());
        let x = a("f.pcap -i v --count 10 --no-bypass").unwrap();
        assert_eq!(
            (x.count, x.bypass, x.method),
            (Some(10), false, Method::Mmsg)
        );
        assert!(a("f.pcap").unwrap_err().contains("-i"));
        assert!(a("-i v").unwrap_err().contains("FILE"));
        assert!(a("-i v --method x f").unwrap_err().contains("--method"));
        assert!(a("-i v --pps fast f").unwrap_err().contains("not a number"));
    }
}
