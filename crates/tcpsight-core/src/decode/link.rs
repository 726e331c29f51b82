//! Link-layer headers: where the network layer starts, and what it is.
//!
//! Every link type tcpsight reads is here: Ethernet (with 802.1Q/QinQ tags and 802.3
//! LLC/SNAP), Linux cooked v1 and v2, bare IP, BSD loopback, PPP (bare, in HDLC-like
//! framing, over Ethernet), Cisco HDLC, Frame Relay, 802.11 data frames (bare, under a
//! radiotap or a PPI header), NFLOG and Juniper's Ethernet. What follows the link header
//! (IP, MPLS, PPPoE...) is walked in `tunnel.rs`.

use super::tunnel::{Next, Unknown};
use super::{Bytes, DecodeError};

/// A capture's link type (the pcap LINKTYPE_ number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const PPP: LinkType = LinkType(9);
    pub const PPP_HDLC: LinkType = LinkType(50);
    pub const PPP_ETHER: LinkType = LinkType(51);
    pub const RAW: LinkType = LinkType(101);
    pub const C_HDLC: LinkType = LinkType(104);
    pub const IEEE802_11: LinkType = LinkType(105);
    pub const FRELAY: LinkType = LinkType(107);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IEEE802_11_RADIOTAP: LinkType = LinkType(127);
    pub const JUNIPER_ETHER: LinkType = LinkType(178);
    pub const PPI: LinkType = LinkType(192);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const NFLOG: LinkType = LinkType(239);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The name tcpdump and libpcap use for this link type (`tcpdump -L`, `pcap_datalink_val_to_name`),
    /// for every registered number; unregistered ones are named by number.
    pub fn name(self) -> String {
        match link_name(self.0) {
            Some(n) => n.to_string(),
            None => format!("link type {}", self.0),
        }
    }

    /// The name and the number, for messages: `IEEE802_11_RADIO (127)`.
    pub fn label(self) -> String {
        match link_name(self.0) {
            Some(n) => format!("{n} ({})", self.0),
            None => self.name(),
        }
    }

    /// Every link type [`super::decode`] understands.
    pub const SUPPORTED: [LinkType; 20] = [
        LinkType(1),
        LinkType(113),
        LinkType(276),
        LinkType(101),
        LinkType(12),
        LinkType(14),
        LinkType(228),
        LinkType(229),
        LinkType(0),
        LinkType(108),
        LinkType(9),
        LinkType(50),
        LinkType(51),
        LinkType(104),
        LinkType(107),
        LinkType(105),
        LinkType(127),
        LinkType(192),
        LinkType(239),
        LinkType(178),
    ];

    /// Whether [`super::decode`] understands this link type.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// The names of the supported link types, for messages (RAW once).
    pub fn supported_names() -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for l in Self::SUPPORTED {
            let n = l.name();
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }
}

