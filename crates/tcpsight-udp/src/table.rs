//! The UDP flow table: datagrams in (in capture order), finished flows out.
//!
//! Deadlines are in capture time, taken from the datagrams themselves: a flow ends
//! when a datagram arrives strictly after its last one plus the idle timeout (whichever
//! flow that datagram belongs to), or at the end of input. Deadlines sit in a lazy
//! min-heap, one entry per flow: a datagram never touches the heap (it only moves the
//! flow's `last`); an entry found stale when it comes up is pushed again at the flow's
//! real deadline. So the per-datagram cost is a hash lookup and a heap peek.
//!
//! Memory: at most `max_flows` flows; a new flow past the bound first ends the one
//! whose deadline comes first, counted as evicted (its record says `end: evicted`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashMap;
use tcpsight_core::{Datagram, FlowKey};

use crate::guess::{Proto, guess};
use crate::record::{End, UdpDir, UdpRecord};

/// Datagrams with payload a flow tries before its protocol stays unknown.
const GUESS_TRIES: u8 = 4;

#[derive(Clone, Copy, Debug)]
pub struct UdpConfig {
    pub idle_timeout_ns: u64,
    /// At most this many flows at once (0: no bound).
    pub max_flows: usize,
}

/// Tstat's UDP idle timeout (UDP_IDLE_TIME) is 200 s; the bound is about 100 MB.
impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            idle_timeout_ns: 200_000_000_000,
            max_flows: 1_000_000,
        }
    }
}

/// What the table saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    pub datagrams: u64,
    pub flows: u64,
    pub evicted: u64,
    /// Flows per protocol guess, in [`Proto::ALL`]'s order.
    pub by_proto: [u64; Proto::ALL.len()],
    /// QUIC flows per version, sorted by version.
    pub quic_versions: Vec<(u32, u64)>,
    /// Most flows held at once.
    pub peak_flows: usize,
}

struct Flow {
    rec: UdpRecord,
    /// Whether the client is the key's `lo` end.
    client_is_lo: bool,
    /// The deadline of the flow's live heap entry.
    queued: u64,
    tries: u8,
}

pub struct UdpTable {
    cfg: UdpConfig,
    flows: HashMap<FlowKey, Flow, foldhash::fast::FixedState>,
    heap: BinaryHeap<Reverse<(u64, FlowKey)>>,
    now: u64,
    stats: UdpStats,
}

