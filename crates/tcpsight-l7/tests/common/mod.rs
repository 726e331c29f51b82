//! A test-only TCP reassembler: reads a capture (tcpsight-io), decodes the link, IP and
//! TCP headers by hand, and turns each TCP connection into the in-order byte events the
//! engine will give an `Analyzer`. Missing bytes become gaps once the peer ACKs past
//! them (the capture lost them) or the connection ends.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use tcpsight_core::Addr;
use tcpsight_l7::{Analyzer, Dir, L7Event};

#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    Data(Dir, u64, Vec<u8>),
    Gap(Dir, u64, u64),
}

#[derive(Debug)]
pub struct Flow {
    /// tshark's tcp.stream numbering: in order of first packet.
    pub index: usize,
    pub client: (Addr, u16),
    pub server: (Addr, u16),
    pub events: Vec<Ev>,
    pub end_ns: u64,
}

#[derive(Default)]
struct DirState {
    isn: Option<u32>,
    next: u64,
    ooo: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Highest byte offset the peer acknowledged (relative to our isn).
    acked: u64,
}

struct Tcp {
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Link header -> (ethertype, offset of the network header).
fn link(link: u32, d: &[u8]) -> Option<(u16, usize)> {
    let (mut et, mut off) = match link {
        1 => (be16(d, 12)?, 14),
        113 => (be16(d, 14)?, 16),
        276 => (be16(d, 0)?, 20),
        0 | 108 => {
            let fam = u32::from_le_bytes(d.get(0..4)?.try_into().ok()?);
            let fam = if fam > 0xffff { fam.swap_bytes() } else { fam };
            (if fam == 2 { 0x0800 } else { 0x86dd }, 4)
        }
        101 | 228 | 229 => (if d.first()? >> 4 == 4 { 0x0800 } else { 0x86dd }, 0),
        _ => return None,
    };
    while et == 0x8100 || et == 0x88a8 {
        et = be16(d, off + 2)?;
        off += 4;
    }
    Some((et, off))
}

fn parse(linktype: u32, d: &[u8]) -> Option<Tcp> {
    let (et, off) = link(linktype, d)?;
    let ip = d.get(off..)?;
    let (src, dst, l4, l4_len) = match et {
        0x0800 => {
            let ihl = (ip.first()? & 0xf) as usize * 4;
            if ip[9] != 6 || be16(ip, 6)? & 0x1fff != 0 {
                return None;
            }
            let total = be16(ip, 2)? as usize;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let t: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                Addr::from_v4(s),
                Addr::from_v4(t),
                ihl,
                total.checked_sub(ihl)?,
            )
        }
        0x86dd => {
            // No extension headers in the test captures' TCP packets.
            if *ip.get(6)? != 6 {
                return None;
            }
            let plen = be16(ip, 4)? as usize;
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let t: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (Addr::from_v6(s), Addr::from_v6(t), 40, plen)
        }
        _ => return None,
    };
    let tcp = ip.get(l4..)?;
    let doff = (tcp.get(12)? >> 4) as usize * 4;
    let plen = l4_len.checked_sub(doff)?;
    let payload = tcp.get(doff..)?;
    let payload = &payload[..payload.len().min(plen)];
    Some(Tcp {
        src,
        dst,
        sport: be16(tcp, 0)?,
        dport: be16(tcp, 2)?,
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: *tcp.get(13)?,
        payload: payload.to_vec(),
    })
}

struct Conn {
    index: usize,
    client: (Addr, u16),
    server: (Addr, u16),
    dirs: [DirState; 2],
    events: Vec<Ev>,
    last_ns: u64,
}

impl Conn {
    fn deliver(&mut self, d: usize, ts: u64) {
        let dir = if d == 0 { Dir::ToServer } else { Dir::ToClient };
        loop {
            let st = &mut self.dirs[d];
            let Some((&off, _)) = st.ooo.iter().next() else {
                return;
            };
            let (seg_ts, data) = st.ooo.remove(&off).unwrap();
            let end = off + data.len() as u64;
            if end <= st.next {
                continue;
            }
            if off > st.next {
                // A hole: only declared once the peer acked past it.
                if st.acked > st.next || st.ooo.len() >= 16 || ts == u64::MAX {
                    let gap = off - st.next;
                    self.events.push(Ev::Gap(dir, seg_ts, gap));
                    self.dirs[d].next = off;
                } else {
                    self.dirs[d].ooo.insert(off, (seg_ts, data));
                    return;
                }
            }
            let st = &mut self.dirs[d];
            let skip = (st.next - off) as usize;
            st.next = end;
            self.events
                .push(Ev::Data(dir, seg_ts, data[skip..].to_vec()));
        }
    }
}

