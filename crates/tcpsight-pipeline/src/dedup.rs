//! Copies of one packet from two interfaces (`-i any` on a host with a bridge and its
//! ports, or a router): the kernel hands the same IP packet to the capture socket once
//! per interface it crosses, microseconds apart. [`CopyFilter`] keeps the first and
//! counts the others, in constant memory and time, with no allocation per packet.
//!
//! A frame is a copy when an earlier frame from another interface, at most `window_ns`
//! earlier, had the same length and the same bytes (the first [`HASHED_BYTES`] of the IP
//! packet, hashed), the hop count and the IPv4 header checksum aside (a routed copy
//! differs only in those). The same bytes on the same interface are never a copy: that
//! is a retransmission or a duplicate on the wire, which the engine must see.
//!
//! Memory: a direct-mapped table of [`SLOTS`] entries (hash, time, interface; 96 KB). A
//! copy is missed only if another packet with the same table index arrives between the
//! two copies (about one in 4,000 per packet in between; copies are a few packets
//! apart), and then the engine sees what it would have seen without the filter.

use std::hash::{BuildHasher, Hasher};

/// The default window: copies come microseconds apart; 5 ms leaves room for a loaded
/// host while staying far below any retransmission timer (200 ms minimum on Linux).
pub const DEFAULT_WINDOW_NS: u64 = 5_000_000;

/// Bytes of the IP packet hashed: the headers (IP, TCP with options) and the start of
/// the payload. Bounded so a 64 KB GRO packet costs what a small one does.
pub const HASHED_BYTES: usize = 256;

/// Table entries (a power of two).
pub const SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    ts_ns: u64,
    ifindex: i32,
    used: bool,
}

/// Drops copies of a packet seen on another interface within a window.
pub struct CopyFilter {
    slots: Box<[Slot]>,
    window_ns: u64,
    hasher: foldhash::fast::FixedState,
    /// Frames dropped as copies so far.
    pub copies: u64,
}

impl CopyFilter {
    pub fn new(window_ns: u64) -> CopyFilter {
        CopyFilter {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            window_ns,
            hasher: foldhash::fast::FixedState::with_seed(0x7c9e_3a51_d2f4_0b68),
            copies: 0,
        }
    }

    /// The hash of an IP packet (`ip` starts at the IP header) of `orig_len` bytes on
    /// the wire, TTL / hop limit and the IPv4 header checksum left out.
    pub fn packet_hash(&self, ip: &[u8], orig_len: u32) -> u64 {
        let b = &ip[..ip.len().min(HASHED_BYTES)];
        let mut h = self.hasher.build_hasher();
        h.write_u32(orig_len);
        h.write_usize(b.len());
        match b.first().map(|v| v >> 4) {
            // IPv4: TTL at 8, protocol at 9, checksum at 10..12.
            Some(4) if b.len() >= 20 => {
                h.write(&b[..8]);
                h.write_u8(b[9]);
                h.write(&b[12..]);
            }
            // IPv6: hop limit at 7.
            Some(6) if b.len() >= 40 => {
                h.write(&b[..7]);
                h.write(&b[8..]);
            }
            _ => h.write(b),
        }
        h.finish()
    }

    /// Whether the frame at `ts_ns` from interface `ifindex` is a copy of one already
    /// let through (then it is counted); otherwise it is remembered.
    #[inline]
    pub fn is_copy(&mut self, ts_ns: u64, ifindex: i32, ip: &[u8], orig_len: u32) -> bool {
        let hash = self.packet_hash(ip, orig_len);
        // The high bits pick the slot (foldhash mixes them best); the whole hash must match.
        let i = (hash >> (64 - SLOTS.trailing_zeros())) as usize;
        let s = &mut self.slots[i];
        if s.used
            && s.hash == hash
            && s.ifindex != ifindex
            && ts_ns.abs_diff(s.ts_ns) <= self.window_ns
        {
            // Keep the original's entry: a third copy (a flooded frame: in on one port,
            // up to the bridge, out on another) is a copy of it too.
            self.copies += 1;
            return true;
        }
        *s = Slot {
            hash,
            ts_ns,
            ifindex,
            used: true,
        };
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ttl: u8, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, (id >> 8) as u8, id as u8, 0x40, 0, ttl, 6];
        p.extend_from_slice(&[ttl, !ttl]); // a checksum that follows the TTL
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn copies_from_another_interface_within_the_window_are_dropped() {
        let mut f = CopyFilter::new(DEFAULT_WINDOW_NS);
        let p = v4(64, 1, b"GET / HTTP/1.1");
        assert!(!f.is_copy(1_000, 3, &p, p.len() as u32));
        assert!(f.is_copy(1_020, 2, &p, p.len() as u32), "bridge copy");
        assert!(
            f.is_copy(1_040, 4, &p, p.len() as u32),
            "flooded to a third port"
        );
        // A routed copy: TTL and checksum differ, nothing else.
        let routed = v4(63, 1, b"GET / HTTP/1.1");
        assert!(f.is_copy(2_000, 5, &routed, routed.len() as u32));
        assert_eq!(f.copies, 3);
    }

