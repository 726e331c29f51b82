//! Deadlines are decided when capture time passes them, during the run, whatever other
//! traffic there is; not at the next sweep, not at the end of input.

use std::net::IpAddr;

use tcpsight_core::build::{Tcp, tcp_frame};
use tcpsight_core::decode::TcpFlags;
use tcpsight_core::{Collect, Config, Engine, LinkType, Outcome};

const S: u16 = TcpFlags::SYN;
const A: u16 = TcpFlags::ACK;
const F: u16 = TcpFlags::FIN;
const SEC: u64 = 1_000_000_000;

fn frame(src: &str, sport: u16, dst: &str, dport: u16, flags: u16, seq: u32, ack: u32) -> Vec<u8> {
    let mut t = Tcp::new(
        src.parse::<IpAddr>().unwrap(),
        sport,
        dst.parse::<IpAddr>().unwrap(),
        dport,
    );
    t.flags = flags;
    t.seq = seq;
    t.ack = ack;
    t.syn_options = flags & S != 0;
    tcp_frame(&t)
}

fn feed(e: &mut Engine, out: &mut Collect, ts: u64, f: &[u8]) {
    e.process(ts, LinkType::ETHERNET, f, f.len() as u32, out);
}

/// Regression: a SYN's handshake deadline was queued only once the connection's state
/// changed, so an unanswered SYN timed out at the end of input instead of at its deadline.
#[test]
fn an_unanswered_syn_times_out_at_its_deadline_while_other_traffic_flows() {
    let mut e = Engine::new(Config::default());
    let mut out = Collect::default();
    let t0 = 1_000 * SEC;
    feed(
        &mut e,
        &mut out,
        t0,
        &frame("10.0.0.1", 40000, "10.0.0.9", 80, S, 1, 0),
    );
    // Other traffic, 29.9 s later: not yet.
    feed(
        &mut e,
        &mut out,
        t0 + 29_900_000_000,
        &frame("10.0.0.2", 40001, "10.0.0.9", 81, S, 7, 0),
    );
    assert!(out.handshakes.is_empty(), "{:?}", out.handshakes);
    // 30.1 s: the first one has timed out, as of its deadline.
    feed(
        &mut e,
        &mut out,
        t0 + 30_100_000_000,
        &frame("10.0.0.3", 40002, "10.0.0.9", 82, S, 9, 0),
    );
    assert_eq!(out.handshakes.len(), 1, "{:?}", out.handshakes);
    let h = out.handshakes[0];
    assert_eq!(h.outcome, Outcome::Timeout);
    assert_eq!(h.ts_ns, t0 + 30 * SEC);
    assert_eq!(h.elapsed_ns, Some(30 * SEC));
    assert_eq!(h.server.port, 80);
}

/// A closed connection lingers exactly 2 s after its last packet: a packet 1.9 s later
/// still belongs to it, one 2.1 s later starts a new one.
#[test]
fn a_closed_connection_expires_exactly_after_its_linger() {
    let mut e = Engine::new(Config::default());
    let mut out = Collect::default();
    let t = 500 * SEC;
    let c = ("10.0.0.1", 40000);
    let s = ("10.0.0.9", 80);
    feed(&mut e, &mut out, t, &frame(c.0, c.1, s.0, s.1, S, 100, 0));
    feed(
        &mut e,
        &mut out,
        t + 1_000_000,
        &frame(s.0, s.1, c.0, c.1, S | A, 500, 101),
    );
    feed(
        &mut e,
        &mut out,
        t + 2_000_000,
        &frame(c.0, c.1, s.0, s.1, A, 101, 501),
    );
    feed(
        &mut e,
        &mut out,
        t + 3_000_000,
        &frame(c.0, c.1, s.0, s.1, A | F, 101, 501),
    );
    feed(
        &mut e,
        &mut out,
        t + 4_000_000,
        &frame(s.0, s.1, c.0, c.1, A | F, 501, 102),
    );
    let last = t + 5_000_000;
    feed(
        &mut e,
        &mut out,
        last,
        &frame(c.0, c.1, s.0, s.1, A, 102, 502),
    );
    // 1.9 s later: a late ACK, still this connection.
    feed(
        &mut e,
        &mut out,
        last + 1_900_000_000,
        &frame(c.0, c.1, s.0, s.1, A, 102, 502),
    );
    assert!(out.records.is_empty());
    // Another connection's packet 2.1 s after that late ACK: the first is reported.
    feed(
        &mut e,
        &mut out,
        last + 4_000_000_000,
        &frame("10.0.0.5", 1, s.0, 443, S, 1, 0),
    );
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].c2s.pkts, 5);
    assert_eq!(out.records[0].conn_state, "SF");
}

/// Interim records every active timeout from the handshake, flagged by `on_interim`.
#[test]
fn a_long_connection_gets_interim_records_from_its_handshake_on() {
    #[derive(Default)]
    struct Interims(Vec<(u64, u64)>);
    impl tcpsight_core::Observer for Interims {
        fn on_interim(&mut self, r: &tcpsight_core::ConnRecord) {
            self.0.push((r.ts_last_ns, r.c2s.pkts));
        }
    }
    let mut e = Engine::new(Config {
        active_timeout_ns: 10 * SEC,
        ..Config::default()
    });
    let mut out = Interims::default();
    let t = 100 * SEC;
    let (c, s) = (("10.0.0.1", 40000), ("10.0.0.9", 80));
    let f = |flags, seq, ack, from_client: bool| {
        if from_client {
            frame(c.0, c.1, s.0, s.1, flags, seq, ack)
        } else {
            frame(s.0, s.1, c.0, c.1, flags, seq, ack)
        }
    };
    let mut put =
        |ts: u64, fr: Vec<u8>| e.process(ts, LinkType::ETHERNET, &fr, fr.len() as u32, &mut out);
    put(t, f(S, 100, 0, true));
    put(t + SEC, f(S | A, 500, 101, false)); // the handshake completes at t + 2 s
    put(t + 2 * SEC, f(A, 101, 501, true));
    for k in 1..=35u64 {
        put(t + 2 * SEC + k * SEC, f(A, 101, 501, true)); // a keep-alive-ish ACK a second
    }
    // Interims at t+12, t+22, t+32 (packets up to then: 3 + 10, 20, 30 client ACKs).
    let at: Vec<u64> = out.0.iter().map(|(last, _)| *last).collect();
    assert_eq!(
        at,
        vec![t + 12 * SEC, t + 22 * SEC, t + 32 * SEC],
        "{:?}",
        out.0
    );
}
