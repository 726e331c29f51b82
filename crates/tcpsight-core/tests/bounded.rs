//! Bounded memory: a SYN flood (5 M SYNs from random sources and ports) and a port scan
//! mixed with normal traffic. The engine never tracks more than `max_connections`, every
//! eviction is counted, and the normal connections' records are exactly what they are
//! without the flood.

use std::net::{IpAddr, Ipv4Addr};

use tcpsight_core::build::{Tcp, tcp_frame};
use tcpsight_core::decode::TcpFlags;
use tcpsight_core::{Config, ConnRecord, Engine, LinkType, Observer};

const S: u16 = TcpFlags::SYN;
const A: u16 = TcpFlags::ACK;
const F: u16 = TcpFlags::FIN;
const P: u16 = TcpFlags::PSH;
const MS: u64 = 1_000_000;
const T0: u64 = 1_750_000_000_000_000_000;

fn server() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9))
}

/// A segment from `src` to `dst` (addresses with ports) with `flags`, `seq`, `ack` and
/// `len` payload bytes.
fn seg(
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: u16,
    seq_ack: (u32, u32),
    len: usize,
) -> Vec<u8> {
    let mut t = Tcp::new(src.0, src.1, dst.0, dst.1);
    t.flags = flags;
    (t.seq, t.ack) = seq_ack;
    t.payload_len = len;
    t.syn_options = flags & S != 0;
    tcp_frame(&t)
}

/// Normal connection `i`: handshake (1 ms each way), a request, a 2,000-byte response,
/// FIN both ways, the last ACK. Frames with their times.
fn normal(i: u32) -> Vec<(u64, Vec<u8>)> {
    let c = IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8));
    let cp = 20_000 + (i % 40_000) as u16;
    let s = server();
    let t = T0 + i as u64 * 25 * MS;
    let (c, s) = ((c, cp), (s, 80));
    vec![
        (t, seg(c, s, S, (100, 0), 0)),
        (t + MS, seg(s, c, S | A, (5000, 101), 0)),
        (t + 2 * MS, seg(c, s, A, (101, 5001), 0)),
        (t + 3 * MS, seg(c, s, A | P, (101, 5001), 300)),
        (t + 8 * MS, seg(s, c, A | P, (5001, 401), 2000)),
        (t + 9 * MS, seg(c, s, A | F, (401, 7001), 0)),
        (t + 10 * MS, seg(s, c, A | F, (7001, 402), 0)),
        (t + 11 * MS, seg(c, s, A, (402, 7002), 0)),
    ]
}

#[derive(Default)]
struct Out {
    normal: Vec<ConnRecord>,
    others: u64,
}

impl Observer for Out {
    fn on_connection(&mut self, r: &ConnRecord) {
        let from_normal_client =
            matches!(r.client.ip(), IpAddr::V4(a) if a.octets()[..2] == [10, 0]);
        if r.server_port == 80 && from_normal_client {
            let mut r = r.clone();
            r.id = Default::default();
            self.normal.push(r);
        } else {
            self.others += 1;
        }
    }
}

/// A small, fast deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const NORMAL: u32 = 400;
const FLOOD: u64 = 5_000_000;
const SCAN_PORTS: u16 = 20_000;
const MAX: usize = 100_000;

fn run(flood: bool) -> (Out, tcpsight_core::CaptureStats, usize) {
    let mut engine = Engine::new(Config {
        max_connections: MAX,
        ..Config::default()
    });
    let mut out = Out::default();
    let mut normal_frames: Vec<(u64, Vec<u8>)> = (0..NORMAL).flat_map(normal).collect();
    normal_frames.sort_by_key(|(t, _)| *t);
    let span = NORMAL as u64 * 25 * MS;
    let mut next_normal = 0;
    let mut peak = 0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The attack: FLOOD random SYNs with a scanner's SYN every `scan_every` frames,
    // spread evenly over the normal traffic's span.
    let attack = if flood { FLOOD + SCAN_PORTS as u64 } else { 0 };
    let scan_every = (FLOOD + SCAN_PORTS as u64) / SCAN_PORTS as u64;
    let mut ports = 1..=SCAN_PORTS;
    for k in 0..attack {
        let ts = T0 + k * span / attack;
        while next_normal < normal_frames.len() && normal_frames[next_normal].0 <= ts {
            let (t, f) = &normal_frames[next_normal];
            engine.process(*t, LinkType::ETHERNET, f, f.len() as u32, &mut out);
            next_normal += 1;
        }
        let scan_port = (k % scan_every == 0).then(|| ports.next()).flatten();
        let f = match scan_port {
            // The scanner: one source, every port in turn.
            Some(port) => seg(
                (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1)), 55_555),
                (server(), port),
                S,
                (1, 0),
                0,
            ),
            None => {
                let r = rng.next();
                let src = IpAddr::V4(Ipv4Addr::from((r >> 32) as u32 | 0x4000_0000));
                seg(
                    (src, r as u16 | 1024),
                    (server(), 443),
                    S,
                    ((r >> 16) as u32, 0),
                    0,
                )
            }
        };
        engine.process(ts, LinkType::ETHERNET, &f, f.len() as u32, &mut out);
        peak = peak.max(engine.active());
    }
    for (t, f) in &normal_frames[next_normal..] {
        engine.process(*t, LinkType::ETHERNET, f, f.len() as u32, &mut out);
    }
    engine.finish(&mut out);
    (out, engine.stats(), peak)
}

#[test]
fn a_syn_flood_and_a_scan_stay_within_the_bound_and_leave_normal_connections_alone() {
    let (calm, calm_stats, _) = run(false);
    assert_eq!(calm.normal.len(), NORMAL as usize);
    assert_eq!(calm_stats.evicted, 0);
    assert!(
        calm.normal
            .iter()
            .all(|r| r.conn_state == "SF" && r.s2c.unique_bytes == 2000)
    );

    let (stormy, st, peak) = run(true);
    assert!(peak <= MAX, "tracked {peak} connections, bound {MAX}");
    assert_eq!(peak, MAX, "the flood should fill the table");
    let attempts = FLOOD + SCAN_PORTS as u64 + NORMAL as u64;
    assert!(
        st.connections >= attempts - 1_000,
        "{} connections",
        st.connections
    );
    // Everything beyond the bound was evicted, counted, and still reported.
    assert!(
        st.evicted >= st.connections - MAX as u64 - NORMAL as u64,
        "{} evicted",
        st.evicted
    );
    assert_eq!(stormy.others + stormy.normal.len() as u64, st.connections);
    assert_eq!(stormy.normal.len(), calm.normal.len());
    for (a, b) in calm.normal.iter().zip(&stormy.normal) {
        assert_eq!(a, b, "a normal connection changed under the flood");
    }
}
