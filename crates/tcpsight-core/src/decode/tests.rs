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
