//! The sans-IO engine: frames in (capture timestamp, link type, bytes), handshake events
//! and finished connection records out. No clock, no I/O, no threads: the caller feeds
//! frames in capture order and capture time is the only time, so a live capture and a
//! replay of its file give the same answers.

use std::collections::{BTreeMap, VecDeque};

use core::hash::BuildHasher;

use hashbrown::HashTable;

use crate::addr::Addr;
use crate::conn::{Conn, HandshakeChange};
use crate::decode::{
    self, DecodeError, Decoded, Encap, IcmpQuote, LinkType, TcpSegment, Tunnel, TunnelPath, Unknown,
};
use crate::flow::{Endpoint, FlowKey, Side};
use crate::record::{ConnRecord, Outcome};
use crate::timers::Timers;

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
    /// Observers get `on_tick` each time capture time crosses a multiple of this (0:
    /// never).
    pub tick_ns: u64,
    /// An open connection gets an interim record (`on_interim`) every this long, as
    /// IPFIX exporters' active timeout does (0: never).
    pub active_timeout_ns: u64,
    /// At most this many connections are tracked at once (0: no bound). Past it the one
    /// whose deadline comes first is reported and forgotten, and counted as evicted.
    pub max_connections: usize,
    /// Observers get each connection's in-order payload (`on_payload`) while they
    /// want it. Off, the per-packet cost is one test.
    pub payload: bool,
    /// Observers get UDP datagrams (`on_datagram`); they are not tracked as flows.
    pub datagrams: bool,
}

/// The default memory bound: about 1 KB per tracked connection, so 2 GB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2_000_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout_ns: 30 * SECOND,
            idle_timeout_ns: 300 * SECOND,
            close_linger_ns: 2 * SECOND,
            handshake_linger_ns: 75 * SECOND,
            tick_ns: 0,
            active_timeout_ns: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            payload: false,
            datagrams: false,
        }
    }
}

/// A handshake whose outcome was just decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandshakeEvent {
    /// Capture time of the packet (or expiry) that decided it.
    pub ts_ns: u64,
    pub id: ConnId,
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
    pub id: ConnId,
    pub client: Endpoint,
    pub server: Endpoint,
    pub vlan: u32,
    /// First byte of the request to the first byte of the response.
    pub response_ns: u64,
    /// The server's part of it: last request byte to first response byte, less one
    /// round trip from the capture point to the server (docs/fields.md, "Exchanges").
    /// The rest (`response_ns - server_ns`) is the network's: the request's transfer
    /// and the round trip.
    pub server_ns: u64,
}

/// Receives what the engine finds. Every method defaults to doing nothing.
pub trait Observer {
    fn on_handshake(&mut self, _event: &HandshakeEvent) {}
    fn on_exchange(&mut self, _event: &ExchangeEvent) {}
    /// A connection left the table: its final record.
    fn on_connection(&mut self, _record: &ConnRecord) {}
    /// A connection still open, every `Config::active_timeout_ns`: its figures so far.
    fn on_interim(&mut self, _record: &ConnRecord) {}
    /// Capture time reached `ts_ns`, a multiple of `Config::tick_ns`.
    fn on_tick(&mut self, _ts_ns: u64) {}
    /// What causes the reports that follow (see [`Cause`]).
    fn on_cause(&mut self, _cause: Cause) {}
    /// New in-order payload of one direction (with `Config::payload`). Returns whether
    /// this observer wants more of this connection: once every observer says no, the
    /// engine stops delivering it. The default wants none.
    fn on_payload(&mut self, _payload: &Payload) -> bool {
        false
    }
    /// A UDP datagram (with `Config::datagrams`), e.g. a DNS answer.
    fn on_datagram(&mut self, _datagram: &Datagram) {}
}

/// A UDP datagram as captured.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub ts_ns: u64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub vlan: u32,
    /// Payload length from the headers (the captured `data` may be shorter).
    pub len: u32,
    pub data: &'a [u8],
}

/// A piece of one direction's byte stream, delivered once and in order (see the
/// `stream` module for retransmissions, reordering, loss and snaplen cuts).
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    /// Capture time of the packet that made these bytes deliverable.
    pub ts_ns: u64,
    pub id: ConnId,
    pub client: Endpoint,
    pub server: Endpoint,
    /// Who sent the bytes: `Side::Client` for the client-to-server stream.
    pub from: Side,
    /// Stream offset of `data[0]` (the first payload byte of the direction is 0; on a
    /// connection seen without its SYN, the first byte seen).
    pub offset: u64,
    /// Bytes just before `data` the capture did not have (lost or cut by the snaplen).
    pub gap: u64,
    /// May be empty when only a gap is told.
    pub data: &'a [u8],
}

