//! Records as IPFIX (RFC 7011) biflows (RFC 5103) over UDP, for flow collectors
//! (nfdump's nfcapd, GoFlow2, IPFIXcol2, ...).
//!
//! One template per address family (256 IPv4, 257 IPv6), sent in the first message and
//! again every [`TEMPLATE_REFRESH`] (UDP has no session: a collector started later
//! learns them then). The forward direction is the client's (it sent the SYN), the
//! reverse elements (PEN 29305) the server's. Standard elements carry the flow's key,
//! times, packets and payload octets, TCP flags and end reason; tcpsight's own facts
//! are enterprise-specific elements under [`PEN`], listed in docs/export.md, their
//! server-side twins with the reverse bit (0x4000) as RFC 5103 says for enterprise
//! elements. A duration that is absent (no handshake) is sent as all ones.
//!
//! Encoding is done on the caller's thread (a few hundred nanoseconds per record);
//! a sender thread ([`crate::worker`]) packs records into messages of at most
//! [`MAX_MESSAGE`] bytes and sends them, at once when full and otherwise within
//! [`FLUSH_INTERVAL`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tcpsight_core::{ConnRecord, Outcome, Value};

use crate::RecordSink;
use crate::worker::{Stats, Warn, Worker, stderr_warn};

/// The enterprise number of tcpsight's own elements: 32473, the one RFC 5612 reserves
/// for documentation, as a placeholder until tcpsight has its own (docs/export.md).
pub const PEN: u32 = 32473;
/// RFC 5103's number for reverse elements of IANA ones.
pub const REVERSE_PEN: u32 = 29305;
/// Template ids.
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// Largest message: a UDP datagram that fits any path's MTU with room to spare.
pub const MAX_MESSAGE: usize = 1400;
pub const TEMPLATE_REFRESH: Duration = Duration::from_secs(60);
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Errors closer than this to the previous one belong to the same outage (one warning).
const OUTAGE_GAP: Duration = Duration::from_secs(10);
/// Records queued for the sender thread before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 65_536;

/// An absent duration.
const ABSENT: u64 = u64::MAX;

/// One field of the template: element id (without the enterprise bit), enterprise
/// number (0 for IANA), length (0xffff variable), and where its value comes from.
#[derive(Clone, Copy)]
struct Field {
    id: u16,
    pen: u32,
    len: u16,
    src: Src,
}