/// libpcap's names (its `DLT_` names where it has one, the `LINKTYPE_` name otherwise).
fn link_name(n: u32) -> Option<&'static str> {
    Some(match n {
        0 => "NULL",
        1 => "EN10MB",
        2 => "EN3MB",
        3 => "AX25",
        4 => "PRONET",
        5 => "CHAOS",
        6 => "IEEE802",
        7 => "ARCNET",
        8 => "SLIP",
        9 => "PPP",
        10 => "FDDI",
        12 | 14 | 101 => "RAW",
        32 => "REDBACK_SMARTEDGE",
        50 => "PPP_SERIAL",
        51 => "PPP_ETHER",
        99 => "SYMANTEC_FIREWALL",
        100 => "ATM_RFC1483",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        106 => "ATM_CLIP",
        107 => "FRELAY",
        108 => "LOOP",
        109 => "ENC",
        112 => "NETBSD_HDLC",
        113 => "LINUX_SLL",
        114 => "LTALK",
        115 => "ECONET",
        116 => "IPFILTER",
        117 => "PFLOG",
        118 => "CISCO_IOS",
        119 => "PRISM_HEADER",
        120 => "AIRONET_HEADER",
        122 => "IP_OVER_FC",
        123 => "SUNATM",
        124 => "RIO",
        125 => "PCI_EXP",
        126 => "AURORA",
        127 => "IEEE802_11_RADIO",
        128 => "TZSP",
        129 => "ARCNET_LINUX",
        130 => "JUNIPER_MLPPP",
        131 => "JUNIPER_MLFR",
        132 => "JUNIPER_ES",
        133 => "JUNIPER_GGSN",
        134 => "JUNIPER_MFR",
        135 => "JUNIPER_ATM2",
        136 => "JUNIPER_SERVICES",
        137 => "JUNIPER_ATM1",
        138 => "APPLE_IP_OVER_IEEE1394",
        139 => "MTP2_WITH_PHDR",
        140 => "MTP2",
        141 => "MTP3",
        142 => "SCCP",
        143 => "DOCSIS",
        144 => "LINUX_IRDA",
        145 => "IBM_SP",
        146 => "IBM_SN",
        147 => "USER0",
        148 => "USER1",
        149 => "USER2",
        150 => "USER3",
        151 => "USER4",
        152 => "USER5",
        153 => "USER6",
        154 => "USER7",
        155 => "USER8",
        156 => "USER9",
        157 => "USER10",
        158 => "USER11",
        159 => "USER12",
        160 => "USER13",
        161 => "USER14",
        162 => "USER15",
        163 => "IEEE802_11_RADIO_AVS",
        164 => "JUNIPER_MONITOR",
        165 => "BACNET_MS_TP",
        166 => "PPP_PPPD",
        167 => "JUNIPER_PPPOE",
        168 => "JUNIPER_PPPOE_ATM",
        169 => "GPRS_LLC",
        170 => "GPF_T",
        171 => "GPF_F",
        172 => "GCOM_T1E1",
        173 => "GCOM_SERIAL",
        174 => "JUNIPER_PIC_PEER",
        175 => "ERF_ETH",
        176 => "ERF_POS",
        177 => "LINUX_LAPD",
        178 => "JUNIPER_ETHER",
        179 => "JUNIPER_PPP",
        180 => "JUNIPER_FRELAY",
        181 => "JUNIPER_CHDLC",
        182 => "MFR",
        183 => "JUNIPER_VP",
        184 => "A429",
        185 => "A653_ICM",
        186 => "USB_FREEBSD",
        187 => "BLUETOOTH_HCI_H4",
        188 => "IEEE802_16_MAC_CPS",
        189 => "USB_LINUX",
        190 => "CAN20B",
        191 => "IEEE802_15_4_LINUX",
        192 => "PPI",
        193 => "IEEE802_16_MAC_CPS_RADIO",
        194 => "JUNIPER_ISM",
        195 => "IEEE802_15_4_WITHFCS",
        196 => "SITA",
        197 => "ERF",
        198 => "RAIF1",
        199 => "IPMB_KONTRON",
        200 => "JUNIPER_ST",
        201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
        202 => "AX25_KISS",
        203 => "LAPD",
        204 => "PPP_WITH_DIR",
        205 => "C_HDLC_WITH_DIR",
        206 => "FRELAY_WITH_DIR",
        207 => "LAPB_WITH_DIR",
        209 => "IPMB_LINUX",
        210 => "FLEXRAY",
        211 => "MOST",
        212 => "LIN",
        213 => "X2E_SERIAL",
        214 => "X2E_XORAYA",
        215 => "IEEE802_15_4_NONASK_PHY",
        216 => "LINUX_EVDEV",
        217 => "GSMTAP_UM",
        218 => "GSMTAP_ABIS",
        219 => "MPLS",
        220 => "USB_LINUX_MMAPPED",
        221 => "DECT",
        222 => "AOS",
        223 => "WIHART",
        224 => "FC_2",
        225 => "FC_2_WITH_FRAME_DELIMS",
        226 => "IPNET",
        227 => "CAN_SOCKETCAN",
        228 => "IPV4",
        229 => "IPV6",
        230 => "IEEE802_15_4_NOFCS",
        231 => "DBUS",
        232 => "JUNIPER_VS",
        233 => "JUNIPER_SRX_E2E",
        234 => "JUNIPER_FIBRECHANNEL",
        235 => "DVB_CI",
        236 => "MUX27010",
        237 => "STANAG_5066_D_PDU",
        238 => "JUNIPER_ATM_CEMIC",
        239 => "NFLOG",
        240 => "NETANALYZER",
        241 => "NETANALYZER_TRANSPARENT",
        242 => "IPOIB",
        243 => "MPEG_2_TS",
        244 => "NG40",
        245 => "NFC_LLCP",
        246 => "PFSYNC",
        247 => "INFINIBAND",
        248 => "SCTP",
        249 => "USBPCAP",
        250 => "RTAC_SERIAL",
        251 => "BLUETOOTH_LE_LL",
        252 => "WIRESHARK_UPPER_PDU",
        253 => "NETLINK",
        254 => "BLUETOOTH_LINUX_MONITOR",
        255 => "BLUETOOTH_BREDR_BB",
        256 => "BLUETOOTH_LE_LL_WITH_PHDR",
        257 => "PROFIBUS_DL",
        258 => "PKTAP",
        259 => "EPON",
        260 => "IPMI_HPM_2",
        261 => "ZWAVE_R1_R2",
        262 => "ZWAVE_R3",
        263 => "WATTSTOPPER_DLM",
        264 => "ISO_14443",
        265 => "RDS",
        266 => "USB_DARWIN",
        267 => "OPENFLOW",
        268 => "SDLC",
        269 => "TI_LLN_SNIFFER",
        270 => "LORATAP",
        271 => "VSOCK",
        272 => "NORDIC_BLE",
        273 => "DOCSIS31_XRA31",
        274 => "ETHERNET_MPACKET",
        275 => "DISPLAYPORT_AUX",
        276 => "LINUX_SLL2",
        277 => "SERCOS_MONITOR",
        278 => "OPENVIZSLA",
        279 => "EBHSCR",
        280 => "VPP_DISPATCH",
        281 => "DSA_TAG_BRCM",
        282 => "DSA_TAG_BRCM_PREPEND",
        283 => "IEEE802_15_4_TAP",
        284 => "DSA_TAG_DSA",
        285 => "DSA_TAG_EDSA",
        286 => "ELEE",
        287 => "Z_WAVE_SERIAL",
        288 => "USB_2_0",
        289 => "ATSC_ALP",
        290 => "ETW",
        291 => "NETANALYZER_NG",
        292 => "ZBOSS_NCP",
        293 => "USB_2_0_LOW_SPEED",
        294 => "USB_2_0_FULL_SPEED",
        295 => "USB_2_0_HIGH_SPEED",
        296 => "AUERSWALD_LOG",
        297 => "ZWAVE_TAP",
        298 => "SILABS_DEBUG_CHANNEL",
        299 => "FIRA_UCI",
        _ => return None,
    })
}

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;

