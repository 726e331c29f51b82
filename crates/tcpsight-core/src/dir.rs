//! One direction of a connection: sequence tracking, retransmission classes, RTT
//! samples, ACK bookkeeping and capture-gap accounting.
//!
//! The classification follows Wireshark's `tcp_analyze_sequence_number` so that our
//! counts can be compared with tshark's `tcp.analysis.*` flags; the RTT sampling follows
//! tcptrace (`-r`): a sample when an ACK exactly covers the end of a segment that was
//! sent once (Karn's rule). docs/fields.md states each rule.

use std::collections::VecDeque;

use crate::seq::{Seq, Unwrapper};
use crate::time::MaybeNs;

/// How a segment that carries data (or SYN/FIN) was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegClass {
    /// Advances the sequence space, or carries nothing to classify.
    New,
    /// Starts beyond the highest sequence seen: the capture missed the segment(s) before.
    NewAfterGap,
    KeepAlive,
    ZeroWindowProbe,
    OutOfOrder,
    FastRetransmission,
    SpuriousRetransmission,
    Retransmission,
}

impl SegClass {
    pub fn is_retransmission(self) -> bool {
        matches!(
            self,
            SegClass::Retransmission
                | SegClass::FastRetransmission
                | SegClass::SpuriousRetransmission
        )
    }
}

/// RTT accumulator: count, min, max, mean and standard deviation in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct RttStats {
    pub samples: u32,
    pub min_ns: u64,
    pub max_ns: u64,
    sum_ns: f64,
    sum_sq: f64,
}

impl RttStats {
    pub fn add(&mut self, ns: u64) {
        if self.samples == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        self.max_ns = self.max_ns.max(ns);
        self.samples += 1;
        let x = ns as f64;
        self.sum_ns += x;
        self.sum_sq += x * x;
    }

    pub fn mean_ns(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sum_ns / self.samples as f64)
    }

    /// Sample standard deviation (n - 1), as tcptrace prints it.
    pub fn std_ns(&self) -> Option<f64> {
        if self.samples == 0 {
            return None;
        }
        if self.samples == 1 {
            return Some(0.0);
        }
        let n = self.samples as f64;
        let var = (self.sum_sq - self.sum_ns * self.sum_ns / n) / (n - 1.0);
        Some(var.max(0.0).sqrt())
    }
}

/// A segment waiting for its ACK, for RTT sampling.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    end: Seq,
    sent_ns: u64,
    retransmitted: bool,
}

/// At most this many unacknowledged segments are timed per direction. Beyond it new
/// segments go untimed (fewer samples, never wrong ones); it bounds memory per flow.
const MAX_IN_FLIGHT: usize = 512;

/// Sequence ranges the capture skipped, until ACKs settle whether they were gaps.
const MAX_HOLES: usize = 2;

/// Sequence ranges (unwrapped offsets) skipped by the capture, until ACKs settle
/// whether the peer received them (then they are capture gaps).
#[derive(Clone, Debug, Default)]
pub struct Holes {
    list: [(u64, u64); MAX_HOLES],
    n: u8,
}

impl Holes {
    fn add(&mut self, from: u64, to: u64) {
        if (self.n as usize) < MAX_HOLES {
            self.list[self.n as usize] = (from, to);
            self.n += 1;
        } else {
            // Full: widen the last hole; gap accounting stays an upper bound only there.
            let last = &mut self.list[MAX_HOLES - 1];
            last.1 = last.1.max(to);
        }
    }

    /// A segment covered `start..end`.
    fn fill(&mut self, start: u64, end: u64) {
        let mut i = 0;
        while i < self.n as usize {
            let (hs, he) = self.list[i];
            if end <= hs || start >= he {
                i += 1;
                continue;
            }
            if start <= hs && end >= he {
                self.remove(i);
                continue;
            }
            if start <= hs {
                self.list[i].0 = end;
            } else if end >= he {
                self.list[i].1 = start;
            } else {
                // A segment inside the hole splits it; keep the earlier part if no room.
                self.list[i].1 = start;
                if (self.n as usize) < MAX_HOLES {
                    self.list[self.n as usize] = (end, he);
                    self.n += 1;
                }
            }
            i += 1;
        }
    }

