//! Engine scenarios on synthetic traffic: each builds the exact packets of one TCP
//! situation and asserts the record the engine reports.

use std::net::IpAddr;

use tcpsight_core::build::{Tcp, icmp_error_frame, tcp_frame};
use tcpsight_core::decode::TcpFlags;
use tcpsight_core::{Close, Collect, Config, ConnRecord, Engine, LinkType, Outcome, Side};

const S: u16 = TcpFlags::SYN;
const A: u16 = TcpFlags::ACK;
const F: u16 = TcpFlags::FIN;
const R: u16 = TcpFlags::RST;
const P: u16 = TcpFlags::PSH;
const MS: u64 = 1_000_000;

/// One connection's packets, built in order.
struct Wire {
    engine: Engine,
    out: Collect,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    t: u64,
}

impl Wire {
    fn new(client: &str, cport: u16, server: &str, sport: u16) -> Wire {
        Wire {
            engine: Engine::new(Config::default()),
            out: Collect::default(),
            client: (client.parse().unwrap(), cport),
            server: (server.parse().unwrap(), sport),
            t: 1_700_000_000_000_000_000,
        }
    }

    fn seg(&self, from_client: bool, flags: u16, seq: u32, ack: u32, len: usize) -> Tcp {
        let (a, b) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let mut t = Tcp::new(a.0, a.1, b.0, b.1);
        t.flags = flags;
        t.seq = seq;
        t.ack = ack;
        t.payload_len = len;
        t.syn_options = flags & S != 0;
        t
    }

    /// Sends a segment `after_ms` after the previous one.
    fn send(
        &mut self,
        after_ms: u64,
        from_client: bool,
        flags: u16,
        seq: u32,
        ack: u32,
        len: usize,
    ) {
        self.t += after_ms * MS;
        let f = tcp_frame(&self.seg(from_client, flags, seq, ack, len));
        self.engine.process(
            self.t,
            LinkType::ETHERNET,
            &f,
            f.len() as u32,
            &mut self.out,
        );
    }

    fn c(&mut self, after_ms: u64, flags: u16, seq: u32, ack: u32, len: usize) {
        self.send(after_ms, true, flags, seq, ack, len);
    }

    fn s(&mut self, after_ms: u64, flags: u16, seq: u32, ack: u32, len: usize) {
        self.send(after_ms, false, flags, seq, ack, len);
    }

    fn finish(mut self) -> Collect {
        self.engine.finish(&mut self.out);
        self.out
    }

    fn one(self) -> ConnRecord {
        let out = self.finish();
        assert_eq!(out.records.len(), 1, "{:#?}", out.records);
        out.records.into_iter().next().unwrap()
    }

    /// Client ISN 100, server ISN 5000; handshake with 10 ms to the server and back.
    fn handshake(&mut self) {
        self.c(0, S, 100, 0, 0);
        self.s(10, S | A, 5000, 101, 0);
        self.c(10, A, 101, 5001, 0);
    }
}

#[test]
fn established_exchange_and_fin_close() {
    let mut w = Wire::new("10.0.0.1", 40000, "10.0.0.2", 80);
    w.handshake();
    w.c(1, A | P, 101, 5001, 300); // request
    w.s(10, A, 5001, 401, 1000); // response, 2 segments
    w.s(0, A | P, 6001, 401, 500);
    w.c(10, A, 401, 6501, 0);
    w.c(5, A | F, 401, 6501, 0);
    w.s(10, A | F, 6501, 402, 0);
    w.c(10, A, 402, 6502, 0);
    let r = w.one();
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!((r.close, r.closed_by), (Close::Fin, Some(Side::Client)));
    assert_eq!(r.connect_ns, Some(20 * MS));
    assert_eq!(r.server_rtt_ns, Some(10 * MS));
    assert_eq!(r.client_rtt_ns, Some(10 * MS));
    assert_eq!((r.c2s.payload_bytes, r.c2s.unique_bytes), (300, 300));
    assert_eq!((r.s2c.payload_bytes, r.s2c.unique_bytes), (1500, 1500));
    assert_eq!((r.c2s.messages, r.s2c.messages, r.exchanges), (1, 1, 1));
    assert_eq!(r.response_p50_ns, Some(10 * MS));
    assert_eq!(r.conn_state, "SF");
    // The server sent no pure ACK, so no "a".
    assert_eq!(r.history, "ShADdFf");
    assert_eq!(
        (r.c2s.mss, r.c2s.wscale, r.c2s.sack_ok, r.c2s.ts_ok),
        (Some(1460), Some(7), true, true)
    );
    // RTT samples (tcptrace rules): SYN, request, FIN from the client; SYN/ACK and the
    // 500-byte segment (the ACK ends exactly there) and FIN from the server.
    assert_eq!(r.c2s.rtt_samples, 3);
    assert_eq!(r.c2s.rtt_min_ns, Some(10 * MS));
    assert_eq!(r.s2c.rtt_samples, 3);
    assert_eq!(r.c2s.gap_bytes + r.s2c.gap_bytes, 0);
    assert_eq!(r.c2s.retx_pkts + r.s2c.retx_pkts, 0);
}

