//! IPv4 and IPv6 headers (with extension headers), and ICMP errors quoting TCP.

use super::tcp::decode_tcp;
use super::{Bytes, DecodeError, Decoded, IcmpQuote, UdpDatagram};
use crate::addr::Addr;
use crate::seq::Seq;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

pub(crate) const PROTO_IPIP: u8 = 4;
pub(crate) const PROTO_IPV6: u8 = 41;
pub(crate) const PROTO_GRE: u8 = 47;

/// The parts of an IP header the TCP decoder (and the tunnel walk) needs.
pub(crate) struct IpHeader {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    /// Offset of the transport header.
    pub l4: usize,
    /// Transport length (header + payload) according to the IP header, if it gives one.
    pub l4_len: Option<u32>,
    /// Not the first fragment: the transport header is elsewhere.
    pub later_fragment: bool,
    /// A fragment, first or later (more fragments follow, or an offset).
    pub fragment: bool,
    /// IPv4 TTL, IPv6 hop limit.
    pub ttl: u8,
}

#[inline(always)]
pub(crate) fn ipv4_header(b: Bytes) -> Result<IpHeader, DecodeError> {
    let vihl = b.u8(0).ok_or(DecodeError::Short("IPv4"))?;
    if vihl >> 4 != 4 {
        return Err(DecodeError::Malformed("IPv4 version"));
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(DecodeError::Malformed("IPv4 header length"));
    }
    if b.len() < 20 {
        return Err(DecodeError::Short("IPv4"));
    }
    let total = b.u16(2).unwrap_or(0) as u32;
    let frag = b.u16(6).unwrap_or(0);
    let proto = b.u8(9).unwrap_or(0);
    let src = Addr::from_v4(b.array::<4>(12).ok_or(DecodeError::Short("IPv4"))?);
    let dst = Addr::from_v4(b.array::<4>(16).ok_or(DecodeError::Short("IPv4"))?);
    // Total length 0 is what TSO/GSO captures on Linux show; fall back to captured bytes.
    let l4_len = if total == 0 {
        None
    } else if (total as usize) < ihl {
        return Err(DecodeError::Malformed("IPv4 total length"));
    } else {
        Some(total - ihl as u32)
    };
    Ok(IpHeader {
        src,
        dst,
        proto,
        l4: ihl,
        l4_len,
        later_fragment: frag & 0x1fff != 0,
        fragment: frag & 0x3fff != 0,
        ttl: b.u8(8).unwrap_or(0),
    })
}

pub(crate) fn ipv6_header(b: Bytes) -> Result<IpHeader, DecodeError> {
    let v = b.u8(0).ok_or(DecodeError::Short("IPv6"))?;
    if v >> 4 != 6 {
        return Err(DecodeError::Malformed("IPv6 version"));
    }
    let payload = b.u16(4).ok_or(DecodeError::Short("IPv6"))? as u32;
    let mut next = b.u8(6).ok_or(DecodeError::Short("IPv6"))?;
    let src = Addr::from_v6(b.array::<16>(8).ok_or(DecodeError::Short("IPv6"))?);
    let dst = Addr::from_v6(b.array::<16>(24).ok_or(DecodeError::Short("IPv6"))?);
    let mut off = 40usize;
    let mut later_fragment = false;
    let mut fragment = false;
    // Walk extension headers; a bounded number so crafted chains cannot loop for long.
    for _ in 0..16 {
        match next {
            0 | 43 | 60 | 135 | 139 | 140 => {
                let nh = b.u8(off).ok_or(DecodeError::Short("IPv6 extension"))?;
                let len = b.u8(off + 1).ok_or(DecodeError::Short("IPv6 extension"))? as usize;
                next = nh;
                off += (len + 1) * 8;
            }
            44 => {
                let nh = b.u8(off).ok_or(DecodeError::Short("IPv6 fragment"))?;
                let fo = b.u16(off + 2).ok_or(DecodeError::Short("IPv6 fragment"))?;
                later_fragment = fo & 0xfff8 != 0;
                // An atomic fragment (offset 0, no more) is a whole packet.
                fragment |= fo & 0xfff9 != 0;
                next = nh;
                off += 8;
            }
            51 => {
                let nh = b.u8(off).ok_or(DecodeError::Short("IPv6 AH"))?;
                let len = b.u8(off + 1).ok_or(DecodeError::Short("IPv6 AH"))? as usize;
                next = nh;
                off += (len + 2) * 4;
            }
            _ => break,
        }
    }
    let ext = (off - 40) as u32;
    // Jumbograms (payload length 0) and TSO captures: fall back to captured bytes.
    let l4_len = if payload == 0 {
        None
    } else if payload < ext {
        return Err(DecodeError::Malformed("IPv6 payload length"));
    } else {
        Some(payload - ext)
    };
    Ok(IpHeader {
        src,
        dst,
        proto: next,
        l4: off,
        l4_len,
        later_fragment,
        fragment,
        ttl: b.u8(7).unwrap_or(0),
    })
}

