//! Property tests for the decoder and the engine: no input makes them panic, and what
//! they report stays consistent with what they were fed.
//!
//! Case counts are kept small enough for the whole file to run in a few seconds in a
//! debug build; raise them locally with `PROPTEST_CASES=10000`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tcpsight_core::build::{self, Tcp};
use tcpsight_core::decode::{self, DecodeError, Decoded, TcpFlags, TcpSegment};
use tcpsight_core::{Collect, Config, Engine, LinkType};

/// Every link type the decoder supports, plus two it does not.
const LINK_TYPES: [u32; 22] = [
    0,
    1,
    9,
    12,
    14,
    50,
    51,
    101,
    104,
    105,
    107,
    108,
    113,
    127,
    178,
    192,
    228,
    229,
    239,
    276,
    147,
    0xffff_ffff,
];

fn link_type() -> impl Strategy<Value = LinkType> {
    prop::sample::select(LINK_TYPES.to_vec()).prop_map(LinkType)
}

/// Original lengths: mostly near the captured length, sometimes anything at all.
fn orig_len(captured: usize) -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(captured as u32),
        2 => (captured as u32)..(captured as u32 + 2000),
        1 => any::<u32>(),
    ]
}

// ---------------------------------------------------------------------------
// Frames built from parts: a few addresses and ports, so segments meet in flows.

const V4: [[u8; 4]; 3] = [[10, 0, 0, 1], [10, 0, 0, 2], [192, 0, 2, 7]];
const PORTS: [u16; 4] = [80, 443, 40000, 40001];

fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        4 => (0..V4.len(), 0..V4.len()).prop_map(|(a, b)| {
            (IpAddr::V4(Ipv4Addr::from(V4[a])), IpAddr::V4(Ipv4Addr::from(V4[b])))
        }),
        1 => (1u16..3, 1u16..3).prop_map(|(a, b)| {
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, b)),
            )
        }),
    ]
}

/// Flags: mostly the combinations a real connection uses, sometimes any 9 bits.
fn tcp_flags() -> impl Strategy<Value = u16> {
    use TcpFlags as F;
    prop_oneof![
        6 => prop::sample::select(vec![
            F::SYN,
            F::SYN | F::ACK,
            F::ACK,
            F::ACK | F::PSH,
            F::FIN | F::ACK,
            F::RST,
            F::RST | F::ACK,
        ]),
        1 => 0u16..0x200,
    ]
}

/// Sequence numbers: near a few bases (so the sequence analysis sees related numbers,
/// wrap-around included), or anything.
fn seq_num() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (prop::sample::select(vec![0u32, 1000, 0xffff_ff00]), 0u32..5000)
            .prop_map(|(base, d)| base.wrapping_add(d)),
        1 => any::<u32>(),
    ]
}

fn tcp_spec() -> impl Strategy<Value = Tcp> {
    (
        addr_pair(),
        prop::sample::select(PORTS.to_vec()),
        prop::sample::select(PORTS.to_vec()),
        seq_num(),
        seq_num(),
        tcp_flags(),
        prop_oneof![Just(0u16), Just(65535u16), any::<u16>()],
        prop_oneof![3 => 0usize..64, 1 => 64usize..1500],
        any::<bool>(),
        prop_oneof![3 => Just(None), 1 => (0u16..0x1000).prop_map(Some)],
    )
        .prop_map(
            |(
                (src, dst),
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                payload_len,
                syn_options,
                vlan,
            )| {
                let mut t = Tcp::new(src, sport, dst, dport);
                t.seq = seq;
                t.ack = ack;
                t.flags = flags;
                t.window = window;
                t.payload_len = payload_len;
                t.syn_options = syn_options;
                t.vlan = vlan;
                t
            },
        )
}

/// One input frame for the engine.
#[derive(Clone, Debug)]
struct Frame {
    link: LinkType,
    data: Vec<u8>,
    orig_len: u32,
}

