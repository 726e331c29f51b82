//! One tracked connection: handshake state machine, close tracking, exchanges, and the
//! assembly of its final record.

use crate::decode::{IcmpQuote, TcpSegment};
use crate::dir::{DirState, SegClass};
use crate::flow::{Endpoint, FlowKey, Side};
use crate::history::{History, Mark};
use crate::record::{Close, ConnRecord, DirRecord, Outcome};
use crate::seq::Seq;
use crate::stats::ResponseTimes;
use crate::time::MaybeNs;

/// Out-of-order threshold before the handshake gives an RTT (tshark uses 3 ms too).
const DEFAULT_OOO_THRESHOLD_NS: u64 = 3_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Client SYN seen, nothing back yet (or the peer's own SYN: simultaneous open).
    SynSent,
    /// A SYN/ACK was seen; waiting for the ACK that completes the handshake.
    SynAckSeen,
    Established,
    /// No SYN seen from the client.
    Midstream,
}

/// What one packet did to the handshake, for the engine to turn into an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeChange {
    None,
    Decided(Outcome),
}

/// What one packet did, for the engine to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentEffect {
    pub handshake: HandshakeChange,
    /// A response began: the time since its request's first byte, and the part of it
    /// that was the server's (see [`Split`]).
    pub response_ns: Option<(u64, u64)>,
}

/// Where the time of the connection's exchanges went (docs/fields.md, "Exchanges"):
/// request transfer (first to last new request byte), server time (last request byte
/// to first response byte, less one capture-to-server round trip), response transfer
/// (first to last new response byte, until the next request or the end).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Split {
    pub server_total: u64,
    pub server_max: u64,
    pub request_total: u64,
    pub response_total: u64,
    pub response_max: u64,
}

pub(crate) struct Conn {
    pub key: FlowKey,
    pub hash: u64,
    /// Whether the client is `key.lo`.
    pub client_is_lo: bool,
    pub phase: Phase,
    /// Handshake outcome once decided (and its event emitted).
    pub outcome: Option<Outcome>,
    pub ts_first: u64,
    pub ts_last: u64,
    pub client_isn: Option<Seq>,
    server_isn: Option<Seq>,
    /// The ACK number of the server's first SYN/ACK: names the client ISN it answered.
    synack_ack: Option<Seq>,
    synack_from: Side,
    pub first_syn: MaybeNs,
    last_syn_ns: u64,
    last_synack: MaybeNs,
    established: MaybeNs,
    pub syn_count: u32,
    pub synack_count: u32,
    pub dirs: [DirState; 2],
    fin_seen: [bool; 2],
    rst_seen: [bool; 2],
    first_close: Option<(Side, Close)>,
    /// Time of the last FIN or RST: what a control-only capture (SYN/FIN/RST) still has.
    last_close: MaybeNs,
    icmp: Option<(u8, u8)>,
    // Exchanges: a message is a run of new payload in one direction.
    last_msg: Option<Side>,
    request_start: MaybeNs,
    /// Time of the newest new byte of the current request, and of the current response
    /// (with when it began).
    request_last: u64,
    response_first: MaybeNs,
    response_last: u64,
    split: Split,
    exchanges: u32,
    responses: ResponseTimes,
    history: History,
    /// The deadline of this connection's live entry in the engine's timer heap.
    pub timer_at: u64,
    /// When the last interim record was reported (0: none yet; the first is due
    /// `active_timeout` after the handshake, or after the first packet of a midstream
    /// connection).
    pub last_interim: u64,
    /// SYNs and SYN/ACKs seen when the handshake was decided (its event's counts).
    pub counts_at_decision: Option<(u32, u32)>,
    /// A packet carrying none of SYN, FIN, RST was seen: never in a control-only
    /// capture (`tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0`, what `capture` writes).
    plain_seen: bool,
    /// The packet completing the handshake was a FIN or RST: the handshake's own ACK
    /// was not captured, so when the connection opened is unknown (only that it did).
    established_by_close: bool,
    /// The interface of the first packet (an index into the engine's names).
    pub interface: u16,
    /// In-order payload delivery (`Config::payload`), from the first payload byte.
    pub streams: Option<Box<crate::stream::Streams>>,
}

