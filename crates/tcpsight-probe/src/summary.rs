//! Per-connection figures from a trace: one connection per socket, keyed by its
//! (local, remote) endpoints as the kernel printed them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use tcpsight_core::stats::Quantiles;

use serde_json::{Value, json};

use crate::event::Event;

/// `ssthresh` before the first loss: TCP_INFINITE_SSTHRESH, not a real threshold.
pub const INFINITE_SSTHRESH: u64 = 0x7fff_ffff;

/// The kernel's view of one socket.
#[derive(Clone, Debug, Default)]
pub struct ConnSummary {
    pub events: u64,
    pub probes: u64,
    pub first_ts: f64,
    pub last_ts: f64,
    pub cwnd_min: Option<u64>,
    pub cwnd_max: Option<u64>,
    /// Smallest finite ssthresh seen.
    pub ssthresh_min: Option<u64>,
    /// srtt samples in microseconds (tcp_probe's srtt), non-zero only: exact up to
    /// 4,096 per connection, then a log-linear histogram (within 6.25 %), so a trace
    /// left running keeps bounded memory per connection.
    pub srtt_us: Quantiles<4096, 1>,
    pub retransmits: u64,
    pub synack_retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    /// (time, old state, new state), in order.
    pub states: Vec<(f64, String, String)>,
}

/// A percentile (nearest rank) of unsorted samples.
pub fn percentile(samples: &[u64], p: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

impl ConnSummary {
    pub fn srtt_p50(&self) -> Option<u64> {
        self.srtt_us.percentile(50.0)
    }
    pub fn srtt_p99(&self) -> Option<u64> {
        self.srtt_us.percentile(99.0)
    }
    /// The states visited, `A>B>C` (a change to the same state, as a second shutdown
    /// in FIN_WAIT1 makes, is not repeated).
    pub fn state_path(&self) -> String {
        let mut s = String::new();
        for (i, (_, old, new)) in self.states.iter().enumerate() {
            if i == 0 {
                s.push_str(short_state(old));
            }
            if old != new {
                s.push('>');
                s.push_str(short_state(new));
            }
        }
        s
    }
}

fn short_state(s: &str) -> &str {
    s.strip_prefix("TCP_").unwrap_or(s)
}

pub type Key = (SocketAddr, SocketAddr);

/// Every connection of a trace, plus the events no connection could be read from.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub conns: BTreeMap<Key, ConnSummary>,
    pub by_event: BTreeMap<String, u64>,
    pub unattributed: u64,
    /// State changes of listening sockets (remote port 0), not connections.
    pub listener_events: u64,
    /// State changes printed before the socket had a local port (connect's
    /// CLOSE>SYN_SENT; the event does not print the socket's address), by remote end,
    /// until a socket to that remote continues from that state.
    unbound: HashMap<SocketAddr, VecDeque<(f64, String, String)>>,
}