/// The transport layer of an IP packet whose header is `h` (`data` starts at the IP
/// header): TCP, UDP, ICMP errors quoting TCP; anything else carries no TCP.
#[inline(always)]
pub(crate) fn transport(
    data: &[u8],
    h: &IpHeader,
    vlan: u32,
    truncated: bool,
) -> Result<Decoded, DecodeError> {
    if h.later_fragment {
        return Ok(Decoded::Fragment);
    }
    let l4 = Bytes(Bytes(data).from(h.l4));
    match h.proto {
        PROTO_TCP => {
            // Without an IP length, the captured bytes are all there is to go on.
            let l4_len = h.l4_len.unwrap_or(l4.len() as u32);
            decode_tcp(l4, h.src, h.dst, vlan, l4_len, h.ttl, truncated).map(|mut seg| {
                seg.payload_at += h.l4 as u32;
                Decoded::Tcp(seg)
            })
        }
        PROTO_UDP => Ok(udp(l4, h, vlan)),
        PROTO_ICMP => icmp_error(l4, false, vlan),
        PROTO_ICMPV6 => icmp_error(l4, true, vlan),
        _ => Ok(Decoded::NotTcp),
    }
}

/// A UDP header; one cut short is still a frame that carries no TCP.
fn udp(b: Bytes, h: &IpHeader, vlan: u32) -> Decoded {
    let (Some(sport), Some(dport), Some(len)) = (b.u16(0), b.u16(2), b.u16(4)) else {
        return Decoded::NotTcp;
    };
    // The UDP length field, bounded by the IP header's (either may lie).
    let mut payload_len = (len as u32).saturating_sub(8);
    if let Some(l4) = h.l4_len {
        payload_len = payload_len.min(l4.saturating_sub(8));
    }
    Decoded::Udp(UdpDatagram {
        src: h.src,
        dst: h.dst,
        sport,
        dport,
        vlan,
        payload_len,
        payload_at: (h.l4 + 8) as u32,
    })
}

/// ICMP destination-unreachable / time-exceeded quoting an IP header and 8 TCP bytes.
fn icmp_error(b: Bytes, v6: bool, vlan: u32) -> Result<Decoded, DecodeError> {
    let (Some(icmp_type), Some(icmp_code)) = (b.u8(0), b.u8(1)) else {
        return Err(DecodeError::Short("ICMP"));
    };
    let unreachable = match (v6, icmp_type) {
        (false, 3) | (true, 1) => true,
        (false, 11) | (true, 3) => false,
        _ => return Ok(Decoded::NotTcp),
    };
    let quoted = Bytes(b.from(8));
    let inner = if v6 {
        ipv6_header(quoted)
    } else {
        ipv4_header(quoted)
    };
    // A quote we cannot read is still a well-formed ICMP message about something else.
    let Ok(inner) = inner else {
        return Ok(Decoded::NotTcp);
    };
    if inner.proto != PROTO_TCP || inner.later_fragment {
        return Ok(Decoded::NotTcp);
    }
    let tcp = Bytes(quoted.from(inner.l4));
    let (Some(sport), Some(dport), Some(seq)) = (tcp.u16(0), tcp.u16(2), tcp.u32(4)) else {
        return Ok(Decoded::NotTcp);
    };
    Ok(Decoded::IcmpError(IcmpQuote {
        icmp_type,
        icmp_code,
        unreachable,
        src: inner.src,
        dst: inner.dst,
        sport,
        dport,
        seq: Seq(seq),
        vlan,
        tunnel: 0,
    }))
}