#[test]
fn refused_by_rst() {
    let mut w = Wire::new("10.0.0.1", 40001, "10.0.0.2", 9);
    w.c(0, S, 100, 0, 0);
    w.s(1, R | A, 0, 101, 0);
    let out = w.finish();
    assert_eq!(out.handshakes.len(), 1);
    assert_eq!(out.handshakes[0].outcome, Outcome::Rejected);
    assert_eq!(out.handshakes[0].elapsed_ns, Some(MS));
    let r = &out.records[0];
    assert_eq!(
        (r.outcome, r.close, r.closed_by),
        (Outcome::Rejected, Close::Rst, Some(Side::Server))
    );
    assert_eq!(r.conn_state, "REJ");
    assert_eq!(r.connect_ns, None);
}

#[test]
fn icmp_unreachable_quoting_the_syn() {
    let mut w = Wire::new("10.0.0.1", 40002, "10.0.0.3", 80);
    w.c(0, S, 100, 0, 0);
    let syn = w.seg(true, S, 100, 0, 0);
    let f = icmp_error_frame("10.0.0.254".parse().unwrap(), 3, 1, &syn);
    w.t += 3 * MS;
    let t = w.t;
    w.engine
        .process(t, LinkType::ETHERNET, &f, f.len() as u32, &mut w.out);
    let out = w.finish();
    let r = &out.records[0];
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!((r.icmp_type, r.icmp_code), (Some(3), Some(1)));
    assert_eq!(out.handshakes[0].outcome, Outcome::Unreachable);
}

#[test]
fn timeout_after_syn_retries_is_one_connection() {
    let mut w = Wire::new("10.0.0.1", 40003, "10.0.0.4", 80);
    w.c(0, S, 100, 0, 0);
    for gap in [1000, 2000, 4000, 8000, 16000, 32000] {
        w.c(gap, S, 100, 0, 0);
    }
    let out = w.finish();
    assert_eq!(out.records.len(), 1);
    let r = &out.records[0];
    assert_eq!(r.outcome, Outcome::Timeout);
    assert_eq!(r.syn_count, 7);
    assert_eq!(r.syn_retry_ns, Some(63_000 * MS));
    assert_eq!(r.conn_state, "S0");
    // Decided when capture time passed first SYN + 30 s (at the next packet, 31 s), and
    // reported as of its deadline: the event does not depend on when a sweep ran, so a
    // live run and a replay of its capture print the same line.
    assert_eq!(out.handshakes.len(), 1);
    assert_eq!(out.handshakes[0].outcome, Outcome::Timeout);
    assert_eq!(out.handshakes[0].elapsed_ns, Some(30_000 * MS));
    assert_eq!(
        out.handshakes[0].ts_ns,
        out.handshakes[0].first_syn_ns.unwrap() + 30_000 * MS
    );
}

#[test]
fn trace_ending_during_handshake_is_pending_not_timeout() {
    let mut w = Wire::new("10.0.0.1", 40004, "10.0.0.4", 80);
    w.c(0, S, 100, 0, 0);
    let out = w.finish();
    assert_eq!(out.records[0].outcome, Outcome::Pending);
    assert!(out.handshakes.is_empty());
}

