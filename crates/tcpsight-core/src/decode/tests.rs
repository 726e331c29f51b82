use std::net::IpAddr;

use super::*;
use crate::build::{Tcp, icmp_error_frame, ip_packet, tcp_frame};

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn syn() -> Tcp {
    let mut t = Tcp::new(v4("10.0.0.1"), 40000, v4("10.0.0.2"), 80);
    t.flags = TcpFlags::SYN;
    t.seq = 1000;
    t.syn_options = true;
    t
}

#[test]
fn ethernet_ipv4_syn_with_options() {
    let f = tcp_frame(&syn());
    let Decoded::Tcp(s) = decode(LinkType::ETHERNET, &f, f.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!((s.sport, s.dport, s.seq.0), (40000, 80, 1000));
    assert!(s.flags.syn() && !s.flags.ack());
    assert_eq!(s.options.mss, Some(1460));
    assert_eq!(s.options.wscale, Some(7));
    assert!(s.options.sack_ok && s.options.ts_ok);
    assert!(!s.truncated);
}

#[test]
fn payload_length_comes_from_ip_header_not_capture() {
    let mut t = syn();
    t.flags = TcpFlags::ACK;
    t.syn_options = false;
    t.payload_len = 1000;
    let f = tcp_frame(&t);
    // A 68-byte snap (Ethernet 14 + IPv4 20 + TCP 20 + 14 payload).
    let Decoded::Tcp(s) = decode(LinkType::ETHERNET, &f[..68], f.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!(s.payload_len, 1000);
    assert!(s.truncated);
}

#[test]
fn snaplen_inside_tcp_header_still_gives_flags_seq_ack() {
    let mut t = syn();
    t.flags = TcpFlags::ACK | TcpFlags::PSH;
    t.ack = 77;
    let f = tcp_frame(&t);
    let cut = 14 + 20 + 14;
    let Decoded::Tcp(s) = decode(LinkType::ETHERNET, &f[..cut], f.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!((s.seq.0, s.ack.0), (1000, 77));
    assert_eq!(s.window, None);
    assert!(s.truncated);
    // 13 TCP bytes is not enough.
    assert_eq!(
        decode(LinkType::ETHERNET, &f[..cut - 1], f.len() as u32),
        Err(DecodeError::Short("TCP"))
    );
}

#[test]
fn vlan_and_qinq() {
    let mut t = syn();
    t.vlan = Some(42);
    let f = tcp_frame(&t);
    let Decoded::Tcp(s) = decode(LinkType::ETHERNET, &f, f.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!(s.vlan, 42);
    // Add an outer 802.1ad tag by hand.
    let mut q = f[..12].to_vec();
    q.extend_from_slice(&[0x88, 0xa8, 0x00, 0x07]);
    q.extend_from_slice(&f[12..]);
    let Decoded::Tcp(s) = decode(LinkType::ETHERNET, &q, q.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!(s.vlan, (7 << 12) | 42);
}

#[test]
fn cooked_raw_and_loopback_link_types() {
    let mut t = syn();
    t.src = "fd00::1".parse().unwrap();
    t.dst = "fd00::2".parse().unwrap();
    let ip = ip_packet(t.src, t.dst, 6, &tcp_frame(&t)[14 + 40..]);
    let mut sll = vec![0u8; 14];
    sll.extend_from_slice(&0x86ddu16.to_be_bytes());
    sll.extend_from_slice(&ip);
    let mut sll2 = 0x86ddu16.to_be_bytes().to_vec();
    sll2.extend_from_slice(&[0u8; 18]);
    sll2.extend_from_slice(&ip);
    let mut null_le = 30u32.to_le_bytes().to_vec();
    null_le.extend_from_slice(&ip);
    let mut null_be = 24u32.to_be_bytes().to_vec();
    null_be.extend_from_slice(&ip);
    let mut lo = 28u32.to_be_bytes().to_vec();
    lo.extend_from_slice(&ip);
    for (link, frame) in [
        (LinkType::LINUX_SLL, &sll),
        (LinkType::LINUX_SLL2, &sll2),
        (LinkType::RAW, &ip),
        (LinkType::IPV6, &ip),
        (LinkType::NULL, &null_le),
        (LinkType::NULL, &null_be),
        (LinkType::LOOP, &lo),
    ] {
        let d = decode(link, frame, frame.len() as u32).unwrap();
        let Decoded::Tcp(s) = d else {
            panic!("{link:?}: {d:?}")
        };
        assert_eq!((s.sport, s.dport), (40000, 80), "{link:?}");
        assert!(!s.src.is_v4());
    }
}

#[test]
fn unknown_link_type_and_garbage_are_errors_not_panics() {
    assert_eq!(
        decode(LinkType(9999), &[1, 2, 3], 3),
        Err(DecodeError::UnknownLinkType(9999))
    );
    assert!(decode(LinkType::ETHERNET, &[], 0).is_err());
    let mut f = tcp_frame(&syn());
    f[14] = 0x41; // IHL 4: impossible
    assert_eq!(
        decode(LinkType::ETHERNET, &f, f.len() as u32),
        Err(DecodeError::Malformed("IPv4 header length"))
    );
}

#[test]
fn later_fragments_are_counted_not_parsed() {
    let mut f = tcp_frame(&syn());
    f[14 + 6] = 0x00;
    f[14 + 7] = 0x10; // fragment offset 16 * 8
    assert_eq!(
        decode(LinkType::ETHERNET, &f, f.len() as u32),
        Ok(Decoded::Fragment)
    );
}

#[test]
fn icmp_unreachable_quotes_the_syn() {
    let f = icmp_error_frame(v4("10.0.0.254"), 3, 1, &syn());
    let Decoded::IcmpError(q) = decode(LinkType::ETHERNET, &f, f.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!((q.icmp_type, q.icmp_code, q.unreachable), (3, 1, true));
    assert_eq!((q.sport, q.dport, q.seq.0), (40000, 80, 1000));
    assert_eq!(q.src.to_string(), "10.0.0.1");
    let mut t6 = syn();
    t6.src = "fd00::1".parse().unwrap();
    t6.dst = "fd00::2".parse().unwrap();
    let f = icmp_error_frame("fd00::fe".parse().unwrap(), 1, 4, &t6);
    let Decoded::IcmpError(q) = decode(LinkType::ETHERNET, &f, f.len() as u32).unwrap() else {
        panic!()
    };
    assert_eq!((q.icmp_type, q.icmp_code, q.dport), (1, 4, 80));
}

#[test]
fn payload_is_found_on_every_link_type_and_stops_at_padding_and_snaplen() {
    use crate::build::payload_byte;
    let expect =
        |seq: u32, n: usize| -> Vec<u8> { (0..n as u32).map(|i| payload_byte(seq + i)).collect() };
    for (src, dst) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
        let mut t = Tcp::new(src.parse().unwrap(), 40000, dst.parse().unwrap(), 80);
        t.flags = TcpFlags::ACK | TcpFlags::PSH;
        t.seq = 5000;
        t.payload_len = 3;
        let eth = tcp_frame(&t);
        let ip = ip_packet(t.src, t.dst, 6, &eth[eth.len() - 23..]);
        // Ethernet pads short frames to 60 bytes: the padding is not payload.
        let mut padded = eth.clone();
        padded.resize(padded.len().max(60), 0xee);
        let mut vlan = t.clone();
        vlan.vlan = Some(7);
        let tagged = tcp_frame(&vlan);
        let mut sll2 = 0u16.to_be_bytes().to_vec();
        sll2[..2].copy_from_slice(&if t.src.is_ipv4() { 0x0800u16 } else { 0x86dd }.to_be_bytes());
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        for (link, frame) in [
            (LinkType::ETHERNET, &eth),
            (LinkType::ETHERNET, &padded),
            (LinkType::ETHERNET, &tagged),
            (LinkType::RAW, &ip),
            (LinkType::LINUX_SLL2, &sll2),
        ] {
            let Ok(Decoded::Tcp(s)) = decode(link, frame, frame.len() as u32) else {
                panic!("{link:?} {src}")
            };
            assert_eq!(s.payload(frame), expect(5000, 3), "{link:?} {src}");
            // Cut one payload byte short: the two captured ones.
            let cut = &frame[..frame.len() - (frame.len() - s.payload_at as usize - 2)];
            let Ok(Decoded::Tcp(s)) = decode(link, cut, frame.len() as u32) else {
                panic!()
            };
            assert_eq!(s.payload(cut), expect(5000, 2), "{link:?} {src} cut");
        }
    }
}

#[test]
fn udp_datagrams_give_ports_and_payload() {
    let mut l4 = vec![0x9c, 0x40, 0, 53, 0, 8 + 5, 0, 0];
    l4.extend_from_slice(b"hello");
    for (src, dst) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
        let ip = ip_packet(src.parse().unwrap(), dst.parse().unwrap(), 17, &l4);
        let mut frame = crate::build::ethernet(&ip, Some(9));
        frame.resize(frame.len().max(64), 0);
        let Ok(Decoded::Udp(d)) = decode(LinkType::ETHERNET, &frame, frame.len() as u32) else {
            panic!("{src}")
        };
        assert_eq!((d.sport, d.dport, d.vlan, d.payload_len), (40000, 53, 9, 5));
        assert_eq!(d.payload(&frame), b"hello");
        // A UDP header cut short is a frame without TCP, not an error.
        let cut = d.payload_at as usize - 4;
        assert_eq!(
            decode(LinkType::ETHERNET, &frame[..cut], 100),
            Ok(Decoded::NotTcp)
        );
    }
}

// ---------------------------------------------------------------------------
// Encapsulations and link types

/// An outer IPv4 header (protocol `proto`) around `body`.
fn outer4(proto: u8, body: &[u8]) -> Vec<u8> {
    ip_packet(v4("192.0.2.1"), v4("198.51.100.1"), proto, body)
}

fn udp4(dport: u16, body: &[u8]) -> Vec<u8> {
    let mut u = 50000u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(body);
    outer4(17, &u)
}

fn eth_of(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn inner_ip() -> Vec<u8> {
    tcp_frame(&syn())[14..].to_vec()
}

fn walk(link: LinkType, f: &[u8]) -> (Result<Decoded, DecodeError>, Tunnel) {
    let mut t = Tunnel::default();
    let r = decode_with(link, f, f.len() as u32, &mut t);
    (r, t)
}

fn seg_of(r: &Result<Decoded, DecodeError>) -> TcpSegment {
    match r {
        Ok(Decoded::Tcp(s)) => *s,
        other => panic!("not TCP: {other:?}"),
    }
}

#[test]
fn tunnels_decode_the_inner_segment_and_name_their_layers() {
    let ip = inner_ip();
    let eth = tcp_frame(&syn());
    let vxlan = |vni: u32, inner: &[u8]| {
        let mut v = vec![0x08, 0, 0, 0];
        v.extend_from_slice(&(vni << 8).to_be_bytes());
        v.extend_from_slice(inner);
        udp4(4789, &v)
    };
    let gre = |flags: u16, proto: u16, extra: &[u8], inner: &[u8]| {
        let mut g = flags.to_be_bytes().to_vec();
        g.extend_from_slice(&proto.to_be_bytes());
        g.extend_from_slice(extra);
        g.extend_from_slice(inner);
        outer4(47, &g)
    };
    let mpls = |labels: &[u32], inner: &[u8]| {
        let mut m = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            let bos = (i + 1 == labels.len()) as u32;
            m.extend_from_slice(&((l << 12) | (bos << 8) | 64).to_be_bytes());
        }
        m.extend_from_slice(inner);
        m
    };
    let mut cw_eth = vec![0, 0, 0, 1];
    cw_eth.extend_from_slice(&eth);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (eth_of(0x0800, &gre(0, 0x0800, &[], &ip)), "gre"),
        (
            eth_of(
                0x0800,
                &gre(0x3000, 0x0800, &[0, 0, 0, 42, 0, 0, 0, 9], &ip),
            ),
            "gre:42",
        ),
        (
            eth_of(0x0800, &gre(0x2000, 0x6558, &[0, 0, 0x13, 0x89], &eth)),
            "gretap:5001",
        ),
        (eth_of(0x0800, &gre(0, 0x88be, &[], &eth)), "erspan1"),
        (
            eth_of(
                0x0800,
                &gre(
                    0x1000,
                    0x88be,
                    &[0, 0, 0, 1, 0x10, 0, 0, 100, 0, 0, 0, 0],
                    &eth,
                ),
            ),
            "erspan2:100",
        ),
        (eth_of(0x0800, &outer4(4, &ip)), "ipip"),
        (
            eth_of(
                0x0800,
                &vxlan(4711, &eth_of(0x0800, &gre(0, 0x0800, &[], &ip))),
            ),
            "vxlan:4711>gre",
        ),
        (eth_of(0x8847, &mpls(&[16, 17], &ip)), "mpls:16/17"),
        (eth_of(0x8847, &mpls(&[40], &cw_eth)), "mpls:40>pw"),
        (eth_of(0x8847, &mpls(&[40], &eth)), "mpls:40>pw"),
        (
            eth_of(
                0x8864,
                &[&[0x11, 0, 0x12, 0x34, 0, 0, 0, 0x21][..], &ip].concat(),
            ),
            "pppoe:4660",
        ),
        (
            eth_of(0x88e7, &[&[0, 1, 0, 0][..], &eth].concat()),
            "pbb:65536",
        ),
    ];
    for (frame, name) in cases {
        let (r, t) = walk(LinkType::ETHERNET, &frame);
        let s = seg_of(&r);
        assert_eq!((s.sport, s.dport, s.seq.0), (40000, 80, 1000), "{name}");
        assert_eq!(s.options.mss, Some(1460), "{name}");
        assert_eq!(t.path.to_string(), name);
        // The payload lies where the inner TCP header says, in this frame.
        assert_eq!(
            s.payload_at as usize,
            frame.len() - s.payload_len as usize,
            "{name}"
        );
        assert_eq!(decode(LinkType::ETHERNET, &frame, frame.len() as u32), r);
    }
}

#[test]
fn virtual_network_ids_key_connections_and_other_ids_do_not() {
    let eth = tcp_frame(&syn());
    let key = |frame: Vec<u8>| seg_of(&walk(LinkType::ETHERNET, &frame).0).tunnel;
    let vx = |vni: u32| {
        let mut v = vec![0x08, 0, 0, 0];
        v.extend_from_slice(&(vni << 8).to_be_bytes());
        v.extend_from_slice(&eth);
        eth_of(0x0800, &udp4(4789, &v))
    };
    assert_ne!(key(vx(100)), 0);
    assert_ne!(key(vx(100)), key(vx(200)));
    assert_eq!(key(vx(100)), key(vx(100)));
    // GTP-U TEIDs differ per direction: not in the key.
    let gtp = |teid: u32| {
        let ip = inner_ip();
        let mut g = vec![0x30, 0xff];
        g.extend_from_slice(&(ip.len() as u16).to_be_bytes());
        g.extend_from_slice(&teid.to_be_bytes());
        g.extend_from_slice(&ip);
        eth_of(0x0800, &udp4(2152, &g))
    };
    assert_eq!(key(gtp(1)), 0);
    let (_, t) = walk(LinkType::ETHERNET, &gtp(7));
    assert_eq!(t.path.to_string(), "gtpu:7");
}

#[test]
fn nesting_is_bounded() {
    // IP in IP in IP...: MAX_DEPTH layers decode, one more is not understood.
    let mut p = inner_ip();
    for depth in 1..=MAX_DEPTH + 3 {
        p = outer4(4, &p);
        let f = eth_of(0x0800, &p);
        let (r, t) = walk(LinkType::ETHERNET, &f);
        if depth <= MAX_DEPTH {
            seg_of(&r);
            assert_eq!(t.path.layers().len(), depth);
            assert_eq!(t.unknown, None);
        } else {
            assert_eq!(r, Ok(Decoded::NotTcp));
            assert_eq!(t.unknown, Some(Unknown::TooDeep));
        }
    }
    // A 1000-label MPLS stack never ends: stops at the bound too.
    let mut m = Vec::new();
    for l in 0..1000u32 {
        m.extend_from_slice(&((l << 12) | 64).to_be_bytes());
    }
    let (r, t) = walk(LinkType::ETHERNET, &eth_of(0x8847, &m));
    assert_eq!(
        (r, t.unknown),
        (Ok(Decoded::NotTcp), Some(Unknown::TooDeep))
    );
}

#[test]
fn not_understood_and_fragmented_tunnels_are_said() {
    let ip = inner_ip();
    let mut g = vec![0, 0, 0x88, 0x0b];
    g.extend_from_slice(&ip);
    let (r, t) = walk(LinkType::ETHERNET, &eth_of(0x0800, &outer4(47, &g)));
    assert_eq!(r, Ok(Decoded::NotTcp));
    assert_eq!(t.unknown.unwrap().to_string(), "GRE protocol 0x880b");
    // An outer IPv4 first fragment carrying IP in IP: the inner header is decoded, the
    // fragment counted; a later one is a fragment.
    let mut o = outer4(4, &ip);
    o[6] = 0x20; // more fragments
    let (r, t) = walk(LinkType::ETHERNET, &eth_of(0x0800, &o));
    seg_of(&r);
    assert!(t.fragment);
    o[7] = 0x10;
    let (r, t) = walk(LinkType::ETHERNET, &eth_of(0x0800, &o));
    assert_eq!(r, Ok(Decoded::Fragment));
    assert!(t.fragment);
    // A plain fragment outside tunnels is not a tunnel fragment.
    let mut f = tcp_frame(&syn());
    f[14 + 6] = 0x20;
    let (_, t) = walk(LinkType::ETHERNET, &f);
    assert!(!t.is_set());
}

#[test]
fn more_link_types() {
    let ip = inner_ip();
    let snap = [&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00][..], &ip].concat();
    let mut wifi = vec![0x88, 0x01, 0, 0];
    wifi.extend_from_slice(&[0u8; 18]);
    wifi.extend_from_slice(&[0, 0]); // sequence
    wifi.extend_from_slice(&[0, 0]); // QoS control
    let wlan = [&wifi[..], &snap].concat();
    let radiotap = [&[0, 0, 8, 0, 0, 0, 0, 0][..], &wlan].concat();
    let ppi = [&[0, 0, 8, 0, 105, 0, 0, 0][..], &wlan].concat();
    let mut nflog = vec![2, 0, 0, 1];
    nflog.extend_from_slice(&8u16.to_le_bytes());
    nflog.extend_from_slice(&1u16.to_le_bytes());
    nflog.extend_from_slice(&[8, 0, 3, 0]);
    nflog.extend_from_slice(&((4 + ip.len()) as u16).to_le_bytes());
    nflog.extend_from_slice(&9u16.to_le_bytes());
    nflog.extend_from_slice(&ip);
    let juniper = [&b"MGC\x01"[..], &tcp_frame(&syn())].concat();
    for (link, frame) in [
        (9, [&[0, 0x21][..], &ip].concat()),
        (9, [&[0xff, 0x03, 0, 0x21][..], &ip].concat()),
        (50, [&[0xff, 0x03, 0, 0x21][..], &ip].concat()),
        (50, [&[0x0f, 0, 8, 0][..], &ip].concat()),
        (104, [&[0x8f, 0, 8, 0][..], &ip].concat()),
        (107, [&[0x18, 0x41, 0x03, 0xcc][..], &ip].concat()),
        (107, [&[0x18, 0x41, 0x08, 0x00][..], &ip].concat()),
        (105, wlan.clone()),
        (127, radiotap),
        (192, ppi),
        (239, nflog),
        (178, juniper),
        (
            1,
            [
                &tcp_frame(&syn())[..12],
                &((snap.len()) as u16).to_be_bytes(),
                &snap,
            ]
            .concat(),
        ),
    ] {
        let (r, _) = walk(LinkType(link), &frame);
        let s = seg_of(&r);
        assert_eq!((s.sport, s.dport), (40000, 80), "link {link}");
        assert!(LinkType(link).is_supported());
    }
    // Protected 802.11 data is counted as not understood; management frames carry nothing.
    let mut prot = wlan.clone();
    prot[1] |= 0x40;
    let (r, t) = walk(LinkType(105), &prot);
    assert_eq!(
        (r, t.unknown),
        (Ok(Decoded::NotTcp), Some(Unknown::WifiProtected))
    );
    let mut beacon = wlan;
    beacon[0] = 0x80;
    assert_eq!(walk(LinkType(105), &beacon).0, Ok(Decoded::NotTcp));
}

#[test]
fn link_types_are_named() {
    assert_eq!(LinkType(127).name(), "IEEE802_11_RADIO");
    assert_eq!(LinkType(9).name(), "PPP");
    assert_eq!(LinkType(104).name(), "C_HDLC");
    assert_eq!(LinkType(100_000).name(), "link type 100000");
    assert_eq!(LinkType(105).label(), "IEEE802_11 (105)");
    for l in LinkType::SUPPORTED {
        assert!(l.is_supported(), "{l:?}");
    }
    assert_eq!(
        DecodeError::UnknownLinkType(147).to_string(),
        "unsupported link type USER0 (147)"
    );
}