impl UdpTable {
    pub fn new(cfg: UdpConfig) -> UdpTable {
        UdpTable {
            cfg,
            flows: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(
                tcpsight_core::engine::HASH_SEED,
            )),
            heap: BinaryHeap::new(),
            now: 0,
            stats: UdpStats::default(),
        }
    }

    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// Flows held now.
    pub fn active(&self) -> usize {
        self.flows.len()
    }

    /// One datagram; `out` gets each flow that ends because of it (idle ones first).
    pub fn on_datagram(&mut self, d: &Datagram, out: &mut impl FnMut(&UdpRecord)) {
        self.stats.datagrams += 1;
        self.now = self.now.max(d.ts_ns);
        self.expire(out);
        let (key, src_is_lo) = FlowKey::new(d.src, d.dst, d.vlan, 0);
        if !self.flows.contains_key(&key) {
            if self.cfg.max_flows > 0 && self.flows.len() >= self.cfg.max_flows {
                self.evict(out);
            }
            let deadline = d
                .ts_ns
                .max(self.now)
                .saturating_add(self.cfg.idle_timeout_ns);
            self.flows.insert(
                key,
                Flow {
                    rec: UdpRecord {
                        ts_first_ns: d.ts_ns,
                        ts_last_ns: d.ts_ns,
                        client: d.src.addr,
                        client_port: d.src.port,
                        server: d.dst.addr,
                        server_port: d.dst.port,
                        vlan: d.vlan,
                        proto: Proto::Unknown,
                        quic_version: None,
                        end: End::End,
                        c2s: UdpDir::default(),
                        s2c: UdpDir::default(),
                    },
                    client_is_lo: src_is_lo,
                    queued: deadline,
                    tries: 0,
                },
            );
            self.heap.push(Reverse((deadline, key)));
            self.stats.flows += 1;
            self.stats.peak_flows = self.stats.peak_flows.max(self.flows.len());
        }
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        let r = &mut f.rec;
        r.ts_last_ns = r.ts_last_ns.max(d.ts_ns);
        let dir = if src_is_lo == f.client_is_lo {
            &mut r.c2s
        } else {
            &mut r.s2c
        };
        dir.add(d.ts_ns, d.len);
        if r.proto == Proto::Unknown && f.tries < GUESS_TRIES && !d.data.is_empty() {
            f.tries += 1;
            let g = guess(d.data, d.len, d.src.port, d.dst.port);
            r.proto = g.proto;
            r.quic_version = g.quic_version;
        }
    }

    /// Ends every flow whose deadline is strictly before the clock, in deadline order
    /// (ties by key).
    fn expire(&mut self, out: &mut impl FnMut(&UdpRecord)) {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at >= self.now {
                break;
            }
            self.heap.pop();
            if self.refresh(at, key) == Some(true) {
                self.end(key, End::Idle, out);
            }
        }
    }

    /// A popped entry: `Some(true)` when its flow is due now, `Some(false)` when it was
    /// re-queued at its real deadline, `None` when the entry was stale.
    fn refresh(&mut self, at: u64, key: FlowKey) -> Option<bool> {
        let idle = self.cfg.idle_timeout_ns;
        let f = self.flows.get_mut(&key).filter(|f| f.queued == at)?;
        let real = f.rec.ts_last_ns.saturating_add(idle);
        if real <= at {
            return Some(true);
        }
        f.queued = real;
        self.heap.push(Reverse((real, key)));
        Some(false)
    }

    /// Ends the flow whose deadline comes first (the table is full).
    fn evict(&mut self, out: &mut impl FnMut(&UdpRecord)) {
        while let Some(Reverse((at, key))) = self.heap.pop() {
            if self.refresh(at, key) == Some(true) {
                self.stats.evicted += 1;
                self.end(key, End::Evicted, out);
                return;
            }
        }
    }

    fn end(&mut self, key: FlowKey, why: End, out: &mut impl FnMut(&UdpRecord)) {
        if let Some(mut f) = self.flows.remove(&key) {
            f.rec.end = why;
            self.count(&f.rec);
            out(&f.rec);
        }
    }

    fn count(&mut self, r: &UdpRecord) {
        if let Some(i) = Proto::ALL.iter().position(|p| *p == r.proto) {
            self.stats.by_proto[i] += 1;
        }
        if let Some(v) = r.quic_version {
            let q = &mut self.stats.quic_versions;
            match q.binary_search_by_key(&v, |e| e.0) {
                Ok(i) => q[i].1 += 1,
                Err(i) => q.insert(i, (v, 1)),
            }
        }
    }

    /// End of input: every flow left, in order of first datagram (ties by key).
    pub fn finish(&mut self, out: &mut impl FnMut(&UdpRecord)) {
        let mut left: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .map(|(k, f)| (f.rec.ts_first_ns, *k))
            .collect();
        left.sort_unstable();
        for (_, key) in left {
            self.end(key, End::End, out);
        }
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpsight_core::{Addr, Endpoint};

    fn ep(last: u8, port: u16) -> Endpoint {
        Endpoint {
            addr: Addr::from_v4([10, 0, 0, last]),
            port,
        }
    }

    fn dg(ts_s: u64, src: Endpoint, dst: Endpoint, data: &[u8]) -> Datagram<'_> {
        Datagram {
            ts_ns: ts_s * 1_000_000_000,
            src,
            dst,
            vlan: 0,
            len: data.len() as u32,
            data,
        }
    }

    fn run(cfg: UdpConfig, dgs: &[Datagram]) -> (Vec<UdpRecord>, UdpStats) {
        let mut t = UdpTable::new(cfg);
        let mut out = Vec::new();
        for d in dgs {
            t.on_datagram(d, &mut |r| out.push(r.clone()));
        }
        t.finish(&mut |r| out.push(r.clone()));
        (out, t.stats().clone())
    }

    #[test]
    fn both_directions_meet_and_idle_splits() {
        let (a, b) = (ep(1, 5000), ep(2, 53));
        let cfg = UdpConfig {
            idle_timeout_ns: 10_000_000_000,
            max_flows: 0,
        };
        let (recs, st) = run(
            cfg,
            &[
                dg(0, a, b, b"q1"),
                dg(1, b, a, b"answer"),
                // 10 s after the last: not strictly after the deadline, same flow.
                dg(11, a, b, b"q2"),
                // 30 s later: the first flow ended at its deadline, a new one starts.
                dg(41, b, a, b"x"),
            ],
        );
        assert_eq!(recs.len(), 2);
        assert_eq!(st.flows, 2);
        let f = &recs[0];
        assert_eq!(f.end, End::Idle);
        assert_eq!((f.client_port, f.server_port), (5000, 53));
        assert_eq!(
            (f.c2s.pkts, f.c2s.bytes, f.s2c.pkts, f.s2c.bytes),
            (2, 4, 1, 6)
        );
        assert_eq!(f.duration_ns(), 11_000_000_000);
        // The second flow's client is whoever sent its first datagram.
        assert_eq!((recs[1].client_port, recs[1].end), (53, End::End));
    }

    #[test]
    fn bounded_with_evictions_counted() {
        let cfg = UdpConfig {
            idle_timeout_ns: 100_000_000_000,
            max_flows: 10,
        };
        let server = ep(200, 53);
        let dgs: Vec<_> = (0..1000u16)
            .map(|i| dg(i as u64, ep(1, 1000 + i), server, b""))
            .collect();
        let mut t = UdpTable::new(cfg);
        let mut evicted = 0;
        for d in &dgs {
            t.on_datagram(d, &mut |r| evicted += (r.end == End::Evicted) as u64);
            assert!(t.active() <= 10);
        }
        // The ten held are always the last ten seconds' (none idle for 100 s): every
        // flow past the tenth evicts one.
        assert_eq!(t.stats().evicted, evicted);
        assert_eq!(evicted, 990);
    }
}