#[test]
fn port_reuse_with_new_isn_starts_a_new_connection() {
    let mut w = Wire::new("10.0.0.1", 40005, "10.0.0.2", 80);
    w.handshake();
    w.c(1, A | F, 101, 5001, 0);
    w.s(1, A | F, 5001, 102, 0);
    w.c(1, A, 102, 5002, 0);
    w.c(100, S, 9000, 0, 0); // same tuple, new ISN
    w.s(10, S | A, 7000, 9001, 0);
    w.c(10, A, 9001, 7001, 0);
    let out = w.finish();
    assert_eq!(out.records.len(), 2);
    assert!(
        out.records
            .iter()
            .all(|r| r.outcome == Outcome::Established)
    );
    // A retransmitted SYN (same ISN) is not a new connection.
    let mut w = Wire::new("10.0.0.1", 40006, "10.0.0.2", 80);
    w.c(0, S, 100, 0, 0);
    w.c(1000, S, 100, 0, 0);
    w.s(10, S | A, 5000, 101, 0);
    w.c(10, A, 101, 5001, 0);
    let r = w.one();
    assert_eq!((r.syn_count, r.outcome), (2, Outcome::Established));
    assert_eq!(r.connect_ns, Some(1020 * MS));
    assert_eq!(r.server_rtt_ns, Some(10 * MS));
}

#[test]
fn loopback_same_address_both_directions_right() {
    let mut w = Wire::new("127.0.0.1", 50000, "127.0.0.1", 8080);
    w.handshake();
    w.c(1, A | P, 101, 5001, 10);
    w.s(1, A | P, 5001, 111, 20);
    let r = w.one();
    assert_eq!((r.client_port, r.server_port), (50000, 8080));
    assert_eq!((r.c2s.payload_bytes, r.s2c.payload_bytes), (10, 20));
    assert_eq!(r.close, Close::Open);
}

#[test]
fn simultaneous_open() {
    let mut w = Wire::new("10.0.0.1", 7000, "10.0.0.2", 7001);
    w.c(0, S, 100, 0, 0);
    w.s(0, S, 5000, 0, 0);
    w.c(1, S | A, 100, 5001, 0);
    w.s(0, S | A, 5000, 101, 0);
    let r = w.one();
    assert_eq!(r.outcome, Outcome::Established);
}

#[test]
fn midstream_uses_port_heuristic() {
    // First packet seen goes server -> client (port 443 -> 51000).
    let mut w = Wire::new("10.0.0.1", 51000, "10.0.0.2", 443);
    w.s(0, A | P, 5000, 100, 100);
    w.c(1, A, 100, 5100, 0);
    let r = w.one();
    assert_eq!(r.outcome, Outcome::Midstream);
    assert_eq!((r.client_port, r.server_port), (51000, 443));
    assert_eq!(r.s2c.unique_bytes, 100);
    assert_eq!(r.s2c.gap_bytes, 0);
    assert_eq!(r.conn_state, "OTH");
}

#[test]
fn retransmission_after_timeout_and_karn() {
    let mut w = Wire::new("10.0.0.1", 40007, "10.0.0.2", 80);
    w.handshake();
    w.c(1, A | P, 101, 5001, 100);
    w.c(300, A | P, 101, 5001, 100); // RTO retransmission
    w.s(10, A, 5001, 201, 0);
    let r = w.one();
    assert_eq!((r.c2s.retx_pkts, r.c2s.retx_bytes), (1, 100));
    assert_eq!(r.c2s.payload_bytes, 200);
    assert_eq!(r.c2s.unique_bytes, 100);
    // Karn: the retransmitted segment gives no RTT sample; only the SYN does.
    assert_eq!(r.c2s.rtt_samples, 1);
    assert!(r.history.contains('T'));
}

#[test]
fn fast_retransmission_after_three_dup_acks() {
    let mut w = Wire::new("10.0.0.1", 40008, "10.0.0.2", 80);
    w.handshake();
    w.c(1, A | P, 101, 5001, 10);
    w.s(1, A, 5001, 111, 1000); // segment 1
    // segment 2 lost before the capture point; 3, 4, 5 arrive
    for seq in [7001u32, 8001, 9001] {
        w.s(1, A, seq, 111, 1000);
    }
    w.c(1, A, 111, 6001, 0); // ACK for segment 1
    w.c(1, A, 111, 6001, 0); // dup 1
    w.c(1, A, 111, 6001, 0); // dup 2
    w.s(1, A, 6001, 111, 1000); // fast retransmission of segment 2
    let r = w.one();
    assert_eq!(r.c2s.dup_acks, 2);
    assert_eq!(r.s2c.fast_retx_pkts, 1);
    // As in tshark, a fast retransmission is also a retransmission.
    assert_eq!(r.s2c.retx_pkts, 1);
    assert_eq!(r.s2c.lost_segments, 1);
}