/// Observers compose: a pair gets every report, the first one first.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.0.on_handshake(e);
        self.1.on_handshake(e);
    }
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.0.on_exchange(e);
        self.1.on_exchange(e);
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        self.0.on_connection(r);
        self.1.on_connection(r);
    }
    fn on_interim(&mut self, r: &ConnRecord) {
        self.0.on_interim(r);
        self.1.on_interim(r);
    }
    fn on_tick(&mut self, ts_ns: u64) {
        self.0.on_tick(ts_ns);
        self.1.on_tick(ts_ns);
    }
    fn on_cause(&mut self, c: Cause) {
        self.0.on_cause(c);
        self.1.on_cause(c);
    }
    fn on_payload(&mut self, p: &Payload) -> bool {
        let a = self.0.on_payload(p);
        let b = self.1.on_payload(p);
        a || b
    }
    fn on_datagram(&mut self, d: &Datagram) {
        self.0.on_datagram(d);
        self.1.on_datagram(d);
    }
}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        (**self).on_handshake(e);
    }
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        (**self).on_exchange(e);
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        (**self).on_connection(r);
    }
    fn on_interim(&mut self, r: &ConnRecord) {
        (**self).on_interim(r);
    }
    fn on_tick(&mut self, ts_ns: u64) {
        (**self).on_tick(ts_ns);
    }
    fn on_cause(&mut self, c: Cause) {
        (**self).on_cause(c);
    }
    fn on_payload(&mut self, p: &Payload) -> bool {
        (**self).on_payload(p)
    }
    fn on_datagram(&mut self, d: &Datagram) {
        (**self).on_datagram(d);
    }
}

/// A list of observers, each getting every report in turn.
impl<O: Observer> Observer for Vec<O> {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.iter_mut().for_each(|o| o.on_handshake(e));
    }
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.iter_mut().for_each(|o| o.on_exchange(e));
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        self.iter_mut().for_each(|o| o.on_connection(r));
    }
    fn on_interim(&mut self, r: &ConnRecord) {
        self.iter_mut().for_each(|o| o.on_interim(r));
    }
    fn on_tick(&mut self, ts_ns: u64) {
        self.iter_mut().for_each(|o| o.on_tick(ts_ns));
    }
    fn on_cause(&mut self, c: Cause) {
        self.iter_mut().for_each(|o| o.on_cause(c));
    }
    fn on_payload(&mut self, p: &Payload) -> bool {
        self.iter_mut()
            .fold(false, |more, o| o.on_payload(p) | more)
    }
    fn on_datagram(&mut self, d: &Datagram) {
        self.iter_mut().for_each(|o| o.on_datagram(d));
    }
}

/// Ignores everything (an engine run for its statistics alone).
impl Observer for () {}

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
    /// Frames per encapsulation (by `decode::Encap` name; a frame counts once per kind
    /// it went through).
    pub encapsulations: BTreeMap<String, u64>,
    /// Fragments of tunnel packets (an IP header carrying a tunnel, or inside one, was
    /// a fragment: first or later).
    pub tunnel_fragments: u64,
    /// Frames whose decoding stopped at a header tcpsight does not understand (an
    /// unknown GRE protocol, encrypted 802.11 or MACsec, nesting too deep...), by what.
    pub not_understood: BTreeMap<String, u64>,
    /// Frames whose timestamp was earlier than a previous frame's.
    pub ts_backwards: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub connections: u64,
    /// Connections reported early because the memory bound was reached.
    pub evicted: u64,
    /// ACKs far beyond anything the other side could have sent: not counted as gaps.
    pub stray_acks: u64,
}

/// The few counts live health counters follow (`tcpsight_*_total` metrics), cheap to
/// read at every progress report, unlike [`Engine::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounts {
    pub tcp_packets: u64,
    /// Connections reported early because the memory bound was reached.
    pub evicted: u64,
    /// Frames that could not be decoded (every reason).
    pub undecodable: u64,
}

/// Two engines' counts (shards of one input) added up.
impl core::ops::Add for EngineCounts {
    type Output = EngineCounts;
    fn add(self, o: EngineCounts) -> EngineCounts {
        EngineCounts {
            tcp_packets: self.tcp_packets + o.tcp_packets,
            evicted: self.evicted + o.evicted,
            undecodable: self.undecodable + o.undecodable,
        }
    }
}

impl CaptureStats {
    pub fn undecodable_total(&self) -> u64 {
        self.undecodable.values().sum()
    }

    /// The counts health counters follow.
    pub fn counts(&self) -> EngineCounts {
        EngineCounts {
            tcp_packets: self.tcp_packets,
            evicted: self.evicted,
            undecodable: self.undecodable_total(),
        }
    }

