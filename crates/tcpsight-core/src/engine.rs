//! The sans-IO engine: frames in (capture timestamp, link type, bytes), handshake events
//! and finished connection records out. No clock, no I/O, no threads: the caller feeds
//! frames in capture order and capture time is the only time, so a live capture and a
//! replay of its file give the same answers.

use std::collections::BTreeMap;

use core::hash::BuildHasher;

use hashbrown::HashTable;

use crate::addr::Addr;
use crate::conn::{Conn, HandshakeChange};
use crate::decode::{self, DecodeError, Decoded, IcmpQuote, LinkType, TcpSegment};
use crate::flow::{Endpoint, FlowKey};
use crate::record::{ConnRecord, Outcome};

const SECOND: u64 = 1_000_000_000;

/// Timeouts, all in capture time.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// A handshake with no answer for this long after the first SYN has timed out.
    pub handshake_timeout_ns: u64,
    /// An open connection idle for this long is reported (close `open`) and forgotten.
    pub idle_timeout_ns: u64,
    /// A closed (FIN both ways, or RST) connection is kept this long for late packets
    /// (the last ACK, retransmitted FINs, RSTs answering data still in flight). Longer
    /// costs memory: at 10 s the engine held 70 closed connections per open one on the
    /// benchmark capture.
    pub close_linger_ns: u64,
    /// An unanswered handshake is kept this long after its last packet, so SYN retries
    /// (Linux waits up to 64 s between the last ones) stay one connection.
    pub handshake_linger_ns: u64,
    /// How often expiry is checked (capture time).
    pub sweep_interval_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout_ns: 30 * SECOND,
            idle_timeout_ns: 300 * SECOND,
            close_linger_ns: 2 * SECOND,
            handshake_linger_ns: 75 * SECOND,
            sweep_interval_ns: SECOND,
        }
    }
}

/// A handshake whose outcome was just decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandshakeEvent {
    /// Capture time of the packet (or expiry) that decided it.
    pub ts_ns: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    pub vlan: u32,
    pub outcome: Outcome,
    /// Capture time of the first SYN.
    pub first_syn_ns: Option<u64>,
    /// First SYN to the decision.
    pub elapsed_ns: Option<u64>,
    /// Last SYN to the SYN/ACK (the server's side of the capture point).
    pub server_rtt_ns: Option<u64>,
    pub syn_count: u32,
    pub synack_count: u32,
    pub icmp: Option<(u8, u8)>,
}

/// A response began on a connection: one request/response exchange completed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExchangeEvent {
    pub ts_ns: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    pub vlan: u32,
    /// First byte of the request to the first byte of the response.
    pub response_ns: u64,
}

/// Receives what the engine finds. Every method defaults to doing nothing.
pub trait Observer {
    fn on_handshake(&mut self, _event: &HandshakeEvent) {}
    fn on_exchange(&mut self, _event: &ExchangeEvent) {}
    fn on_connection(&mut self, _record: &ConnRecord) {}
}

/// Collects everything into vectors (tests, small traces).
#[derive(Default)]
pub struct Collect {
    pub handshakes: Vec<HandshakeEvent>,
    pub records: Vec<ConnRecord>,
}

impl Observer for Collect {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.handshakes.push(*e);
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        self.records.push(r.clone());
    }
}

/// What the capture contained, for the summary and its trust signals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureStats {
    pub frames: u64,
    pub captured_bytes: u64,
    pub wire_bytes: u64,
    pub tcp_packets: u64,
    pub icmp_errors: u64,
    /// ICMP errors that quoted a connection we track.
    pub icmp_matched: u64,
    pub fragments: u64,
    pub not_tcp: u64,
    /// Frames cut by the snaplen (captured < original length).
    pub truncated: u64,
    /// Frames that could not be decoded, by reason.
    pub undecodable: BTreeMap<String, u64>,
    /// Frames per link type.
    pub link_types: BTreeMap<LinkType, u64>,
    /// Frames whose timestamp was earlier than a previous frame's.
    pub ts_backwards: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub connections: u64,
}