#[test]
fn capture_gap_counts_acked_bytes_never_seen() {
    let mut w = Wire::new("10.0.0.1", 40009, "10.0.0.2", 80);
    w.handshake();
    w.c(1, A | P, 101, 5001, 10);
    w.s(1, A, 5001, 111, 1000);
    // 1000 bytes (6001..7001) missed by the capture, then 7001..8001 seen
    w.s(1, A, 7001, 111, 1000);
    w.c(1, A, 111, 8001, 0);
    let r = w.one();
    assert_eq!(r.s2c.gap_bytes, 1000);
    assert_eq!(r.s2c.lost_segments, 1);
    assert_eq!(
        r.s2c.unique_bytes, 3000,
        "sequence space covered, gap included"
    );
}

#[test]
fn sequence_wrap_counts_bytes_exactly() {
    let mut w = Wire::new("10.0.0.1", 40010, "10.0.0.2", 80);
    let isn = u32::MAX - 1500;
    w.c(0, S, 100, 0, 0);
    w.s(1, S | A, isn, 101, 0);
    w.c(1, A, 101, isn.wrapping_add(1), 0);
    let mut seq = isn.wrapping_add(1);
    for _ in 0..4 {
        w.s(1, A, seq, 101, 1000);
        seq = seq.wrapping_add(1000);
    }
    w.s(1, A | F, seq, 101, 0);
    w.c(1, A | F, 101, seq.wrapping_add(1), 0);
    let r = w.one();
    assert_eq!(r.s2c.unique_bytes, 4000);
    assert_eq!(r.s2c.retx_pkts, 0);
}

#[test]
fn rst_closing_established_connection() {
    let mut w = Wire::new("10.0.0.1", 40011, "10.0.0.2", 80);
    w.handshake();
    w.c(1, A | P, 101, 5001, 10);
    w.c(1, R | A, 111, 5001, 0);
    let r = w.one();
    assert_eq!(
        (r.outcome, r.close, r.closed_by),
        (Outcome::Established, Close::Rst, Some(Side::Client))
    );
    assert_eq!(r.conn_state, "RSTO");
}

#[test]
fn keep_alive_exchanges_counted_per_message() {
    let mut w = Wire::new("10.0.0.1", 40012, "10.0.0.2", 80);
    w.handshake();
    let (mut cs, mut ss) = (101u32, 5001u32);
    for i in 0..5u64 {
        w.c(1, A | P, cs, ss, 200);
        cs += 200;
        // a 3-segment response: one message, not three
        for _ in 0..3 {
            w.s(2 + i, A, ss, cs, 1000);
            ss += 1000;
        }
    }
    let r = w.one();
    assert_eq!(r.exchanges, 5);
    assert_eq!((r.c2s.messages, r.s2c.messages), (5, 5));
    assert_eq!(r.response_max_ns, Some(6 * MS));
    assert_eq!(r.response_p50_ns, Some(4 * MS));
}

#[test]
fn ipv6_and_vlan_keys() {
    let mut w = Wire::new("fd00::1", 40013, "fd00::2", 443);
    w.handshake();
    let r = w.one();
    assert_eq!(r.client.to_string(), "fd00::1");
    assert_eq!(r.outcome, Outcome::Established);
}

#[test]
fn idle_connections_expire_by_capture_time_only() {
    let mut w = Wire::new("10.0.0.1", 40014, "10.0.0.2", 80);
    w.handshake();
    // Another connection's packet 301 s later drives the clock past the idle timeout.
    let mut other = Wire::new("10.0.0.9", 1, "10.0.0.8", 2);
    other.t = w.t + 301_000 * MS;
    let f = tcp_frame(&other.seg(true, S, 1, 0, 0));
    w.engine
        .process(other.t, LinkType::ETHERNET, &f, f.len() as u32, &mut w.out);
    assert_eq!(
        w.out.records.len(),
        1,
        "expired before the end of the trace"
    );
    assert_eq!(w.out.records[0].close, Close::Open);
    assert_eq!(w.engine.active(), 1);
}