    /// Adds another engine's statistics (a shard of the same input): counts add up,
    /// the time span covers both. `ts_backwards` adds up too, which is exact when every
    /// shard was given the whole input's clock (as a sharded run does).
    pub fn merge(&mut self, o: &CaptureStats) {
        self.frames += o.frames;
        self.captured_bytes += o.captured_bytes;
        self.wire_bytes += o.wire_bytes;
        self.tcp_packets += o.tcp_packets;
        self.icmp_errors += o.icmp_errors;
        self.icmp_matched += o.icmp_matched;
        self.fragments += o.fragments;
        self.not_tcp += o.not_tcp;
        self.truncated += o.truncated;
        for (k, v) in &o.undecodable {
            *self.undecodable.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &o.link_types {
            *self.link_types.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &o.encapsulations {
            *self.encapsulations.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &o.not_understood {
            *self.not_understood.entry(k.clone()).or_insert(0) += v;
        }
        self.tunnel_fragments += o.tunnel_fragments;
        self.ts_backwards += o.ts_backwards;
        self.first_ns = match (self.first_ns, o.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ns = self.last_ns.max(o.last_ns);
        self.connections += o.connections;
        self.evicted += o.evicted;
        self.stray_acks += o.stray_acks;
    }
}

/// A connection's identity inside one engine: its slot and that slot's generation
/// (a slot is reused once its connection is reported; the generation tells the two
/// apart). Events and records of one connection carry the same id, so observers join
/// them without re-keying by 4-tuple (ambiguous when a port is reused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// The engine's shard number in a sharded run (0 otherwise).
    pub shard: u16,
    pub slot: u32,
    pub generation: u32,
}

/// The hash of the connection a frame belongs to: a TCP segment's flow key, an ICMP
/// error's quoted one (so the error meets its connection). The same in every engine
/// and run (fixed seed, symmetric: both directions alike): what a sharded run routes
/// frames by. `None` for frames of no connection.
pub fn connection_hash(link: LinkType, data: &[u8], orig_len: u32) -> Option<u64> {
    let (src, dst, vlan, tunnel) = match decode::decode(link, data, orig_len) {
        Ok(Decoded::Tcp(s)) => ((s.src, s.sport), (s.dst, s.dport), s.vlan, s.tunnel),
        Ok(Decoded::IcmpError(q)) => ((q.src, q.sport), (q.dst, q.dport), q.vlan, q.tunnel),
        _ => return None,
    };
    let (key, _) = flow_key(src, dst, vlan, tunnel);
    Some(foldhash::fast::FixedState::with_seed(HASH_SEED).hash_one(key))
}

/// The flow key of a packet from `src` to `dst`, and whether `src` is its `lo` end.
#[inline]
fn flow_key(src: (Addr, u16), dst: (Addr, u16), vlan: u32, tunnel: u32) -> (FlowKey, bool) {
    FlowKey::new(
        Endpoint {
            addr: src.0,
            port: src.1,
        },
        Endpoint {
            addr: dst.0,
            port: dst.1,
        },
        vlan,
        tunnel,
    )
}

/// Why the engine reports what follows (until the next cause). Reports caused by a
/// packet come while that packet is processed; reports caused by a deadline (a
/// handshake timeout, an idle or closed connection expiring, an interim record) carry
/// the deadline's capture time, whenever the engine notices it; end-of-input reports
/// come last in order of first packet. Every engine reports in the order (packet or
/// deadline time, packets before deadlines at the same time, flow key), which is what
/// lets a sharded run merge its engines' reports into exactly the single engine's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The frame being processed (or an `advance` without one, for live idle time).
    Packet,
    /// A connection's deadline at capture time `at`.
    Deadline { at: u64, key: FlowKey },
    /// End of input: the connection first seen at `first`.
    End { first: u64, key: FlowKey },
}

// Pending deadlines (`timers.rs`): (capture time, slot, generation). Entries are lazy:
// a connection that saw packets since its entry was pushed is re-queued at its new
// deadline when the old one comes up, so a packet never touches them.

/// The fixed hash seed: the same flow always hashes alike, in every engine and run, so
/// sharding is deterministic.
pub const HASH_SEED: u64 = 0x7463_7073_6967_6874;

pub struct Engine {
    cfg: Config,
    table: HashTable<u32>,
    slab: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    hasher: foldhash::fast::FixedState,
    stats: CaptureStats,
    /// Frames per link type, folded into `stats` when asked (a map update per frame
    /// cost 30 instructions; a capture has one or a few link types).
    link_counts: Vec<(LinkType, u64)>,
    /// The current frame's encapsulations (reset by every decode).
    tunnel: Tunnel,
    /// Frames per encapsulation kind ([`Encap`]'s order), and what stopped decoding,
    /// folded into `stats` when asked.
    encap_frames: [u64; Encap::ALL.len()],
    not_understood: Vec<(Unknown, u64)>,
    /// The encapsulations of tunnelled connections, by slot (the `tunnel` field).
    tunnels: std::collections::HashMap<u32, TunnelPath>,
    now: u64,
    timers: Timers,
    /// Scratch for the connections whose deadlines fall at one instant.
    due: Vec<u32>,
    /// Connections opened by a SYN, oldest first (slot, generation): what the memory
    /// bound evicts first while they are still unanswered (a SYN flood, a scan).
    half_open: VecDeque<(u32, u32)>,
    next_tick: u64,
    shard: u16,
    /// Interface names seen (a few), and the current frame's (NO_INTERFACE: unknown):
    /// each connection keeps the interface of its first packet, as an index.
    interfaces: Vec<std::sync::Arc<str>>,
    interface: u16,
}

/// A connection or frame whose interface is unknown.
pub(crate) const NO_INTERFACE: u16 = u16::MAX;

impl Engine {
    pub fn new(cfg: Config) -> Engine {
        Engine::for_shard(cfg, 0)
    }

    /// An engine of a sharded run: its connection ids carry `shard`.
    pub fn for_shard(cfg: Config, shard: u16) -> Engine {
        Engine {
            shard,
            cfg,
            table: HashTable::new(),
            slab: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(HASH_SEED),
            stats: CaptureStats::default(),
            link_counts: Vec::new(),
            tunnel: Tunnel::default(),
            encap_frames: [0; Encap::ALL.len()],
            not_understood: Vec::new(),
            tunnels: Default::default(),
            now: 0,
            timers: Timers::new(),
            due: Vec::new(),
            half_open: VecDeque::new(),
            interfaces: Vec::new(),
            interface: NO_INTERFACE,
            next_tick: 0,
        }
    }

    /// What the capture contained so far.
    pub fn stats(&self) -> CaptureStats {
        let mut st = self.stats.clone();
        st.link_types = self.link_counts.iter().copied().collect();
        st.encapsulations = Encap::ALL
            .iter()
            .zip(self.encap_frames)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.name().to_string(), n))
            .collect();
        st.not_understood = self
            .not_understood
            .iter()
            .map(|(u, n)| (u.to_string(), *n))
            .collect();
        st
    }

