//! The general decoder: a walk from the link header through any encapsulations to the
//! transport layer, with what it went through recorded in a [`Tunnel`].
//!
//! Each step reads one header and names the next one ([`Next`]). Encapsulations (GRE,
//! ERSPAN, IP in IP, VXLAN, Geneve, GTP-U, MPLS, PPPoE, PBB...) push a [`Layer`]; at most
//! [`MAX_DEPTH`] of them, so a loop of tunnels in crafted input is "not understood", not a
//! hang, and the walk itself is bounded too. docs/decode.md describes every header.

use core::fmt;

use super::ip::{self, PROTO_GRE, PROTO_IPIP, PROTO_IPV6};
use super::link::{self, ETH_IPV4, ETH_IPV6, LinkType};
use super::{Bytes, DecodeError, Decoded, UdpDatagram};

/// Encapsulation layers kept per frame (and per connection).
pub const MAX_DEPTH: usize = 8;

/// One kind of encapsulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Encap {
    /// GRE carrying IP or MPLS (RFC 2784/2890), id: its key when present.
    #[default]
    Gre,
    /// GRE carrying Ethernet (transparent Ethernet bridging, 0x6558; NVGRE), id: key.
    GreTap,
    /// PPTP's enhanced GRE (version 1) carrying PPP, id: call id.
    Pptp,
    /// ERSPAN type I (GRE 0x88be without a sequence number, no ERSPAN header).
    Erspan1,
    /// ERSPAN type II, id: session.
    Erspan2,
    /// ERSPAN type III (GRE 0x22eb), id: session.
    Erspan3,
    /// IPv4 in IPv4 (protocol 4).
    Ipip,
    /// IPv6 in IPv4 (protocol 41).
    SixIn4,
    /// IPv4 in IPv6.
    FourIn6,
    /// IPv6 in IPv6.
    SixIn6,
    /// VXLAN (UDP 4789, and Linux's old default 8472), id: VNI.
    Vxlan,
    /// VXLAN-GPE (UDP 4790), id: VNI.
    VxlanGpe,
    /// Geneve (UDP 6081), id: VNI.
    Geneve,
    /// GTP-U (UDP 2152), id: TEID.
    GtpU,
    /// One MPLS label (a stack is one layer per label), id: the label.
    Mpls,
    /// An Ethernet pseudowire inside MPLS (with or without a control word).
    Pw,
    /// A PPPoE session, id: session id.
    Pppoe,
    /// 802.1ah provider backbone bridging, id: I-SID.
    Pbb,
    /// Cisco VN-Tag.
    VnTag,
    /// 802.1BR E-Tag.
    ETag,
}

impl Encap {
    pub const ALL: [Encap; 20] = [
        Encap::Gre,
        Encap::GreTap,
        Encap::Pptp,
        Encap::Erspan1,
        Encap::Erspan2,
        Encap::Erspan3,
        Encap::Ipip,
        Encap::SixIn4,
        Encap::FourIn6,
        Encap::SixIn6,
        Encap::Vxlan,
        Encap::VxlanGpe,
        Encap::Geneve,
        Encap::GtpU,
        Encap::Mpls,
        Encap::Pw,
        Encap::Pppoe,
        Encap::Pbb,
        Encap::VnTag,
        Encap::ETag,
    ];

    /// The name in the `tunnel` field and the capture summary.
    pub fn name(self) -> &'static str {
        match self {
            Encap::Gre => "gre",
            Encap::GreTap => "gretap",
            Encap::Pptp => "pptp",
            Encap::Erspan1 => "erspan1",
            Encap::Erspan2 => "erspan2",
            Encap::Erspan3 => "erspan3",
            Encap::Ipip => "ipip",
            Encap::SixIn4 => "6in4",
            Encap::FourIn6 => "4in6",
            Encap::SixIn6 => "6in6",
            Encap::Vxlan => "vxlan",
            Encap::VxlanGpe => "vxlan-gpe",
            Encap::Geneve => "geneve",
            Encap::GtpU => "gtpu",
            Encap::Mpls => "mpls",
            Encap::Pw => "pw",
            Encap::Pppoe => "pppoe",
            Encap::Pbb => "pbb",
            Encap::VnTag => "vntag",
            Encap::ETag => "etag",
        }
    }

    /// Whether this layer's id names a virtual network (a tenant's own address space,
    /// the same in both directions): such ids are part of the connection key.
    fn in_key(self) -> bool {
        matches!(
            self,
            Encap::Vxlan | Encap::VxlanGpe | Encap::Geneve | Encap::GreTap | Encap::Pbb
        )
    }
}