impl Summary {
    pub fn add(&mut self, e: &Event) {
        *self.by_event.entry(e.name.clone()).or_default() += 1;
        let Some(key) = e.endpoints() else {
            self.unattributed += 1;
            return;
        };
        if key.0.port() == 0 {
            match (e.get("oldstate"), e.get("newstate")) {
                (Some(o), Some(n)) => self.unbound.entry(key.1).or_default().push_back((
                    e.ts,
                    o.to_string(),
                    n.to_string(),
                )),
                _ => self.unattributed += 1,
            }
            return;
        }
        if key.1.port() == 0 {
            self.listener_events += 1;
            return;
        }
        let c = self.conns.entry(key).or_default();
        // The socket's first state change continues the one it made before it had a port.
        if c.states.is_empty()
            && let Some(old) = e.get("oldstate")
            && let Some(q) = self.unbound.get_mut(&key.1)
            && q.front().is_some_and(|x| x.2 == old)
            && let Some(early) = q.pop_front()
        {
            if c.events == 0 {
                c.first_ts = early.0;
                c.last_ts = early.0;
            }
            c.events += 1;
            c.first_ts = c.first_ts.min(early.0);
            c.states.push(early);
        }
        if c.events == 0 {
            c.first_ts = e.ts;
            c.last_ts = e.ts;
        }
        c.events += 1;
        c.first_ts = c.first_ts.min(e.ts);
        c.last_ts = c.last_ts.max(e.ts);
        match e.name.as_str() {
            "tcp_probe" => {
                c.probes += 1;
                if let Some(w) = e.uint("snd_cwnd") {
                    c.cwnd_min = Some(c.cwnd_min.map_or(w, |m| m.min(w)));
                    c.cwnd_max = Some(c.cwnd_max.map_or(w, |m| m.max(w)));
                }
                if let Some(s) = e.uint("ssthresh").filter(|s| *s < INFINITE_SSTHRESH) {
                    c.ssthresh_min = Some(c.ssthresh_min.map_or(s, |m| m.min(s)));
                }
                if let Some(r) = e.uint("srtt").filter(|r| *r > 0) {
                    c.srtt_us.add(r);
                }
            }
            "tcp_retransmit_skb" => c.retransmits += 1,
            "tcp_retransmit_synack" => c.synack_retransmits += 1,
            "tcp_send_reset" => c.resets_sent += 1,
            "tcp_receive_reset" => c.resets_received += 1,
            "inet_sock_set_state" => {
                if let (Some(o), Some(n)) = (e.get("oldstate"), e.get("newstate")) {
                    c.states.push((e.ts, o.to_string(), n.to_string()));
                }
            }
            _ => {}
        }
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Summary {
        let mut s = Summary::default();
        for e in events {
            s.add(e);
        }
        s
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |x| x.to_string())
}

/// One JSON object per connection.
pub fn conn_json(key: &Key, c: &ConnSummary) -> Value {
    json!({
        "local": key.0.to_string(),
        "remote": key.1.to_string(),
        "first_ts": c.first_ts,
        "last_ts": c.last_ts,
        "events": c.events,
        "probes": c.probes,
        "cwnd_min": c.cwnd_min,
        "cwnd_max": c.cwnd_max,
        "ssthresh_min": c.ssthresh_min,
        "srtt_p50_us": c.srtt_p50(),
        "srtt_p99_us": c.srtt_p99(),
        "retransmits": c.retransmits,
        "synack_retransmits": c.synack_retransmits,
        "resets_sent": c.resets_sent,
        "resets_received": c.resets_received,
        "state_transitions": c.states.len(),
        "states": c.state_path(),
    })
}

/// The text table of `probe summary`.
pub fn table(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<46} {:>7} {:>6} {:>6} {:>10} {:>10} {:>5} {:>5} {:>5}  STATES\n",
        "LOCAL -> REMOTE",
        "EVENTS",
        "CWND<",
        "CWND>",
        "SRTT50us",
        "SRTT99us",
        "RETX",
        "RST>",
        "RST<"
    ));
    for (k, c) in &s.conns {
        let name = format!("{} -> {}", k.0, k.1);
        out.push_str(&format!(
            "{:<46} {:>7} {:>6} {:>6} {:>10} {:>10} {:>5} {:>5} {:>5}  {}\n",
            name,
            c.events,
            opt(c.cwnd_min),
            opt(c.cwnd_max),
            opt(c.srtt_p50()),
            opt(c.srtt_p99()),
            c.retransmits + c.synack_retransmits,
            c.resets_sent,
            c.resets_received,
            c.state_path()
        ));
    }
    let by: Vec<String> = s.by_event.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out.push_str(&format!(
        "{} connections; events: {}{}\n",
        s.conns.len(),
        if by.is_empty() {
            "none".to_string()
        } else {
            by.join(", ")
        },
        if s.unattributed > 0 {
            format!("; {} without endpoints", s.unattributed)
        } else {
            String::new()
        } + &if s.listener_events > 0 {
            format!("; {} on listening sockets", s.listener_events)
        } else {
            String::new()
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Line, parse_line};

    fn ev(l: &str) -> Event {
        match parse_line(l) {
            Ok(Line::Event(e)) => e,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn connect_before_bind_and_listeners() {
        let lines = [
            "a-1 [0] .... 1.0: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=0 dport=80 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT",
            "a-1 [0] .... 1.1: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=80 dport=0 saddr=127.0.0.1 daddr=0.0.0.0 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:0.0.0.0 oldstate=TCP_CLOSE newstate=TCP_LISTEN",
            "a-1 [0] .... 1.2: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=4000 dport=80 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_SYN_SENT newstate=TCP_ESTABLISHED",
        ];
        let evs: Vec<Event> = lines.iter().map(|l| ev(l)).collect();
        let s = Summary::from_events(&evs);
        assert_eq!(s.conns.len(), 1);
        assert_eq!(s.listener_events, 1);
        let c = s.conns.values().next().unwrap();
        assert_eq!(c.state_path(), "CLOSE>SYN_SENT>ESTABLISHED");
        assert_eq!((c.events, c.first_ts, c.last_ts), (2, 1.0, 1.2));
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[5], 99.0), Some(5));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
    }

    #[test]
    fn one_connection() {
        let lines = [
            "a-1 [0] .... 1.0: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=40000 dport=80 saddr=10.0.0.1 daddr=10.0.0.2 saddrv6=::ffff:10.0.0.1 daddrv6=::ffff:10.0.0.2 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT",
            "a-1 [0] .... 1.1: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=40000 dport=80 saddr=10.0.0.1 daddr=10.0.0.2 saddrv6=::ffff:10.0.0.1 daddrv6=::ffff:10.0.0.2 oldstate=TCP_SYN_SENT newstate=TCP_ESTABLISHED",
            "a-1 [0] .... 1.2: tcp_probe: family=AF_INET src=10.0.0.1:40000 dest=10.0.0.2:80 snd_cwnd=10 ssthresh=2147483647 srtt=100",
            "a-1 [0] .... 1.3: tcp_probe: family=AF_INET src=10.0.0.1:40000 dest=10.0.0.2:80 snd_cwnd=4 ssthresh=7 srtt=300",
            "a-1 [0] .... 1.4: tcp_retransmit_skb: skbaddr=0 skaddr=0 family=AF_INET sport=40000 dport=80 saddr=10.0.0.1 daddr=10.0.0.2 saddrv6=::ffff:10.0.0.1 daddrv6=::ffff:10.0.0.2 state=TCP_ESTABLISHED err=0",
            "a-1 [0] .... 1.5: tcp_send_reset: skbaddr=0 skaddr=0 src=10.0.0.1:40000 dest=10.0.0.2:80 state=TCP_ESTABLISHED reason=NOT_SPECIFIED",
            "a-1 [0] .... 1.6: tcp_foo: x=1",
        ];
        let evs: Vec<Event> = lines.iter().map(|l| ev(l)).collect();
        let s = Summary::from_events(&evs);
        assert_eq!(s.conns.len(), 1);
        assert_eq!(s.unattributed, 1);
        let c = s.conns.values().next().unwrap();
        assert_eq!(c.events, 6);
        assert_eq!(
            (c.cwnd_min, c.cwnd_max, c.ssthresh_min),
            (Some(4), Some(10), Some(7))
        );
        assert_eq!((c.srtt_p50(), c.srtt_p99()), (Some(100), Some(300)));
        assert_eq!((c.retransmits, c.resets_sent, c.resets_received), (1, 1, 0));
        assert_eq!(c.state_path(), "CLOSE>SYN_SENT>ESTABLISHED");
        assert_eq!((c.first_ts, c.last_ts), (1.0, 1.5));
        let t = table(&s);
        assert!(t.contains("10.0.0.1:40000 -> 10.0.0.2:80"), "{t}");
        assert!(t.contains("1 connections; events:"), "{t}");
        let j = conn_json(s.conns.keys().next().unwrap(), c);
        assert_eq!(j["srtt_p99_us"], 300);
        assert_eq!(j["state_transitions"], 2);
    }
}