    /// TCP packets processed so far (cheaper than `stats()`, for live counters).
    pub fn tcp_packets(&self) -> u64 {
        self.stats.tcp_packets
    }

    /// TCP packets, evictions and undecodable frames so far (cheaper than `stats()`:
    /// undecodable frames are kept by reason, a handful of entries).
    pub fn counts(&self) -> EngineCounts {
        self.stats.counts()
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
    /// passes its clock here; a sharded run passes the time of the whole input), so
    /// handshakes time out and idle connections expire.
    pub fn advance(&mut self, ts_ns: u64, obs: &mut impl Observer) {
        if ts_ns > self.now {
            self.now = ts_ns;
        }
        self.run_timers(obs);
    }

    /// Names the interface the next frames come from (None: unknown); connections
    /// they start keep it (the record's `interface`). Cheap when it does not change.
    #[inline]
    pub fn set_interface(&mut self, name: Option<&str>) {
        let Some(name) = name else {
            self.interface = NO_INTERFACE;
            return;
        };
        if let Some(cur) = self.interfaces.get(self.interface as usize)
            && &**cur == name
        {
            return;
        }
        self.interface = crate::names::index_of(&mut self.interfaces, name, NO_INTERFACE as usize)
            .map_or(NO_INTERFACE, |i| i as u16);
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
        self.run_timers(obs);
        let decoded = decode::decode_with(link, data, orig_len, &mut self.tunnel);
        if self.tunnel.is_set() {
            self.count_tunnel();
        }
        match decoded {
            Ok(Decoded::Tcp(seg)) => {
                self.stats.tcp_packets += 1;
                self.on_tcp(&seg, data, ts_ns, obs);
            }
            Ok(Decoded::IcmpError(q)) => {
                self.stats.icmp_errors += 1;
                self.on_icmp(&q, ts_ns, obs);
            }
            Ok(Decoded::Fragment) => self.stats.fragments += 1,
            Ok(Decoded::NotTcp) => self.stats.not_tcp += 1,
            Ok(Decoded::Udp(d)) => {
                self.stats.not_tcp += 1;
                if self.cfg.datagrams {
                    obs.on_datagram(&Datagram {
                        ts_ns,
                        src: Endpoint {
                            addr: d.src,
                            port: d.sport,
                        },
                        dst: Endpoint {
                            addr: d.dst,
                            port: d.dport,
                        },
                        vlan: d.vlan,
                        len: d.payload_len,
                        data: d.payload(data),
                    });
                }
            }
            Err(e) => self.count_error(e),
        }
    }

    /// Counts the frame's encapsulations (once per kind), a fragmented tunnel packet,
    /// and what stopped the walk.
    #[cold]
    fn count_tunnel(&mut self) {
        let t = self.tunnel;
        let mut kinds = t.path.kinds();
        while kinds != 0 {
            let k = kinds.trailing_zeros() as usize;
            self.encap_frames[k] += 1;
            kinds &= kinds - 1;
        }
        if t.fragment {
            self.stats.tunnel_fragments += 1;
        }
        if let Some(u) = t.unknown {
            match self.not_understood.iter_mut().find(|(k, _)| *k == u) {
                Some(c) => c.1 += 1,
                None => self.not_understood.push((u, 1)),
            }
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

    fn insert(&mut self, conn: Conn, obs: &mut impl Observer) -> usize {
        if self.cfg.max_connections > 0 && self.table.len() >= self.cfg.max_connections {
            self.evict_one(obs);
        }
        let hash = conn.hash;
        // Never before the clock: reports stay in time order (see `Cause`).
        let deadline = self.deadline(&conn).max(self.now);
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(conn);
                i as usize
            }
            None => {
                self.slab.push(Some(conn));
                self.generations.push(0);
                self.slab.len() - 1
            }
        };
        let slab = &self.slab;
        self.table.insert_unique(hash, idx as u32, |&i| {
            slab[i as usize].as_ref().map_or(0, |c| c.hash)
        });
        self.queue(idx, deadline);
        if self.cfg.max_connections > 0
            && self.slab[idx]
                .as_ref()
                .is_some_and(|c| c.outcome.is_none() && c.synack_count == 0)
        {
            self.half_open
                .push_back((idx as u32, self.generations[idx]));
        }
        self.stats.connections += 1;
        idx
    }

    /// The id of the connection in slot `i`.
    #[inline]
    fn id(&self, i: usize) -> ConnId {
        conn_id(self.shard, &self.generations, i)
    }

    /// Whether the timer entry (deadline, slot, generation) is its connection's live
    /// one (not left behind by a newer deadline or a reused slot).
    #[inline]
    fn is_live(&self, (at, slot, generation): (u64, u32, u32)) -> bool {
        self.generations.get(slot as usize) == Some(&generation)
            && self.slab[slot as usize]
                .as_ref()
                .is_some_and(|c| c.timer_at == at)
    }

    /// Queues deadline `d` as slot `i`'s live timer entry.
    #[inline]
    fn queue(&mut self, i: usize, d: u64) {
        self.timers.push((d, i as u32, self.generations[i]));
        if let Some(c) = self.slab[i].as_mut() {
            c.timer_at = d;
        }
    }

    /// The flow key of a packet from `src` to `dst`, whether `src` is its `lo` end, and
    /// the key's hash (computed once per packet).
    #[inline]
    fn key(
        &self,
        src: (Addr, u16),
        dst: (Addr, u16),
        vlan: u32,
        tunnel: u32,
    ) -> (FlowKey, bool, u64) {
        let (key, src_is_lo) = flow_key(src, dst, vlan, tunnel);
        (key, src_is_lo, self.hasher.hash_one(key))
    }

    /// Inserts the connection `seg` starts, keeping the encapsulations of the frame
    /// that carried it (aside, by slot: only tunnelled connections pay for them).
    #[inline]
    fn start_conn(
        &mut self,
        key: FlowKey,
        hash: u64,
        seg: &TcpSegment,
        src_is_lo: bool,
        now: u64,
        obs: &mut impl Observer,
    ) -> usize {
        let mut conn = Conn::new(key, hash, seg, src_is_lo, now);
        conn.interface = self.interface;
        let idx = self.insert(conn, obs);
        if !self.tunnel.path.is_empty() {
            self.tunnels.insert(idx as u32, self.tunnel.path);
        }
        idx
    }

    fn on_tcp(&mut self, seg: &TcpSegment, frame: &[u8], now: u64, obs: &mut impl Observer) {
        let (key, src_is_lo, hash) = self.key(
            (seg.src, seg.sport),
            (seg.dst, seg.dport),
            seg.vlan,
            seg.tunnel,
        );
        let idx = match self.lookup(&key, hash) {
            Some(i) => {
                let conn = self.slab[i].as_ref().expect("table points at a live slot");
                let side = conn.side_of(src_is_lo);
                if seg.flags.syn() && !seg.flags.ack() && conn.is_new_syn(side, seg.seq) {
                    // Port reuse: a new ISN on this tuple starts a new connection.
                    self.finish_slot(i, Finish::Replaced, obs);
                    self.start_conn(key, hash, seg, src_is_lo, now, obs)
                } else {
                    i
                }
            }
            None => self.start_conn(key, hash, seg, src_is_lo, now, obs),
        };
        let conn = self.slab[idx].as_mut().expect("live slot");
        let side = conn.side_of(src_is_lo);
        // The id is looked up only when something is reported (a load per packet
        // otherwise); `conn` borrows the slab, so the generations are passed apart.
        let shard = self.shard;
        let id = |gens: &[u32]| conn_id(shard, gens, idx);
        // A deadline only comes sooner when the state changes (a close, a decided
        // handshake): packets that leave it alone do not touch the timers.
        let state = (conn.outcome, conn.is_closed(), conn.first_syn.is_some());
        let effect = conn.on_segment(seg, side, now);
        let changed = state != (conn.outcome, conn.is_closed(), conn.first_syn.is_some());
        if let HandshakeChange::Decided(outcome) = effect.handshake {
            emit_handshake(conn, id(&self.generations), outcome, now, obs);
        }
        if let Some((response_ns, server_ns)) = effect.response_ns {
            obs.on_exchange(&ExchangeEvent {
                ts_ns: now,
                id: id(&self.generations),
                client: conn.client(),
                server: conn.server(),
                vlan: conn.key.vlan,
                response_ns,
                server_ns,
            });
        }
        if changed {
            self.requeue_if_sooner(idx);
        }
        if self.cfg.payload {
            self.stream_segment(idx, seg, frame, side, now, obs);
        }
    }

    /// Hands the segment's new in-order payload to the observers, and what its ACK
    /// settles of the opposite stream (see the `stream` module).
    #[cold]
    fn stream_segment(
        &mut self,
        idx: usize,
        seg: &TcpSegment,
        frame: &[u8],
        side: Side,
        now: u64,
        obs: &mut impl Observer,
    ) {
        let id = conn_id(self.shard, &self.generations, idx);
        let conn = self.slab[idx].as_mut().expect("live slot");
        match &conn.streams {
            // Unwanted (every observer said so): nothing more to compute per packet.
            Some(s) if s.done => return,
            Some(_) => {}
            None if seg.payload_len == 0 => return,
            None => conn.streams = Some(Box::default()),
        }
        let (client, server) = (conn.client(), conn.server());
        let s = side.index();
        // Offsets in each direction's unwrapped sequence space (already advanced).
        let start = conn.dirs[s]
            .unwrap
            .map(|u| u.offset(seg.seq) + seg.flags.syn() as u64);
        let acked = if seg.flags.ack() {
            conn.dirs[1 - s].unwrap.map(|u| u.offset(seg.ack))
        } else {
            None
        };
        let streams = conn.streams.as_mut().expect("just set");
        let mut out = PayloadOut {
            obs,
            ts_ns: now,
            id,
            client,
            server,
            from: side,
        };
        let mut more = true;
        if let Some(start) = start
            && seg.payload_len > 0
        {
            more = streams.dirs[s].on_segment(
                start,
                seg.payload_len as u64,
                seg.payload(frame),
                &mut out,
            );
        }
        if more && let Some(ack) = acked {
            out.from = side.other();
            more = streams.dirs[1 - s].on_acked(ack, &mut out);
        }
        if !more {
            streams.stop();
        }
    }

    /// The end of a connection's streams: what waits behind holes is delivered, at
    /// the time of the connection's last packet (not the clock: a sharded engine's
    /// clock is the whole input's, and the report must not depend on it).
    fn finish_streams(&mut self, i: usize, id: ConnId, obs: &mut impl Observer) {
        let Some(conn) = self.slab[i].as_mut() else {
            return;
        };
        let now = conn.ts_last;
        let Some(mut streams) = conn.streams.take() else {
            return;
        };
        if streams.done {
            return;
        }
        let mut out = PayloadOut {
            obs,
            ts_ns: now,
            id,
            client: conn.client(),
            server: conn.server(),
            from: Side::Client,
        };
        for side in [Side::Client, Side::Server] {
            out.from = side;
            if !streams.dirs[side.index()].finish(&mut out) {
                break;
            }
        }
    }

    fn on_icmp(&mut self, q: &IcmpQuote, now: u64, obs: &mut impl Observer) {
        let (key, _, hash) = self.key((q.src, q.sport), (q.dst, q.dport), q.vlan, q.tunnel);
        let Some(i) = self.lookup(&key, hash) else {
            return;
        };
        self.stats.icmp_matched += 1;
        let id = self.id(i);
        let conn = self.slab[i].as_mut().expect("live slot");
        if let HandshakeChange::Decided(outcome) = conn.on_icmp(q, now) {
            emit_handshake(conn, id, outcome, now, obs);
        }
        self.requeue_if_sooner(i);
    }

    /// The capture time at which something next happens to `conn` without a packet:
    /// its handshake times out, it expires, or an interim record is due.
    fn deadline(&self, conn: &Conn) -> u64 {
        let cfg = &self.cfg;
        let mut d = conn.ts_last.saturating_add(self.idle_limit(conn));
        if conn.outcome.is_none()
            && let Some(first) = conn.first_syn.get()
        {
            d = d.min(first.saturating_add(cfg.handshake_timeout_ns));
        }
        if let Some(at) = self.interim_due(conn) {
            d = d.min(at);
        }
        d
    }

    /// How long `conn` may stay silent before it is reported and forgotten.
    fn idle_limit(&self, conn: &Conn) -> u64 {
        let cfg = &self.cfg;
        match conn.outcome {
            // A failed or unanswered handshake may still see SYN retries (a client
            // ignores a RST that does not match its SYN, and retries).
            Some(Outcome::Timeout | Outcome::Unreachable | Outcome::Rejected) | None => {
                cfg.handshake_timeout_ns.max(cfg.handshake_linger_ns)
            }
            _ if conn.is_closed() => cfg.close_linger_ns,
            _ => cfg.idle_timeout_ns,
        }
    }

    /// When `conn`'s next interim record is due (long-lived open connections only).
    fn interim_due(&self, conn: &Conn) -> Option<u64> {
        let every = self.cfg.active_timeout_ns;
        (every > 0
            && matches!(
                conn.outcome,
                Some(Outcome::Established | Outcome::Midstream)
            )
            && !conn.is_closed())
        .then(|| {
            let base = match conn.last_interim {
                0 => conn.established_at().unwrap_or(conn.ts_first),
                t => t,
            };
            base.saturating_add(every)
        })
    }

    /// A packet may have brought `conn`'s deadline forward (it closed, say): queue the
    /// sooner one. A later deadline waits for the old entry to come up (lazy).
    #[inline]
    fn requeue_if_sooner(&mut self, i: usize) {
        let Some(conn) = self.slab[i].as_ref() else {
            return;
        };
        // Never before the clock: reports stay in time order (see `Cause`).
        let d = self.deadline(conn).max(self.now);
        if d < conn.timer_at {
            self.queue(i, d);
        }
    }

    /// Handles every deadline before the current time, in order of (deadline, flow
    /// key). A connection's deadline passes strictly before `now`: at `now` itself a
    /// packet of it still counts.
    #[inline]
    fn run_timers(&mut self, obs: &mut impl Observer) {
        if self.timers.peek_before(self.now).is_some() {
            self.run_due_timers(obs);
        }
        if self.cfg.tick_ns > 0 && self.now >= self.next_tick {
            self.tick(obs);
        }
    }

    #[cold]
    fn tick(&mut self, obs: &mut impl Observer) {
        let every = self.cfg.tick_ns;
        let boundary = self.now - self.now % every;
        if self.next_tick != 0 {
            obs.on_tick(boundary);
        }
        self.next_tick = boundary.saturating_add(every);
    }

    fn run_due_timers(&mut self, obs: &mut impl Observer) {
        while let Some((at, ..)) = self.timers.peek_before(self.now) {
            // Every live entry due at this instant, in flow-key order.
            let mut due = core::mem::take(&mut self.due);
            due.clear();
            while let Some(e) = self.timers.peek_before(self.now) {
                if e.0 != at {
                    break;
                }
                self.timers.pop_before(self.now);
                if self.is_live(e) {
                    due.push(e.1);
                }
            }
            if due.len() > 1 {
                let slab = &self.slab;
                due.sort_unstable_by_key(|&s| slab[s as usize].as_ref().map(|c| c.key));
            }
            for &slot in &due {
                self.fire(slot as usize, at, obs);
            }
            self.due = due;
        }
    }

    /// `conn`'s queued deadline `at` came up: do what is due then, or queue it again.
    fn fire(&mut self, i: usize, at: u64, obs: &mut impl Observer) {
        let Some(conn) = self.slab[i].as_ref() else {
            return;
        };
        let key = conn.key;
        let hs_due = conn.outcome.is_none()
            && conn
                .first_syn
                .get()
                .is_some_and(|f| f.saturating_add(self.cfg.handshake_timeout_ns) <= at);
        let idle_due = conn.ts_last.saturating_add(self.idle_limit(conn)) <= at;
        let interim_due = self.interim_due(conn).is_some_and(|t| t <= at);
        let id = self.id(i);
        if hs_due {
            obs.on_cause(Cause::Deadline { at, key });
            let conn = self.slab[i].as_mut().expect("live slot");
            if let HandshakeChange::Decided(o) = conn.check_timeout(u64::MAX, 0) {
                emit_handshake(conn, id, o, at, obs);
            }
        } else if idle_due {
            obs.on_cause(Cause::Deadline { at, key });
            self.finish_slot(i, Finish::Expired, obs);
            obs.on_cause(Cause::Packet);
            return;
        } else if interim_due {
            obs.on_cause(Cause::Deadline { at, key });
            let conn = self.slab[i].as_mut().expect("live slot");
            conn.last_interim = at;
            let mut r = conn.to_record(false);
            r.id = id;
            r.interface = self.interfaces.get(conn.interface as usize).cloned();
            if let Some(t) = self.tunnels.get(&(i as u32)) {
                r.tunnel = Some(t.to_string());
            }
            obs.on_interim(&r);
        }
        if hs_due || interim_due {
            obs.on_cause(Cause::Packet);
        }
        let next = self.deadline(self.slab[i].as_ref().expect("live slot"));
        self.queue(i, next);
    }

    /// Memory bound reached: report and forget the oldest handshake still without any
    /// answer (a flood's or a scan's SYNs); when there is none, the connection whose
    /// deadline comes first (closed ones linger 2 s, idle open ones 300 s). Counted as
    /// an eviction.
    #[cold]
    fn evict_one(&mut self, obs: &mut impl Observer) {
        while let Some((slot, generation)) = self.half_open.pop_front() {
            let unanswered = self.generations.get(slot as usize) == Some(&generation)
                && self.slab[slot as usize]
                    .as_ref()
                    .is_some_and(|c| c.outcome.is_none() && c.synack_count == 0);
            if unanswered {
                self.stats.evicted += 1;
                self.finish_slot(slot as usize, Finish::Evicted, obs);
                return;
            }
        }
        while let Some(e) = self.timers.pop_earliest() {
            if self.is_live(e) {
                self.stats.evicted += 1;
                self.finish_slot(e.1 as usize, Finish::Evicted, obs);
                return;
            }
        }
    }

    /// Removes a connection and reports its record.
    fn finish_slot(&mut self, i: usize, how: Finish, obs: &mut impl Observer) {
        // Work on the connection where it lies: moving 880 bytes out of the slab for
        // every finished connection showed in the profile.
        let now = self.now;
        let id = self.id(i);
        let Some(conn) = self.slab[i].as_mut() else {
            return;
        };
        let hash = conn.hash;
        if conn.streams.is_some() {
            self.finish_streams(i, id, obs);
        }
        let conn = self.slab[i].as_mut().expect("live slot");
        if how == Finish::Replaced
            && conn.outcome.is_none()
            && conn.first_syn.is_some()
            && let HandshakeChange::Decided(o) = conn.check_timeout(u64::MAX, 0)
        {
            // Replaced before the timeout fired: it never got an answer.
            emit_handshake(conn, id, o, now, obs);
        }
        let mut r = conn.to_record(matches!(how, Finish::End | Finish::Evicted));
        r.id = id;
        r.interface = self.interfaces.get(conn.interface as usize).cloned();
        if !self.tunnels.is_empty() {
            r.tunnel = self.tunnels.remove(&(i as u32)).map(|t| t.to_string());
        }
        self.stats.stray_acks += (r.c2s.stray_acks + r.s2c.stray_acks) as u64;
        obs.on_connection(&r);
        self.slab[i] = None;
        self.generations[i] = self.generations[i].wrapping_add(1);
        if let Ok(entry) = self.table.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
        self.free.push(i as u32);
        // Stale timer entries of evicted connections pile up under a flood: rebuild
        // the heap from the live connections when they are most of it.
        if self.timers.len() > 2 * self.table.len() + 4096 {
            self.rebuild_timers();
        }
        if self.half_open.len() > 2 * self.table.len() + 4096 {
            let (slab, gens) = (&self.slab, &self.generations);
            self.half_open.retain(|&(s, g)| {
                gens[s as usize] == g
                    && slab[s as usize]
                        .as_ref()
                        .is_some_and(|c| c.outcome.is_none())
            });
        }
    }

    #[cold]
    fn rebuild_timers(&mut self) {
        let gens = &self.generations;
        let live = self
            .slab
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|c| (c.timer_at, i as u32, gens[i])));
        self.timers.rebuild(live);
    }

    /// End of input: decides handshakes past their timeout and reports every connection
    /// still open, in order of first packet (then flow key).
    pub fn finish(&mut self, obs: &mut impl Observer) {
        self.run_timers(obs);
        let now = self.now;
        let timeout = self.cfg.handshake_timeout_ns;
        // Handshakes whose deadline is exactly the last packet's time.
        let mut late: Vec<(FlowKey, usize)> = Vec::new();
        let mut live: Vec<(u64, FlowKey, usize)> = Vec::with_capacity(self.table.len());
        for (i, slot) in self.slab.iter().enumerate() {
            let Some(conn) = slot.as_ref() else { continue };
            if conn.outcome.is_none()
                && conn
                    .first_syn
                    .get()
                    .is_some_and(|f| now.saturating_sub(f) >= timeout)
            {
                late.push((conn.key, i));
            }
            live.push((conn.ts_first, conn.key, i));
        }
        late.sort_unstable_by_key(|&(k, _)| k);
        for (key, i) in late {
            let id = self.id(i);
            let conn = self.slab[i].as_mut().expect("live slot");
            let at = timed_out_at(conn, now, self.cfg);
            obs.on_cause(Cause::Deadline { at, key });
            if let HandshakeChange::Decided(o) = conn.check_timeout(now, timeout) {
                emit_handshake(conn, id, o, at, obs);
            }
        }
        live.sort_unstable_by_key(|&(first, key, _)| (first, key));
        for (first, key, i) in live {
            obs.on_cause(Cause::End { first, key });
            self.finish_slot(i, Finish::End, obs);
        }
        obs.on_cause(Cause::Packet);
        self.slab.clear();
        self.generations.clear();
        self.free.clear();
        self.table.clear();
        self.timers.clear();
        self.half_open.clear();
    }
}