impl Conn {
    /// A connection whose first packet is `seg`, sent by the `lo` end if `src_is_lo`.
    pub fn new(key: FlowKey, hash: u64, seg: &TcpSegment, src_is_lo: bool, now: u64) -> Conn {
        let f = seg.flags;
        // Who is the client? The SYN sender; the receiver of a SYN/ACK; otherwise the
        // side with the higher port (servers sit on the lower, well-known one), and on
        // equal ports the first sender.
        let sender_is_client = if f.syn() {
            !f.ack()
        } else {
            seg.sport >= seg.dport
        };
        let mut history = History::default();
        if !sender_is_client {
            history.flipped();
        }
        let phase = if f.syn() && !f.ack() {
            Phase::SynSent
        } else {
            Phase::Midstream
        };
        Conn {
            key,
            hash,
            client_is_lo: src_is_lo == sender_is_client,
            phase,
            outcome: (phase == Phase::Midstream).then_some(Outcome::Midstream),
            ts_first: now,
            ts_last: now,
            client_isn: None,
            server_isn: None,
            synack_ack: None,
            synack_from: Side::Server,
            first_syn: MaybeNs::NONE,
            last_syn_ns: now,
            last_synack: MaybeNs::NONE,
            established: MaybeNs::NONE,
            syn_count: 0,
            synack_count: 0,
            dirs: [DirState::default(), DirState::default()],
            fin_seen: [false; 2],
            rst_seen: [false; 2],
            first_close: None,
            last_close: MaybeNs::NONE,
            icmp: None,
            last_msg: None,
            request_start: MaybeNs::NONE,
            request_last: 0,
            response_first: MaybeNs::NONE,
            response_last: 0,
            split: Split::default(),
            exchanges: 0,
            responses: ResponseTimes::default(),
            history,
            timer_at: u64::MAX,
            last_interim: 0,
            streams: None,
            counts_at_decision: None,
            plain_seen: false,
            established_by_close: false,
            interface: crate::engine::NO_INTERFACE,
        }
    }

    #[inline]
    pub fn side_of(&self, src_is_lo: bool) -> Side {
        if src_is_lo == self.client_is_lo {
            Side::Client
        } else {
            Side::Server
        }
    }

    pub fn client(&self) -> Endpoint {
        if self.client_is_lo {
            self.key.lo
        } else {
            self.key.hi
        }
    }

    pub fn server(&self) -> Endpoint {
        if self.client_is_lo {
            self.key.hi
        } else {
            self.key.lo
        }
    }

    /// Whether a SYN (without ACK) from `side` starts a new connection on this tuple
    /// rather than continuing this one: a new ISN, as tshark and tcptrace decide it.
    pub fn is_new_syn(&self, side: Side, seq: Seq) -> bool {
        match side {
            Side::Client => match (self.client_isn, self.synack_ack) {
                (Some(isn), _) => isn != seq,
                // The SYN/ACK answering this very SYN was captured first (reordering).
                (None, Some(acked)) => acked != seq + 1,
                (None, None) => true,
            },
            // The server's own SYN during our handshake is a simultaneous open.
            Side::Server => !(self.phase == Phase::SynSent && self.server_isn.is_none()),
        }
    }

    /// When the handshake completed.
    pub fn established_at(&self) -> Option<u64> {
        self.established.get()
    }

    /// Whether both directions are finished (FIN each way) or any RST was seen.
    pub fn is_closed(&self) -> bool {
        self.rst_seen[0] || self.rst_seen[1] || (self.fin_seen[0] && self.fin_seen[1])
    }

    /// tshark's out-of-order window: its initial RTT, measured from the latest SYN (not
    /// the first, unlike `connect_us`), or 3 ms before the handshake completes.
    fn ooo_threshold(&self) -> u64 {
        match self.handshake_ack_at() {
            Some(e) if self.first_syn.get().is_some() && e > self.last_syn_ns => {
                e - self.last_syn_ns
            }
            _ => DEFAULT_OOO_THRESHOLD_NS,
        }
    }

