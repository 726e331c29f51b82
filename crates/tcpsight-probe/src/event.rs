//! One trace line: ftrace's text output (`trace`, `trace_pipe`, tcp_probe's files,
//! trace-cmd's report) parsed into an [`Event`] with its fields kept in order.
//!
//! A line is `TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: KEY=VALUE ...`. The task name may hold
//! spaces and dashes, the flags column and the tgid column are optional, so the line is
//! anchored on the first `NUMBER: NAME:` pair instead of split at fixed positions (the
//! seed tool's `split()[3]` crashes on a task name with a space).

use std::net::{IpAddr, SocketAddr};

/// One traced event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub task: String,
    pub pid: Option<i32>,
    pub cpu: Option<u32>,
    /// The irqs-off / need-resched / hardirq / preempt-depth column, as printed.
    pub flags: Option<String>,
    /// Seconds, in the trace clock (by default the kernel's "local" clock, seconds since boot).
    pub ts: f64,
    /// The event name without its group (`tcp_probe`, `inet_sock_set_state`).
    pub name: String,
    /// Every `key=value` of the event, in order; text that is not `key=value` is appended
    /// to the previous value (or kept under `_` when first).
    pub fields: Vec<(String, String)>,
}

/// What a line turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Event(Event),
    /// Blank, or a `#` header line of a `trace` file.
    Comment,
    /// `CPU:N [LOST M EVENTS]`: the ring overran.
    Lost(u64),
}

/// A line that is not a trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Garbage;

fn is_timestamp(tok: &str) -> bool {
    let b = tok.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && b.iter().filter(|c| **c == b'.').count() <= 1
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Parses one line. Never panics, whatever the input.
pub fn parse_line(line: &str) -> Result<Line, Garbage> {
    let line = line.trim_end_matches(['\n', '\r']);
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(Line::Comment);
    }
    if let Some(n) = lost_events(t) {
        return Ok(Line::Lost(n));
    }
    let mut from = 0;
    while let Some(rel) = line[from..].find(": ") {
        let i = from + rel;
        from = i + 2;
        let head = &line[..i];
        let ts_start = after_last_space(head).unwrap_or(0);
        let ts_tok = &head[ts_start..];
        if !is_timestamp(ts_tok) {
            continue;
        }
        let Ok(ts) = ts_tok.parse::<f64>() else {
            continue;
        };
        let rest = &line[i + 2..];
        let Some(colon) = rest.find(':') else {
            continue;
        };
        let name = &rest[..colon];
        let after = &rest[colon + 1..];
        if !is_name(name) || !(after.is_empty() || after.starts_with(' ')) {
            continue;
        }
        if !ts.is_finite() {
            return Err(Garbage);
        }
        let (task, pid, cpu, flags) = header(&head[..ts_start]);
        return Ok(Line::Event(Event {
            task,
            pid,
            cpu,
            flags,
            ts,
            name: name.to_string(),
            fields: fields(after),
        }));
    }
    Err(Garbage)
}

/// The byte index just after the last whitespace character (which may be multi-byte).
fn after_last_space(s: &str) -> Option<usize> {
    s.char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, c)| i + c.len_utf8())
}

/// `CPU:1 [LOST 123 EVENTS]`
fn lost_events(t: &str) -> Option<u64> {
    let i = t.find("[LOST ")?;
    let rest = &t[i + 6..];
    let end = rest.find(' ')?;
    if !rest[end..].starts_with(" EVENTS]") {
        return None;
    }
    rest[..end].parse().ok()
}

/// `TASK-PID (TGID) [CPU] FLAGS`, each part optional but the task.
fn header(h: &str) -> (String, Option<i32>, Option<u32>, Option<String>) {
    let mut h = h.trim_end();
    let mut flags = None;
    let mut cpu = None;
    // Right to left: flags (not bracketed), then [CPU].
    if let Some(p) = after_last_space(h) {
        let last = &h[p..];
        if !last.starts_with('[') && !last.starts_with('(') && !h[..p].trim_end().is_empty() {
            let before = h[..p].trim_end();
            if before.ends_with(']') {
                flags = Some(last.to_string());
                h = before;
            }
        }
    }
    if h.ends_with(']')
        && let Some(open) = h.rfind('[')
    {
        cpu = h[open + 1..h.len() - 1].trim().parse().ok();
        h = h[..open].trim_end();
    }
    // Optional `(TGID)` column.
    if h.ends_with(')')
        && let Some(open) = h.rfind('(')
    {
        h = h[..open].trim_end();
    }
    let h = h.trim_start();
    match h.rfind('-') {
        Some(d) if !h[d + 1..].is_empty() && h[d + 1..].bytes().all(|c| c.is_ascii_digit()) => {
            (h[..d].to_string(), h[d + 1..].parse().ok(), cpu, flags)
        }
        _ => (h.to_string(), None, cpu, flags),
    }
}

fn fields(body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for tok in body.split_whitespace() {
        match tok.split_once('=') {
            Some((k, v)) if is_name(k) => out.push((k.to_string(), v.to_string())),
            _ => match out.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(tok);
                }
                None => out.push(("_".to_string(), tok.to_string())),
            },
        }
    }
    out
}