/// One encapsulation layer: its kind and identifier (key, VNI, TEID, label...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Layer {
    pub kind: Encap,
    pub id: Option<u32>,
}

/// The encapsulations a frame went through, outermost first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TunnelPath {
    len: u8,
    layers: [Layer; MAX_DEPTH],
}

impl TunnelPath {
    pub fn layers(&self) -> &[Layer] {
        &self.layers[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kinds present, as a bit set over [`Encap`]'s order.
    pub fn kinds(&self) -> u32 {
        self.layers().iter().fold(0, |m, l| m | 1 << l.kind as u32)
    }
}

/// The compact form: layers outermost first joined by `>`, each `name` or `name:id`, an
/// MPLS label stack as one `mpls:L1/L2/...` (e.g. `vxlan:4711>gre`, `mpls:16/17>pw`).
impl fmt::Display for TunnelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev: Option<Encap> = None;
        for l in self.layers() {
            if l.kind == Encap::Mpls && prev == Some(Encap::Mpls) {
                write!(f, "/{}", l.id.unwrap_or(0))?;
            } else {
                if prev.is_some() {
                    f.write_str(">")?;
                }
                f.write_str(l.kind.name())?;
                if let Some(id) = l.id {
                    write!(f, ":{id}")?;
                }
            }
            prev = Some(l.kind);
        }
        Ok(())
    }
}

/// What stopped the walk inside a frame that tcpsight does not decode further: counted
/// by kind in the capture summary ("not understood").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unknown {
    GreVersion(u8),
    GreRouting,
    GreProtocol(u16),
    ErspanVersion(u8),
    ErspanFrameType(u8),
    MplsPayload(u8),
    GeneveProtocol(u16),
    GpeProtocol(u8),
    PppVjCompressed,
    Macsec,
    WifiProtected,
    WifiAmsdu,
    /// A PPI header naming a link type tcpsight does not read (or PPI again).
    PpiLinkType(u32),
    TooDeep,
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unknown::GreVersion(v) => write!(f, "GRE version {v}"),
            Unknown::GreRouting => f.write_str("GRE with source routing (RFC 1701)"),
            Unknown::GreProtocol(p) => write!(f, "GRE protocol 0x{p:04x}"),
            Unknown::ErspanVersion(v) => write!(f, "ERSPAN version {v}"),
            Unknown::ErspanFrameType(t) => write!(f, "ERSPAN III frame type {t}"),
            Unknown::MplsPayload(b) => {
                write!(f, "MPLS payload starting 0x{b:02x} (not IP nor Ethernet)")
            }
            Unknown::GeneveProtocol(p) => write!(f, "Geneve protocol 0x{p:04x}"),
            Unknown::GpeProtocol(p) => write!(f, "VXLAN-GPE next protocol {p}"),
            Unknown::PppVjCompressed => f.write_str("PPP Van Jacobson compressed TCP"),
            Unknown::Macsec => f.write_str("MACsec (encrypted)"),
            Unknown::WifiProtected => f.write_str("802.11 protected (encrypted) data"),
            Unknown::WifiAmsdu => f.write_str("802.11 A-MSDU"),
            Unknown::PpiLinkType(l) => write!(f, "PPI carrying link type {}", LinkType(*l).label()),
            Unknown::TooDeep => write!(f, "encapsulations nested deeper than {MAX_DEPTH}"),
        }
    }
}