/// A structured TCP (or ICMP error) frame on Ethernet, possibly cut short.
fn built_frame() -> impl Strategy<Value = Frame> {
    (
        tcp_spec(),
        any::<bool>(),
        0u8..4,
        any::<prop::sample::Index>(),
    )
        .prop_map(|(t, icmp, cut, at)| {
            let full = if icmp {
                let router = if t.src.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe))
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))
                };
                let ty = if t.src.is_ipv6() { 1 } else { 3 };
                build::icmp_error_frame(router, ty, 3, &t)
            } else {
                build::tcp_frame(&t)
            };
            let orig_len = full.len() as u32;
            // One frame in four is cut at a random point, as a snaplen would.
            let keep = if cut == 0 {
                at.index(full.len() + 1)
            } else {
                full.len()
            };
            Frame {
                link: LinkType::ETHERNET,
                data: full[..keep].to_vec(),
                orig_len,
            }
        })
}

/// Any bytes under any link type.
fn junk_frame() -> impl Strategy<Value = Frame> {
    (link_type(), prop::collection::vec(any::<u8>(), 0..96))
        .prop_flat_map(|(link, data)| {
            let n = data.len();
            (Just(link), Just(data), orig_len(n))
        })
        .prop_map(|(link, data, orig_len)| Frame {
            link,
            data,
            orig_len,
        })
}

