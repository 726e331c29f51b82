//! tcpsight-gen: big realistic captures for the benchmark, made by replicating a real
//! capture N times with rewritten addresses so that every copy is a distinct set of
//! connections.
//!
//! Address rewriting (copy k, k = 0 keeps the original addresses):
//! * IPv4 in 10.77.0.0/16: the first two octets, read as one 16-bit number, get `+ k`
//!   (so 10.77.x.y becomes 10.(77+k).x.y for k < 179; distinct for k < 65536).
//! * IPv6 in fd77::/16: the third 16-bit group gets `+ k` (the source uses the second
//!   group itself, e.g. fd77:9::5, so that one is left alone; every fd77 address of the
//!   source has a zero third group, so copies never collide for k < 65536).
//! * The same rule applies to the addresses an ICMP/ICMPv6 error quotes and to ARP's
//!   sender and target addresses. Nothing else changes: checksums are left stale
//!   (nothing verifies them) and MAC addresses are kept.
//! * `--rewrite-only ADDR` (repeatable) limits the rewriting to the addresses listed, e.g.
//!   the clients 10.77.0.1 and fd77::1: every copy then talks to the same servers, so the
//!   number of destinations stays that of the source while connections stay distinct (their
//!   client address differs). An IPv6 address cut short by the snaplen (an ICMPv6 quote)
//!   matches if its bytes present match.
//!
//! Modes:
//! * `serial`: copy k is shifted by k * (trace span + 1 s), so copies follow one another
//!   and concurrency stays that of the source; only the packet count grows. Streams: the
//!   source is read again for every copy.
//! * `parallel`: copy k is shifted by k ms; all copies overlap, concurrency grows N-fold.
//!   N readers over the source are merged in timestamp order.
//!
//! Output: classic little-endian microsecond pcap, each frame cut to `--snaplen` bytes
//! (original length kept).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use tcpsight_core::LinkType;
use tcpsight_io::{CaptureReader, FrameRef};

const DEFAULT_SOURCE: &str = "testdata/captures/generated/netns-25s-client.pcap.gz";
const SECOND_NS: u64 = 1_000_000_000;
const MS_NS: u64 = 1_000_000;
const MAX_SNAPLEN: u32 = 262_144;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Serial,
    Parallel,
}

struct Args {
    source: String,
    copies: u32,
    mode: Mode,
    snaplen: u32,
    output: String,
    only: Only,
}

/// Addresses `--rewrite-only` restricts the rewriting to (both empty: rewrite all).
#[derive(Clone, Debug, Default)]
struct Only {
    v4: Vec<[u8; 4]>,
    v6: Vec<[u8; 16]>,
}

impl Only {
    fn all(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// One copy's rewriting: the offset `k` and the addresses it applies to.
struct Rewrite<'a> {
    k: u16,
    only: &'a Only,
}

const USAGE: &str = "\
usage: tcpsight-gen [--copies N] [--mode serial|parallel] [--snaplen S] [--source FILE] -o FILE

Replicates a real capture N times with rewritten addresses (10.77.0.0/16 and fd77::/16,
one distinct range per copy) and writes a classic microsecond pcap (- for stdout).