    /// Processes one segment; returns what it did to the handshake and exchanges.
    pub fn on_segment(&mut self, seg: &TcpSegment, side: Side, now: u64) -> SegmentEffect {
        self.ts_last = self.ts_last.max(now);
        let f = seg.flags;
        let (syn, ack, fin, rst) = (f.syn(), f.ack(), f.fin(), f.rst());
        let s = side.index();
        let mut change = HandshakeChange::None;

        // Handshake bookkeeping comes first: it fixes the ISNs the analysis uses.
        if syn {
            change = self.on_syn(seg, side, now);
        }

        self.plain_seen |= !(syn || fin || rst);
        let ooo_threshold = self.ooo_threshold();
        let (d, rev) = split_pair(&mut self.dirs, s);
        d.pkts += 1;
        d.payload_bytes += seg.payload_len as u64;
        // The advertised window, scaled by this side's shift once both SYNs offered
        // scaling (a SYN's own window is never scaled); a RST advertises nothing.
        let window = match seg.window {
            Some(w) if !rst => {
                let shift = match (syn, d.wscale, rev.wscale) {
                    (false, Some(a), Some(_)) => a.min(14),
                    _ => 0,
                };
                Some((w as u32) << shift)
            }
            _ => None,
        };
        d.on_packet_figures(
            now,
            seg.ttl,
            window,
            seg.sack_blocks,
            seg.payload_len,
            ack && seg.payload_len == 0 && !syn && !fin && !rst,
        );
        let class = d.on_send(
            rev,
            now,
            seg.seq,
            seg.payload_len,
            syn,
            fin,
            rst,
            ooo_threshold,
        );
        if ack {
            // What the acknowledging side could have received beyond the highest byte
            // seen: one advertised window (scaled when both sides offered scaling).
            // Without the handshake the scale is unknown: assume the largest.
            let scale = match (self.phase, d.wscale, rev.wscale) {
                (Phase::Midstream, ..) => 14,
                (_, Some(a), Some(_)) => a.min(14),
                _ => 0,
            };
            let window = ((seg.window.unwrap_or(u16::MAX) as u64) << scale).max(1 << 16);
            rev.on_acked(now, seg.ack, window);
        }
        let answers_keep_alive = rev.last_was_keep_alive();
        d.on_ack_sent(
            now,
            seg.seq,
            ack.then_some(seg.ack),
            seg.window,
            seg.payload_len,
            syn || fin || rst,
            answers_keep_alive,
        );
        if seg.window == Some(0) && !rst && !syn {
            d.zero_windows += 1;
            self.history.mark(side, Mark::ZeroWindow, 0);
        }

        self.mark_history(seg, side, class);

        // The ACK completing the handshake: from the side opposite the SYN/ACK sender,
        // acknowledging that sender's ISN (in a simultaneous open, the peer's own SYN/ACK).
        if self.phase == Phase::SynAckSeen && ack && side != self.synack_from {
            let isn = if self.synack_from == Side::Server {
                self.server_isn
            } else {
                self.client_isn
            };
            if let Some(isn) = isn
                && seg.ack.ge(isn + 1)
            {
                self.phase = Phase::Established;
                self.established = MaybeNs::some(now);
                self.established_by_close = fin || rst;
                // A handshake that failed once (RST, ICMP, timeout) and then completed on
                // a retried SYN is established: the record says what finally happened.
                if self.outcome.is_none() {
                    change = HandshakeChange::Decided(Outcome::Established);
                }
                self.outcome = Some(Outcome::Established);
            }
        }

        if rst || fin {
            self.last_close = MaybeNs::some(now);
        }
        if rst {
            self.rst_seen[s] = true;
            self.dirs[s].rsts = self.dirs[s].rsts.saturating_add(1);
            if self.first_close.is_none() {
                self.first_close = Some((side, Close::Rst));
            }
            if self.outcome.is_none() && matches!(self.phase, Phase::SynSent | Phase::SynAckSeen) {
                self.outcome = Some(Outcome::Rejected);
                change = HandshakeChange::Decided(Outcome::Rejected);
            }
        }
        if fin {
            self.fin_seen[s] = true;
            self.dirs[s].fins = self.dirs[s].fins.saturating_add(1);
            if self.first_close.is_none() {
                self.first_close = Some((side, Close::Fin));
            }
        }

        if self.is_closed() {
            for d in &mut self.dirs {
                d.release_timing();
            }
        }

        let mut response_ns = None;
        if seg.payload_len > 0
            && matches!(
                class,
                SegClass::New | SegClass::NewAfterGap | SegClass::OutOfOrder
            )
        {
            response_ns = self.on_new_payload(side, now);
        }
        SegmentEffect {
            handshake: change,
            response_ns,
        }
    }

