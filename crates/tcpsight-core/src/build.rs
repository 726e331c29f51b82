//! Frame builder: well-formed Ethernet/IPv4/IPv6 TCP and ICMP frames for tests, fuzz
//! seeds and the benchmark's capture generator. Checksums are left zero (nothing here
//! verifies them, as capture tools see offloaded checksums all the time).

use std::net::IpAddr;

/// One TCP segment to build.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Flag bits as in [`crate::decode::TcpFlags`].
    pub flags: u16,
    pub window: u16,
    pub payload_len: usize,
    /// Add MSS 1460, SACK-permitted, timestamps and window scale 7 (for SYNs).
    pub syn_options: bool,
    pub vlan: Option<u16>,
}

impl Tcp {
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Tcp {
        Tcp {
            src,
            dst,
            sport,
            dport,
            seq: 0,
            ack: 0,
            flags: 0,
            window: 65535,
            payload_len: 0,
            syn_options: false,
            vlan: None,
        }
    }
}

fn tcp_header(t: &Tcp) -> Vec<u8> {
    let opts: &[u8] = if t.syn_options {
        &[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ]
    } else {
        &[]
    };
    let hlen = 20 + opts.len();
    let mut h = Vec::with_capacity(hlen + t.payload_len);
    h.extend_from_slice(&t.sport.to_be_bytes());
    h.extend_from_slice(&t.dport.to_be_bytes());
    h.extend_from_slice(&t.seq.to_be_bytes());
    h.extend_from_slice(&t.ack.to_be_bytes());
    let off_flags: u16 = ((hlen as u16 / 4) << 12) | (t.flags & 0x01ff);
    h.extend_from_slice(&off_flags.to_be_bytes());
    h.extend_from_slice(&t.window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    h.extend_from_slice(opts);
    // Each payload byte tells its sequence number (see [`payload_byte`]), so tests of
    // stream reassembly can check every delivered byte.
    h.extend((0..t.payload_len as u32).map(|i| payload_byte(t.seq.wrapping_add(i))));
    h
}

/// The byte built frames carry at sequence number `seq`.
pub fn payload_byte(seq: u32) -> u8 {
    (seq % 251) as u8
}

/// An IP packet (no link header) carrying `l4` with protocol `proto`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + l4.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4.len()) as u16;
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let s6 = match s {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            let d6 = match d {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s6.octets());
            p.extend_from_slice(&d6.octets());
        }
    }
    p.extend_from_slice(l4);
    p
}

/// Wraps an IP packet in an Ethernet header (with an 802.1Q tag if `vlan`).
pub fn ethernet(ip: &[u8], vlan: Option<u16>) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + ip.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    let ethertype: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// A complete Ethernet frame for one TCP segment.
pub fn tcp_frame(t: &Tcp) -> Vec<u8> {
    ethernet(&ip_packet(t.src, t.dst, 6, &tcp_header(t)), t.vlan)
}

/// An ICMP (or ICMPv6) error from `router` quoting the first bytes of `quoted`.
pub fn icmp_error_frame(router: IpAddr, icmp_type: u8, icmp_code: u8, quoted: &Tcp) -> Vec<u8> {
    let inner = ip_packet(quoted.src, quoted.dst, 6, &tcp_header(quoted));
    let hdr = if quoted.src.is_ipv6() { 40 } else { 20 };
    let quote = &inner[..(hdr + 8).min(inner.len())];
    let mut icmp = vec![icmp_type, icmp_code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let proto = if quoted.src.is_ipv6() { 58 } else { 1 };
    ethernet(&ip_packet(router, quoted.src, proto, &icmp), quoted.vlan)
}