/// An Ethernet header at the start of `b`: (ethertype, header length, VLAN id).
#[inline(always)]
pub(crate) fn ethernet(b: Bytes) -> Result<(u16, usize, u32), DecodeError> {
    tagged(b, 12, "Ethernet")
}

/// The ethertype at `at` and what follows it: up to two 802.1Q/802.1ad tags (QinQ; a
/// third is unusual enough to leave as not IP), and 802.3 frames' LLC/SNAP header.
/// Returns (ethertype, offset after the headers, VLAN id: outer << 12 | inner).
#[inline(always)]
pub(crate) fn tagged(
    b: Bytes,
    at: usize,
    what: &'static str,
) -> Result<(u16, usize, u32), DecodeError> {
    let mut ethertype = b.u16(at).ok_or(DecodeError::Short(what))?;
    let mut offset = at + 2;
    let mut vlan = 0u32;
    for _ in 0..2 {
        if !matches!(ethertype, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
            break;
        }
        let tci = b.u16(offset).ok_or(DecodeError::Short("802.1Q"))?;
        vlan = (vlan << 12) | (tci & 0x0fff) as u32;
        ethertype = b.u16(offset + 2).ok_or(DecodeError::Short("802.1Q"))?;
        offset += 4;
    }
    if ethertype <= 1500
        && let Some(et) = snap(b, offset)
    {
        return Ok((et, offset + 8, vlan));
    }
    Ok((ethertype, offset, vlan))
}