    /// The peer acknowledged everything below `acked`: returns the bytes of holes below
    /// it (received by the peer, never seen by the capture) and forgets them.
    fn settle(&mut self, acked: u64) -> u64 {
        let mut gap = 0;
        let mut i = 0;
        while i < self.n as usize {
            let (hs, he) = self.list[i];
            if hs >= acked {
                i += 1;
                continue;
            }
            gap += he.min(acked) - hs;
            if acked >= he {
                self.remove(i);
            } else {
                self.list[i].0 = acked;
                i += 1;
            }
        }
        gap
    }

    fn remove(&mut self, i: usize) {
        let n = self.n as usize;
        self.list.copy_within(i + 1..n, i);
        self.n -= 1;
    }
}

#[derive(Clone, Debug, Default)]
pub struct DirState {
    // Counters reported in the record.
    pub pkts: u64,
    pub payload_bytes: u64,
    pub retx_pkts: u32,
    pub retx_bytes: u64,
    pub fast_retx_pkts: u32,
    pub spurious_retx_pkts: u32,
    pub out_of_order_pkts: u32,
    pub lost_segments: u32,
    pub dup_acks: u32,
    pub zero_windows: u32,
    pub gap_bytes: u64,
    pub messages: u32,
    pub fins: u16,
    pub rsts: u16,
    /// ACKs beyond any plausible window (see `on_acked`).
    pub stray_acks: u16,
    pub rtt: RttStats,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_ok: bool,
    pub ts_ok: bool,

    // Tstat's per-flow columns (docs/fields.md, "Per direction").
    /// Lowest and highest IP TTL / hop limit (valid once `pkts > 0`).
    pub ttl_min: u8,
    pub ttl_max: u8,
    /// A window was seen (`win_*` valid): every packet but RSTs, scaled as sent.
    pub win_seen: bool,
    pub win_first: u32,
    pub win_min: u32,
    pub win_max: u32,
    pub sack_blocks: u32,
    pub pure_acks: u32,
    pub data_pkts: u32,
    /// Times of the first and last packet carrying payload.
    pub payload_first: MaybeNs,
    pub payload_last: u64,
    /// Highest sequence offset sent minus the peer's latest ACK, largest seen.
    pub inflight_max: u32,

    /// A SYN from this direction fixed its sequence base.
    syn_seen: bool,
    /// Sequence positions of this direction, unwrapped to 64 bits; `None` until the
    /// first segment fixes the base (the ISN, or the byte before the first one seen).
    pub unwrap: Option<Unwrapper>,
    /// Highest end of payload seen (offset), and where the FIN sits (offset).
    data_top: u64,
    /// 0: no FIN (a FIN always sits at offset 1 or later).
    fin_off: u64,
    /// Highest offset accounted as either seen or counted as a gap.
    gap_top: u64,

    /// Sequence ranges the capture skipped; allocated at the first one (most
    /// connections never have any).
    holes: Option<Box<Holes>>,

    // Wireshark-style analysis state.
    next_seq: Option<Seq>,
    /// `next_seq` before the current packet moved it: tshark's duplicate-ACK test
    /// compares with the value the packet found.
    next_seq_found: Option<Seq>,
    next_seq_ns: u64,
    pub last_ack: Option<Seq>,
    /// Time of this direction's latest packet of any kind (tshark's lastacktime).
    last_pkt_ns: u64,
    dupack_num: u32,
    window: Option<u16>,
    /// The last segment of this direction was a keep-alive: the peer's next ACK answers
    /// it and is not a duplicate ACK (tshark's "ACK to a TCP keep-alive segment").
    last_was_keep_alive: bool,

    in_flight: VecDeque<InFlight>,
}

