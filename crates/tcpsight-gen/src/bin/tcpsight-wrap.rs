//! tcpsight-wrap: test captures of tunnels and link types, made by wrapping every frame
//! of real Ethernet captures in encapsulations and/or another link layer. Deterministic
//! (same input, same bytes out), for the tunnels the kernel here cannot make.
//!
//! `tcpsight-wrap [--link L] -o OUT SPEC IN...`
//!
//! SPEC: layers outermost first, comma-separated (`vxlan:4711,gre` = GRE inside VXLAN),
//! or `none`; several SPECs joined by `;` emit every frame once per SPEC (1 us apart),
//! e.g. the same connections in two VXLAN networks. Layers:
//!
//! | layer | what | carries |
//! | --- | --- | --- |
//! | `gre[:KEY][+seq][+csum]` | GRE over IPv4 | IP |
//! | `gretap[:KEY]` | GRE 0x6558 (transparent Ethernet bridging) | Ethernet |
//! | `erspan1`, `erspan2:S`, `erspan3:S` | ERSPAN type I / II / III session S over GRE | Ethernet |
//! | `ipip`, `6in4`, `4in6`, `6in6` | IP in IP | IPv4 / IPv6 |
//! | `vxlan:VNI`, `geneve:VNI` | UDP 4789 / 6081 over IPv4 | Ethernet |
//! | `gtpu:TEID` | UDP 2152; the TEID is TEID in one direction, TEID+1 in the other | IP |
//! | `mpls:L[/L...]` | MPLS label stack; each label +1000 in the other direction | IP |
//! | `mpls-pw:L` | Ethernet pseudowire with a control word under label L | Ethernet |
//! | `pppoe:SID` | PPPoE session | IP |
//! | `pbb:ISID`, `vntag` | 802.1ah I-TAG / Cisco VN-Tag | Ethernet |
//!
//! A `@6` suffix on gre, gretap, erspan*, vxlan, geneve, gtpu puts them over IPv6.
//! Outer addresses are 192.0.2.1 / 198.51.100.1 (2001:db8::1 / 2001:db8::2), by the
//! direction of the inner packet (the smaller inner address sends from the first).
//! Frames a layer cannot carry (IPv6 into ipip, ARP into gre) are left out and counted.
//!
//! `--link`: ether (default), raw, ppp (9, bare PPP), ppp-hdlc (50, with ff 03), chdlc
//! (104), frelay (107, RFC 2427, DLCI 100), wlan (105: data frames To/From DS by
//! direction, every other one QoS data, and after every 10th an encrypted data frame
//! that carries nothing readable), radiotap (127, an 8-byte header before wlan's), ppi
//! (192, over wlan), nflog (239), juniper (178, "MGC" and Ethernet).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use tcpsight_core::LinkType;
use tcpsight_io::{CaptureReader, CaptureWriter, WriteFormat};

const USAGE: &str = "usage: tcpsight-wrap [--link L] -o OUT SPEC IN...  (see the source's doc)";

/// A packet being wrapped: an Ethernet frame, or a network-layer packet and its ethertype.
#[derive(Clone)]
enum P {
    Eth(Vec<u8>),
    L3(u16, Vec<u8>),
}

#[derive(Clone, Debug)]
enum Layer {
    Gre {
        key: Option<u32>,
        seq: bool,
        csum: bool,
        v6: bool,
    },
    GreTap {
        key: Option<u32>,
        v6: bool,
    },
    Erspan {
        kind: u8,
        session: u16,
        v6: bool,
    },
    IpIn {
        outer6: bool,
        inner6: bool,
    },
    Vxlan(u32, bool),
    Geneve(u32, bool),
    Gtpu(u32, bool),
    Mpls(Vec<u32>),
    MplsPw(u32),
    Pppoe(u16),
    Pbb(u32),
    VnTag,
}

struct State {
    ip_id: u16,
    seq: u32,
    frames: u64,
}