    fn on_syn(&mut self, seg: &TcpSegment, side: Side, now: u64) -> HandshakeChange {
        let s = side.index();
        let o = seg.options;
        let d = &mut self.dirs[s];
        d.mss = o.mss.or(d.mss);
        d.wscale = o.wscale.or(d.wscale);
        d.sack_ok |= o.sack_ok;
        d.ts_ok |= o.ts_ok;
        d.set_base(seg.seq);
        if !seg.flags.ack() {
            match side {
                Side::Client => {
                    self.syn_count += 1;
                    if self.rst_seen.iter().any(|&r| r) && self.phase != Phase::Established {
                        // The same SYN again after a RST: the handshake is retried, and the
                        // RST no longer closes the connection.
                        self.rst_seen = [false; 2];
                        self.first_close = None;
                        self.phase = Phase::SynSent;
                    }
                    if self.client_isn.is_none() {
                        self.client_isn = Some(seg.seq);
                        self.first_syn = MaybeNs::some(now);
                        if self.phase == Phase::Midstream && self.synack_ack == Some(seg.seq + 1) {
                            // The SYN/ACK came first in the capture; the handshake is on.
                            self.phase = Phase::SynAckSeen;
                            self.outcome = None;
                        }
                    }
                    self.last_syn_ns = now;
                }
                Side::Server => {
                    // Simultaneous open: the peer's SYN plays the SYN/ACK's part.
                    self.server_isn.get_or_insert(seg.seq);
                }
            }
            return HandshakeChange::None;
        }
        self.synack_count += 1;
        match side {
            Side::Server => {
                self.server_isn.get_or_insert(seg.seq);
                self.synack_ack.get_or_insert(seg.ack);
            }
            Side::Client => {
                self.client_isn.get_or_insert(seg.seq);
            }
        }
        if self.phase == Phase::SynSent {
            self.phase = Phase::SynAckSeen;
            self.synack_from = side;
        }
        if self.phase == Phase::SynAckSeen
            || (self.phase == Phase::Midstream && self.last_synack.get().is_none())
        {
            self.last_synack = MaybeNs::some(now);
        }
        HandshakeChange::None
    }

    /// New payload from `side`: a new message when the direction flips; a server message
    /// answering a client one completes an exchange, whose response time is returned.
    fn on_new_payload(&mut self, side: Side, now: u64) -> Option<(u64, u64)> {
        if self.last_msg == Some(side) {
            match side {
                Side::Client => self.request_last = self.request_last.max(now),
                Side::Server => self.response_last = self.response_last.max(now),
            }
            return None;
        }
        self.last_msg = Some(side);
        self.dirs[side.index()].messages += 1;
        match side {
            Side::Client => {
                self.end_response();
                self.request_start = MaybeNs::some(now);
                self.request_last = now;
                None
            }
            Side::Server => {
                self.response_first = MaybeNs::some(now);
                self.response_last = now;
                let start = self.request_start.take()?;
                let rt = now.saturating_sub(start);
                self.exchanges += 1;
                self.responses.add(rt);
                let server = now
                    .saturating_sub(self.request_last)
                    .saturating_sub(self.capture_to_server_ns());
                let s = &mut self.split;
                s.server_total += server;
                s.server_max = s.server_max.max(server);
                s.request_total += self.request_last.saturating_sub(start);
                Some((rt, server))
            }
        }
    }

    /// The response in progress ended (the next request began, or the record is made).
    fn end_response(&mut self) {
        if let Some(first) = self.response_first.take() {
            let t = self.response_last.saturating_sub(first);
            self.split.response_total += t;
            self.split.response_max = self.split.response_max.max(t);
        }
    }