/// What one frame's walk went through: its encapsulations, the part of them that keys
/// connections, whether a tunnel packet was fragmented, and what was not understood.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnel {
    pub path: TunnelPath,
    /// The virtual-network ids (VXLAN/Geneve VNI, GRE key of Ethernet over GRE, PBB
    /// I-SID) folded into one value, 0 when none: the connection key's tunnel part.
    pub key: u32,
    /// An IP header that carries a tunnel, or sits inside one, was a fragment.
    pub fragment: bool,
    pub unknown: Option<Unknown>,
}

impl Tunnel {
    #[inline(always)]
    pub fn reset(&mut self) {
        self.path.len = 0;
        self.key = 0;
        self.fragment = false;
        self.unknown = None;
    }

    /// Anything to count for this frame.
    #[inline(always)]
    pub fn is_set(&self) -> bool {
        self.path.len != 0 || self.fragment || self.unknown.is_some()
    }

    /// Pushes a layer and goes on to `next`, or stops when the nesting is too deep.
    fn enter(&mut self, kind: Encap, id: Option<u32>, next: Next) -> Next {
        let n = self.path.len as usize;
        if n == MAX_DEPTH {
            return Next::Unknown(Unknown::TooDeep);
        }
        self.path.layers[n] = Layer { kind, id };
        self.path.len += 1;
        if kind.in_key() {
            let c = ((kind as u32 + 1) << 24) ^ id.unwrap_or(0);
            self.key = self.key.rotate_left(8) ^ c;
        }
        next
    }
}

/// The next header to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Ethernet,
    EtherType(u16),
    Ipv4,
    Ipv6,
    /// IPv4 or IPv6 by the first nibble.
    IpGuess,
    Mpls,
    /// A PPP protocol field (maybe after HDLC address and control bytes).
    Ppp,
    /// An 802.11 MAC header.
    Wifi,
    /// Well-formed, and no TCP inside.
    NotTcp,
    Unknown(Unknown),
}

const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_TEB: u16 = 0x6558;
const ETH_PBB: u16 = 0x88e7;
const ETH_VNTAG: u16 = 0x8926;
const ETH_ETAG: u16 = 0x893f;
const ETH_MACSEC: u16 = 0x88e5;
const ETH_ERSPAN: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;

const UDP_VXLAN: u16 = 4789;
const UDP_VXLAN_LINUX: u16 = 8472;
const UDP_VXLAN_GPE: u16 = 4790;
const UDP_GENEVE: u16 = 6081;
const UDP_GTPU: u16 = 2152;