/// An LLC/SNAP header (AA AA 03, OUI 00-00-00 or 00-00-F8) at `at`: its ethertype.
fn snap(b: Bytes, at: usize) -> Option<u16> {
    let h = b.array::<6>(at)?;
    (h[..3] == [0xaa, 0xaa, 0x03] && h[3..5] == [0, 0] && (h[5] == 0 || h[5] == 0xf8))
        .then(|| b.u16(at + 6))
        .flatten()
}

/// IP version from the first nibble, for link types that carry bare IP.
pub(crate) fn by_version(b: Bytes) -> Result<Next, DecodeError> {
    match b.u8(0).ok_or(DecodeError::Short("IP"))? >> 4 {
        4 => Ok(Next::Ipv4),
        6 => Ok(Next::Ipv6),
        _ => Err(DecodeError::Malformed("IP version")),
    }
}

/// BSD address-family values that mean IPv6 (Linux 10, NetBSD/OpenBSD 24,
/// FreeBSD 28, Darwin 30).
fn af_is_ipv6(af: u32) -> bool {
    matches!(af, 10 | 24 | 28 | 30)
}

fn family(af: u32) -> Next {
    if af == 2 {
        Next::Ipv4
    } else if af_is_ipv6(af) {
        Next::Ipv6
    } else {
        Next::NotTcp
    }
}