    /// One round trip from the capture point to the server and back: the part of the
    /// wait between a request's last byte and the response's first byte that is the
    /// network, wherever the capture point is. Near the client it is the whole path's
    /// RTT; near the server about nothing, so the wait is the server's own time. From
    /// the handshake (last SYN to SYN/ACK), else the client's data-to-ACK RTT minimum.
    fn capture_to_server_ns(&self) -> u64 {
        self.server_rtt_ns()
            .or_else(|| {
                let r = &self.dirs[Side::Client.index()].rtt;
                (r.samples > 0).then_some(r.min_ns)
            })
            .unwrap_or(0)
    }

    /// The split as of now, the response in progress counted as ended.
    pub fn split(&self) -> Split {
        let mut s = self.split;
        if let Some(first) = self.response_first.get() {
            let t = self.response_last.saturating_sub(first);
            s.response_total += t;
            s.response_max = s.response_max.max(t);
        }
        s
    }

    fn mark_history(&mut self, seg: &TcpSegment, side: Side, class: SegClass) {
        let f = seg.flags;
        let seq = seg.seq.0;
        let h = &mut self.history;
        if f.syn() && (f.fin() || f.rst()) {
            h.mark(side, Mark::MultiFlag, seq);
        } else if f.fin() && f.rst() {
            h.mark(side, Mark::Inconsistent, seq);
        }
        if f.syn() {
            h.mark(side, if f.ack() { Mark::SynAck } else { Mark::Syn }, seq);
        }
        if seg.payload_len > 0 {
            h.mark(side, Mark::Data, seq);
        } else if f.ack() && !f.syn() && !f.fin() && !f.rst() {
            h.mark(side, Mark::Ack, seq);
        }
        if class.is_retransmission() {
            h.mark(side, Mark::Retransmit, seq);
        }
        if class == SegClass::NewAfterGap {
            h.mark(side, Mark::Gap, seq);
        }
        if f.fin() {
            h.mark(side, Mark::Fin, seq);
        }
        if f.rst() {
            h.mark(side, Mark::Rst, seq);
        }
    }

    /// An ICMP error quoting a segment this connection's `side` sent.
    pub fn on_icmp(&mut self, q: &IcmpQuote, now: u64) -> HandshakeChange {
        self.ts_last = self.ts_last.max(now);
        self.icmp = Some((q.icmp_type, q.icmp_code));
        if self.outcome.is_none() && matches!(self.phase, Phase::SynSent | Phase::SynAckSeen) {
            self.outcome = Some(Outcome::Unreachable);
            return HandshakeChange::Decided(Outcome::Unreachable);
        }
        HandshakeChange::None
    }

    /// Decides a timed-out handshake at capture time `now`.
    pub fn check_timeout(&mut self, now: u64, timeout_ns: u64) -> HandshakeChange {
        if self.outcome.is_none()
            && let Some(first) = self.first_syn.get()
            && now.saturating_sub(first) >= timeout_ns
        {
            self.outcome = Some(Outcome::Timeout);
            return HandshakeChange::Decided(Outcome::Timeout);
        }
        HandshakeChange::None
    }

    /// Last SYN to the SYN/ACK: the server's side of the capture point.
    pub fn server_rtt_ns(&self) -> Option<u64> {
        match (self.first_syn.get(), self.last_synack.get()) {
            (Some(_), Some(sa)) if sa >= self.last_syn_ns => Some(sa - self.last_syn_ns),
            _ => None,
        }
    }

    pub fn icmp(&self) -> Option<(u8, u8)> {
        self.icmp
    }

    /// Time from the first SYN to the packet that decided the outcome; unknown for a
    /// handshake that a FIN or RST completed (its ACK was not captured).
    pub fn handshake_ns(&self, decided_at: u64) -> Option<u64> {
        if self.established_by_close && self.established.get() == Some(decided_at) {
            return None;
        }
        self.first_syn.get().map(|f| decided_at.saturating_sub(f))
    }

    /// When the handshake's ACK was seen, if it was (not a FIN or RST standing in).
    fn handshake_ack_at(&self) -> Option<u64> {
        self.established
            .get()
            .filter(|_| !self.established_by_close)
    }