#[derive(Clone, Copy)]
enum Src {
    StartMs,
    EndMs,
    ClientAddr,
    ServerAddr,
    /// A schema field by name, as an integer (durations in whole microseconds).
    Int(&'static str),
    /// A schema field by name, as text.
    Text(&'static str),
    Const(u64),
    TcpFlags,
    EndReason,
    Outcome,
    ClosedBy,
}

const fn f(id: u16, pen: u32, len: u16, src: Src) -> Field {
    Field { id, pen, len, src }
}

const REV: u16 = 0x4000;
const VAR: u16 = 0xffff;

/// The fields after the addresses, the same for both families.
const FIELDS: &[Field] = &[
    f(7, 0, 2, Src::Int("client_port")),  // sourceTransportPort
    f(11, 0, 2, Src::Int("server_port")), // destinationTransportPort
    f(4, 0, 1, Src::Const(6)),            // protocolIdentifier: TCP
    f(6, 0, 2, Src::TcpFlags),            // tcpControlBits
    f(136, 0, 1, Src::EndReason),         // flowEndReason
    f(239, 0, 1, Src::Const(1)),          // biflowDirection: initiator
    f(58, 0, 2, Src::Int("vlan")),        // vlanId
    f(2, 0, 8, Src::Int("c2s_pkts")),     // packetDeltaCount
    f(2, REVERSE_PEN, 8, Src::Int("s2c_pkts")),
    f(401, 0, 8, Src::Int("c2s_payload_bytes")), // transportOctetDeltaCount
    f(401, REVERSE_PEN, 8, Src::Int("s2c_payload_bytes")),
    f(1, PEN, 4, Src::Int("connect_us")),
    f(2, PEN, 4, Src::Int("server_rtt_us")),
    f(3, PEN, 4, Src::Int("client_rtt_us")),
    f(4, PEN, 4, Src::Int("syn_count")),
    f(5, PEN, 4, Src::Int("synack_count")),
    f(6, PEN, 4, Src::Int("c2s_retx_pkts")),
    f(6 | REV, PEN, 4, Src::Int("s2c_retx_pkts")),
    f(7, PEN, 8, Src::Int("c2s_retx_bytes")),
    f(7 | REV, PEN, 8, Src::Int("s2c_retx_bytes")),
    f(8, PEN, 4, Src::Int("c2s_rtt_avg_us")),
    f(8 | REV, PEN, 4, Src::Int("s2c_rtt_avg_us")),
    f(9, PEN, 8, Src::Int("c2s_gap_bytes")),
    f(9 | REV, PEN, 8, Src::Int("s2c_gap_bytes")),
    f(10, PEN, 1, Src::Outcome),
    f(11, PEN, 1, Src::ClosedBy),
    f(12, PEN, 4, Src::Int("exchanges")),
    f(13, PEN, 4, Src::Int("response_us_p50")),
    f(14, PEN, VAR, Src::Text("app_proto")),
    f(15, PEN, VAR, Src::Text("server_name")),
    f(16, PEN, VAR, Src::Text("conn_state")),
];

const HEAD: [Field; 2] = [
    f(152, 0, 8, Src::StartMs), // flowStartMilliseconds
    f(153, 0, 8, Src::EndMs),   // flowEndMilliseconds
];

fn template_fields(v6: bool) -> Vec<Field> {
    let (s, d, l) = if v6 { (27, 28, 16) } else { (8, 12, 4) };
    let mut v = HEAD.to_vec();
    v.push(f(s, 0, l, Src::ClientAddr));
    v.push(f(d, 0, l, Src::ServerAddr));
    v.extend_from_slice(FIELDS);
    v
}

/// The template set (both templates).
pub fn template_set() -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(&2u16.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // length, below
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let fields = template_fields(v6);
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for fd in fields {
            let id = if fd.pen != 0 { fd.id | 0x8000 } else { fd.id };
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&fd.len.to_be_bytes());
            if fd.pen != 0 {
                b.extend_from_slice(&fd.pen.to_be_bytes());
            }
        }
    }
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

/// The names of the schema fields the elements read.
fn field_slot(name: &str) -> Option<usize> {
    FIELDS.iter().position(|fd| match fd.src {
        Src::Int(n) | Src::Text(n) => n == name,
        _ => false,
    })
}

/// One encoded data record and its family.
pub struct Encoded {
    pub v6: bool,
    pub bytes: Vec<u8>,
}

/// For each schema field in order, the element reading it (built once: matching names
/// per record cost more than the rest of the encoding).
fn slots() -> &'static [Option<usize>] {
    static SLOTS: std::sync::OnceLock<Vec<Option<usize>>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        crate::columns::conn_records()
            .iter()
            .map(|c| field_slot(c.name))
            .collect()
    })
}

fn templates(v6: bool) -> &'static [Field] {
    static T: std::sync::OnceLock<[Vec<Field>; 2]> = std::sync::OnceLock::new();
    &T.get_or_init(|| [template_fields(false), template_fields(true)])[v6 as usize]
}