/// Why a connection leaves the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    /// A SYN with a new ISN took its tuple.
    Replaced,
    /// Silent past its limit.
    Expired,
    /// The memory bound: reported as the trace ending would (pending, open).
    Evicted,
    /// End of input.
    End,
}

#[inline]
fn conn_id(shard: u16, generations: &[u32], i: usize) -> ConnId {
    ConnId {
        shard,
        slot: i as u32,
        generation: generations[i],
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

fn emit_handshake(
    conn: &mut Conn,
    id: ConnId,
    outcome: Outcome,
    now: u64,
    obs: &mut impl Observer,
) {
    // What the handshake's counts were when it was decided: the one definition of a
    // duplicate SYN and SYN/ACK (tcpeek's), for the event and the record alike.
    conn.counts_at_decision = Some((conn.syn_count, conn.synack_count));
    obs.on_handshake(&HandshakeEvent {
        ts_ns: now,
        id,
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

/// Passes one direction's chunks to the observers as [`Payload`]s.
struct PayloadOut<'o, O: Observer> {
    obs: &'o mut O,
    ts_ns: u64,
    id: ConnId,
    client: Endpoint,
    server: Endpoint,
    from: Side,
}

impl<O: Observer> crate::stream::Deliver for PayloadOut<'_, O> {
    fn chunk(&mut self, offset: u64, gap: u64, data: &[u8]) -> bool {
        self.obs.on_payload(&Payload {
            ts_ns: self.ts_ns,
            id: self.id,
            client: self.client,
            server: self.server,
            from: self.from,
            offset,
            gap,
            data,
        })
    }
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
        // Under 1 KB per connection with the table entry (about 6 bytes) and the timer
        // heap entry (16 bytes) included. 8 bytes went to the connection's deadline
        // when expiry stopped scanning every slot each second, 64 to the exchanges'
        // time split (request transfer, server time, response transfer), 80 to
        // Tstat's per-flow columns (TTL, windows, SACK blocks, pure ACKs, data packets,
        // payload times, in-flight maximum: 40 per direction, after 8 per direction
        // given back by the FIN offset's sentinel).
        assert!(slot <= 1040, "connection state grew to {slot} bytes");
    }
}