fn parse_layer(s: &str) -> Result<Layer, String> {
    let (s, v6) = match s.strip_suffix("@6") {
        Some(x) => (x, true),
        None => (s, false),
    };
    let mut parts = s.split('+');
    let head = parts.next().unwrap_or("");
    let flags: Vec<&str> = parts.collect();
    let (name, arg) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (head, None),
    };
    let num = |a: Option<&str>| -> Result<u32, String> {
        a.ok_or(format!("{name} needs :N"))?
            .parse()
            .map_err(|e| format!("{head}: {e}"))
    };
    Ok(match name {
        "gre" => Layer::Gre {
            key: arg
                .map(|a| a.parse().map_err(|e| format!("{head}: {e}")))
                .transpose()?,
            seq: flags.contains(&"seq"),
            csum: flags.contains(&"csum"),
            v6,
        },
        "gretap" => Layer::GreTap {
            key: arg
                .map(|a| a.parse().map_err(|e| format!("{head}: {e}")))
                .transpose()?,
            v6,
        },
        "erspan1" => Layer::Erspan {
            kind: 1,
            session: 0,
            v6,
        },
        "erspan2" => Layer::Erspan {
            kind: 2,
            session: num(arg)? as u16,
            v6,
        },
        "erspan3" => Layer::Erspan {
            kind: 3,
            session: num(arg)? as u16,
            v6,
        },
        "ipip" => Layer::IpIn {
            outer6: false,
            inner6: false,
        },
        "6in4" => Layer::IpIn {
            outer6: false,
            inner6: true,
        },
        "4in6" => Layer::IpIn {
            outer6: true,
            inner6: false,
        },
        "6in6" => Layer::IpIn {
            outer6: true,
            inner6: true,
        },
        "vxlan" => Layer::Vxlan(num(arg)?, v6),
        "geneve" => Layer::Geneve(num(arg)?, v6),
        "gtpu" => Layer::Gtpu(num(arg)?, v6),
        "mpls" => Layer::Mpls(
            arg.ok_or("mpls needs :L[/L...]")?
                .split('/')
                .map(|l| l.parse().map_err(|e| format!("{head}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        "mpls-pw" => Layer::MplsPw(num(arg)?),
        "pppoe" => Layer::Pppoe(num(arg)? as u16),
        "pbb" => Layer::Pbb(num(arg)?),
        "vntag" => Layer::VnTag,
        _ => return Err(format!("unknown layer {s}")),
    })
}

const MAC_A: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x0b];
const OUT4: [[u8; 4]; 2] = [[192, 0, 2, 1], [198, 51, 100, 1]];
const OUT6: [[u8; 16]; 2] = [
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
];

fn eth(d: usize, et: u16, body: &[u8]) -> Vec<u8> {
    let (dst, src) = if d == 0 {
        (MAC_B, MAC_A)
    } else {
        (MAC_A, MAC_B)
    };
    let mut f = Vec::with_capacity(14 + body.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn to_eth(p: P, d: usize) -> P {
    match p {
        P::L3(et, b) => P::Eth(eth(d, et, &b)),
        e => e,
    }
}

fn to_l3(p: P) -> Option<P> {
    match p {
        P::Eth(f) if f.len() >= 14 => {
            let et = u16::from_be_bytes([f[12], f[13]]);
            (et != 0x8100 && et > 1500).then(|| P::L3(et, f[14..].to_vec()))
        }
        P::Eth(_) => None,
        l3 => Some(l3),
    }
}

fn csum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ipv4(st: &mut State, d: usize, proto: u8, body: &[u8]) -> P {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    let total = (20 + body.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    st.ip_id = st.ip_id.wrapping_add(1);
    h[4..6].copy_from_slice(&st.ip_id.to_be_bytes());
    h.extend_from_slice(&OUT4[d]);
    h.extend_from_slice(&OUT4[1 - d]);
    let c = csum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(body);
    P::L3(0x0800, h)
}

fn ipv6(d: usize, next: u8, body: &[u8]) -> P {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&OUT6[d]);
    h.extend_from_slice(&OUT6[1 - d]);
    h.extend_from_slice(body);
    P::L3(0x86dd, h)
}

fn outer(st: &mut State, d: usize, v6: bool, proto: u8, body: &[u8]) -> P {
    if v6 {
        ipv6(d, proto, body)
    } else {
        ipv4(st, d, proto, body)
    }
}

fn udp(st: &mut State, d: usize, v6: bool, sport: u16, dport: u16, body: &[u8]) -> P {
    let len = (8 + body.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(body);
    if v6 {
        // IPv6 needs the UDP checksum (pseudo-header: addresses, length, next header).
        let mut init = 0u32;
        for a in [OUT6[d], OUT6[1 - d]] {
            for c in a.chunks(2) {
                init += u16::from_be_bytes([c[0], c[1]]) as u32;
            }
        }
        init += len as u32 + 17;
        let c = csum(&u, init);
        u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    }
    outer(st, d, v6, 17, &u)
}

/// The inner flow's entropy for UDP source ports (as the kernel hashes it).
fn entropy(p: &P) -> u16 {
    let b = match p {
        P::Eth(f) => f.as_slice(),
        P::L3(_, b) => b.as_slice(),
    };
    let h = b.iter().take(64).fold(0x811c_9dc5u32, |h, &x| {
        (h ^ x as u32).wrapping_mul(0x0100_0193)
    });
    // Direction-free enough for a test: the same flow keeps one port per direction.
    49152 + (h % 16384) as u16
}

fn gre_header(flags: u16, proto: u16, key: Option<u32>, seq: Option<u32>, csum: bool) -> Vec<u8> {
    let mut f = flags;
    if key.is_some() {
        f |= 0x2000;
    }
    if seq.is_some() {
        f |= 0x1000;
    }
    if csum {
        f |= 0x8000;
    }
    let mut h = f.to_be_bytes().to_vec();
    h.extend_from_slice(&proto.to_be_bytes());
    if csum {
        h.extend_from_slice(&[0, 0, 0, 0]);
    }
    if let Some(k) = key {
        h.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        h.extend_from_slice(&s.to_be_bytes());
    }
    h
}

fn wrap(st: &mut State, layer: &Layer, p: P, d: usize) -> Option<P> {
    st.seq = st.seq.wrapping_add(1);
    let seq = st.seq;
    Some(match layer {
        Layer::Gre {
            key,
            seq: s,
            csum,
            v6,
        } => {
            let P::L3(et, b) = to_l3(p)? else { return None };
            let mut g = gre_header(0, et, *key, s.then_some(seq), *csum);
            g.extend_from_slice(&b);
            if *csum {
                // The checksum covers the GRE header and payload.
                let c = self::csum(&g, 0);
                g[4..6].copy_from_slice(&c.to_be_bytes());
            }
            outer(st, d, *v6, 47, &g)
        }
        Layer::GreTap { key, v6 } => {
            let P::Eth(f) = to_eth(p, d) else { return None };
            let mut g = gre_header(0, 0x6558, *key, None, false);
            g.extend_from_slice(&f);
            outer(st, d, *v6, 47, &g)
        }
        Layer::Erspan { kind, session, v6 } => {
            let P::Eth(f) = to_eth(p, d) else { return None };
            let mut g = match kind {
                1 => gre_header(0, 0x88be, None, None, false),
                2 => {
                    let mut g = gre_header(0, 0x88be, None, Some(seq), false);
                    // version 1, VLAN 0; CoS 0, En 0, T 0, session; reserved, index 7
                    g.extend_from_slice(&(0x1000u16).to_be_bytes());
                    g.extend_from_slice(&(*session & 0x3ff).to_be_bytes());
                    g.extend_from_slice(&7u32.to_be_bytes());
                    g
                }
                _ => {
                    let mut g = gre_header(0, 0x22eb, None, Some(seq), false);
                    // version 2, VLAN 0; session; timestamp; SGT 0; P 0, FT 0 (Ethernet),
                    // hardware id 1, D by direction, granularity 0, O 0
                    g.extend_from_slice(&(0x2000u16).to_be_bytes());
                    g.extend_from_slice(&(*session & 0x3ff).to_be_bytes());
                    g.extend_from_slice(&seq.wrapping_mul(1000).to_be_bytes());
                    g.extend_from_slice(&[0, 0]);
                    let w: u16 = (1 << 4) | ((d as u16) << 3);
                    g.extend_from_slice(&w.to_be_bytes());
                    g
                }
            };
            g.extend_from_slice(&f);
            outer(st, d, *v6, 47, &g)
        }
        Layer::IpIn { outer6, inner6 } => {
            let P::L3(et, b) = to_l3(p)? else { return None };
            if et != if *inner6 { 0x86dd } else { 0x0800 } {
                return None;
            }
            outer(st, d, *outer6, if *inner6 { 41 } else { 4 }, &b)
        }
        Layer::Vxlan(vni, v6) => {
            let sport = entropy(&p);
            let P::Eth(f) = to_eth(p, d) else { return None };
            let mut v = vec![0x08, 0, 0, 0];
            v.extend_from_slice(&(vni << 8).to_be_bytes());
            v.extend_from_slice(&f);
            udp(st, d, *v6, sport, 4789, &v)
        }
        Layer::Geneve(vni, v6) => {
            let sport = entropy(&p);
            let P::Eth(f) = to_eth(p, d) else { return None };
            // version 0, one 4-byte option (class 0x0101, type 1, length 0... 1 word)
            let mut v = vec![0x01, 0x00, 0x65, 0x58];
            v.extend_from_slice(&(vni << 8).to_be_bytes());
            v.extend_from_slice(&[0x01, 0x01, 0x01, 0x00]);
            v.extend_from_slice(&f);
            udp(st, d, *v6, sport, 6081, &v)
        }
        Layer::Gtpu(teid, v6) => {
            let P::L3(et, b) = to_l3(p)? else { return None };
            if et != 0x0800 && et != 0x86dd {
                return None;
            }
            // version 1, PT 1, S set on every other packet (sequence number follows)
            let with_seq = seq.is_multiple_of(2);
            let mut g = vec![if with_seq { 0x32 } else { 0x30 }, 0xff];
            let len = b.len() + if with_seq { 4 } else { 0 };
            g.extend_from_slice(&(len as u16).to_be_bytes());
            g.extend_from_slice(&(teid + d as u32).to_be_bytes());
            if with_seq {
                g.extend_from_slice(&(seq as u16).to_be_bytes());
                g.extend_from_slice(&[0, 0]);
            }
            g.extend_from_slice(&b);
            udp(st, d, *v6, 2152, 2152, &g)
        }
        Layer::Mpls(labels) => {
            let P::L3(et, b) = to_l3(p)? else { return None };
            if et != 0x0800 && et != 0x86dd {
                return None;
            }
            let mut m = Vec::new();
            for (i, l) in labels.iter().enumerate() {
                let bos = (i + 1 == labels.len()) as u32;
                let w = ((l + 1000 * d as u32) << 12) | (bos << 8) | 64;
                m.extend_from_slice(&w.to_be_bytes());
            }
            m.extend_from_slice(&b);
            P::L3(0x8847, m)
        }
        Layer::MplsPw(label) => {
            let P::Eth(f) = to_eth(p, d) else { return None };
            let w = ((label + 1000 * d as u32) << 12) | (1 << 8) | 64;
            let mut m = w.to_be_bytes().to_vec();
            m.extend_from_slice(&(seq & 0xffff).to_be_bytes()); // control word: 0, sequence
            m.extend_from_slice(&f);
            P::L3(0x8847, m)
        }
        Layer::Pppoe(sid) => {
            let P::L3(et, b) = to_l3(p)? else { return None };
            let proto: u16 = match et {
                0x0800 => 0x0021,
                0x86dd => 0x0057,
                _ => return None,
            };
            let mut h = vec![0x11, 0x00];
            h.extend_from_slice(&sid.to_be_bytes());
            h.extend_from_slice(&((b.len() + 2) as u16).to_be_bytes());
            h.extend_from_slice(&proto.to_be_bytes());
            h.extend_from_slice(&b);
            P::L3(0x8864, h)
        }
        Layer::Pbb(isid) => {
            let P::Eth(f) = to_eth(p, d) else { return None };
            let mut h = (isid & 0x00ff_ffff).to_be_bytes().to_vec();
            h.extend_from_slice(&f);
            P::L3(0x88e7, h)
        }
        Layer::VnTag => {
            let P::Eth(f) = to_eth(p, d) else { return None };
            // Insert the tag after the MAC addresses: 0x8926, 4 tag bytes, then the
            // frame's own ethertype and payload.
            let mut g = f[..12].to_vec();
            g.extend_from_slice(&0x8926u16.to_be_bytes());
            g.extend_from_slice(&[0x80 | d as u8, 0x05, 0x00, 0x07]);
            g.extend_from_slice(&f[12..]);
            P::Eth(g)
        }
    })
}

fn ppp_proto(et: u16) -> Option<u16> {
    match et {
        0x0800 => Some(0x0021),
        0x86dd => Some(0x0057),
        0x8847 => Some(0x0281),
        _ => None,
    }
}

/// The 802.11 data frame carrying `et`/`b` in direction `d` (0: to the AP).
fn wlan(st: &mut State, d: usize, et: u16, b: &[u8], protected: bool) -> Vec<u8> {
    const BSSID: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0xaa];
    let qos = st.frames % 2 == 1;
    let mut f = vec![
        if qos { 0x88 } else { 0x08 },
        if d == 0 { 0x01 } else { 0x02 },
    ];
    if protected {
        f[1] |= 0x40;
    }
    f.extend_from_slice(&[0, 0]);
    let (a1, a2, a3) = if d == 0 {
        (BSSID, MAC_A, MAC_B)
    } else {
        (MAC_A, BSSID, MAC_B)
    };
    f.extend_from_slice(&a1);
    f.extend_from_slice(&a2);
    f.extend_from_slice(&a3);
    f.extend_from_slice(&(((st.frames & 0xfff) as u16) << 4).to_le_bytes());
    if qos {
        f.extend_from_slice(&[0, 0]);
    }
    if protected {
        // A CCMP header and ciphertext-like bytes: nothing readable, no LLC.
        f.extend_from_slice(&[1, 0, 0, 0x20, 0, 0, 0, 0]);
        f.extend((0..48u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        return f;
    }
    f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(b);
    f
}

fn tlv(out: &mut Vec<u8>, kind: u16, v: &[u8]) {
    out.extend_from_slice(&((4 + v.len()) as u16).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(v);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The frame(s) on link `link` for packet `p` (several for wlan's encrypted extras).
fn frame(st: &mut State, link: &str, p: P, d: usize) -> Option<Vec<Vec<u8>>> {
    st.frames += 1;
    let one = |f: Vec<u8>| Some(vec![f]);
    match link {
        "ether" => match to_eth(p, d) {
            P::Eth(f) => one(f),
            P::L3(..) => None,
        },
        "juniper" => match to_eth(p, d) {
            P::Eth(f) => {
                let mut j = b"MGC".to_vec();
                j.push(if d == 1 { 0x01 } else { 0x00 });
                j.extend_from_slice(&f);
                one(j)
            }
            P::L3(..) => None,
        },
        _ => {
            let P::L3(et, b) = to_l3(p)? else { return None };
            match link {
                "raw" => (et == 0x0800 || et == 0x86dd).then(|| vec![b]),
                "ppp" | "ppp-hdlc" => {
                    let mut f = if link == "ppp-hdlc" {
                        vec![0xff, 0x03]
                    } else {
                        vec![]
                    };
                    f.extend_from_slice(&ppp_proto(et)?.to_be_bytes());
                    f.extend_from_slice(&b);
                    one(f)
                }
                "chdlc" => {
                    let mut f = vec![if d == 0 { 0x0f } else { 0x8f }, 0x00];
                    f.extend_from_slice(&et.to_be_bytes());
                    f.extend_from_slice(&b);
                    one(f)
                }
                "frelay" => {
                    let dlci = 100u16;
                    let mut f = vec![
                        ((dlci >> 4) << 2) as u8,
                        (((dlci & 0xf) << 4) | 1) as u8,
                        0x03,
                    ];
                    match et {
                        0x0800 => f.push(0xcc),
                        0x86dd => f.push(0x8e),
                        _ => {
                            f.extend_from_slice(&[0x00, 0x80, 0, 0, 0]);
                            f.extend_from_slice(&et.to_be_bytes());
                        }
                    }
                    f.extend_from_slice(&b);
                    one(f)
                }
                "wlan" | "radiotap" | "ppi" => {
                    let hdr: Vec<u8> = match link {
                        "radiotap" => vec![0, 0, 8, 0, 0, 0, 0, 0],
                        "ppi" => vec![0, 0, 8, 0, 105, 0, 0, 0],
                        _ => vec![],
                    };
                    let mut out = Vec::new();
                    let mut f = hdr.clone();
                    f.extend_from_slice(&wlan(st, d, et, &b, false));
                    out.push(f);
                    if st.frames.is_multiple_of(10) {
                        let mut e = hdr;
                        e.extend_from_slice(&wlan(st, d, et, &b, true));
                        out.push(e);
                    }
                    Some(out)
                }
                "nflog" => {
                    let family = match et {
                        0x0800 => 2,
                        0x86dd => 10,
                        _ => return None,
                    };
                    let mut f = vec![family, 0, 0, 0];
                    let mut hdr = et.to_be_bytes().to_vec();
                    hdr.extend_from_slice(&[3, 0]);
                    tlv(&mut f, 1, &hdr);
                    tlv(&mut f, 10, b"tcpsight\0");
                    tlv(&mut f, 9, &b);
                    one(f)
                }
                _ => None,
            }
        }
    }
}

fn link_type(link: &str) -> Option<LinkType> {
    Some(LinkType(match link {
        "ether" => 1,
        "raw" => 101,
        "ppp" => 9,
        "ppp-hdlc" => 50,
        "chdlc" => 104,
        "frelay" => 107,
        "wlan" => 105,
        "radiotap" => 127,
        "ppi" => 192,
        "nflog" => 239,
        "juniper" => 178,
        _ => return None,
    }))
}

/// Direction of an Ethernet frame's IP packet: 0 when its source is the smaller address.
fn direction(f: &[u8]) -> usize {
    if f.len() < 14 {
        return 0;
    }
    let l3 = &f[14..];
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 if l3.len() >= 20 => (l3[12..16] > l3[16..20]) as usize,
        0x86dd if l3.len() >= 40 => (l3[8..24] > l3[24..40]) as usize,
        _ => 0,
    }
}

/// The source frame without Ethernet padding (cut to the IP packet's length).
fn trimmed(f: &[u8]) -> Vec<u8> {
    if f.len() >= 34 && f[12..14] == [0x08, 0x00] {
        let total = u16::from_be_bytes([f[16], f[17]]) as usize;
        if total >= 20 && 14 + total < f.len() {
            return f[..14 + total].to_vec();
        }
    }
    if f.len() >= 54 && f[12..14] == [0x86, 0xdd] {
        let total = 40 + u16::from_be_bytes([f[18], f[19]]) as usize;
        if 14 + total < f.len() {
            return f[..14 + total].to_vec();
        }
    }
    f.to_vec()
}

fn run(args: &[String]) -> Result<(), String> {
    let mut link = "ether".to_string();
    let mut out = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--link" => link = it.next().ok_or("--link needs a value")?.clone(),
            "-o" => out = Some(it.next().ok_or("-o needs a value")?.clone()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(a.clone()),
        }
    }
    let out = out.ok_or(USAGE)?;
    let (spec, inputs) = rest.split_first().ok_or(USAGE)?;
    if inputs.is_empty() {
        return Err(USAGE.into());
    }
    let specs: Vec<Vec<Layer>> = spec
        .split(';')
        .map(|s| {
            if s == "none" {
                Ok(vec![])
            } else {
                s.split(',').map(parse_layer).collect()
            }
        })
        .collect::<Result<_, _>>()?;
    let lt = link_type(&link).ok_or(format!("unknown link {link}"))?;
    let file = File::create(&out).map_err(|e| format!("{out}: {e}"))?;
    let mut w = CaptureWriter::new(BufWriter::new(file), WriteFormat::Pcap, lt, 262_144, "wrap")
        .map_err(|e| e.to_string())?;
    let mut st = State {
        ip_id: 0,
        seq: 0,
        frames: 0,
    };
    let (mut read, mut skipped) = (0u64, 0u64);
    for path in inputs {
        let mut r = CaptureReader::open(path).map_err(|e| e.to_string())?;
        while r.advance().map_err(|e| e.to_string())? {
            let f = r.current().expect("a frame after advance");
            if f.link != LinkType::ETHERNET {
                return Err(format!("{path}: only Ethernet sources ({})", f.link.name()));
            }
            read += 1;
            let src = trimmed(f.data);
            let d = direction(&src);
            for (i, layers) in specs.iter().enumerate() {
                let mut p = Some(P::Eth(src.clone()));
                for l in layers.iter().rev() {
                    p = p.and_then(|p| wrap(&mut st, l, p, d));
                }
                let Some(frames) = p.and_then(|p| frame(&mut st, &link, p, d)) else {
                    skipped += 1;
                    continue;
                };
                for (j, fr) in frames.iter().enumerate() {
                    let ts = f.ts_ns + (i * 2 + j) as u64 * 1000;
                    w.write(ts, fr, fr.len() as u32)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let frames = w.frames;
    w.finish()
        .and_then(|mut b| b.flush())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "tcpsight-wrap: {read} frames read, {frames} written ({} link), {skipped} left out -> {out}",
        lt.name()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpsight-wrap: {e}");
            ExitCode::from(2)
        }
    }
}
