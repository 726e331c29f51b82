//! Link-layer headers: find where the IP packet starts and which IP version it is.

use super::{Bytes, DecodeError};

/// A capture's link type (the pcap LINKTYPE_ number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The name tcpdump and libpcap use for this link type.
    pub fn name(self) -> String {
        match self.0 {
            0 => "NULL".into(),
            1 => "EN10MB".into(),
            12 | 14 | 101 => "RAW".into(),
            108 => "LOOP".into(),
            113 => "LINUX_SLL".into(),
            228 => "IPV4".into(),
            229 => "IPV6".into(),
            276 => "LINUX_SLL2".into(),
            n => format!("LINKTYPE_{n}"),
        }
    }

    /// Whether [`super::decode`] understands this link type.
    pub fn is_supported(self) -> bool {
        matches!(self.0, 0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NetProto {
    Ipv4,
    Ipv6,
    Other,
}

pub(crate) struct NetStart {
    pub proto: NetProto,
    pub offset: usize,
    pub vlan: u32,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;

#[inline(always)]
fn by_ethertype(ethertype: u16, offset: usize, vlan: u32) -> NetStart {
    let proto = match ethertype {
        ETH_IPV4 => NetProto::Ipv4,
        ETH_IPV6 => NetProto::Ipv6,
        _ => NetProto::Other,
    };
    NetStart {
        proto,
        offset,
        vlan,
    }
}

/// IP version from the first nibble, for link types that carry bare IP.
fn by_version(b: Bytes, offset: usize) -> Result<NetStart, DecodeError> {
    let v = b.u8(offset).ok_or(DecodeError::Short("IP"))? >> 4;
    let proto = match v {
        4 => NetProto::Ipv4,
        6 => NetProto::Ipv6,
        _ => return Err(DecodeError::Malformed("IP version")),
    };
    Ok(NetStart {
        proto,
        offset,
        vlan: 0,
    })
}

/// BSD address-family values that mean IPv6 (Linux 10, NetBSD/OpenBSD 24,
/// FreeBSD 28, Darwin 30).
fn af_is_ipv6(af: u32) -> bool {
    matches!(af, 10 | 24 | 28 | 30)
}

#[inline(always)]
pub(crate) fn strip(link: LinkType, data: &[u8]) -> Result<NetStart, DecodeError> {
    let b = Bytes(data);
    match link.0 {
        1 => {
            let mut ethertype = b.u16(12).ok_or(DecodeError::Short("Ethernet"))?;
            let mut offset = 14;
            let mut vlan = 0u32;
            // Up to two tags (QinQ); a third is unusual enough to treat as not-IP.
            for _ in 0..2 {
                if !matches!(ethertype, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
                    break;
                }
                let tci = b.u16(offset).ok_or(DecodeError::Short("802.1Q"))?;
                vlan = (vlan << 12) | (tci & 0x0fff) as u32;
                ethertype = b.u16(offset + 2).ok_or(DecodeError::Short("802.1Q"))?;
                offset += 4;
            }
            Ok(by_ethertype(ethertype, offset, vlan))
        }
        113 => {
            let proto = b.u16(14).ok_or(DecodeError::Short("Linux cooked"))?;
            Ok(by_ethertype(proto, 16, 0))
        }
        276 => {
            let proto = b.u16(0).ok_or(DecodeError::Short("Linux cooked v2"))?;
            if b.len() < 20 {
                return Err(DecodeError::Short("Linux cooked v2"));
            }
            Ok(by_ethertype(proto, 20, 0))
        }
        12 | 14 | 101 | 228 | 229 => by_version(b, 0),
        0 => {
            let raw = b.array::<4>(0).ok_or(DecodeError::Short("loopback"))?;
            // DLT_NULL stores the family in the capturing host's byte order.
            let le = u32::from_le_bytes(raw);
            let af = if le <= 0xffff {
                le
            } else {
                u32::from_be_bytes(raw)
            };
            family(af)
        }
        108 => {
            let raw = b.array::<4>(0).ok_or(DecodeError::Short("loopback"))?;
            family(u32::from_be_bytes(raw))
        }
        other => Err(DecodeError::UnknownLinkType(other)),
    }
}

fn family(af: u32) -> Result<NetStart, DecodeError> {
    let proto = if af == 2 {
        NetProto::Ipv4
    } else if af_is_ipv6(af) {
        NetProto::Ipv6
    } else {
        NetProto::Other
    };
    Ok(NetStart {
        proto,
        offset: 4,
        vlan: 0,
    })
}