    #[test]
    fn retransmissions_and_late_or_different_packets_are_kept() {
        let mut f = CopyFilter::new(DEFAULT_WINDOW_NS);
        let p = v4(64, 1, b"data");
        assert!(!f.is_copy(0, 3, &p, p.len() as u32));
        // The same bytes on the same interface: a retransmission, not a copy.
        assert!(!f.is_copy(100, 3, &p, p.len() as u32));
        // Another interface, but later than the window.
        assert!(!f.is_copy(100 + DEFAULT_WINDOW_NS + 1, 2, &p, p.len() as u32));
        // Another IP ID, other payload, other length on the wire.
        let q = v4(64, 2, b"data");
        assert!(!f.is_copy(200 + DEFAULT_WINDOW_NS, 4, &q, q.len() as u32));
        let r = v4(64, 2, b"datb");
        assert!(!f.is_copy(300 + DEFAULT_WINDOW_NS, 5, &r, r.len() as u32));
        assert!(!f.is_copy(400 + DEFAULT_WINDOW_NS, 6, &r, r.len() as u32 + 1));
        assert_eq!(f.copies, 0);
    }

    #[test]
    fn any_bytes_never_panic() {
        let mut f = CopyFilter::new(DEFAULT_WINDOW_NS);
        let big = vec![0x60; 70_000];
        for len in [0usize, 1, 7, 8, 19, 20, 39, 40, 255, 256, 257, 70_000] {
            for first in [0x00u8, 0x45, 0x60, 0xff] {
                let mut b = big[..len].to_vec();
                if let Some(x) = b.first_mut() {
                    *x = first;
                }
                f.is_copy(len as u64, 1, &b, len as u32);
                f.is_copy(len as u64, 2, &b, 0);
            }
        }
        // Extreme timestamps, either order, do not wrap.
        assert!(!f.is_copy(u64::MAX, 1, &[0x45; 20], 20));
        assert!(!f.is_copy(0, 2, &[0x45; 20], 20));
        assert!(f.is_copy(1, 3, &[0x45; 20], 20));
    }
}

/// The filter's cost per frame on the bundled capture's IP packets (557 bytes on
/// average), printed: `cargo test --release -p tcpsight-pipeline copy_filter_cost --
/// --ignored --nocapture`.
#[cfg(test)]
#[test]
#[ignore]
fn copy_filter_cost() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/captures/generated/netns-25s-client.pcap.gz"
    );
    let r = tcpsight_io::CaptureReader::open(path).unwrap();
    let mut r = tcpsight_io::MergedReader::new(vec![r]);
    let mut frames: Vec<(u64, Vec<u8>, u32)> = Vec::new();
    while let Some(f) = r.next_frame() {
        // Ethernet: the IP packet from byte 14, as a cooked `any` socket gives it.
        if f.data.len() > 14 {
            frames.push((f.ts_ns, f.data[14..].to_vec(), f.orig_len - 14));
        }
    }
    let mut f = CopyFilter::new(DEFAULT_WINDOW_NS);
    let rounds = 20;
    let t = std::time::Instant::now();
    let mut kept = 0u64;
    for round in 0..rounds {
        for (ts, data, len) in &frames {
            // Each frame twice, on two interfaces, as a bridge shows it.
            let ts = ts + round * 100_000_000_000;
            kept += !f.is_copy(ts, 2, data, *len) as u64;
            kept += !f.is_copy(ts + 2_000, 3, data, *len) as u64;
        }
    }
    let n = frames.len() as u64 * rounds * 2;
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "copy filter: {n} frames, {kept} kept, {} copies, {ns:.1} ns per frame",
        f.copies
    );
    assert_eq!(kept + f.copies, n);
}