/// The first header after the link layer, and where it starts. `nested` is set for the
/// link type a PPI header names (a PPI header inside another is refused).
pub(crate) fn start(
    link: LinkType,
    data: &[u8],
    nested: bool,
) -> Result<(Next, usize), DecodeError> {
    let b = Bytes(data);
    Ok(match link.0 {
        1 => (Next::Ethernet, 0),
        113 => {
            let proto = b.u16(14).ok_or(DecodeError::Short("Linux cooked"))?;
            (Next::EtherType(proto), 16)
        }
        276 => {
            let proto = b.u16(0).ok_or(DecodeError::Short("Linux cooked v2"))?;
            if b.len() < 20 {
                return Err(DecodeError::Short("Linux cooked v2"));
            }
            (Next::EtherType(proto), 20)
        }
        12 | 14 | 101 | 228 | 229 => (by_version(b)?, 0),
        0 => {
            let raw = b.array::<4>(0).ok_or(DecodeError::Short("loopback"))?;
            // DLT_NULL stores the family in the capturing host's byte order.
            let le = u32::from_le_bytes(raw);
            let af = if le <= 0xffff {
                le
            } else {
                u32::from_be_bytes(raw)
            };
            (family(af), 4)
        }
        108 => {
            let raw = b.array::<4>(0).ok_or(DecodeError::Short("loopback"))?;
            (family(u32::from_be_bytes(raw)), 4)
        }
        // PPP: the protocol field, maybe after the HDLC address and control bytes.
        9 => (Next::Ppp, 0),
        // PPP in HDLC-like framing (RFC 1662), or Cisco HDLC on the same link type.
        50 => match b.u8(0).ok_or(DecodeError::Short("PPP"))? {
            0x0f | 0x8f => chdlc(b)?,
            _ => (Next::Ppp, 0),
        },
        51 => (Next::EtherType(0x8864), 0),
        104 => chdlc(b)?,
        107 => frame_relay(b)?,
        105 => (Next::Wifi, 0),
        127 => {
            // Radiotap: version 0, pad, little-endian length of the whole header.
            if b.u8(0).ok_or(DecodeError::Short("radiotap"))? != 0 {
                return Err(DecodeError::Malformed("radiotap version"));
            }
            let len = le16(b, 2).ok_or(DecodeError::Short("radiotap"))? as usize;
            if len < 8 {
                return Err(DecodeError::Malformed("radiotap length"));
            }
            (Next::Wifi, len)
        }
        192 => {
            // PPI: version 0, flags, little-endian header length and the link type after it.
            if nested {
                return Err(DecodeError::Malformed("PPI inside PPI"));
            }
            if b.u8(0).ok_or(DecodeError::Short("PPI"))? != 0 {
                return Err(DecodeError::Malformed("PPI version"));
            }
            let len = le16(b, 2).ok_or(DecodeError::Short("PPI"))? as usize;
            let dlt = b
                .array::<4>(4)
                .map(u32::from_le_bytes)
                .ok_or(DecodeError::Short("PPI"))?;
            if len < 8 {
                return Err(DecodeError::Malformed("PPI length"));
            }
            let inner = LinkType(dlt);
            if !inner.is_supported() || dlt == 192 {
                return Ok((Next::Unknown(Unknown::PpiLinkType(dlt)), len));
            }
            let (next, off) = start(inner, b.from(len), true)?;
            (next, len + off)
        }
        239 => nflog(b)?,
        178 => juniper_ether(b)?,
        other => return Err(DecodeError::UnknownLinkType(other)),
    })
}

#[inline]
fn le16(b: Bytes, at: usize) -> Option<u16> {
    b.array::<2>(at).map(u16::from_le_bytes)
}

/// Cisco HDLC: address (0x0f unicast, 0x8f broadcast), control, then an ethertype.
fn chdlc(b: Bytes) -> Result<(Next, usize), DecodeError> {
    let proto = b.u16(2).ok_or(DecodeError::Short("Cisco HDLC"))?;
    Ok((Next::EtherType(proto), 4))
}

/// Frame Relay: a Q.922 address (2 to 4 bytes, the last with its EA bit set), then
/// either RFC 2427 encapsulation (control 0x03, an optional pad, the NLPID: IPv4, IPv6,
/// or SNAP) or Cisco's (an ethertype).
fn frame_relay(b: Bytes) -> Result<(Next, usize), DecodeError> {
    let short = DecodeError::Short("Frame Relay");
    let mut off = 0;
    loop {
        let a = b.u8(off).ok_or(short)?;
        off += 1;
        if a & 1 == 1 {
            break;
        }
        if off == 4 {
            return Err(DecodeError::Malformed("Frame Relay address"));
        }
    }
    if off < 2 {
        return Err(DecodeError::Malformed("Frame Relay address"));
    }
    if b.u8(off).ok_or(short)? != 0x03 {
        return Ok((Next::EtherType(b.u16(off).ok_or(short)?), off + 2));
    }
    off += 1;
    if b.u8(off) == Some(0) {
        off += 1;
    }
    Ok(match b.u8(off).ok_or(short)? {
        0xcc => (Next::Ipv4, off + 1),
        0x8e => (Next::Ipv6, off + 1),
        0x80 => {
            let oui = b.array::<3>(off + 1).ok_or(short)?;
            let pid = b.u16(off + 4).ok_or(short)?;
            if oui == [0, 0, 0] {
                (Next::EtherType(pid), off + 6)
            } else {
                (Next::NotTcp, off)
            }
        }
        _ => (Next::NotTcp, off),
    })
}