    /// A connection seen through a control-only capture: not one packet lacking SYN, FIN
    /// and RST, yet its FIN's sequence number says payload was sent that no captured
    /// packet carried. Real traffic always has such a packet (the handshake's ACK, the
    /// ACK of a FIN), so a full capture gives none; without unseen payload (a SYN scan,
    /// a connection closed before any data) every figure is still right.
    pub fn control_only(&self) -> bool {
        !self.plain_seen && self.dirs.iter().any(|d| d.unique_bytes() > d.payload_bytes)
    }

    /// Zeek's conn_state, from each endpoint's state as Zeek's TCP analyzer tracks it.
    fn conn_state(&self) -> &'static str {
        #[derive(PartialEq, Clone, Copy)]
        enum Ep {
            Inactive,
            SynSent,
            SynAckSent,
            Partial,
            Established,
            Closed,
            Reset,
        }
        let h = self.history.as_str().as_bytes();
        let sent = |side: Side, c: u8| {
            let c = if side == Side::Client {
                c
            } else {
                c.to_ascii_lowercase()
            };
            h.contains(&c)
        };
        let handshake_done = self.established.get().is_some();
        let state = |side: Side| {
            let i = side.index();
            if self.rst_seen[i] {
                Ep::Reset
            } else if self.fin_seen[i] {
                Ep::Closed
            } else if handshake_done {
                Ep::Established
            } else if sent(side, b'H') {
                Ep::SynAckSent
            } else if sent(side, b'S') {
                Ep::SynSent
            } else if self.dirs[i].pkts > 0 {
                Ep::Partial
            } else {
                Ep::Inactive
            }
        };
        let (os, rs) = (state(Side::Client), state(Side::Server));
        let o_inactive = matches!(os, Ep::Inactive | Ep::Partial);
        let r_inactive = matches!(rs, Ep::Inactive | Ep::Partial);
        let no_data = self.dirs[0].payload_bytes == 0 && self.dirs[1].payload_bytes == 0;
        if rs == Ep::Reset {
            if matches!(os, Ep::SynSent | Ep::SynAckSent)
                || (os == Ep::Reset && no_data && !handshake_done)
            {
                "REJ"
            } else if o_inactive {
                "RSTRH"
            } else {
                "RSTR"
            }
        } else if os == Ep::Reset {
            if r_inactive {
                if sent(Side::Client, b'S') && !sent(Side::Server, b'h') {
                    "RSTOS0"
                } else {
                    "OTH"
                }
            } else {
                "RSTO"
            }
        } else if rs == Ep::Closed && os == Ep::Closed {
            "SF"
        } else if os == Ep::Closed {
            if r_inactive { "SH" } else { "S2" }
        } else if rs == Ep::Closed {
            if o_inactive { "SHR" } else { "S3" }
        } else if os == Ep::SynSent && rs == Ep::Inactive {
            "S0"
        } else if os == Ep::Established && rs == Ep::Established {
            "S1"
        } else {
            "OTH"
        }
    }

    /// The final record. `trace_ended` says the trace ended with the handshake open.
    pub fn to_record(&self, trace_ended: bool) -> ConnRecord {
        let split = self.split();
        let outcome = self.outcome.unwrap_or(if trace_ended {
            Outcome::Pending
        } else {
            Outcome::Timeout
        });
        let close = if self.rst_seen[0] || self.rst_seen[1] {
            Close::Rst
        } else if self.fin_seen[0] || self.fin_seen[1] {
            Close::Fin
        } else {
            Close::Open
        };
        let c = self.client();
        let sv = self.server();
        let mut r = ConnRecord {
            id: Default::default(),
            ts_first_ns: self.ts_first,
            ts_last_ns: self.ts_last,
            client: c.addr,
            client_port: c.port,
            server: sv.addr,
            server_port: sv.port,
            vlan: self.key.vlan,
            // The engine keeps the encapsulations aside and fills this in.
            tunnel: None,
            outcome,
            close,
            closed_by: self.first_close.map(|(s, _)| s),
            close_first: self.first_close.map(|(_, c)| c),
            syn_count: self.syn_count,
            synack_count: self.synack_count,
            connect_ns: match (self.first_syn.get(), self.handshake_ack_at()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
            server_rtt_ns: self.server_rtt_ns(),
            client_rtt_ns: match (self.last_synack.get(), self.handshake_ack_at()) {
                (Some(sa), Some(e)) => Some(e.saturating_sub(sa)),
                _ => None,
            },
            syn_retry_ns: self
                .first_syn
                .get()
                .map(|f| self.last_syn_ns.saturating_sub(f)),
            closed_after_ns: self
                .last_close
                .get()
                .map(|c| c.saturating_sub(self.first_syn.get().unwrap_or(self.ts_first))),
            c2s: dir_record(&self.dirs[0], self.first_syn.get().unwrap_or(self.ts_first)),
            s2c: dir_record(&self.dirs[1], self.first_syn.get().unwrap_or(self.ts_first)),
            exchanges: self.exchanges,
            response_p50_ns: self.responses.percentile(50.0),
            response_max_ns: self.responses.max(),
            server_total_ns: (self.exchanges > 0).then_some(split.server_total),
            server_max_ns: (self.exchanges > 0).then_some(split.server_max),
            request_transfer_total_ns: (self.exchanges > 0).then_some(split.request_total),
            response_transfer_total_ns: (self.exchanges > 0).then_some(split.response_total),
            response_transfer_max_ns: (self.exchanges > 0).then_some(split.response_max),
            conn_state: self.conn_state(),
            history: self.history.as_str().to_string(),
            icmp_type: self.icmp.map(|i| i.0),
            icmp_code: self.icmp.map(|i| i.1),
            counts_at_decision: self.counts_at_decision,
            control_only: false,
            // The engine knows the interface names and fills this in.
            interface: None,
            app: Default::default(),
        };
        if self.control_only() {
            r.forget_unmeasured();
        }
        r
    }
}