impl CaptureStats {
    pub fn undecodable_total(&self) -> u64 {
        self.undecodable.values().sum()
    }
}

pub struct Engine {
    cfg: Config,
    table: HashTable<u32>,
    slab: Vec<Option<Conn>>,
    free: Vec<u32>,
    hasher: foldhash::fast::RandomState,
    stats: CaptureStats,
    /// Frames per link type, folded into `stats` when asked (a map update per frame
    /// cost 30 instructions; a capture has one or a few link types).
    link_counts: Vec<(LinkType, u64)>,
    now: u64,
    next_sweep: u64,
}

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        Engine {
            cfg,
            table: HashTable::new(),
            slab: Vec::new(),
            free: Vec::new(),
            hasher: foldhash::fast::RandomState::default(),
            stats: CaptureStats::default(),
            link_counts: Vec::new(),
            now: 0,
            next_sweep: 0,
        }
    }

    /// What the capture contained so far.
    pub fn stats(&self) -> CaptureStats {
        let mut st = self.stats.clone();
        st.link_types = self.link_counts.iter().copied().collect();
        st
    }

    /// Connections currently tracked.
    pub fn active(&self) -> usize {
        self.table.len()
    }

    /// Latest capture time seen.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Moves capture time forward without a frame (a live source on an idle interface
    /// passes its clock here), so handshakes time out and idle connections expire.
    pub fn advance(&mut self, ts_ns: u64, obs: &mut impl Observer) {
        if ts_ns > self.now {
            self.now = ts_ns;
        }
        if self.now >= self.next_sweep {
            self.sweep(obs);
            self.next_sweep = self.now.saturating_add(self.cfg.sweep_interval_ns);
        }
    }

    /// Feeds one frame. `orig_len` is its length on the wire (>= `data.len()`).
    pub fn process(
        &mut self,
        ts_ns: u64,
        link: LinkType,
        data: &[u8],
        orig_len: u32,
        obs: &mut impl Observer,
    ) {
        let st = &mut self.stats;
        st.frames += 1;
        st.captured_bytes += data.len() as u64;
        st.wire_bytes += orig_len.max(data.len() as u32) as u64;
        if (data.len() as u64) < orig_len as u64 {
            st.truncated += 1;
        }
        st.first_ns.get_or_insert(ts_ns);
        st.last_ns = Some(st.last_ns.map_or(ts_ns, |l| l.max(ts_ns)));
        count_link(&mut self.link_counts, link);
        if ts_ns < self.now {
            st.ts_backwards += 1;
        } else {
            self.now = ts_ns;
        }
        if self.now >= self.next_sweep {
            self.sweep(obs);
            self.next_sweep = self.now.saturating_add(self.cfg.sweep_interval_ns);
        }
        match decode::decode(link, data, orig_len) {
            Ok(Decoded::Tcp(seg)) => {
                self.stats.tcp_packets += 1;
                self.on_tcp(&seg, ts_ns, obs);
            }
            Ok(Decoded::IcmpError(q)) => {
                self.stats.icmp_errors += 1;
                self.on_icmp(&q, ts_ns, obs);
            }
            Ok(Decoded::Fragment) => self.stats.fragments += 1,
            Ok(Decoded::NotTcp) => self.stats.not_tcp += 1,
            Err(e) => self.count_error(e),
        }
    }

    #[cold]
    fn count_error(&mut self, e: DecodeError) {
        *self.stats.undecodable.entry(e.to_string()).or_insert(0) += 1;
    }

    #[inline]
    fn lookup(&self, key: &FlowKey, hash: u64) -> Option<usize> {
        let slab = &self.slab;
        self.table
            .find(hash, |&i| {
                slab[i as usize].as_ref().is_some_and(|c| c.key == *key)
            })
            .map(|&i| i as usize)
    }

    fn insert(&mut self, conn: Conn) -> usize {
        let hash = conn.hash;
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(conn);
                i as usize
            }
            None => {
                self.slab.push(Some(conn));
                self.slab.len() - 1
            }
        };
        let slab = &self.slab;
        self.table.insert_unique(hash, idx as u32, |&i| {
            slab[i as usize].as_ref().map_or(0, |c| c.hash)
        });
        self.stats.connections += 1;
        idx
    }

    /// The flow key of a packet from `src` to `dst`, whether `src` is its `lo` end, and
    /// the key's hash (computed once per packet).
    #[inline]
    fn key(&self, src: (Addr, u16), dst: (Addr, u16), vlan: u32) -> (FlowKey, bool, u64) {
        let (key, src_is_lo) = FlowKey::new(
            Endpoint {
                addr: src.0,
                port: src.1,
            },
            Endpoint {
                addr: dst.0,
                port: dst.1,
            },
            vlan,
        );
        (key, src_is_lo, self.hasher.hash_one(key))
    }

    fn on_tcp(&mut self, seg: &TcpSegment, now: u64, obs: &mut impl Observer) {
        let (key, src_is_lo, hash) = self.key((seg.src, seg.sport), (seg.dst, seg.dport), seg.vlan);
        let idx = match self.lookup(&key, hash) {
            Some(i) => {
                let conn = self.slab[i].as_ref().expect("table points at a live slot");
                let side = conn.side_of(src_is_lo);
                if seg.flags.syn() && !seg.flags.ack() && conn.is_new_syn(side, seg.seq) {
                    // Port reuse: a new ISN on this tuple starts a new connection.
                    self.finish_slot(i, false, obs);
                    self.insert(Conn::new(key, hash, seg, src_is_lo, now))
                } else {
                    i
                }
            }
            None => self.insert(Conn::new(key, hash, seg, src_is_lo, now)),
        };
        let conn = self.slab[idx].as_mut().expect("live slot");
        let side = conn.side_of(src_is_lo);
        let effect = conn.on_segment(seg, side, now);
        if let HandshakeChange::Decided(outcome) = effect.handshake {
            emit_handshake(conn, outcome, now, obs);
        }
        if let Some(response_ns) = effect.response_ns {
            obs.on_exchange(&ExchangeEvent {
                ts_ns: now,
                client: conn.client(),
                server: conn.server(),
                vlan: conn.key.vlan,
                response_ns,
            });
        }
    }

    fn on_icmp(&mut self, q: &IcmpQuote, now: u64, obs: &mut impl Observer) {
        let (key, _, hash) = self.key((q.src, q.sport), (q.dst, q.dport), q.vlan);
        let Some(i) = self.lookup(&key, hash) else {
            return;
        };
        self.stats.icmp_matched += 1;
        let conn = self.slab[i].as_mut().expect("live slot");
        if let HandshakeChange::Decided(outcome) = conn.on_icmp(q, now) {
            emit_handshake(conn, outcome, now, obs);
        }
    }

    /// Removes a connection and reports its record.
    fn finish_slot(&mut self, i: usize, trace_ended: bool, obs: &mut impl Observer) {
        // Work on the connection where it lies: moving 880 bytes out of the slab for
        // every finished connection showed in the profile.
        let now = self.now;
        let Some(conn) = self.slab[i].as_mut() else {
            return;
        };
        let hash = conn.hash;
        if !trace_ended
            && conn.outcome.is_none()
            && conn.first_syn.is_some()
            && let HandshakeChange::Decided(o) = conn.check_timeout(u64::MAX, 0)
        {
            // Replaced or expired before the timeout fired: it never got an answer.
            emit_handshake(conn, o, now, obs);
        }
        obs.on_connection(&conn.to_record(trace_ended));
        self.slab[i] = None;
        if let Ok(entry) = self.table.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
        self.free.push(i as u32);
    }

    /// Decides timed-out handshakes and forgets expired connections.
    fn sweep(&mut self, obs: &mut impl Observer) {
        let now = self.now;
        let cfg = self.cfg;
        for i in 0..self.slab.len() {
            let Some(conn) = self.slab[i].as_mut() else {
                continue;
            };
            if let HandshakeChange::Decided(o) = conn.check_timeout(now, cfg.handshake_timeout_ns) {
                emit_handshake(conn, o, timed_out_at(conn, now, cfg), obs);
            }
            let idle = now.saturating_sub(conn.ts_last);
            let limit = match conn.outcome {
                // A failed or unanswered handshake may still see SYN retries (a client
                // ignores a RST that does not match its SYN, and retries).
                Some(Outcome::Timeout | Outcome::Unreachable | Outcome::Rejected) | None => {
                    cfg.handshake_timeout_ns.max(cfg.handshake_linger_ns)
                }
                _ if conn.is_closed() => cfg.close_linger_ns,
                _ => cfg.idle_timeout_ns,
            };
            if idle > limit {
                self.finish_slot(i, false, obs);
            }
        }
    }

    /// End of input: decides handshakes past their timeout and reports every connection
    /// still open, in order of first packet.
    pub fn finish(&mut self, obs: &mut impl Observer) {
        let now = self.now;
        let mut live: Vec<(u64, usize)> = Vec::with_capacity(self.table.len());
        for (i, slot) in self.slab.iter_mut().enumerate() {
            let Some(conn) = slot.as_mut() else { continue };
            if let HandshakeChange::Decided(o) =
                conn.check_timeout(now, self.cfg.handshake_timeout_ns)
            {
                emit_handshake(conn, o, timed_out_at(conn, now, self.cfg), obs);
            }
            live.push((conn.ts_first, i));
        }
        live.sort_unstable();
        for (_, i) in live {
            self.finish_slot(i, true, obs);
        }
        self.slab.clear();
        self.free.clear();
        self.table.clear();
    }
}

