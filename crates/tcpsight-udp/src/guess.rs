//! The application protocol of a UDP flow from a datagram's payload.
//!
//! Every rule checks the protocol's own header (a magic number, field ranges, lengths
//! that must agree with the datagram's), never the port alone. Where one wire format
//! serves several protocols (DNS's is also mDNS's, LLMNR's and NetBIOS name service's),
//! the well-known port names the variant. A datagram that passes no rule is
//! [`Proto::Unknown`]; bytes the capture cut (snaplen) count as absent, so a rule
//! that needs them does not match.

/// A protocol the guess can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Proto {
    Dns,
    Mdns,
    Llmnr,
    Nbns,
    Quic,
    Ntp,
    Dhcp,
    Dhcpv6,
    Stun,
    Ssdp,
    Sip,
    Syslog,
    Snmp,
    Rtcp,
    Tftp,
    Wireguard,
    BittorrentDht,
    #[default]
    Unknown,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Dns => "dns",
            Proto::Mdns => "mdns",
            Proto::Llmnr => "llmnr",
            Proto::Nbns => "nbns",
            Proto::Quic => "quic",
            Proto::Ntp => "ntp",
            Proto::Dhcp => "dhcp",
            Proto::Dhcpv6 => "dhcpv6",
            Proto::Stun => "stun",
            Proto::Ssdp => "ssdp",
            Proto::Sip => "sip",
            Proto::Syslog => "syslog",
            Proto::Snmp => "snmp",
            Proto::Rtcp => "rtcp",
            Proto::Tftp => "tftp",
            Proto::Wireguard => "wireguard",
            Proto::BittorrentDht => "bittorrent-dht",
            Proto::Unknown => "unknown",
        }
    }

    pub const ALL: [Proto; 18] = [
        Proto::Dns,
        Proto::Mdns,
        Proto::Llmnr,
        Proto::Nbns,
        Proto::Quic,
        Proto::Ntp,
        Proto::Dhcp,
        Proto::Dhcpv6,
        Proto::Stun,
        Proto::Ssdp,
        Proto::Sip,
        Proto::Syslog,
        Proto::Snmp,
        Proto::Rtcp,
        Proto::Tftp,
        Proto::Wireguard,
        Proto::BittorrentDht,
        Proto::Unknown,
    ];
}

/// What one datagram shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Guess {
    pub proto: Proto,
    /// A QUIC long header's version field (0: version negotiation).
    pub quic_version: Option<u32>,
}