  --copies N      copies of the source (default 1)
  --mode M        serial: copy k shifted by k * (span + 1 s), concurrency unchanged;
                  parallel: copy k shifted by k ms, concurrency N-fold (default serial)
  --snaplen S     cut every frame to S bytes, keeping its original length (default: no cut)
  --rewrite-only A  rewrite only address A (repeatable; e.g. the clients, so that every copy
                  talks to the same servers); default: every 10.77/16 and fd77::/16 address
  --source FILE   capture to replicate (default testdata/captures/generated/netns-25s-client.pcap.gz)
  -o, --output F  output file (required)
";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        source: DEFAULT_SOURCE.to_string(),
        copies: 1,
        mode: Mode::Serial,
        snaplen: MAX_SNAPLEN,
        output: String::new(),
        only: Only::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if name == "-h" || name == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "--copies" | "-n" => {
                let v = value()?;
                args.copies = v
                    .parse()
                    .map_err(|_| format!("--copies: not a number: {v}"))?;
                if args.copies == 0 || args.copies > 65_536 {
                    return Err("--copies must be between 1 and 65536".into());
                }
            }
            "--mode" => {
                args.mode = match value()?.as_str() {
                    "serial" => Mode::Serial,
                    "parallel" => Mode::Parallel,
                    other => {
                        return Err(format!("--mode: expected serial or parallel, got {other}"));
                    }
                }
            }
            "--snaplen" | "-s" => {
                let v = value()?;
                let s: u32 = v
                    .parse()
                    .map_err(|_| format!("--snaplen: not a number: {v}"))?;
                args.snaplen = if s == 0 {
                    MAX_SNAPLEN
                } else {
                    s.min(MAX_SNAPLEN)
                };
            }
            "--source" => args.source = value()?,
            "--rewrite-only" => {
                let v = value()?;
                match v.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) if a.octets()[..2] == [10, 77] => {
                        args.only.v4.push(a.octets())
                    }
                    Ok(IpAddr::V6(a)) if a.octets()[..2] == [0xfd, 0x77] => {
                        args.only.v6.push(a.octets())
                    }
                    Ok(_) => {
                        return Err(format!(
                            "--rewrite-only: {v} is outside 10.77.0.0/16 and fd77::/16"
                        ));
                    }
                    Err(_) => return Err(format!("--rewrite-only: not an IP address: {v}")),
                }
            }
            "-o" | "--output" => args.output = value()?,
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if args.output.is_empty() {
        return Err("missing -o FILE".into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------
// Address rewriting

/// Rewrites the IPv4 address at `data[at..at + 4]` if it lies in 10.77.0.0/16 (and is
/// one of `--rewrite-only`'s, if given).
#[inline]
fn rewrite_v4(data: &mut [u8], at: usize, rw: &Rewrite<'_>) {
    if !rw.only.all() {
        match data.get(at..at + 4) {
            Some(a) if rw.only.v4.iter().any(|o| o[..] == *a) => {}
            _ => return,
        }
    }
    if let Some(a) = data.get_mut(at..at + 2)
        && a[0] == 10
        && a[1] == 77
    {
        let v = u16::from_be_bytes([a[0], a[1]]).wrapping_add(rw.k);
        a.copy_from_slice(&v.to_be_bytes());
    }
}

/// Rewrites the IPv6 address at `data[at..at + 16]` if it lies in fd77::/16 (only its
/// first 6 bytes are needed, so a quote cut by the snaplen is still rewritten).
#[inline]
fn rewrite_v6(data: &mut [u8], at: usize, rw: &Rewrite<'_>) {
    if !rw.only.all() {
        let Some(a) = data.get(at.min(data.len())..(at + 16).min(data.len())) else {
            return;
        };
        if !rw.only.v6.iter().any(|o| o[..a.len()] == *a) {
            return;
        }
    }
    if let Some(a) = data.get_mut(at..at + 6)
        && a[0] == 0xfd
        && a[1] == 0x77
    {
        let v = u16::from_be_bytes([a[4], a[5]]).wrapping_add(rw.k);
        a[4..6].copy_from_slice(&v.to_be_bytes());
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Where the network layer starts and its EtherType-style protocol.
fn network_start(data: &[u8], link: LinkType) -> Option<(usize, u16)> {
    let by_version = |off: usize| -> Option<(usize, u16)> {
        match data.get(off)? >> 4 {
            4 => Some((off, 0x0800)),
            6 => Some((off, 0x86dd)),
            _ => None,
        }
    };
    match link.0 {
        // Ethernet, with any number of 802.1Q / 802.1ad tags.
        1 => {
            let mut off = 12;
            let mut et = be16(data, off)?;
            while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                off += 4;
                et = be16(data, off)?;
            }
            Some((off + 2, et))
        }
        12 | 14 | 101 | 228 | 229 => by_version(0),
        // BSD loopback: 4-byte address family in either byte order.
        0 | 108 => by_version(4),
        113 => Some((16, be16(data, 14)?)),
        276 => Some((20, be16(data, 0)?)),
        _ => None,
    }
}

/// Rewrites the addresses of the IP packet at `data[off..]`, and those an ICMP error
/// quotes (`depth` stops the recursion after one quote).
fn rewrite_ip(data: &mut [u8], off: usize, rw: &Rewrite<'_>, depth: u8) {
    let Some(&first) = data.get(off) else { return };
    match first >> 4 {
        4 => {
            rewrite_v4(data, off + 12, rw);
            rewrite_v4(data, off + 16, rw);
            let ihl = usize::from(first & 0x0f) * 4;
            let proto = data.get(off + 9).copied();
            // ICMP, first fragment only.
            let frag = be16(data, off + 6).unwrap_or(0) & 0x1fff;
            if depth == 0 && proto == Some(1) && frag == 0 && ihl >= 20 {
                let icmp = off + ihl;
                // Destination unreachable, source quench, redirect, time exceeded,
                // parameter problem: the offending IP header follows 8 bytes later.
                if let Some(&t) = data.get(icmp)
                    && matches!(t, 3 | 4 | 5 | 11 | 12)
                {
                    rewrite_ip(data, icmp + 8, rw, depth + 1);
                }
            }
        }
        6 => {
            rewrite_v6(data, off + 8, rw);
            rewrite_v6(data, off + 24, rw);
            if depth > 0 {
                return;
            }
            // Walk extension headers to find ICMPv6.
            let mut next = data.get(off + 6).copied();
            let mut at = off + 40;
            for _ in 0..8 {
                match next {
                    Some(0 | 43 | 60) => {
                        next = data.get(at).copied();
                        at += (usize::from(data.get(at + 1).copied().unwrap_or(0)) + 1) * 8;
                    }
                    Some(44) => {
                        if be16(data, at + 2).unwrap_or(1) & 0xfff8 != 0 {
                            return; // not the first fragment
                        }
                        next = data.get(at).copied();
                        at += 8;
                    }
                    _ => break,
                }
            }
            // Destination unreachable, packet too big, time exceeded, parameter problem.
            if next == Some(58)
                && let Some(&t) = data.get(at)
                && (1..=4).contains(&t)
            {
                rewrite_ip(data, at + 8, rw, depth + 1);
            }
        }
        _ => {}
    }
}

/// Rewrites every 10.77/16 and fd77::/16 address of one frame for copy `rw.k`.
fn rewrite_frame(data: &mut [u8], link: LinkType, rw: &Rewrite<'_>) {
    if rw.k == 0 {
        return;
    }
    let Some((off, proto)) = network_start(data, link) else {
        return;
    };
    match proto {
        0x0800 | 0x86dd => rewrite_ip(data, off, rw, 0),
        // ARP for IPv4 over Ethernet: sender and target protocol addresses.
        0x0806 if be16(data, off + 2) == Some(0x0800) && data.get(off + 5) == Some(&4) => {
            let hlen = usize::from(data.get(off + 4).copied().unwrap_or(6));
            rewrite_v4(data, off + 8 + hlen, rw);
            rewrite_v4(data, off + 8 + 2 * hlen + 4, rw);
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Pcap writer

struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    only: Only,
    scratch: Vec<u8>,
    frames: u64,
    captured_bytes: u64,
    wire_bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    fn new(mut out: W, snaplen: u32, link: LinkType, only: Only) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // microsecond pcap
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone, sigfigs: 0
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&link.0.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            snaplen,
            only,
            scratch: Vec::with_capacity(MAX_SNAPLEN as usize),
            frames: 0,
            captured_bytes: 0,
            wire_bytes: 0,
        })
    }

    /// Writes `f` as copy `k`, `shift_ns` later than in the source.
    fn write(&mut self, f: &FrameRef<'_>, k: u16, shift_ns: u64) -> io::Result<()> {
        let incl = f.data.len().min(self.snaplen as usize);
        self.scratch.clear();
        self.scratch.extend_from_slice(&f.data[..incl]);
        let rw = Rewrite {
            k,
            only: &self.only,
        };
        rewrite_frame(&mut self.scratch, f.link, &rw);
        let ts_us = (f.ts_ns + shift_ns) / 1000;
        let orig = f.orig_len.max(incl as u32);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&orig.to_le_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&self.scratch)?;
        self.frames += 1;
        self.captured_bytes += incl as u64;
        self.wire_bytes += u64::from(orig);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------

fn open_source(path: &str) -> Result<CaptureReader, String> {
    CaptureReader::open(path).map_err(|e| e.to_string())
}

/// First pass over the source: link type, first and last timestamp, frame count.
fn survey(path: &str) -> Result<(LinkType, u64, u64, u64), String> {
    let mut r = open_source(path)?;
    let mut link = None;
    let (mut lo, mut hi, mut n) = (u64::MAX, 0u64, 0u64);
    while let Some(f) = r.current() {
        match link {
            None => link = Some(f.link),
            Some(l) if l != f.link => {
                return Err(format!(
                    "{path}: mixed link types ({} and {})",
                    l.name(),
                    f.link.name()
                ));
            }
            _ => {}
        }
        lo = lo.min(f.ts_ns);
        hi = hi.max(f.ts_ns);
        n += 1;
        r.advance().map_err(|e| e.to_string())?;
    }
    let link = link.ok_or_else(|| format!("{path}: no frames"))?;
    Ok((link, lo, hi, n))
}

fn run(args: &Args) -> Result<(), String> {
    let (link, lo, hi, n) = survey(&args.source)?;
    let span = hi - lo;
    let out: Box<dyn Write> = if args.output == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(&args.output).map_err(|e| format!("{}: {e}", args.output))?)
    };
    let mut w = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, out),
        args.snaplen,
        link,
        args.only.clone(),
    )
    .map_err(|e| format!("{}: {e}", args.output))?;
    let werr = |e: io::Error| format!("{}: {e}", args.output);

    match args.mode {
        Mode::Serial => {
            let period = span + SECOND_NS;
            for k in 0..args.copies {
                let mut r = open_source(&args.source)?;
                let shift = u64::from(k) * period;
                while let Some(f) = r.current() {
                    w.write(&f, k as u16, shift).map_err(werr)?;
                    r.advance().map_err(|e| e.to_string())?;
                }
            }
        }
        Mode::Parallel => {
            let mut readers = (0..args.copies)
                .map(|_| open_source(&args.source))
                .collect::<Result<Vec<_>, _>>()?;
            // Linear scan for the earliest head: fine for the tens of copies this is for.
            // Ties go to the lower copy index, so the output is deterministic.
            loop {
                let mut best: Option<(u64, usize)> = None;
                for (i, r) in readers.iter().enumerate() {
                    if let Some(f) = r.current() {
                        let t = f.ts_ns + i as u64 * MS_NS;
                        if best.is_none_or(|(bt, _)| t < bt) {
                            best = Some((t, i));
                        }
                    }
                }
                let Some((_, i)) = best else { break };
                let r = &mut readers[i];
                if let Some(f) = r.current() {
                    w.write(&f, i as u16, i as u64 * MS_NS).map_err(werr)?;
                }
                r.advance().map_err(|e| e.to_string())?;
            }
        }
    }
    w.out.flush().map_err(werr)?;
    eprintln!(
        "tcpsight-gen: {} copies ({:?}) of {} ({} frames, span {:.3} s) -> {}: {} frames, {} captured bytes, {} wire bytes",
        args.copies,
        args.mode,
        args.source,
        n,
        span as f64 / 1e9,
        args.output,
        w.frames,
        w.captured_bytes,
        w.wire_bytes
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tcpsight-gen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpsight-gen: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(k: u16, only: &Only) -> Rewrite<'_> {
        Rewrite { k, only }
    }

    fn eth_ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn ipv4_and_icmp_quote() {
        let quoted = eth_ipv4([10, 77, 0, 1], [10, 77, 9, 5], 6, &[0; 8]);
        let mut icmp = vec![3, 1, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[14..]);
        let mut f = eth_ipv4([10, 77, 0, 2], [8, 8, 8, 8], 1, &icmp);
        rewrite_frame(&mut f, LinkType::ETHERNET, &rw(3, &Only::default()));
        assert_eq!(&f[26..30], &[10, 80, 0, 2]);
        assert_eq!(&f[30..34], &[8, 8, 8, 8]);
        assert_eq!(&f[42 + 12..42 + 16], &[10, 80, 0, 1]);
        assert_eq!(&f[42 + 16..42 + 20], &[10, 80, 9, 5]);
    }

    #[test]
    fn ipv6_and_vlan() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0, 7, 0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[1] = 0x77;
        a[3] = 9;
        a[15] = 5;
        ip.extend_from_slice(&a);
        ip.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ip);
        rewrite_frame(&mut f, LinkType::ETHERNET, &rw(300, &Only::default()));
        let src = &f[18 + 8..18 + 24];
        assert_eq!(&src[..6], &[0xfd, 0x77, 0, 9, 0x01, 0x2c]);
        assert_eq!(src[15], 5);
        assert_eq!(&f[18 + 24..18 + 26], &[0xfe, 0x80]);
    }

    #[test]
    fn cut_frames_are_safe() {
        let full = eth_ipv4([10, 77, 0, 1], [10, 77, 0, 2], 6, &[0; 20]);
        for n in 0..full.len() {
            let mut f = full[..n].to_vec();
            rewrite_frame(&mut f, LinkType::ETHERNET, &rw(1, &Only::default()));
        }
    }

    #[test]
    fn rewrite_only_the_listed_addresses() {
        let only = Only {
            v4: vec![[10, 77, 0, 1]],
            v6: vec![],
        };
        let quoted = eth_ipv4([10, 77, 0, 1], [10, 77, 9, 5], 6, &[0; 8]);
        let mut icmp = vec![3, 1, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[14..]);
        let mut f = eth_ipv4([10, 77, 0, 2], [10, 77, 0, 1], 1, &icmp);
        rewrite_frame(&mut f, LinkType::ETHERNET, &rw(3, &only));
        assert_eq!(&f[26..30], &[10, 77, 0, 2]);
        assert_eq!(&f[30..34], &[10, 80, 0, 1]);
        assert_eq!(&f[42 + 12..42 + 16], &[10, 80, 0, 1]);
        assert_eq!(&f[42 + 16..42 + 20], &[10, 77, 9, 5]);
    }
}