/// Encodes a record's data fields in template order.
pub fn encode(r: &ConnRecord) -> Encoded {
    let v6 = !r.client.is_v4();
    let mut ints = [ABSENT; FIELDS_LEN];
    let mut texts: [String; 3] = Default::default();
    let slots = slots();
    let mut pos = 0;
    r.for_each_field(|name, v| {
        let slot = slots.get(pos).copied().flatten();
        pos += 1;
        // The schema in its order; a name check keeps a reordered schema right.
        let Some(i) = slot.filter(|&i| match FIELDS[i].src {
            Src::Int(n) | Src::Text(n) => n == name,
            _ => false,
        }) else {
            return;
        };
        match (FIELDS[i].src, v) {
            (Src::Text(_), Value::Str(s)) => {
                let slot = match FIELDS[i].id {
                    14 => 0,
                    15 => 1,
                    _ => 2,
                };
                // At most 255 bytes, cut on a character boundary.
                let mut end = s.len().min(255);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                texts[slot] = s[..end].to_string();
            }
            (Src::Int(n), v) => {
                ints[i] = match v {
                    // vlanId is 12 bits: the inner tag of QinQ.
                    Value::U64(x) if n == "vlan" => x & 0xfff,
                    Value::U64(n) => n,
                    Value::Micros(ns) => ns.saturating_add(500) / 1000,
                    Value::MicrosF(ns) => (ns.max(0.0) / 1000.0).round() as u64,
                    _ => ABSENT,
                }
            }
            _ => {}
        }
    });
    let mut b = Vec::with_capacity(160);
    // The template is HEAD, the two addresses, then FIELDS in order.
    const FIRST: usize = HEAD.len() + 2;
    for (k, &fd) in templates(v6).iter().enumerate() {
        let n = match fd.src {
            Src::StartMs => r.ts_first_ns / 1_000_000,
            Src::EndMs => r.ts_last_ns / 1_000_000,
            Src::ClientAddr | Src::ServerAddr => {
                let a = if matches!(fd.src, Src::ClientAddr) {
                    r.client
                } else {
                    r.server
                };
                match a.ip() {
                    std::net::IpAddr::V4(x) => b.extend_from_slice(&x.octets()),
                    std::net::IpAddr::V6(x) => b.extend_from_slice(&x.octets()),
                }
                continue;
            }
            Src::Text(_) => {
                let slot = match fd.id {
                    14 => 0,
                    15 => 1,
                    _ => 2,
                };
                let t = texts[slot].as_bytes();
                b.push(t.len() as u8);
                b.extend_from_slice(t);
                continue;
            }
            Src::Int(_) => ints[k - FIRST],
            Src::Const(c) => c,
            Src::TcpFlags => tcp_flags(r),
            Src::EndReason => end_reason(r),
            Src::Outcome => outcome_code(r.outcome),
            Src::ClosedBy => r.closed_by.map_or(0, |s| s as u64 + 1),
        };
        let n = if fd.len < 8 {
            // All ones stays all ones at any width; other values saturate.
            let max = (1u64 << (fd.len * 8)) - 1;
            n.min(max)
        } else {
            n
        };
        b.extend_from_slice(&n.to_be_bytes()[8 - fd.len as usize..]);
    }
    Encoded { v6, bytes: b }
}

const FIELDS_LEN: usize = FIELDS.len();

/// The TCP flags seen, from the record's counts (PSH, URG, ECE, CWR are not kept):
/// SYN if any SYN or SYN/ACK, ACK if any packet beyond the client's SYNs, FIN, RST.
fn tcp_flags(r: &ConnRecord) -> u64 {
    let mut fl = 0;
    if r.c2s.fin_pkts + r.s2c.fin_pkts > 0 {
        fl |= 0x01;
    }
    if r.syn_count + r.synack_count > 0 {
        fl |= 0x02;
    }
    if r.c2s.rst_pkts + r.s2c.rst_pkts > 0 {
        fl |= 0x04;
    }
    if r.c2s.pkts + r.s2c.pkts > r.syn_count as u64 {
        fl |= 0x10;
    }
    fl
}

/// flowEndReason: 3 (end of flow) when closed by FIN or RST or refused, 1 (idle
/// timeout) for an unanswered handshake, else 4 (forced end: still open at the end of
/// the input or when the idle timeout reported it; the record does not tell which).
fn end_reason(r: &ConnRecord) -> u64 {
    use tcpsight_core::Close;
    match (r.outcome, r.close) {
        (Outcome::Timeout, _) => 1,
        (Outcome::Rejected | Outcome::Unreachable, _) => 3,
        (_, Close::Fin | Close::Rst) => 3,
        _ => 4,
    }
}