impl Guess {
    fn of(proto: Proto) -> Guess {
        Guess {
            proto,
            quic_version: None,
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The protocol of a datagram from port `sport` to `dport` whose payload is `data`
/// (as captured) of `len` bytes (from the UDP header; `data` may be shorter).
pub fn guess(data: &[u8], len: u32, sport: u16, dport: u16) -> Guess {
    if data.is_empty() {
        return Guess::default();
    }
    if let Some(v) = quic_long_header(data) {
        return Guess {
            proto: Proto::Quic,
            quic_version: Some(v),
        };
    }
    let port = |p: u16| sport == p || dport == p;
    let len = len as usize;
    let proto = if dns(data, len) {
        if port(5353) {
            Proto::Mdns
        } else if port(5355) {
            Proto::Llmnr
        } else if port(137) {
            Proto::Nbns
        } else {
            Proto::Dns
        }
    } else if dhcp(data) {
        Proto::Dhcp
    } else if stun(data, len) {
        Proto::Stun
    } else if let Some(p) = text(data) {
        p
    } else if ntp(data, len) {
        Proto::Ntp
    } else if wireguard(data, len) {
        Proto::Wireguard
    } else if rtcp(data, len) {
        Proto::Rtcp
    } else if snmp(data) {
        Proto::Snmp
    } else if tftp(data) {
        Proto::Tftp
    } else if bittorrent_dht(data) {
        Proto::BittorrentDht
    } else if (1..=13).contains(&data[0]) && port(546) && port(547) {
        // DHCPv6's header is a message type and a transaction id: nothing to check
        // but the pair of ports it always uses.
        Proto::Dhcpv6
    } else {
        Proto::Unknown
    };
    Guess::of(proto)
}

/// The version of a QUIC long header (RFC 8999's invariants: the form bit, a version,
/// connection ids of at most 20 bytes), for the versions deployed: v1, v2, the IETF
/// drafts, Google's Q046 and later and Facebook's mvfst; 0 is version negotiation.
/// Google's older Q043 public header (a flags byte, an 8-byte connection id, then the
/// version) too. Short headers carry no version and cannot be told from noise.
fn quic_long_header(b: &[u8]) -> Option<u32> {
    let b0 = b[0];
    if b0 & 0x80 == 0 {
        // gQUIC's public header: version flag and 8-byte connection id set, "Q0dd".
        let v = u32_at(b, 9)?;
        let q = v.to_be_bytes();
        return (b0 & 0x09 == 0x09
            && b0 & 0x40 == 0
            && q[0] == b'Q'
            && q[1..].iter().all(u8::is_ascii_digit))
        .then_some(v);
    }
    let v = u32_at(b, 1)?;
    let known = v == 0 || quic_long_header_version(v);
    // The fixed bit is 1 in every version but negotiation's.
    if !known || (v != 0 && b0 & 0x40 == 0) {
        return None;
    }
    let dcid = *b.get(5)? as usize;
    let scid = *b.get(6 + dcid)? as usize;
    let rest = b.get(7 + dcid + scid..)?;
    if dcid > 20 || scid > 20 {
        return None;
    }
    if v == 0 {
        // Version negotiation: a list of 4-byte versions, one of them deployed (a
        // zero word after a set top bit is common in other protocols' headers: an
        // LLMNR query's id and flags).
        let listed = rest
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        return (!rest.is_empty()
            && rest.len() % 4 == 0
            && listed
                .into_iter()
                .any(|w| w != 0 && quic_long_header_version(w)))
        .then_some(0);
    }
    Some(v)
}

/// Whether `v` is a deployed QUIC version (not negotiation).
fn quic_long_header_version(v: u32) -> bool {
    match v {
        1 | 0x6b33_43cf => true,
        _ if v >> 8 == 0xff_0000 => true,
        _ if v >> 4 == 0x0fac_eb00 => true,
        _ => {
            let q = v.to_be_bytes();
            q[0] == b'Q' && q[1..].iter().all(u8::is_ascii_digit)
        }
    }
}

/// A QUIC version as people name it: "v1", "v2", "draft-29", "Q046", "mvfst-2",
/// "negotiation", else its hex.
pub fn quic_version_name(v: u32) -> String {
    let q = v.to_be_bytes();
    match v {
        0 => "negotiation".into(),
        1 => "v1".into(),
        0x6b33_43cf => "v2".into(),
        _ if v >> 8 == 0xff_0000 => format!("draft-{}", v & 0xff),
        _ if v >> 4 == 0x0fac_eb00 => format!("mvfst-{}", v & 0xf),
        _ if q[0] == b'Q' && q[1..].iter().all(u8::is_ascii_digit) => {
            String::from_utf8_lossy(&q).into_owned()
        }
        _ => format!("0x{v:08x}"),
    }
}

/// A DNS message header (RFC 1035) whose counts fit the datagram and whose first name
/// is made of valid labels.
fn dns(b: &[u8], len: usize) -> bool {
    let (Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) = (
        u16_at(b, 2),
        u16_at(b, 4),
        u16_at(b, 6),
        u16_at(b, 8),
        u16_at(b, 10),
    ) else {
        return false;
    };
    let opcode = (flags >> 11) & 0xf;
    let z = flags & 0x0040;
    if !matches!(opcode, 0 | 1 | 2 | 4 | 5) || z != 0 {
        return false;
    }
    let (qd, rrs) = (qd as usize, an as usize + ns as usize + ar as usize);
    // A question is at least 5 bytes (root name, type, class), a record 11.
    if qd + rrs == 0 || qd > 64 || rrs > 512 || 12 + qd * 5 + rrs * 11 > len {
        return false;
    }
    // The first name: labels of 1-63 bytes up to a root label or a pointer, within 255.
    let mut i = 12;
    let mut total = 0;
    loop {
        let Some(&l) = b.get(i) else {
            // Cut by the capture: what was there was fine.
            return i > 12 || b.len() < len;
        };
        match l {
            0 => return true,
            1..=63 => {
                total += l as usize + 1;
                i += l as usize + 1;
                if total > 255 {
                    return false;
                }
            }
            0xc0..=0xff => return i > 12 || qd == 0,
            _ => return false,
        }
    }
}

/// BOOTP/DHCP (RFC 2131): op 1 or 2, Ethernet addresses, the magic cookie.
fn dhcp(b: &[u8]) -> bool {
    b.len() >= 240
        && matches!(b[0], 1 | 2)
        && b[1] == 1
        && b[2] == 6
        && b[236..240] == [0x63, 0x82, 0x53, 0x63]
}

/// STUN (RFC 5389): two zero bits, the magic cookie, a length that is the rest.
fn stun(b: &[u8], len: usize) -> bool {
    match (u16_at(b, 2), u32_at(b, 4)) {
        (Some(l), Some(cookie)) => {
            b[0] & 0xc0 == 0 && cookie == 0x2112_a442 && l % 4 == 0 && l as usize + 20 == len
        }
        _ => false,
    }
}

/// Text protocols by their first words: SSDP (HTTP over UDP), SIP, syslog.
fn text(b: &[u8]) -> Option<Proto> {
    if b.starts_with(b"M-SEARCH * HTTP/1.")
        || b.starts_with(b"NOTIFY * HTTP/1.")
        || b.starts_with(b"HTTP/1.1 200 OK\r\n")
    {
        return Some(Proto::Ssdp);
    }
    if b.starts_with(b"SIP/2.0 ") {
        return Some(Proto::Sip);
    }
    const SIP: [&[u8]; 8] = [
        b"INVITE ",
        b"REGISTER ",
        b"OPTIONS ",
        b"ACK ",
        b"BYE ",
        b"CANCEL ",
        b"SUBSCRIBE ",
        b"NOTIFY ",
    ];
    for m in SIP {
        if let Some(rest) = b.strip_prefix(m)
            && (rest.starts_with(b"sip:") || rest.starts_with(b"sips:"))
        {
            return Some(Proto::Sip);
        }
    }
    // Syslog (RFC 3164/5424): "<PRI>" with PRI at most 191.
    if b[0] == b'<' {
        let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if (1..=3).contains(&digits) && b.get(1 + digits) == Some(&b'>') {
            let pri: u32 = std::str::from_utf8(&b[1..1 + digits]).ok()?.parse().ok()?;
            if pri <= 191 {
                return Some(Proto::Syslog);
            }
        }
    }
    None
}

/// NTP (RFC 5905): 48 bytes plus whole 4-byte words (extensions, MAC), version 1-4,
/// modes 1-5, stratum at most 16, a poll exponent and precision in range.
fn ntp(b: &[u8], len: usize) -> bool {
    if b.len() < 4 || len < 48 || !(len - 48).is_multiple_of(4) || len > 48 + 1024 {
        return false;
    }
    let vn = (b[0] >> 3) & 7;
    let mode = b[0] & 7;
    let precision = b[3] as i8;
    (1..=4).contains(&vn)
        && (1..=5).contains(&mode)
        && b[1] <= 16
        && b[2] <= 17
        && (-32..=0).contains(&precision)
}

/// WireGuard: a message type 1-4, three reserved zero bytes, each type's length.
fn wireguard(b: &[u8], len: usize) -> bool {
    if b.len() < 4 || b[1..4] != [0, 0, 0] {
        return false;
    }
    match b[0] {
        1 => len == 148,
        2 => len == 92,
        3 => len == 64,
        4 => len >= 32 && len.is_multiple_of(16),
        _ => false,
    }
}

/// RTCP (RFC 3550): version 2, packet types 200-207, a length within the datagram.
fn rtcp(b: &[u8], len: usize) -> bool {
    match u16_at(b, 2) {
        Some(words) => {
            b[0] >> 6 == 2 && (200..=207).contains(&b[1]) && (words as usize + 1) * 4 <= len
        }
        None => false,
    }
}

/// SNMP: a BER sequence whose first element is the version integer (0, 1 or 3).
fn snmp(b: &[u8]) -> bool {
    if b.first() != Some(&0x30) {
        return false;
    }
    let at = match b.get(1) {
        Some(l) if *l < 0x80 => 2,
        Some(0x81) => 3,
        Some(0x82) => 4,
        _ => return false,
    };
    b.get(at..at + 3)
        .is_some_and(|v| v[0] == 2 && v[1] == 1 && matches!(v[2], 0 | 1 | 3))
}

/// BitTorrent's DHT (BEP 5): a bencoded dictionary (KRPC) with its message type key
/// `y`.
fn bittorrent_dht(b: &[u8]) -> bool {
    b.starts_with(b"d1:") && b.ends_with(b"e") && b.windows(5).any(|w| w == b"1:y1:")
}

/// TFTP (RFC 1350) read or write request: opcode, file name, NUL, a mode, NUL.
fn tftp(b: &[u8]) -> bool {
    if !matches!(u16_at(b, 0), Some(1 | 2)) {
        return false;
    }
    let rest = &b[2..];
    let Some(end) = rest.iter().position(|&c| c == 0) else {
        return false;
    };
    if end == 0 || !rest[..end].iter().all(|c| c.is_ascii_graphic()) {
        return false;
    }
    let mode = &rest[end + 1..];
    let Some(mend) = mode.iter().position(|&c| c == 0) else {
        return false;
    };
    let m = &mode[..mend];
    [&b"octet"[..], b"netascii", b"mail"]
        .iter()
        .any(|w| m.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(b: &[u8], sport: u16, dport: u16) -> Guess {
        guess(b, b.len() as u32, sport, dport)
    }

    /// A DNS query for example.com, A, IN.
    const DNS_QUERY: &[u8] =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";

    #[test]
    fn dns_and_its_variants() {
        assert_eq!(g(DNS_QUERY, 40000, 53).proto, Proto::Dns);
        assert_eq!(g(DNS_QUERY, 5353, 5353).proto, Proto::Mdns);
        assert_eq!(g(DNS_QUERY, 50000, 5355).proto, Proto::Llmnr);
        assert_eq!(g(DNS_QUERY, 137, 137).proto, Proto::Nbns);
        // The port alone makes nothing DNS.
        assert_eq!(g(b"hello there, world", 40000, 53).proto, Proto::Unknown);
        // A bad label length.
        let mut bad = DNS_QUERY.to_vec();
        bad[12] = 64;
        assert_ne!(g(&bad, 40000, 53).proto, Proto::Dns);
    }

    #[test]
    fn quic_versions() {
        // A v1 Initial: long header, fixed bit, version 1, DCID 8, SCID 0.
        let mut p = vec![0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0];
        p.resize(1200, 0);
        let x = g(&p, 50000, 443);
        assert_eq!((x.proto, x.quic_version), (Proto::Quic, Some(1)));
        p[1..5].copy_from_slice(&0x6b33_43cfu32.to_be_bytes());
        assert_eq!(g(&p, 50000, 443).quic_version, Some(0x6b33_43cf));
        p[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
        assert_eq!(
            quic_version_name(g(&p, 1, 2).quic_version.unwrap()),
            "draft-29"
        );
        p[1..5].copy_from_slice(b"Q050");
        assert_eq!(quic_version_name(g(&p, 1, 2).quic_version.unwrap()), "Q050");
        // An unknown version is not QUIC (half of random bytes have the form bit).
        p[1..5].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert_ne!(g(&p, 1, 2).proto, Proto::Quic);
        // Connection id longer than 20.
        p[1..5].copy_from_slice(&1u32.to_be_bytes());
        p[5] = 21;
        assert_ne!(g(&p, 1, 2).proto, Proto::Quic);
        // Version negotiation lists versions; an LLMNR-like header with a zero word
        // after a set top bit and no list is not QUIC.
        let mut vn = vec![0x80, 0, 0, 0, 0, 0, 0];
        assert_ne!(g(&vn, 1, 2).proto, Proto::Quic);
        vn.extend_from_slice(&[0x1a, 0x2a, 0x3a, 0x4a, 0, 0, 0, 1]);
        assert_eq!(g(&vn, 1, 2).quic_version, Some(0));
        // Google's Q043 public header.
        let mut q = vec![0x0d, 1, 2, 3, 4, 5, 6, 7, 8];
        q.extend_from_slice(b"Q043");
        q.resize(1350, 0);
        assert_eq!(quic_version_name(g(&q, 1, 2).quic_version.unwrap()), "Q043");
    }

    #[test]
    fn ntp_dhcp_stun_text() {
        let mut ntp = vec![0u8; 48];
        ntp[0] = 0x23; // v4, client
        ntp[2] = 6;
        ntp[3] = 0xe9; // -23
        assert_eq!(g(&ntp, 123, 123).proto, Proto::Ntp);
        ntp.push(0);
        assert_ne!(g(&ntp, 123, 123).proto, Proto::Ntp);

        let mut dhcp = vec![0u8; 300];
        dhcp[..3].copy_from_slice(&[1, 1, 6]);
        dhcp[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
        assert_eq!(g(&dhcp, 68, 67).proto, Proto::Dhcp);

        let mut stun = vec![0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42];
        stun.resize(28, 0);
        assert_eq!(g(&stun, 1, 2).proto, Proto::Stun);

        assert_eq!(
            g(b"M-SEARCH * HTTP/1.1\r\nHOST: x\r\n\r\n", 1, 1900).proto,
            Proto::Ssdp
        );
        assert_eq!(
            g(b"INVITE sip:bob@example.com SIP/2.0\r\n", 1, 2).proto,
            Proto::Sip
        );
        assert_eq!(
            g(b"<34>Oct 11 22:14:15 host su: x", 1, 2).proto,
            Proto::Syslog
        );
        assert_eq!(g(b"<999>x", 1, 2).proto, Proto::Unknown);
        assert_eq!(
            g(b"\x00\x01file.txt\x00octet\x00", 1, 69).proto,
            Proto::Tftp
        );
        assert_eq!(
            g(
                b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
                1,
                2
            )
            .proto,
            Proto::BittorrentDht
        );
    }

    #[test]
    fn cut_payload_never_guesses_from_missing_bytes() {
        // A DHCP message cut at 100 bytes: no cookie to see.
        let mut dhcp = vec![0u8; 300];
        dhcp[..3].copy_from_slice(&[1, 1, 6]);
        dhcp[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
        assert_eq!(guess(&dhcp[..100], 300, 68, 67).proto, Proto::Unknown);
        assert_eq!(guess(&[], 300, 68, 67).proto, Proto::Unknown);
    }
}
