//! Frame decoding: link layer, encapsulations, IPv4/IPv6, TCP header and ICMP errors
//! quoting TCP.
//!
//! Hand-written checked views rather than a general packet crate (etherparse was the
//! survey's pick): tcpsight needs LINUX_SLL2, NULL/LOOP, 802.11 and other link types,
//! tunnels (GRE, ERSPAN, VXLAN, Geneve, GTP-U, MPLS...), lax parsing of snaplen-cut
//! headers (use what is there, flag it), payload length taken from the IP header (not
//! from captured bytes), and nothing else. `fast.rs` decodes the common untagged
//! Ethernet/IPv4/TCP frame in straight-line code; `tunnel.rs` walks everything else.
//! docs/decode.md lists every header.
//! Every read is bounds-checked through [`Bytes`]; decoding never panics on any input
//! (property-tested and fuzzed).

mod fast;
mod ip;
mod link;
mod tcp;
mod tunnel;

pub use link::LinkType;
pub use tcp::{TcpFlags, TcpOptions};
pub use tunnel::{Encap, Layer, MAX_DEPTH, Tunnel, TunnelPath, Unknown};

use crate::addr::Addr;
use crate::seq::Seq;

/// A decoded TCP segment: the header fields the engine needs, copied out of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    /// 802.1Q id (outer << 12 | inner for QinQ) of the Ethernet header carrying the IP
    /// packet (the innermost one inside tunnels), 0 when untagged.
    pub vlan: u32,
    /// The tunnel part of the connection key ([`Tunnel::key`]), 0 outside tunnels.
    pub tunnel: u32,
    pub seq: Seq,
    pub ack: Seq,
    pub flags: TcpFlags,
    /// Raw advertised window (not scaled); `None` when the snaplen cut it off.
    pub window: Option<u16>,
    /// TCP payload length from the IP header's length fields, captured or not.
    pub payload_len: u32,
    /// Options, parsed only on SYN segments (the only place MSS/WS/SACK-permitted live).
    pub options: TcpOptions,
    /// SACK blocks in this segment's options (0 without a SACK option; a SYN has none).
    pub sack_blocks: u8,
    /// The IPv4 TTL or IPv6 hop limit of the (innermost) IP header.
    pub ttl: u8,
    /// The frame was cut short by the snaplen (captured < original length).
    pub truncated: bool,
    /// Where the TCP payload starts in the frame (the captured part may be shorter than
    /// `payload_len`, or empty: see [`TcpSegment::payload`]).
    pub payload_at: u32,
}

impl TcpSegment {
    /// The captured payload bytes of this segment within `frame`, the bytes it was
    /// decoded from: at most `payload_len` (never Ethernet padding), fewer when the
    /// snaplen cut them.
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        captured(frame, self.payload_at, self.payload_len)
    }
}

/// The captured part of `len` bytes at `at` in `frame` (empty when the snaplen cut
/// before them).
#[inline]
fn captured(frame: &[u8], at: u32, len: u32) -> &[u8] {
    let start = (at as usize).min(frame.len());
    let end = start.saturating_add(len as usize).min(frame.len());
    &frame[start..end]
}

/// An ICMP or ICMPv6 error quoting the start of a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpQuote {
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Whether this is destination-unreachable (true) or time-exceeded (false).
    pub unreachable: bool,
    /// The quoted segment as it was sent: its source, destination, ports and sequence.
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: Seq,
    pub vlan: u32,
    /// The tunnel part of the key of the connection quoted ([`Tunnel::key`]).
    pub tunnel: u32,
}

/// What one frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    Tcp(TcpSegment),
    IcmpError(IcmpQuote),
    /// An IP fragment other than the first: counted, not analysed.
    Fragment,
    /// A well-formed frame that carries no TCP (ARP, other ICMP...).
    NotTcp,
    /// A UDP datagram: not analysed as a connection (counted as not TCP), but handed
    /// to observers that ask (`Config::datagrams`: DNS answers name servers).
    Udp(UdpDatagram),
}

/// A UDP datagram's addresses and where its payload lies in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub vlan: u32,
    /// Payload length from the UDP header, captured or not.
    pub payload_len: u32,
    pub payload_at: u32,
}

impl UdpDatagram {
    /// The captured payload bytes within `frame` (as [`TcpSegment::payload`]).
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        captured(frame, self.payload_at, self.payload_len)
    }
}

/// Why a frame could not be decoded. Counted per reason in the capture summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    UnknownLinkType(u32),
    /// The frame ends before the named header does.
    Short(&'static str),
    /// A header field holds an impossible value (IP version, header length...).
    Malformed(&'static str),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::UnknownLinkType(t) => {
                write!(f, "unsupported link type {} ({t})", LinkType(*t).name())
            }
            DecodeError::Short(what) => write!(f, "frame too short for the {what} header"),
            DecodeError::Malformed(what) => write!(f, "malformed {what} header"),
        }
    }
}

/// Decodes one captured frame. `orig_len` is the frame's length on the wire.
#[inline]
pub fn decode(link: LinkType, data: &[u8], orig_len: u32) -> Result<Decoded, DecodeError> {
    if let Some(seg) = fast::ethernet_ipv4_tcp(link, data, orig_len) {
        return Ok(Decoded::Tcp(seg));
    }
    decode_general(link, data, orig_len)
}

/// As [`decode`], and says in `t` which encapsulations the frame went through (reset
/// for every frame; untouched layers cost nothing on the fast path).
#[inline]
pub fn decode_with(
    link: LinkType,
    data: &[u8],
    orig_len: u32,
    t: &mut Tunnel,
) -> Result<Decoded, DecodeError> {
    if let Some(seg) = fast::ethernet_ipv4_tcp(link, data, orig_len) {
        t.reset();
        return Ok(Decoded::Tcp(seg));
    }
    tunnel::walk(link, data, orig_len, t)
}

/// The complete decoder, for every link type and header combination.
pub fn decode_general(link: LinkType, data: &[u8], orig_len: u32) -> Result<Decoded, DecodeError> {
    tunnel::walk(link, data, orig_len, &mut Tunnel::default())
}

/// Bounds-checked big-endian reads over a byte slice.
#[derive(Clone, Copy)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    #[inline]
    pub fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    #[inline]
    pub fn u16(&self, at: usize) -> Option<u16> {
        let b = self.0.get(at..at + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    #[inline]
    pub fn u32(&self, at: usize) -> Option<u32> {
        let b = self.0.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline]
    pub fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.0.get(at..at + N)?.try_into().ok()
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    pub fn from(&self, at: usize) -> &'a [u8] {
        self.0.get(at..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests;
