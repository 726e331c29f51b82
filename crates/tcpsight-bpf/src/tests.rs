use super::*;
use tcpsight_core::build::{Tcp, ethernet, icmp_error_frame, ip_packet, tcp_frame};

/// libpcap is a run-time dependency: on a machine without it these tests say so and
/// skip, unless TCPSIGHT_REQUIRE_LIBPCAP is set (CI installs libpcap and sets it, so
/// there they run or fail).
fn have_libpcap() -> bool {
    match libpcap() {
        Ok(_) => true,
        Err(e) if std::env::var_os("TCPSIGHT_REQUIRE_LIBPCAP").is_some() => panic!("{e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

fn syn(sport: u16, dport: u16) -> Tcp {
    let mut t = Tcp::new(
        "10.0.0.1".parse().unwrap(),
        sport,
        "10.0.0.2".parse().unwrap(),
        dport,
    );
    t.flags = 0x02;
    t
}

#[test]
fn port_and_flag_filters_match_like_tcpdump() {
    if !have_libpcap() {
        return;
    }
    let p = Program::compile("tcp dst port 80 and tcp[tcpflags] & tcp-syn != 0", 1, 65535).unwrap();
    assert!(p.insns.len() > 5, "{} instructions", p.insns.len());
    let f = tcp_frame(&syn(40000, 80));
    assert!(p.matches(&f, f.len() as u32));
    let f = tcp_frame(&syn(40000, 81));
    assert!(!p.matches(&f, f.len() as u32));
    let mut ack = syn(40000, 80);
    ack.flags = 0x10;
    let f = tcp_frame(&ack);
    assert!(!p.matches(&f, f.len() as u32));
    // The accept return value is the snap length: what the kernel keeps.
    assert!(p.insns.iter().any(|i| i.code == BPF_RET_K && i.k == 65535));
}

#[test]
fn raw_ip_frames_use_dlt_raw_offsets() {
    if !have_libpcap() {
        return;
    }
    let p = Program::compile("host 10.0.0.2 and port 443", 101, MAX_SNAPLEN).unwrap();
    let t = syn(5555, 443);
    let raw = ip_packet(t.src, t.dst, 6, &tcp_frame(&t)[34..]);
    assert!(p.matches(&raw, raw.len() as u32));
    let eth = ethernet(&raw, None);
    // The same bytes behind an Ethernet header do not match a raw-IP program.
    assert!(!p.matches(&eth, eth.len() as u32));
}

#[test]
fn icmp_and_ipv6_filters() {
    if !have_libpcap() {
        return;
    }
    let quoted = syn(40000, 80);
    let icmp = icmp_error_frame("10.0.0.254".parse().unwrap(), 3, 13, &quoted);
    let p = Program::compile("icmp", 1, MAX_SNAPLEN).unwrap();
    assert!(p.matches(&icmp, icmp.len() as u32));
    let f = tcp_frame(&syn(1, 2));
    assert!(!p.matches(&f, f.len() as u32));
    let mut t6 = syn(40000, 80);
    t6.src = "fd00::1".parse().unwrap();
    t6.dst = "fd00::2".parse().unwrap();
    let f6 = tcp_frame(&t6);
    let p6 = Program::compile("ip6 and tcp port 80", 1, MAX_SNAPLEN).unwrap();
    assert!(p6.matches(&f6, f6.len() as u32));
    assert!(!p6.matches(&tcp_frame(&syn(40000, 80)), 54));
}

#[test]
fn snaplen_cut_frames_are_not_read_past_their_end() {
    if !have_libpcap() {
        return;
    }
    let p = Program::compile("tcp port 80", 1, MAX_SNAPLEN).unwrap();
    let f = tcp_frame(&syn(40000, 80));
    // Cut inside the TCP header: the port load is out of bounds, so no match, no crash.
    assert!(!p.matches(&f[..36], f.len() as u32));
    assert!(!p.matches(&[], 60));
}

#[test]
fn syntax_errors_name_the_expression() {
    if !have_libpcap() {
        return;
    }
    let e = Program::compile("tcp prot 80", 1, MAX_SNAPLEN).unwrap_err();
    assert!(e.starts_with("filter \"tcp prot 80\": "), "{e}");
    let e = LinkFilter::new("port 99999", &[1]).unwrap_err();
    assert!(e.contains("99999"), "{e}");
}

#[test]
fn link_filter_compiles_per_link_type_and_counts() {
    if !have_libpcap() {
        return;
    }
    let mut f = LinkFilter::new("tcp port 80", &[1]).unwrap();
    let t = syn(40000, 80);
    let eth = tcp_frame(&t);
    let raw = eth[14..].to_vec();
    assert!(f.accepts(1, &eth, eth.len() as u32));
    assert!(f.accepts(101, &raw, raw.len() as u32));
    let other = tcp_frame(&syn(40000, 22));
    assert!(!f.accepts(1, &other, other.len() as u32));
    assert_eq!(f.rejected, 1);
    assert_eq!(f.uncompilable, 0);
}

#[test]
fn accept_all_keeps_snaplen_bytes() {
    let p = Program::accept_all(96);
    assert_eq!(
        p.insns,
        vec![Insn {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: 96
        }]
    );
}