impl DirState {
    /// Fixes the base of this direction's sequence space at its SYN's sequence number.
    /// The first SYN of a direction wins over whatever came before it (a challenge ACK,
    /// a stray segment of an older connection): their positions are forgotten.
    pub fn set_base(&mut self, isn: Seq) {
        if self.syn_seen {
            return;
        }
        self.syn_seen = true;
        if self.unwrap.is_some_and(|u| u.base() == isn) {
            return;
        }
        self.unwrap = Some(Unwrapper::new(isn));
        self.data_top = 0;
        self.fin_off = 0;
        self.gap_top = 0;
        self.holes = None;
        self.next_seq = None;
        self.in_flight.clear();
    }

    /// The connection closed: once nothing is in flight (the last FIN acknowledged),
    /// the timing queue's memory is returned while the connection lingers.
    pub fn release_timing(&mut self) {
        if self.in_flight.is_empty() && self.in_flight.capacity() > 0 {
            self.in_flight = VecDeque::new();
        }
    }

    pub fn last_was_keep_alive(&self) -> bool {
        self.last_was_keep_alive
    }

    /// Bytes of sequence space the payload covered: from the first byte after the ISN
    /// to the highest payload byte or the FIN, whichever is later. Exact, never +1.
    pub fn unique_bytes(&self) -> u64 {
        let top = self.data_top.max(self.fin_off);
        top.saturating_sub(1)
    }