/// tcpsight's outcome element: 1 established, 2 rejected, 3 unreachable, 4 timeout,
/// 5 pending, 6 midstream.
pub fn outcome_code(o: Outcome) -> u64 {
    match o {
        Outcome::Established => 1,
        Outcome::Rejected => 2,
        Outcome::Unreachable => 3,
        Outcome::Timeout => 4,
        Outcome::Pending => 5,
        Outcome::Midstream => 6,
    }
}

/// Builds messages: header, optional template set, data sets.
struct Message {
    buf: Vec<u8>,
    records: u32,
    /// Offset of the open data set's header and its template id.
    set: Option<(usize, u16)>,
}

impl Message {
    fn new() -> Message {
        let mut buf = Vec::with_capacity(MAX_MESSAGE);
        buf.resize(16, 0);
        Message {
            buf,
            records: 0,
            set: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn close_set(&mut self) {
        if let Some((at, _)) = self.set.take() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn templates(&mut self) {
        self.close_set();
        self.buf.extend_from_slice(&template_set());
    }

    /// Whether a record of `len` bytes still fits.
    fn fits(&self, len: usize, v6: bool) -> bool {
        let tid = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
        let set_head = if matches!(self.set, Some((_, t)) if t == tid) {
            0
        } else {
            4
        };
        self.buf.len() + set_head + len <= MAX_MESSAGE
    }

    fn add(&mut self, e: &Encoded) {
        let tid = if e.v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
        if !matches!(self.set, Some((_, t)) if t == tid) {
            self.close_set();
            self.set = Some((self.buf.len(), tid));
            self.buf.extend_from_slice(&tid.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
        }
        self.buf.extend_from_slice(&e.bytes);
        self.records += 1;
    }

    /// The finished message with its header: `seq` is the count of data records sent
    /// before it (RFC 7011 3.1).
    fn finish(mut self, seq: u32, domain: u32) -> Vec<u8> {
        self.close_set();
        let len = self.buf.len() as u16;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        self.buf[0..2].copy_from_slice(&10u16.to_be_bytes());
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        self.buf[4..8].copy_from_slice(&now.to_be_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_be_bytes());
        self.buf[12..16].copy_from_slice(&domain.to_be_bytes());
        self.buf
    }
}

/// Options of an IPFIX exporter.
#[derive(Clone)]
pub struct IpfixOptions {
    pub observation_domain: u32,
    pub template_refresh: Duration,
    pub queue: usize,
    pub warn: Warn,
}

impl Default for IpfixOptions {
    fn default() -> Self {
        IpfixOptions {
            observation_domain: 1,
            template_refresh: TEMPLATE_REFRESH,
            queue: DEFAULT_QUEUE,
            warn: stderr_warn(),
        }
    }
}

/// The IPFIX sink (UDP).
pub struct IpfixExporter {
    worker: Worker<Encoded>,
    target: String,
    wait: Duration,
}

impl IpfixExporter {
    /// Exports to `target` (HOST:PORT) over UDP.
    pub fn udp(target: &str, opts: IpfixOptions) -> io::Result<IpfixExporter> {
        let addr: SocketAddr = target.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address for the collector")
        })?;
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(addr)?;
        let name = format!("IPFIX to {target}");
        let worker = Worker::start("tcpsight-ipfix", opts.queue, move |rx, stats| {
            send_loop(rx, stats, sock, opts, name)
        })?;
        Ok(IpfixExporter {
            worker,
            target: target.to_string(),
            wait: Duration::from_secs(2),
        })
    }

    /// How long `finish` waits for queued records to go out.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    pub fn stats(&self) -> &Stats {
        &self.worker.stats
    }
}

struct Link {
    sock: UdpSocket,
    stats: Arc<Stats>,
    opts: IpfixOptions,
    name: String,
    seq: u32,
    /// The last failed send: a warning is one line per outage, not per datagram (UDP
    /// reports a refused datagram on the next send, so sends alternate).
    failed_at: Option<Instant>,
    /// When the templates went out last (None: with the next message).
    templates_at: Option<Instant>,
}

impl Link {
    fn templates_due(&self) -> bool {
        self.templates_at
            .is_none_or(|t| t.elapsed() >= self.opts.template_refresh)
    }