/// One direction's record; payload times are relative to `t0` (the first SYN, or the
/// first packet without one).
fn dir_record(d: &DirState, t0: u64) -> DirRecord {
    let first = d.payload_first.get();
    DirRecord {
        pkts: d.pkts,
        payload_bytes: d.payload_bytes,
        unique_bytes: d.unique_bytes(),
        retx_pkts: d.retx_pkts,
        retx_bytes: d.retx_bytes,
        fast_retx_pkts: d.fast_retx_pkts,
        spurious_retx_pkts: d.spurious_retx_pkts,
        out_of_order_pkts: d.out_of_order_pkts,
        lost_segments: d.lost_segments,
        dup_acks: d.dup_acks,
        zero_windows: d.zero_windows,
        mss: d.mss,
        wscale: d.wscale,
        sack_ok: d.sack_ok,
        ts_ok: d.ts_ok,
        rtt_min_ns: (d.rtt.samples > 0).then_some(d.rtt.min_ns),
        rtt_avg_ns: d.rtt.mean_ns(),
        rtt_max_ns: (d.rtt.samples > 0).then_some(d.rtt.max_ns),
        rtt_std_ns: d.rtt.std_ns(),
        rtt_samples: d.rtt.samples,
        gap_bytes: d.gap_bytes,
        messages: d.messages,
        fin_pkts: d.fins as u32,
        rst_pkts: d.rsts as u32,
        stray_acks: d.stray_acks as u32,
        ttl_min: (d.pkts > 0).then_some(d.ttl_min),
        ttl_max: (d.pkts > 0).then_some(d.ttl_max),
        win_first: d.win_seen.then_some(d.win_first),
        win_min: d.win_seen.then_some(d.win_min),
        win_max: d.win_seen.then_some(d.win_max),
        sack_blocks: d.sack_blocks,
        pure_acks: d.pure_acks,
        data_pkts: d.data_pkts,
        first_payload_ns: first.map(|f| f.saturating_sub(t0)),
        last_payload_ns: first.map(|_| d.payload_last.saturating_sub(t0)),
        inflight_max: d.inflight_max,
    }
}

/// Mutable access to one direction and shared access to the other.
#[inline]
fn split_pair(dirs: &mut [DirState; 2], i: usize) -> (&mut DirState, &mut DirState) {
    let (a, b) = dirs.split_at_mut(1);
    if i == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}