    /// Classifies a segment sent in this direction, updates the sequence state and the
    /// in-flight list. `rev` is the opposite direction (whose ACKs tell what was seen).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn on_send(
        &mut self,
        rev: &DirState,
        now: u64,
        seq: Seq,
        payload_len: u32,
        syn: bool,
        fin: bool,
        rst: bool,
        ooo_threshold_ns: u64,
    ) -> SegClass {
        let seq_len = payload_len + syn as u32 + fin as u32;
        self.next_seq_found = self.next_seq;
        if syn {
            self.set_base(seq);
        } else if self.unwrap.is_none() {
            // First segment of a direction seen without its SYN: place a virtual SYN
            // just before it, so nothing before the capture counts as a gap.
            let mut u = Unwrapper::new(seq - 1);
            u.advance(seq);
            self.unwrap = Some(u);
            self.gap_top = 1;
        }
        let mut class = SegClass::New;
        if let Some(next) = self.next_seq {
            // A keep-alive repeats the byte before the next one, already acknowledged;
            // re-sent before any ACK covered it, that byte is a retransmission (as
            // tcptrace counts it; tshark 4.0 calls it a keep-alive: docs/oracles.md).
            let keep_alive = payload_len <= 1
                && !syn
                && !fin
                && !rst
                && seq == next - 1
                && rev.last_ack.is_some_and(|a| a.ge(next));
            let zero_window_probe = payload_len == 1 && seq == next && rev.window == Some(0);
            // tshark: a multi-byte segment starting one byte early still advances.
            let not_advanced = seq.lt(next) && !(payload_len > 1 && seq == next - 1);
            if zero_window_probe {
                class = SegClass::ZeroWindowProbe;
            } else if keep_alive {
                class = SegClass::KeepAlive;
            } else if seq_len > 0 && not_advanced {
                class = self.classify_old(rev, now, seq, payload_len, seq_len, ooo_threshold_ns);
            } else if seq.gt(next) && !rst {
                class = SegClass::NewAfterGap;
                self.lost_segments += 1;
            }
        }
        self.last_was_keep_alive = class == SegClass::KeepAlive;
        if class.is_retransmission() {
            self.retx_pkts += 1;
            self.retx_bytes += payload_len as u64;
            match class {
                SegClass::FastRetransmission => self.fast_retx_pkts += 1,
                SegClass::SpuriousRetransmission => self.spurious_retx_pkts += 1,
                _ => {}
            }
        } else if class == SegClass::OutOfOrder {
            self.out_of_order_pkts += 1;
        }

        // tshark moves its next expected sequence number on any packet that starts beyond
        // it, a pure ACK included (so the data that follows is not "lost" a second time),
        // and a direction's first pure ACK sets it (so a repeat of it is a duplicate ACK).
        if seq_len == 0 && !rst && (class == SegClass::NewAfterGap || self.next_seq.is_none()) {
            self.next_seq = Some(seq);
            self.next_seq_ns = now;
        }
        if seq_len > 0 && !rst {
            let end = seq + seq_len;
            let advances = match self.next_seq {
                None => true,
                Some(next) => end.gt(next),
            };
            if advances && class != SegClass::ZeroWindowProbe {
                self.next_seq = Some(end);
                self.next_seq_ns = now;
            }
            self.track_positions(seq, payload_len, syn, fin);
            if payload_len > 0
                && let Some(a) = rev.last_ack
                && let Some(u) = self.unwrap.as_ref()
            {
                let f = u.top().saturating_sub(u.offset(a));
                self.inflight_max = self.inflight_max.max(f.min(u32::MAX as u64) as u32);
            }
            // A one-byte keep-alive re-sends a byte too: Karn's rule applies to it.
            let again = class.is_retransmission()
                || matches!(
                    class,
                    SegClass::OutOfOrder | SegClass::KeepAlive | SegClass::ZeroWindowProbe
                );
            self.time_segment(now, seq, end, again, advances);
        }
        class
    }

    fn classify_old(
        &self,
        rev: &DirState,
        now: u64,
        seq: Seq,
        payload_len: u32,
        seq_len: u32,
        ooo_threshold_ns: u64,
    ) -> SegClass {
        let next = self.next_seq.unwrap_or(seq);
        // tshark 4.0 checks, in this order: spurious, fast, out-of-order, plain.
        // Everything in it was already acknowledged: the retransmission was not needed.
        if payload_len > 0
            && let Some(acked) = rev.last_ack
            && (seq + payload_len).le(acked)
        {
            return SegClass::SpuriousRetransmission;
        }
        // Two or more duplicate ACKs asked for exactly this segment, and the peer's last
        // packet is under 20 ms old.
        if rev.dupack_num >= 2
            && rev.last_ack == Some(seq)
            && now.saturating_sub(rev.last_pkt_ns) < 20_000_000
        {
            return SegClass::FastRetransmission;
        }
        // Came within one handshake RTT of the highest segment and does not just
        // repeat it: reordering, not loss.
        if now.saturating_sub(self.next_seq_ns) < ooo_threshold_ns && next != seq + seq_len {
            return SegClass::OutOfOrder;
        }
        SegClass::Retransmission
    }

    /// Unique-byte and capture-hole bookkeeping in unwrapped offsets. The SYN and the
    /// FIN each take one unit of sequence space, as on the wire.
    fn track_positions(&mut self, seq: Seq, payload_len: u32, syn: bool, fin: bool) {
        let Some(u) = self.unwrap.as_mut() else {
            return;
        };
        let start = u.offset(seq);
        let data_start = start + syn as u64;
        let data_end = data_start + payload_len as u64;
        let seen_top = u.top();
        u.advance(seq + (syn as u32 + payload_len + fin as u32));
        if data_start > seen_top && payload_len > 0 {
            self.holes.get_or_insert_default().add(seen_top, data_start);
        }
        if payload_len > 0 {
            self.data_top = self.data_top.max(data_end);
            if let Some(h) = self.holes.as_mut() {
                h.fill(data_start, data_end);
            }
        }
        if fin {
            self.fin_off = data_end;
        }
        self.gap_top = self.gap_top.max(data_end + fin as u64);
    }

    fn time_segment(&mut self, now: u64, seq: Seq, end: Seq, again: bool, advances: bool) {
        if again {
            // Karn's rule: every timed segment this one overlaps can no longer give a
            // sample. Entries are in sequence order; each one starts where the last ended.
            for f in self.in_flight.iter_mut() {
                if f.end.gt(seq) {
                    f.retransmitted = true;
                    if f.end.ge(end) {
                        break;
                    }
                }
            }
            return;
        }
        if advances && self.in_flight.len() < MAX_IN_FLIGHT {
            self.in_flight.push_back(InFlight {
                end,
                sent_ns: now,
                retransmitted: false,
            });
        }
    }

    /// The peer acknowledged `ack` at `now`: take an RTT sample if the ACK exactly ends a
    /// segment sent once, drop acknowledged segments, settle capture gaps.
    /// `window` bounds how far beyond the highest byte seen an ACK can plausibly reach
    /// (the acknowledging side's advertised window): an ACK past that is a stray (a
    /// corrupt or forged segment, or another connection's), counted apart, never a gap.
    pub fn on_acked(&mut self, now: u64, ack: Seq, window: u64) {
        // tcptrace's NOSAMP: an earlier segment covered by the same ACK was sent again,
        // so the ACK may answer that retransmission rather than the segment it ends.
        let mut earlier_resent = false;
        while let Some(f) = self.in_flight.front() {
            if f.end.gt(ack) {
                break;
            }
            if f.end == ack && !f.retransmitted && !earlier_resent && now >= f.sent_ns {
                self.rtt.add(now - f.sent_ns);
            }
            earlier_resent |= f.retransmitted;
            self.in_flight.pop_front();
        }
        let Some(u) = self.unwrap.as_ref() else {
            return;
        };
        let acked = u.offset(ack);
        // Holes below the ACK were received by the peer but never captured.
        if let Some(h) = self.holes.as_mut() {
            self.gap_bytes += h.settle(acked);
        }
        if acked > self.gap_top {
            if acked - self.gap_top > window {
                self.stray_acks = self.stray_acks.saturating_add(1);
                return;
            }
            self.gap_bytes += acked - self.gap_top;
            self.gap_top = acked;
        }
    }

    /// Tstat's per-packet figures of a packet this direction sent: TTL, the advertised
    /// window (`window` already scaled; `None` for RSTs and windows cut by the
    /// snaplen), SACK blocks, pure ACK or data packet, payload times.
    #[inline]
    pub fn on_packet_figures(
        &mut self,
        now: u64,
        ttl: u8,
        window: Option<u32>,
        sack_blocks: u8,
        payload_len: u32,
        pure_ack: bool,
    ) {
        if self.pkts <= 1 {
            self.ttl_min = ttl;
            self.ttl_max = ttl;
        } else {
            self.ttl_min = self.ttl_min.min(ttl);
            self.ttl_max = self.ttl_max.max(ttl);
        }
        if let Some(w) = window {
            if self.win_seen {
                self.win_min = self.win_min.min(w);
                self.win_max = self.win_max.max(w);
            } else {
                self.win_seen = true;
                self.win_first = w;
                self.win_min = w;
                self.win_max = w;
            }
        }
        self.sack_blocks += sack_blocks as u32;
        self.pure_acks += pure_ack as u32;
        if payload_len > 0 {
            self.data_pkts += 1;
            if self.payload_first.get().is_none() {
                self.payload_first = MaybeNs::some(now);
            }
            self.payload_last = now;
        }
    }

    /// Records the ACK and window this direction sent; returns whether it was a
    /// duplicate ACK (same ACK, same window, no data, nothing else, as tshark defines it).
    #[allow(clippy::too_many_arguments)]
    pub fn on_ack_sent(
        &mut self,
        now: u64,
        seq: Seq,
        ack: Option<Seq>,
        window: Option<u16>,
        payload_len: u32,
        syn_fin_rst: bool,
        answers_keep_alive: bool,
    ) -> bool {
        let dup = payload_len == 0
            && !syn_fin_rst
            && !answers_keep_alive
            && ack.is_some()
            && ack == self.last_ack
            && window.is_some_and(|w| w != 0)
            && window == self.window
            && Some(seq) == self.next_seq_found;
        if dup {
            self.dupack_num += 1;
            self.dup_acks += 1;
        } else if ack != self.last_ack {
            // The count only restarts when the ACK moves (a data segment repeating the
            // same ACK neither counts nor resets it).
            self.dupack_num = 0;
        }
        // Every packet replaces the last ACK, as in tshark: a packet without the ACK flag
        // (a bare RST, ack field 0) leaves none, so no fast retransmission can follow.
        self.last_ack = ack;
        self.last_pkt_ns = now;
        if window.is_some() {
            self.window = window;
        }
        dup
    }
}