#[inline]
fn count_link(counts: &mut Vec<(LinkType, u64)>, link: LinkType) {
    if let Some(first) = counts.first_mut()
        && first.0 == link
    {
        first.1 += 1;
        return;
    }
    match counts.iter_mut().find(|(l, _)| *l == link) {
        Some(c) => c.1 += 1,
        None => counts.push((link, 1)),
    }
}

/// When a handshake timed out: at its deadline (first SYN + timeout), not when a sweep
/// noticed it, so the event does not depend on how often sweeps run (live, they follow
/// the wall clock; replayed, the packets).
fn timed_out_at(conn: &Conn, now: u64, cfg: Config) -> u64 {
    conn.first_syn
        .get()
        .map_or(now, |f| f.saturating_add(cfg.handshake_timeout_ns).min(now))
}

fn emit_handshake(conn: &Conn, outcome: Outcome, now: u64, obs: &mut impl Observer) {
    obs.on_handshake(&HandshakeEvent {
        ts_ns: now,
        client: conn.client(),
        server: conn.server(),
        vlan: conn.key.vlan,
        outcome,
        first_syn_ns: conn.first_syn.get(),
        elapsed_ns: conn.handshake_ns(now),
        server_rtt_ns: conn.server_rtt_ns(),
        syn_count: conn.syn_count,
        synack_count: conn.synack_count,
        icmp: conn.icmp(),
    });
}

#[cfg(test)]
mod tests {
    /// Memory per tracked connection: the slab slot plus a hash-table entry. In-flight
    /// RTT timing adds 16 bytes per unacknowledged segment (heap), only while data is
    /// in flight. BENCHMARKS.md has the measured figure per concurrent connection.
    #[test]
    fn connection_state_stays_small() {
        let slot = core::mem::size_of::<Option<crate::conn::Conn>>();
        eprintln!(
            "connection slot: {slot} bytes (dir {}, history {}, responses {}, in-flight queue {})",
            core::mem::size_of::<crate::dir::DirState>(),
            core::mem::size_of::<crate::history::History>(),
            core::mem::size_of::<crate::stats::ResponseTimes>(),
            core::mem::size_of::<std::collections::VecDeque<u64>>(),
        );
        // Under 1 KB per connection with the table entry (about 6 bytes) included.
        assert!(slot <= 870, "connection state grew to {slot} bytes");
    }
}