/// Walks `data` from its link header to the transport layer. Offsets in the result are
/// from the frame's start; the segment or quote carries `t.key`.
pub(crate) fn walk(
    link: LinkType,
    data: &[u8],
    orig_len: u32,
    t: &mut Tunnel,
) -> Result<Decoded, DecodeError> {
    t.reset();
    let truncated = (data.len() as u64) < orig_len as u64;
    let (mut next, mut off) = link::start(link, data, false)?;
    let mut vlan = 0u32;
    // Every step reads a header; encapsulations stop at MAX_DEPTH, and between two of
    // them come at most a few plain steps (Ethernet, ethertype, IP), so this bound is
    // never what stops a frame of any depth tcpsight decodes.
    for _ in 0..4 * (MAX_DEPTH + 2) {
        let b = Bytes(data.get(off..).unwrap_or(&[]));
        next = match next {
            Next::Ethernet => {
                let (et, len, v) = link::ethernet(b)?;
                vlan = v;
                off += len;
                Next::EtherType(et)
            }
            Next::Wifi => {
                let (n, len) = link::wifi(b)?;
                off += len;
                n
            }
            Next::EtherType(et) => {
                let (n, len) = ethertype(et, b, t, &mut vlan)?;
                off += len;
                n
            }
            Next::IpGuess => link::by_version(b)?,
            Next::Mpls => {
                let (n, len) = mpls(b, t)?;
                off += len;
                n
            }
            Next::Ppp => {
                let (n, len) = ppp(b)?;
                off += len;
                n
            }
            Next::Ipv4 | Next::Ipv6 => {
                let v6 = next == Next::Ipv6;
                let h = if v6 {
                    ip::ipv6_header(b)?
                } else {
                    ip::ipv4_header(b)?
                };
                if h.fragment
                    && (matches!(h.proto, PROTO_IPIP | PROTO_IPV6 | PROTO_GRE)
                        || !t.path.is_empty())
                {
                    t.fragment = true;
                }
                if h.later_fragment {
                    return Ok(Decoded::Fragment);
                }
                match h.proto {
                    PROTO_IPIP => {
                        off += h.l4;
                        let kind = if v6 { Encap::FourIn6 } else { Encap::Ipip };
                        t.enter(kind, None, Next::Ipv4)
                    }
                    PROTO_IPV6 => {
                        off += h.l4;
                        let kind = if v6 { Encap::SixIn6 } else { Encap::SixIn4 };
                        t.enter(kind, None, Next::Ipv6)
                    }
                    PROTO_GRE => {
                        let (n, len) = gre(Bytes(b.from(h.l4)), t)?;
                        off += h.l4 + len;
                        n
                    }
                    _ => {
                        let d = ip::transport(b.0, &h, vlan, truncated)?;
                        match d {
                            Decoded::Udp(u) => {
                                match udp_tunnel(&u, Bytes(b.from(u.payload_at as usize)), t)? {
                                    Some((n, len)) => {
                                        off += u.payload_at as usize + len;
                                        n
                                    }
                                    None => return Ok(at(d, off, t.key)),
                                }
                            }
                            d => return Ok(at(d, off, t.key)),
                        }
                    }
                }
            }
            Next::NotTcp => return Ok(Decoded::NotTcp),
            Next::Unknown(u) => {
                t.unknown = Some(u);
                return Ok(Decoded::NotTcp);
            }
        };
    }
    t.unknown = Some(Unknown::TooDeep);
    Ok(Decoded::NotTcp)
}

/// Places a transport result decoded at `off` in the frame, inside tunnel `key`.
#[inline]
fn at(d: Decoded, off: usize, key: u32) -> Decoded {
    match d {
        Decoded::Tcp(mut seg) => {
            seg.payload_at += off as u32;
            seg.tunnel = key;
            Decoded::Tcp(seg)
        }
        Decoded::Udp(mut u) => {
            u.payload_at += off as u32;
            Decoded::Udp(u)
        }
        Decoded::IcmpError(mut q) => {
            q.tunnel = key;
            Decoded::IcmpError(q)
        }
        other => other,
    }
}

/// What an ethertype at this point leads to, and the bytes of header it has left.
fn ethertype(
    et: u16,
    b: Bytes,
    t: &mut Tunnel,
    vlan: &mut u32,
) -> Result<(Next, usize), DecodeError> {
    Ok(match et {
        ETH_IPV4 => (Next::Ipv4, 0),
        ETH_IPV6 => (Next::Ipv6, 0),
        ETH_MPLS | ETH_MPLS_MC => (Next::Mpls, 0),
        ETH_PPPOE_SESSION => {
            // Version and type 1, code 0 (session data), session id, length; then PPP.
            let h = b.array::<6>(0).ok_or(DecodeError::Short("PPPoE"))?;
            if h[0] != 0x11 || h[1] != 0 {
                return Ok((Next::NotTcp, 0));
            }
            let session = u16::from_be_bytes([h[2], h[3]]) as u32;
            (t.enter(Encap::Pppoe, Some(session), Next::Ppp), 6)
        }
        ETH_PBB => {
            // The I-TAG (priority, flags, 24-bit I-SID), then the customer's Ethernet header.
            let itag = b.u32(0).ok_or(DecodeError::Short("802.1ah"))?;
            (
                t.enter(Encap::Pbb, Some(itag & 0x00ff_ffff), Next::Ethernet),
                4,
            )
        }
        ETH_VNTAG | ETH_ETAG => {
            // The tag (4 or 6 bytes), then the frame's own tags and ethertype.
            let (kind, tag) = if et == ETH_VNTAG {
                (Encap::VnTag, 4)
            } else {
                (Encap::ETag, 6)
            };
            let (inner, len, v) = link::tagged(b, tag, "VN-Tag/E-Tag")?;
            *vlan = v;
            (t.enter(kind, None, Next::EtherType(inner)), len)
        }
        ETH_MACSEC => (Next::Unknown(Unknown::Macsec), 0),
        _ => (Next::NotTcp, 0),
    })
}