/// Regression (tls-subjectaltname.pcap, port 59691): the server's challenge ACK before
/// a RST and a retried handshake must not fix the server's sequence base.
#[test]
fn challenge_ack_before_retried_handshake_does_not_skew_bytes() {
    let mut w = Wire::new("10.0.0.1", 40015, "10.0.0.2", 443);
    w.c(0, S, 100, 0, 0);
    w.s(20, A, 1_951_419_099, 777, 0); // challenge ACK for an old connection
    w.c(0, R, 777, 0, 0);
    w.c(3000, S, 100, 0, 0); // same ISN, retried
    w.s(20, S | A, 5000, 101, 0);
    w.c(0, A, 101, 5001, 0);
    w.c(1, A | P, 101, 5001, 200);
    w.s(20, A, 5001, 301, 1206);
    w.s(0, A | P, 6207, 301, 994);
    let r = w.one();
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!((r.s2c.payload_bytes, r.s2c.unique_bytes), (2200, 2200));
    assert_eq!(r.s2c.retx_pkts, 0);
    assert_eq!(r.s2c.gap_bytes, 0);
}

/// Collects each direction's delivered stream; stops wanting after `limit` chunks.
#[derive(Default)]
struct StreamLog {
    streams: [Vec<u8>; 2],
    gaps: [u64; 2],
    chunks: usize,
    limit: Option<usize>,
}

impl tcpsight_core::Observer for StreamLog {
    fn on_payload(&mut self, p: &tcpsight_core::Payload) -> bool {
        let s = p.from as usize;
        assert_eq!(p.offset, self.streams[s].len() as u64 + p.gap);
        self.streams[s].resize(self.streams[s].len() + p.gap as usize, 0);
        self.streams[s].extend_from_slice(p.data);
        self.gaps[s] += p.gap;
        self.chunks += 1;
        self.limit.is_none_or(|l| self.chunks < l)
    }
}

fn stream_run(payload: bool, limit: Option<usize>) -> StreamLog {
    let mut log = StreamLog {
        limit,
        ..StreamLog::default()
    };
    let mut engine = Engine::new(Config {
        payload,
        ..Config::default()
    });
    let (c, s): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let mut t = 1_700_000_000_000_000_000u64;
    let mut send = |from_client: bool, flags: u16, seq: u32, ack: u32, len: usize| {
        let mut seg = if from_client {
            Tcp::new(c, 40000, s, 80)
        } else {
            Tcp::new(s, 80, c, 40000)
        };
        (seg.flags, seg.seq, seg.ack, seg.payload_len) = (flags, seq, ack, len);
        let f = tcp_frame(&seg);
        t += MS;
        engine.process(t, LinkType::ETHERNET, &f, f.len() as u32, &mut log);
    };
    send(true, S, 100, 0, 0);
    send(false, S | A, 5000, 101, 0);
    send(true, A, 101, 5001, 0);
    send(true, A | P, 101, 5001, 100);
    send(true, A | P, 101, 5001, 100); // retransmitted: delivered once
    send(true, A | P, 151, 5001, 100); // overlaps: 50 new bytes
    send(false, A, 5301, 251, 100); // the server's second segment first
    send(false, A, 5001, 251, 300); // then its first, overlapping the second
    send(false, A, 5501, 251, 50); // after a hole of 100 bytes, which ...
    send(true, A, 251, 5551, 0); // ... the client acknowledges: a capture gap
    send(true, F | A, 251, 5551, 0);
    send(false, F | A, 5551, 252, 0);
    engine.finish(&mut log);
    log
}

#[test]
fn payload_is_delivered_once_in_order_with_gaps_and_only_while_wanted() {
    use tcpsight_core::build::payload_byte;
    let log = stream_run(true, None);
    let expect = |isn: u32, n: u32| (1..=n).map(|i| payload_byte(isn + i)).collect::<Vec<u8>>();
    assert_eq!(log.streams[0], expect(100, 150));
    let server = &log.streams[1];
    assert_eq!(server.len(), 550);
    assert_eq!(server[..400], expect(5000, 400)[..]);
    assert!(
        server[400..500].iter().all(|&b| b == 0),
        "the hole is a gap"
    );
    assert_eq!(server[500..], expect(5000, 550)[500..]);
    assert_eq!(log.gaps, [0, 100]);

    // Nobody asked: nothing is delivered. An observer that stops gets no more.
    assert_eq!(stream_run(false, None).chunks, 0);
    assert_eq!(stream_run(true, Some(1)).chunks, 1);
}