/// NFLOG (what `tcpdump -i nflog` writes): family, version 0, resource id, then
/// type-length-value attributes in host (little-endian) order, each padded to 4 bytes;
/// attribute 9 holds the packet, bare IP.
fn nflog(b: Bytes) -> Result<(Next, usize), DecodeError> {
    let family = b.u8(0).ok_or(DecodeError::Short("NFLOG"))?;
    if b.u8(1).ok_or(DecodeError::Short("NFLOG"))? != 0 {
        return Err(DecodeError::Malformed("NFLOG version"));
    }
    let mut off = 4;
    while off + 4 <= b.len() {
        let len = le16(b, off).unwrap_or(0) as usize;
        let kind = le16(b, off + 2).unwrap_or(0);
        if len < 4 {
            return Err(DecodeError::Malformed("NFLOG attribute length"));
        }
        if kind == 9 {
            let next = match family {
                2 => Next::Ipv4,
                10 => Next::Ipv6,
                _ => by_version(Bytes(b.from(off + 4)))?,
            };
            return Ok((next, off + 4));
        }
        off += (len + 3) & !3;
    }
    Ok((Next::NotTcp, b.len()))
}

/// Juniper's Ethernet link type: "MGC", flags, optional extensions (big-endian total
/// length), then an Ethernet frame, or, when the flags say the L2 header was stripped,
/// four more bytes and bare IP.
fn juniper_ether(b: Bytes) -> Result<(Next, usize), DecodeError> {
    let h = b.array::<4>(0).ok_or(DecodeError::Short("Juniper"))?;
    if h[..3] != *b"MGC" {
        return Err(DecodeError::Malformed("Juniper magic"));
    }
    let flags = h[3];
    let mut off = 4;
    if flags & 0x80 != 0 {
        off += 2 + b.u16(4).ok_or(DecodeError::Short("Juniper"))? as usize;
    }
    if flags & 0x02 != 0 {
        off += 4;
        return Ok((by_version(Bytes(b.from(off)))?, off));
    }
    if off > b.len() {
        return Err(DecodeError::Short("Juniper"));
    }
    Ok((Next::Ethernet, off))
}

/// An 802.11 MAC header at the start of `b`: data frames only (management, control and
/// null-data frames carry no TCP), QoS and HT-control fields skipped, then LLC/SNAP.
/// Protected (encrypted) frames and A-MSDUs are counted as not understood.
pub(crate) fn wifi(b: Bytes) -> Result<(Next, usize), DecodeError> {
    let short = DecodeError::Short("802.11");
    let fc0 = b.u8(0).ok_or(short)?;
    let fc1 = b.u8(1).ok_or(short)?;
    if fc0 & 0x03 != 0 {
        return Err(DecodeError::Malformed("802.11 version"));
    }
    let (kind, subtype) = ((fc0 >> 2) & 3, fc0 >> 4);
    // Not data, or data without a body (null function, QoS null, CF-ACK/poll only).
    if kind != 2 || subtype & 0x4 != 0 {
        return Ok((Next::NotTcp, 0));
    }
    let mut len = 24;
    if fc1 & 0x03 == 0x03 {
        len += 6;
    }
    if subtype & 0x8 != 0 {
        let qc = b.u8(len).ok_or(short)?;
        len += 2;
        if qc & 0x80 != 0 {
            return Ok((Next::Unknown(Unknown::WifiAmsdu), 0));
        }
        if fc1 & 0x80 != 0 {
            len += 4;
        }
    }
    if fc1 & 0x40 != 0 {
        return Ok((Next::Unknown(Unknown::WifiProtected), 0));
    }
    match snap(b, len) {
        Some(et) => Ok((Next::EtherType(et), len + 8)),
        None if b.len() < len + 8 => Err(DecodeError::Short("802.11 LLC")),
        None => Ok((Next::NotTcp, len)),
    }
}