/// Reads every TCP connection of `path` (relative to the repository root).
pub fn flows(path: &str) -> Vec<Flow> {
    let full = format!("{}/../../{}", env!("CARGO_MANIFEST_DIR"), path);
    let mut r = tcpsight_io::CaptureReader::open(&full).expect("open capture");
    let mut conns: HashMap<(Addr, u16, Addr, u16), Conn> = HashMap::new();
    let mut n = 0;
    let mut done: Vec<Conn> = Vec::new();
    while r.advance().expect("read") {
        let f = r.current().unwrap();
        let Some(t) = parse(f.link.0, f.data) else {
            continue;
        };
        let ts = f.ts_ns;
        let key = if (t.src, t.sport) < (t.dst, t.dport) {
            (t.src, t.sport, t.dst, t.dport)
        } else {
            (t.dst, t.dport, t.src, t.sport)
        };
        let syn = t.flags & 0x02 != 0;
        let ackf = t.flags & 0x10 != 0;
        // A new SYN on a 4-tuple that already carried data is a new connection (port
        // reuse), as tshark numbers it.
        if syn
            && !ackf
            && let Some(old) = conns.get(&key)
            && (!old.events.is_empty() || old.dirs.iter().any(|d| !d.ooo.is_empty()))
            && (t.src, t.sport) == old.client
        {
            let old = conns.remove(&key).unwrap();
            done.push(old);
        }
        let c = conns.entry(key).or_insert_with(|| {
            // The client sent the SYN; a SYN/ACK's receiver; else the first sender.
            let from_client = !(syn && ackf);
            n += 1;
            let (cl, sv) = if from_client {
                ((t.src, t.sport), (t.dst, t.dport))
            } else {
                ((t.dst, t.dport), (t.src, t.sport))
            };
            Conn {
                index: n - 1,
                client: cl,
                server: sv,
                dirs: Default::default(),
                events: Vec::new(),
                last_ns: ts,
            }
        });
        c.last_ns = ts;
        let d = if (t.src, t.sport) == c.client { 0 } else { 1 };
        let st = &mut c.dirs[d];
        if syn && st.next == 0 && st.ooo.is_empty() {
            // A SYN (or SYN/ACK) before any data of its direction sets (or resets) the
            // initial sequence number: earlier stray segments are forgotten.
            *st = DirState {
                isn: Some(t.seq.wrapping_add(1)),
                ..Default::default()
            };
        } else if st.isn.is_none() {
            st.isn = Some(t.seq);
        }
        // The peer's ACK tells what it received of the other direction.
        if ackf && let Some(pisn) = c.dirs[1 - d].isn {
            let a = t.ack.wrapping_sub(pisn) as u64;
            if a < (1 << 31) {
                c.dirs[1 - d].acked = c.dirs[1 - d].acked.max(a);
            }
        }
        let st = &mut c.dirs[d];
        if !t.payload.is_empty() {
            let isn = st.isn.unwrap();
            let off = t.seq.wrapping_sub(isn) as u64;
            if off < (1 << 31) {
                st.ooo.entry(off).or_insert((ts, t.payload));
            }
        }
        c.deliver(d, ts);
        c.deliver(1 - d, ts);
    }
    let mut out: Vec<Flow> = conns
        .into_values()
        .chain(done)
        .map(|mut c| {
            c.deliver(0, u64::MAX);
            c.deliver(1, u64::MAX);
            Flow {
                index: c.index,
                client: c.client,
                server: c.server,
                events: c.events,
                end_ns: c.last_ns,
            }
        })
        .collect();
    out.sort_by_key(|f| f.index);
    out
}

/// Runs an analyzer over a flow's events; returns its events and the analyzer.
pub fn analyze(f: &Flow) -> (Vec<L7Event>, Analyzer) {
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    for ev in &f.events {
        match ev {
            Ev::Data(d, ts, b) => {
                a.on_data(*d, *ts, b, &mut out);
            }
            Ev::Gap(d, ts, n) => a.on_gap(*d, *ts, *n, &mut out),
        }
    }
    a.on_end(f.end_ns, &mut out);
    (out, a)
}