/// A PPP protocol field (one byte when compressed), after the HDLC address and control
/// bytes if present.
fn ppp(b: Bytes) -> Result<(Next, usize), DecodeError> {
    let mut at = 0;
    if b.u8(0) == Some(0xff) && b.u8(1) == Some(0x03) {
        at = 2;
    }
    let p0 = b.u8(at).ok_or(DecodeError::Short("PPP"))?;
    let (proto, len) = if p0 & 1 == 1 {
        (p0 as u16, 1)
    } else {
        (b.u16(at).ok_or(DecodeError::Short("PPP"))?, 2)
    };
    let next = match proto {
        0x0021 => Next::Ipv4,
        0x0057 => Next::Ipv6,
        0x0281 | 0x0283 => Next::Mpls,
        0x002d | 0x002f => Next::Unknown(Unknown::PppVjCompressed),
        _ => Next::NotTcp,
    };
    Ok((next, at + len))
}

/// A GRE header (RFC 2784, 2890; PPTP's version 1) and what it carries, ERSPAN included.
fn gre(b: Bytes, t: &mut Tunnel) -> Result<(Next, usize), DecodeError> {
    let short = DecodeError::Short("GRE");
    let flags = b.u16(0).ok_or(short)?;
    let proto = b.u16(2).ok_or(short)?;
    let (csum, routing, has_key, has_seq) = (
        flags & 0x8000 != 0,
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    match (flags & 7) as u8 {
        0 => {}
        1 if proto == 0x880b && has_key => {
            // Enhanced GRE: the key field is the payload length and the call id; an
            // acknowledgment number may follow the sequence number.
            let mut len = 8 + 4 * has_seq as usize + 4 * (flags & 0x0080 != 0) as usize;
            let payload = b.u16(4).ok_or(short)?;
            let call = b.u16(6).ok_or(short)? as u32;
            if b.len() < len {
                return Err(short);
            }
            let next = if payload == 0 {
                len = b.len();
                Next::NotTcp
            } else {
                Next::Ppp
            };
            return Ok((t.enter(Encap::Pptp, Some(call), next), len));
        }
        v => return Ok((Next::Unknown(Unknown::GreVersion(v)), 0)),
    }
    if routing {
        return Ok((Next::Unknown(Unknown::GreRouting), 0));
    }
    let mut len = 4 + 4 * csum as usize;
    let key = if has_key {
        let k = b.u32(len).ok_or(short)?;
        len += 4;
        Some(k)
    } else {
        None
    };
    if has_seq {
        len += 4;
    }
    if b.len() < len {
        return Err(short);
    }
    let e = Bytes(b.from(len));
    Ok(match proto {
        ETH_IPV4 => (t.enter(Encap::Gre, key, Next::Ipv4), len),
        ETH_IPV6 => (t.enter(Encap::Gre, key, Next::Ipv6), len),
        ETH_MPLS | ETH_MPLS_MC => (t.enter(Encap::Gre, key, Next::Mpls), len),
        ETH_TEB => (t.enter(Encap::GreTap, key, Next::Ethernet), len),
        // Type I has no sequence number and no header of its own.
        ETH_ERSPAN if !has_seq => (t.enter(Encap::Erspan1, None, Next::Ethernet), len),
        ETH_ERSPAN => {
            // Version 1 (type II): version, VLAN, CoS, encapsulation, truncated,
            // 10-bit session id, then reserved and index: 8 bytes.
            let h = e.u32(0).ok_or(DecodeError::Short("ERSPAN"))?;
            if e.len() < 8 {
                return Err(DecodeError::Short("ERSPAN"));
            }
            let version = (h >> 28) as u8;
            if version != 1 {
                return Ok((Next::Unknown(Unknown::ErspanVersion(version)), len));
            }
            let session = h & 0x3ff;
            (
                t.enter(Encap::Erspan2, Some(session), Next::Ethernet),
                len + 8,
            )
        }
        ETH_ERSPAN3 => {
            // Version 2 (type III): as type II's first word, a timestamp, SGT, then
            // P, frame type (0 = Ethernet), hardware id, direction, granularity and O
            // (an 8-byte platform sub-header follows): 12 bytes.
            let h = e.u32(0).ok_or(DecodeError::Short("ERSPAN"))?;
            let w = e.u16(10).ok_or(DecodeError::Short("ERSPAN"))?;
            let version = (h >> 28) as u8;
            if version != 2 {
                return Ok((Next::Unknown(Unknown::ErspanVersion(version)), len));
            }
            let ft = ((w >> 10) & 0x1f) as u8;
            if ft != 0 {
                return Ok((Next::Unknown(Unknown::ErspanFrameType(ft)), len));
            }
            let hdr = 12 + 8 * (w & 1) as usize;
            if e.len() < hdr {
                return Err(DecodeError::Short("ERSPAN"));
            }
            (
                t.enter(Encap::Erspan3, Some(h & 0x3ff), Next::Ethernet),
                len + hdr,
            )
        }
        // ARP and RARP over GRE: understood, and no TCP.
        0x0806 | 0x8035 => (t.enter(Encap::Gre, key, Next::NotTcp), len),
        p => (Next::Unknown(Unknown::GreProtocol(p)), len),
    })
}

/// Whether an Ethernet header with a plausible ethertype starts `b` (the pseudowire
/// guess after an MPLS stack).
fn looks_like_ethernet(b: Bytes) -> bool {
    matches!(
        b.u16(12),
        Some(
            ETH_IPV4
                | ETH_IPV6
                | 0x0806
                | 0x8100
                | 0x88a8
                | 0x9100
                | ETH_MPLS
                | ETH_MPLS_MC
                | 0x8863
                | ETH_PPPOE_SESSION
                | ETH_PBB
                | ETH_VNTAG
                | ETH_ETAG
        )
    )
}

/// An MPLS label stack (each label a layer) and its payload, guessed by the first
/// nibble: 4 IPv4, 6 IPv6, 0 a pseudowire control word before Ethernet; otherwise an
/// Ethernet pseudowire without control word if it looks like one.
fn mpls(b: Bytes, t: &mut Tunnel) -> Result<(Next, usize), DecodeError> {
    let mut at = 0;
    loop {
        let w = b.u32(at).ok_or(DecodeError::Short("MPLS"))?;
        at += 4;
        if let Next::Unknown(u) = t.enter(Encap::Mpls, Some(w >> 12), Next::NotTcp) {
            return Ok((Next::Unknown(u), at));
        }
        if w & 0x100 != 0 {
            break;
        }
    }
    let p = Bytes(b.from(at));
    let first = p.u8(0).ok_or(DecodeError::Short("MPLS payload"))?;
    Ok(match first >> 4 {
        4 if first & 0x0f >= 5 => (Next::Ipv4, at),
        6 => (Next::Ipv6, at),
        0 if looks_like_ethernet(Bytes(p.from(4))) => {
            (t.enter(Encap::Pw, None, Next::Ethernet), at + 4)
        }
        _ if looks_like_ethernet(p) => (t.enter(Encap::Pw, None, Next::Ethernet), at),
        _ => (Next::Unknown(Unknown::MplsPayload(first)), at),
    })
}

/// A UDP datagram that is a tunnel by its port and header: the next header and where it
/// starts in the payload. `None` leaves it a plain datagram.
fn udp_tunnel(
    u: &UdpDatagram,
    p: Bytes,
    t: &mut Tunnel,
) -> Result<Option<(Next, usize)>, DecodeError> {
    Ok(match u.dport {
        UDP_VXLAN | UDP_VXLAN_LINUX => {
            // Flags (I set), 3 reserved, 24-bit VNI, 1 reserved. On Linux's old port
            // everything reserved must be zero too.
            let Some(h) = p.array::<8>(0) else {
                return Ok(None);
            };
            let strict = u.dport == UDP_VXLAN_LINUX;
            if h[0] & 0x08 == 0 || (strict && (h[0] != 0x08 || h[1..4] != [0; 3] || h[7] != 0)) {
                return Ok(None);
            }
            let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
            Some((t.enter(Encap::Vxlan, Some(vni), Next::Ethernet), 8))
        }
        UDP_VXLAN_GPE => {
            let Some(h) = p.array::<8>(0) else {
                return Ok(None);
            };
            if h[0] & 0x30 != 0 {
                return Ok(None); // version 0 only
            }
            let vni = (h[0] & 0x08 != 0).then(|| u32::from_be_bytes([0, h[4], h[5], h[6]]));
            let next = if h[0] & 0x04 == 0 {
                Next::Ethernet
            } else {
                match h[3] {
                    1 => Next::Ipv4,
                    2 => Next::Ipv6,
                    3 => Next::Ethernet,
                    5 => Next::Mpls,
                    n => Next::Unknown(Unknown::GpeProtocol(n)),
                }
            };
            Some((t.enter(Encap::VxlanGpe, vni, next), 8))
        }
        UDP_GENEVE => {
            // Version 0, option length (4-byte words), flags, protocol, VNI, options.
            let Some(h) = p.array::<8>(0) else {
                return Ok(None);
            };
            if h[0] >> 6 != 0 {
                return Ok(None);
            }
            let len = 8 + 4 * (h[0] & 0x3f) as usize;
            if p.len() < len {
                return Err(DecodeError::Short("Geneve"));
            }
            let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
            let next = match u16::from_be_bytes([h[2], h[3]]) {
                ETH_TEB => Next::Ethernet,
                ETH_IPV4 => Next::Ipv4,
                ETH_IPV6 => Next::Ipv6,
                ETH_MPLS => Next::Mpls,
                p => Next::Unknown(Unknown::GeneveProtocol(p)),
            };
            Some((t.enter(Encap::Geneve, Some(vni), next), len))
        }
        _ if u.dport == UDP_GTPU || u.sport == UDP_GTPU => gtpu(p, t)?,
        _ => None,
    })
}

/// GTP-U version 1: flags, message type (255 is a G-PDU: user data), length, TEID; with
/// any of E, S, PN, 4 more bytes and maybe extension headers (length in 4-byte words,
/// next type in each one's last byte). Other messages (echo, error indication, end
/// marker) carry no TCP.
fn gtpu(p: Bytes, t: &mut Tunnel) -> Result<Option<(Next, usize)>, DecodeError> {
    let Some(h) = p.array::<8>(0) else {
        return Ok(None);
    };
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 {
        return Ok(None);
    }
    let teid = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let mut len = 8;
    if h[0] & 0x07 != 0 {
        let short = DecodeError::Short("GTP-U");
        let mut ext = p.u8(11).ok_or(short)?;
        len = 12;
        let mut n = 0;
        while h[0] & 0x04 != 0 && ext != 0 {
            n += 1;
            if n > MAX_DEPTH {
                return Err(DecodeError::Malformed("GTP-U extension headers"));
            }
            let words = p.u8(len).ok_or(short)? as usize;
            if words == 0 {
                return Err(DecodeError::Malformed("GTP-U extension header length"));
            }
            len += 4 * words;
            ext = p.u8(len - 1).ok_or(short)?;
        }
    }
    let next = if h[1] == 255 {
        Next::IpGuess
    } else {
        Next::NotTcp
    };
    Ok(Some((t.enter(Encap::GtpU, Some(teid), next), len)))
}