/// Turns `::ffff:a.b.c.d` into `a.b.c.d`, so an IPv4 connection has one key whichever
/// event printed it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_sockaddr(s: &str) -> Option<SocketAddr> {
    let a: SocketAddr = s.parse().ok()?;
    Some(SocketAddr::new(canonical(a.ip()), a.port()))
}

impl Event {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A field as an unsigned integer: decimal, or hexadecimal with `0x`.
    pub fn uint(&self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// The socket's two ends: (local, remote). Every event here prints the local side
    /// first (`src`/`sport`/`saddr`), tcp_send_reset included (the reset's source).
    pub fn endpoints(&self) -> Option<(SocketAddr, SocketAddr)> {
        if let (Some(s), Some(d)) = (self.get("src"), self.get("dest")) {
            return Some((parse_sockaddr(s)?, parse_sockaddr(d)?));
        }
        let sport: u16 = self.get("sport")?.parse().ok()?;
        let dport: u16 = self.get("dport")?.parse().ok()?;
        let v6 = self.get("family") == Some("AF_INET6");
        let (sa, da) = if v6 {
            (self.get("saddrv6")?, self.get("daddrv6")?)
        } else {
            match (self.get("saddr"), self.get("daddr")) {
                (Some(s), Some(d)) => (s, d),
                _ => (self.get("saddrv6")?, self.get("daddrv6")?),
            }
        };
        let s: IpAddr = sa.parse().ok()?;
        let d: IpAddr = da.parse().ok()?;
        Some((
            SocketAddr::new(canonical(s), sport),
            SocketAddr::new(canonical(d), dport),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: &str = "           <...>-10898   [001] ..s2.  9108.793729: tcp_probe: family=AF_INET src=127.0.0.1:33189 dest=127.0.0.1:60516 mark=0x0 data_len=32741 snd_nxt=0xc2d610b2 snd_una=0xc2d610b2 snd_cwnd=10 ssthresh=2147483647 snd_wnd=65536 srtt=50 rcv_wnd=65483 sock_cookie=2 skbaddr=00000000d0700589 skaddr=00000000950bcdae";

    fn ev(l: &str) -> Event {
        match parse_line(l) {
            Ok(Line::Event(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probe_line() {
        let e = ev(PROBE);
        assert_eq!(e.task, "<...>");
        assert_eq!(e.pid, Some(10898));
        assert_eq!(e.cpu, Some(1));
        assert_eq!(e.flags.as_deref(), Some("..s2."));
        assert_eq!(e.ts, 9108.793729);
        assert_eq!(e.name, "tcp_probe");
        assert_eq!(e.uint("snd_cwnd"), Some(10));
        assert_eq!(e.uint("snd_nxt"), Some(0xc2d610b2));
        assert_eq!(e.fields.len(), 15);
        let (l, r) = e.endpoints().unwrap();
        assert_eq!(l.to_string(), "127.0.0.1:33189");
        assert_eq!(r.to_string(), "127.0.0.1:60516");
    }

    #[test]
    fn task_with_spaces_and_dashes_and_no_flags() {
        let e = ev(
            "  Web Content-my-1234 [000] 12.5: tcp_retransmit_skb: sport=1 dport=2 saddr=10.0.0.1 daddr=10.0.0.2",
        );
        assert_eq!(e.task, "Web Content-my");
        assert_eq!(e.pid, Some(1234));
        assert_eq!(e.flags, None);
        assert_eq!(e.ts, 12.5);
        let (l, _) = e.endpoints().unwrap();
        assert_eq!(l.to_string(), "10.0.0.1:1");
    }

    #[test]
    fn tgid_column_and_v6() {
        let e = ev(
            "iperf3-77 (   77) [003] d..1 5.000001: tcp_receive_reset: family=AF_INET6 sport=5201 dport=40000 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=::1",
        );
        assert_eq!(e.pid, Some(77));
        assert_eq!(e.cpu, Some(3));
        let (l, r) = e.endpoints().unwrap();
        assert_eq!(l.to_string(), "[::1]:5201");
        assert_eq!(r.to_string(), "[::1]:40000");
    }

    #[test]
    fn mapped_v4_and_bracketed_v6() {
        let e = ev("x-1 [0] 1.0: tcp_probe: src=[::ffff:1.2.3.4]:5 dest=[2001:db8::1]:80");
        let (l, r) = e.endpoints().unwrap();
        assert_eq!(l.to_string(), "1.2.3.4:5");
        assert_eq!(r.to_string(), "[2001:db8::1]:80");
    }

    #[test]
    fn comments_lost_and_garbage() {
        assert_eq!(parse_line("# tracer: nop"), Ok(Line::Comment));
        assert_eq!(parse_line("   "), Ok(Line::Comment));
        assert_eq!(parse_line("CPU:1 [LOST 123 EVENTS]"), Ok(Line::Lost(123)));
        for g in [
            "hello world",
            "x: y: z",
            "1.2.3: tcp_probe: a=b",
            "task-1 [000] 1.0: bad name: a=b",
            "\u{0}\u{1}",
        ] {
            assert_eq!(parse_line(g), Err(Garbage), "{g:?}");
        }
    }

    #[test]
    fn non_kv_text_is_kept() {
        let e = ev("t-1 [0] 1.0: foo: hello a=1 b=two words");
        assert_eq!(
            e.fields,
            vec![
                ("_".into(), "hello".into()),
                ("a".into(), "1".into()),
                ("b".into(), "two words".into())
            ]
        );
    }
}