/// Bytes that start out as a valid TCP frame and then have a few bytes overwritten.
fn mutated_frame() -> impl Strategy<Value = Frame> {
    (
        built_frame(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    )
        .prop_map(|(mut f, edits)| {
            if !f.data.is_empty() {
                for (i, b) in edits {
                    let i = i.index(f.data.len());
                    f.data[i] = b;
                }
            }
            f
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        6 => built_frame(),
        2 => mutated_frame(),
        2 => junk_frame(),
    ]
}

/// Timestamps: mostly moving forward by small or large steps (so sweeps and timeouts
/// fire), sometimes jumping backwards or anywhere.
#[derive(Clone, Copy, Debug)]
enum Step {
    Forward(u64),
    Back(u64),
    Absolute(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..2_000_000_000).prop_map(Step::Forward),
        2 => (0u64..400_000_000_000).prop_map(Step::Forward),
        1 => (0u64..100_000_000_000).prop_map(Step::Back),
        // Any capture time a reader can produce: pcap seconds are u32, pcapng ones are
        // clamped the same way in practice; 2^62 ns is year 2116.
        1 => (0u64..(1 << 62)).prop_map(Step::Absolute),
    ]
}

fn timestamps(steps: &[Step]) -> Vec<u64> {
    let mut t: u64 = 1_700_000_000_000_000_000;
    steps
        .iter()
        .map(|s| {
            t = match *s {
                Step::Forward(d) => t.saturating_add(d),
                Step::Back(d) => t.saturating_sub(d),
                Step::Absolute(a) => a,
            };
            t
        })
        .collect()
}

fn run_engine(frames: &[Frame], ts: &[u64]) -> (Engine, Collect) {
    let mut engine = Engine::new(Config::default());
    let mut out = Collect::default();
    for (f, &t) in frames.iter().zip(ts) {
        engine.process(t, f.link, &f.data, f.orig_len, &mut out);
    }
    engine.finish(&mut out);
    (engine, out)
}

/// What every finished run must satisfy, whatever it was fed.
fn check_run_invariants(
    frames: &[Frame],
    ts: &[u64],
    engine: &Engine,
    out: &Collect,
) -> Result<(), TestCaseError> {
    let st = engine.stats();
    prop_assert_eq!(st.frames, frames.len() as u64);
    // Every frame lands in exactly one bucket.
    let buckets =
        st.tcp_packets + st.icmp_errors + st.fragments + st.not_tcp + st.undecodable_total();
    prop_assert_eq!(buckets, st.frames, "frame buckets do not add up: {:?}", st);
    prop_assert!(st.icmp_matched <= st.icmp_errors);
    prop_assert_eq!(st.link_types.values().sum::<u64>(), st.frames);
    prop_assert_eq!(
        st.captured_bytes,
        frames.iter().map(|f| f.data.len() as u64).sum::<u64>()
    );
    prop_assert_eq!(
        st.truncated,
        frames
            .iter()
            .filter(|f| (f.data.len() as u64) < f.orig_len as u64)
            .count() as u64
    );
    prop_assert!(st.wire_bytes >= st.captured_bytes);

    // Nothing is left behind after finish, and each connection is reported once.
    prop_assert_eq!(engine.active(), 0);
    prop_assert_eq!(out.records.len() as u64, st.connections);

    // Each TCP segment is counted in exactly one direction of exactly one record.
    let pkts: u64 = out.records.iter().map(|r| r.c2s.pkts + r.s2c.pkts).sum();
    prop_assert_eq!(pkts, st.tcp_packets);

    let min_ts = ts.iter().copied().min();
    let max_ts = ts.iter().copied().max();
    for r in &out.records {
        prop_assert!(r.ts_first_ns <= r.ts_last_ns, "ts_first > ts_last: {:?}", r);
        prop_assert!(Some(r.ts_first_ns) >= min_ts && Some(r.ts_last_ns) <= max_ts);
        prop_assert!(
            r.c2s.pkts + r.s2c.pkts >= 1,
            "a record without packets: {:?}",
            r
        );
        prop_assert!(r.c2s.retx_pkts as u64 <= r.c2s.pkts && r.s2c.retx_pkts as u64 <= r.s2c.pkts);
        prop_assert!(r.c2s.fin_pkts as u64 <= r.c2s.pkts && r.s2c.fin_pkts as u64 <= r.s2c.pkts);
        prop_assert!(r.c2s.rst_pkts as u64 <= r.c2s.pkts && r.s2c.rst_pkts as u64 <= r.s2c.pkts);
        if let (Some(p50), Some(max)) = (r.response_p50_ns, r.response_max_ns) {
            prop_assert!(p50 <= max);
        }
        if let (Some(lo), Some(hi)) = (r.c2s.rtt_min_ns, r.c2s.rtt_max_ns) {
            prop_assert!(lo <= hi);
        }
        if let (Some(lo), Some(hi)) = (r.s2c.rtt_min_ns, r.s2c.rtt_max_ns) {
            prop_assert!(lo <= hi);
        }
    }
    // A handshake is decided at most once per connection.
    prop_assert!(out.handshakes.len() <= out.records.len());
    Ok(())
}

fn cases(n: u32) -> ProptestConfig {
    // PROPTEST_CASES (read by ProptestConfig::default) overrides the per-test count.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Decoding

proptest! {
    #![proptest_config(cases(4000))]

    /// decode() returns (Ok or Err) for any bytes under any link type and any orig_len.
    #[test]
    fn decode_never_panics(link in link_type(), data in prop::collection::vec(any::<u8>(), 0..128), orig in any::<u32>()) {
        let r = decode::decode(link, &data, orig);
        if !link.is_supported() {
            prop_assert_eq!(r, Err(DecodeError::UnknownLinkType(link.0)));
        } else {
            prop_assert!(!matches!(r, Err(DecodeError::UnknownLinkType(_))));
        }
        // The error text is what the summary prints: make sure it formats.
        if let Err(e) = r {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Valid frames with a few bytes overwritten: still no panic, and a frame's claimed
    /// truncation matches captured < orig_len or a header cut by the snaplen.
    #[test]
    fn decode_mutated_frames_never_panic(f in mutated_frame()) {
        if let Ok(Decoded::Tcp(seg)) = decode::decode(f.link, &f.data, f.orig_len)
            && (f.data.len() as u64) < f.orig_len as u64
        {
            prop_assert!(seg.truncated);
        }
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    /// A TCP frame cut at any length (orig_len the full length) decodes to the ports,
    /// flags, sequence numbers and payload length it was built with as long as the cut
    /// keeps the first 14 TCP bytes, and is reported too short (never misread) otherwise.
    #[test]
    fn decode_truncated_tcp_frame(t in tcp_spec(), cut in any::<prop::sample::Index>()) {
        let full = build::tcp_frame(&t);
        let l2 = if t.vlan.is_some() { 18 } else { 14 };
        let l3 = if t.src.is_ipv6() || t.dst.is_ipv6() { 40 } else { 20 };
        let tcp_at = l2 + l3;
        let hlen = if t.syn_options { 40 } else { 20 };
        prop_assert_eq!(full.len(), tcp_at + hlen + t.payload_len);

        let keep = cut.index(full.len() + 1);
        let r = decode::decode(LinkType::ETHERNET, &full[..keep], full.len() as u32);
        if keep >= tcp_at + 14 {
            let Ok(Decoded::Tcp(seg)) = r else {
                return Err(TestCaseError::fail(format!("cut at {keep}/{}: {r:?}", full.len())));
            };
            prop_assert_eq!(seg.sport, t.sport);
            prop_assert_eq!(seg.dport, t.dport);
            prop_assert_eq!(seg.seq.0, t.seq);
            prop_assert_eq!(seg.ack.0, t.ack);
            prop_assert_eq!(seg.flags.0, t.flags & 0x01ff);
            prop_assert_eq!(seg.src.ip().to_canonical(), t.src.to_canonical());
            prop_assert_eq!(seg.dst.ip().to_canonical(), t.dst.to_canonical());
            prop_assert_eq!(seg.vlan, t.vlan.map_or(0, |v| (v & 0x0fff) as u32));
            // The payload length comes from the IP header, captured or not.
            prop_assert_eq!(seg.payload_len as usize, t.payload_len);
            prop_assert_eq!(seg.truncated, keep < full.len());
            // The window is there exactly when its two bytes were captured.
            prop_assert_eq!(seg.window, (keep >= tcp_at + 16).then_some(t.window));
            // Options are read on SYNs only, and only as far as they were captured.
            if t.syn_options && t.flags & TcpFlags::SYN != 0 && keep == full.len() {
                prop_assert_eq!(seg.options.mss, Some(1460));
                prop_assert_eq!(seg.options.wscale, Some(7));
                prop_assert!(seg.options.sack_ok && seg.options.ts_ok);
            }
            if t.flags & TcpFlags::SYN == 0 {
                prop_assert_eq!(seg.options, Default::default());
            }
        } else {
            prop_assert!(matches!(r, Err(DecodeError::Short(_))), "cut at {}/{}: {:?}", keep, full.len(), r);
        }
    }

    /// An ICMP error quoting a TCP segment decodes to that segment's ports and sequence.
    #[test]
    fn decode_icmp_error_quote(t in tcp_spec(), code in any::<u8>()) {
        let v6 = t.src.is_ipv6();
        let router = if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))
        };
        let (unreach, exceeded) = if v6 { (1, 3) } else { (3, 11) };
        for (ty, is_unreach) in [(unreach, true), (exceeded, false)] {
            let f = build::icmp_error_frame(router, ty, code, &t);
            let r = decode::decode(LinkType::ETHERNET, &f, f.len() as u32);
            let Ok(Decoded::IcmpError(q)) = r else {
                return Err(TestCaseError::fail(format!("{r:?}")));
            };
            prop_assert_eq!((q.icmp_type, q.icmp_code, q.unreachable), (ty, code, is_unreach));
            prop_assert_eq!((q.sport, q.dport, q.seq.0), (t.sport, t.dport, t.seq));
            prop_assert_eq!(q.src.ip().to_canonical(), t.src.to_canonical());
            prop_assert_eq!(q.dst.ip().to_canonical(), t.dst.to_canonical());
        }
    }

    /// The same IP packet decodes to the same segment under every link type that can
    /// carry it (Ethernet, RAW, IPV4/IPV6, NULL, LOOP, Linux cooked v1 and v2).
    #[test]
    fn decode_same_packet_under_every_link_type(t in tcp_spec()) {
        let ip = build::tcp_frame(&Tcp { vlan: None, ..t.clone() })[14..].to_vec();
        let v6 = ip[0] >> 4 == 6;
        let eth = build::ethernet(&ip, None);
        let reference = decode::decode(LinkType::ETHERNET, &eth, eth.len() as u32);
        prop_assert!(matches!(reference, Ok(Decoded::Tcp(_))), "{:?}", reference);

        let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
        let mut framings: Vec<(u32, Vec<u8>)> = Vec::new();
        for raw in [12u32, 14, 101, if v6 { 229 } else { 228 }] {
            framings.push((raw, Vec::new()));
        }
        let af: u32 = if v6 { 10 } else { 2 };
        framings.push((0, af.to_le_bytes().to_vec()));
        framings.push((0, af.to_be_bytes().to_vec()));
        framings.push((108, af.to_be_bytes().to_vec()));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ethertype);
        framings.push((113, sll));
        let mut sll2 = ethertype.to_vec();
        sll2.resize(20, 0);
        framings.push((276, sll2));
        let ppp: [u8; 2] = if v6 { [0, 0x57] } else { [0, 0x21] };
        framings.push((9, ppp.to_vec()));
        framings.push((50, [&[0xff, 0x03][..], &ppp].concat()));
        framings.push((104, [&[0x0f, 0x00][..], &ethertype].concat()));
        framings.push((107, vec![0x18, 0x41, 0x03, if v6 { 0x8e } else { 0xcc }]));
        let mut wlan = vec![0x08, 0x02, 0, 0];
        wlan.resize(24, 0);
        wlan.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
        wlan.extend_from_slice(&ethertype);
        framings.push((105, wlan.clone()));
        framings.push((127, [&[0, 0, 8, 0, 0, 0, 0, 0][..], &wlan].concat()));
        framings.push((192, [&[0, 0, 8, 0, 105, 0, 0, 0][..], &wlan].concat()));
        let mut nflog = vec![if v6 { 10 } else { 2 }, 0, 0, 0];
        nflog.extend_from_slice(&((4 + ip.len()) as u16).to_le_bytes());
        nflog.extend_from_slice(&9u16.to_le_bytes());
        framings.push((239, nflog));
        framings.push((178, [&b"MGC\0"[..], &eth[..14]].concat()));

        // The same segment and payload bytes; only where the payload starts differs.
        let same = |r: Result<Decoded, _>, frame: &[u8]| match r {
            Ok(Decoded::Tcp(s)) => Ok((TcpSegment { payload_at: 0, ..s }, s.payload(frame).to_vec())),
            other => Err(other),
        };
        let reference = same(reference, &eth);
        for (link, mut frame) in framings {
            frame.extend_from_slice(&ip);
            let r = decode::decode(LinkType(link), &frame, frame.len() as u32);
            prop_assert_eq!(same(r, &frame), reference.clone(), "link type {}", link);
        }
    }
}

// ---------------------------------------------------------------------------
// Encapsulations: any stack of them around a segment decodes to that segment, up to
// the nesting bound; deeper is not understood; cut anywhere, nothing panics.

/// One encapsulation around an Ethernet frame, giving an Ethernet frame.
#[derive(Clone, Copy, Debug)]
enum Wrap {
    Gre,
    GreTap(u32),
    Ipip,
    Vxlan(u32),
    Geneve(u32),
    Gtpu(u32),
    Mpls(u32),
    Pppoe(u16),
    Erspan2(u16),
}

fn wrap_strategy() -> impl Strategy<Value = Wrap> {
    prop_oneof![
        Just(Wrap::Gre),
        any::<u32>().prop_map(Wrap::GreTap),
        Just(Wrap::Ipip),
        (0u32..1 << 24).prop_map(Wrap::Vxlan),
        (0u32..1 << 24).prop_map(Wrap::Geneve),
        any::<u32>().prop_map(Wrap::Gtpu),
        (0u32..1 << 20).prop_map(Wrap::Mpls),
        any::<u16>().prop_map(Wrap::Pppoe),
        (0u16..1024).prop_map(Wrap::Erspan2),
    ]
}

fn eth_frame(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn outer_ip(proto: u8, body: &[u8]) -> Vec<u8> {
    build::ip_packet(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.1".parse().unwrap(),
        proto,
        body,
    )
}

fn outer_udp(dport: u16, body: &[u8]) -> Vec<u8> {
    let mut u = 50000u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(body);
    eth_frame(0x0800, &outer_ip(17, &u))
}

/// Wraps `eth`; the inner IP packet is `eth[14..]` when the layer carries IP.
fn apply(w: Wrap, eth: &[u8]) -> Vec<u8> {
    let (et, l3) = (u16::from_be_bytes([eth[12], eth[13]]), &eth[14..]);
    let ip = et == 0x0800 || et == 0x86dd;
    // Layers that carry IP carry a non-IP frame as Ethernet over GRE instead.
    let w = match w {
        Wrap::Gre | Wrap::Ipip | Wrap::Gtpu(_) | Wrap::Pppoe(_) if !ip => Wrap::GreTap(1),
        w => w,
    };
    match w {
        Wrap::Gre => {
            let g = [&[0, 0][..], &et.to_be_bytes(), l3].concat();
            eth_frame(0x0800, &outer_ip(47, &g))
        }
        Wrap::GreTap(k) => {
            let g = [&[0x20, 0, 0x65, 0x58][..], &k.to_be_bytes(), eth].concat();
            eth_frame(0x0800, &outer_ip(47, &g))
        }
        Wrap::Ipip if et == 0x0800 => eth_frame(0x0800, &outer_ip(4, l3)),
        Wrap::Ipip => eth_frame(0x0800, &outer_ip(41, l3)),
        Wrap::Vxlan(vni) => outer_udp(
            4789,
            &[&[8, 0, 0, 0][..], &(vni << 8).to_be_bytes(), eth].concat(),
        ),
        Wrap::Geneve(vni) => outer_udp(
            6081,
            &[&[0, 0, 0x65, 0x58][..], &(vni << 8).to_be_bytes(), eth].concat(),
        ),
        Wrap::Gtpu(teid) => {
            let h = [
                &[0x30, 0xff][..],
                &(l3.len() as u16).to_be_bytes(),
                &teid.to_be_bytes(),
            ];
            outer_udp(2152, &[&h.concat()[..], l3].concat())
        }
        Wrap::Mpls(label) => {
            // Ethernet pseudowire with a control word: carries the whole frame.
            let w = (label << 12) | 0x100 | 64;
            eth_frame(0x8847, &[&w.to_be_bytes()[..], &[0, 0, 0, 0], eth].concat())
        }
        Wrap::Pppoe(sid) => {
            let proto: u16 = if et == 0x86dd { 0x57 } else { 0x21 };
            let h = [
                &[0x11, 0][..],
                &sid.to_be_bytes(),
                &((l3.len() + 2) as u16).to_be_bytes(),
            ];
            eth_frame(
                0x8864,
                &[&h.concat()[..], &proto.to_be_bytes(), l3].concat(),
            )
        }
        Wrap::Erspan2(session) => {
            let g = [
                &[0x10, 0, 0x88, 0xbe, 0, 0, 0, 1][..],
                &[0x10, 0, (session >> 8) as u8, session as u8, 0, 0, 0, 0],
                eth,
            ]
            .concat();
            eth_frame(0x0800, &outer_ip(47, &g))
        }
    }
}

/// Layers a wrap adds (MPLS: its label and the pseudowire).
fn layers(w: Wrap) -> usize {
    match w {
        Wrap::Mpls(_) => 2,
        _ => 1,
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn nested_encapsulations_decode_to_the_inner_segment(
        t in tcp_spec(),
        wraps in prop::collection::vec(wrap_strategy(), 0..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let plain = build::tcp_frame(&Tcp { vlan: None, ..t.clone() });
        let reference = decode::decode(LinkType::ETHERNET, &plain, plain.len() as u32);
        let Ok(Decoded::Tcp(reference)) = reference else {
            return Err(TestCaseError::fail(format!("{reference:?}")));
        };
        let mut f = plain.clone();
        for w in &wraps {
            f = apply(*w, &f);
        }
        let depth: usize = wraps.iter().map(|w| layers(*w)).sum();
        let mut tun = decode::Tunnel::default();
        let r = decode::decode_with(LinkType::ETHERNET, &f, f.len() as u32, &mut tun);
        if depth <= decode::MAX_DEPTH {
            let Ok(Decoded::Tcp(s)) = r else {
                return Err(TestCaseError::fail(format!("{wraps:?}: {r:?}")));
            };
            prop_assert_eq!(TcpSegment { payload_at: 0, tunnel: 0, ..s }, TcpSegment { payload_at: 0, ..reference });
            prop_assert_eq!(s.payload(&f), reference.payload(&plain));
            prop_assert_eq!(tun.path.layers().len(), depth);
            prop_assert_eq!(decode::decode(LinkType::ETHERNET, &f, f.len() as u32), r);
        } else {
            prop_assert_eq!(r, Ok(Decoded::NotTcp));
            prop_assert_eq!(tun.unknown, Some(decode::Unknown::TooDeep));
        }
        // Cut anywhere (snaplen), with a damaged byte too: no panic, and a segment
        // decoded from a cut frame says it was cut.
        let keep = cut.index(f.len() + 1);
        let r = decode::decode(LinkType::ETHERNET, &f[..keep], f.len() as u32);
        if keep < f.len() && let Ok(Decoded::Tcp(s)) = r {
            prop_assert!(s.truncated);
        }
        let mut g = f.clone();
        if !g.is_empty() {
            let i = cut.index(g.len());
            g[i] ^= 0xa5;
        }
        let _ = decode::decode(LinkType::ETHERNET, &g, g.len() as u32);
    }
}

// ---------------------------------------------------------------------------
// The engine

proptest! {
    #![proptest_config(cases(500))]

    /// Any sequence of frames with any timestamps: no panic, and after finish the
    /// statistics and records agree (see check_run_invariants).
    #[test]
    fn engine_invariants(input in prop::collection::vec((frame(), step()), 0..60)) {
        let (frames, steps): (Vec<Frame>, Vec<Step>) = input.into_iter().unzip();
        let ts = timestamps(&steps);
        let (engine, out) = run_engine(&frames, &ts);
        check_run_invariants(&frames, &ts, &engine, &out)?;
    }

    /// The same input gives the same records and events (no dependence on the flow
    /// table's random hash seed).
    #[test]
    fn engine_is_deterministic(input in prop::collection::vec((built_frame(), step()), 0..40)) {
        let (frames, steps): (Vec<Frame>, Vec<Step>) = input.into_iter().unzip();
        let ts = timestamps(&steps);
        let (e1, o1) = run_engine(&frames, &ts);
        let (e2, o2) = run_engine(&frames, &ts);
        prop_assert_eq!(e1.stats(), e2.stats());
        prop_assert_eq!(o1.records, o2.records);
        prop_assert_eq!(o1.handshakes, o2.handshakes);
    }

    /// Arbitrary bytes only (nearly nothing decodes): still no panic, same invariants.
    #[test]
    fn engine_junk_frames(input in prop::collection::vec((junk_frame(), any::<u64>()), 0..40)) {
        let (frames, ts): (Vec<Frame>, Vec<u64>) = input.into_iter().unzip();
        // Keep timestamps where a capture file can put them (see `step`).
        let ts: Vec<u64> = ts.into_iter().map(|t| t >> 2).collect();
        let (engine, out) = run_engine(&frames, &ts);
        check_run_invariants(&frames, &ts, &engine, &out)?;
    }
}

// ---------------------------------------------------------------------------
// Known failures, kept as regression tests: run with `cargo test -- --ignored`.

/// Capture times anywhere in u64, the top end included: a pcapng EPB whose 64-bit
/// timestamp is past 2^64 ns saturates to u64::MAX in the reader (`ns_from`).
fn any_ts() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        1 => (u64::MAX - 5_000_000_000)..=u64::MAX,
    ]
}

proptest! {
    #![proptest_config(cases(300))]

    /// Like engine_invariants, with timestamps up to u64::MAX.
    #[test]
    /// Regression (fuzz/regressions/engine): timestamps near u64::MAX overflowed the
    /// sweep deadline.
    fn engine_invariants_full_range_timestamps(input in prop::collection::vec((frame(), any_ts()), 0..40)) {
        let (frames, ts): (Vec<Frame>, Vec<u64>) = input.into_iter().unzip();
        let (engine, out) = run_engine(&frames, &ts);
        check_run_invariants(&frames, &ts, &engine, &out)?;
    }
}

/// The smallest reproduction (also fuzz/regressions/engine/).
#[test]
fn engine_timestamp_at_u64_max() {
    let mut engine = Engine::new(Config::default());
    let mut out = Collect::default();
    engine.process(u64::MAX, LinkType::ETHERNET, &[0u8; 10], 10, &mut out);
    engine.finish(&mut out);
    assert_eq!(engine.stats().frames, 1);
}