    fn send(&mut self, msg: Message) {
        let n = msg.records;
        let bytes = msg.finish(self.seq, self.opts.observation_domain);
        match self.sock.send(&bytes) {
            Ok(_) => {
                self.seq = self.seq.wrapping_add(n);
                self.stats.sent.fetch_add(n as u64, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(n as u64, Ordering::Relaxed);
                self.stats.error(e.to_string());
                // The collector may have restarted: templates again with the next.
                self.templates_at = None;
                if self.failed_at.is_none_or(|t| t.elapsed() > OUTAGE_GAP) {
                    (self.opts.warn)(&format!(
                        "{}: {e}; records go on being sent, the lost ones counted",
                        self.name
                    ));
                }
                self.failed_at = Some(Instant::now());
            }
        }
    }
}

fn send_loop(
    rx: Receiver<Encoded>,
    stats: Arc<Stats>,
    sock: UdpSocket,
    opts: IpfixOptions,
    name: String,
) {
    let mut link = Link {
        sock,
        stats,
        opts,
        name,
        seq: 0,
        failed_at: None,
        templates_at: None,
    };
    let mut msg = Message::new();
    let mut first_at: Option<Instant> = None;
    loop {
        let got = match first_at {
            Some(t) => rx.recv_timeout(FLUSH_INTERVAL.saturating_sub(t.elapsed())),
            None => rx.recv_timeout(link.opts.template_refresh.min(FLUSH_INTERVAL * 20)),
        };
        match got {
            Ok(e) => {
                if link.stats.past_deadline() {
                    link.stats.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !msg.is_empty() && !msg.fits(e.bytes.len(), e.v6) {
                    let full = std::mem::replace(&mut msg, Message::new());
                    link.send(full);
                    first_at = None;
                }
                if msg.is_empty() && link.templates_due() {
                    msg.templates();
                    link.templates_at = Some(Instant::now());
                }
                msg.add(&e);
                first_at.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Timeout) => {
                if !msg.is_empty() {
                    let m = std::mem::replace(&mut msg, Message::new());
                    link.send(m);
                    first_at = None;
                } else if link.templates_at.is_some() && link.templates_due() {
                    // A refresh on a quiet link: the templates alone.
                    let mut m = Message::new();
                    m.templates();
                    link.templates_at = Some(Instant::now());
                    link.send(m);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !msg.is_empty() {
                    link.send(msg);
                }
                return;
            }
        }
    }
}

impl RecordSink for IpfixExporter {
    fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        self.worker.push(encode(r));
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let peer = format!("IPFIX to {}", self.target);
        self.worker.finish_sink(self.wait, &peer, "messages")
    }

    fn report(&self) -> Option<String> {
        Some(
            self.worker
                .report(&format!("IPFIX to {}", self.target), "messages"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpsight_core::Addr;

    #[test]
    fn record_lengths_match_the_templates() {
        for v6 in [false, true] {
            let mut r = crate::columns::full_record();
            if v6 {
                r.client = Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
                r.server = r.client;
            }
            r.app.server_name = Some("example.org".into());
            let e = encode(&r);
            assert_eq!(e.v6, v6);
            let fixed: usize = template_fields(v6)
                .iter()
                .filter(|f| f.len != VAR)
                .map(|f| f.len as usize)
                .sum();
            // Three strings with their length bytes.
            let text = 3 + "http".len() + "example.org".len() + "SF".len();
            assert_eq!(e.bytes.len(), fixed + text);
        }
        // The template set: header, 2 templates.
        let t = template_set();
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 2);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]) as usize, t.len());
    }

    #[test]
    fn messages_stay_under_the_limit() {
        let mut m = Message::new();
        m.templates();
        let e = encode(&crate::columns::full_record());
        let mut n = 0;
        while m.fits(e.bytes.len(), false) {
            m.add(&e);
            n += 1;
        }
        let bytes = m.finish(7, 1);
        assert!(bytes.len() <= MAX_MESSAGE && n >= 5, "{} {n}", bytes.len());
        assert_eq!(
            u16::from_be_bytes([bytes[2], bytes[3]]) as usize,
            bytes.len()
        );
        assert_eq!(
            u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            7
        );
    }
}
