//! HTTP/1.x request/response pairing over the two in-order byte streams.
//!
//! Each direction is a small state machine: skip blank lines between messages, buffer
//! the header block (at most [`MAX_HEADER_BLOCK`] bytes) and parse it with `httparse`,
//! then count the body without buffering it (Content-Length, chunked framing decoded
//! byte by byte, or until close). Transactions wait in a queue (at most [`MAX_PENDING`])
//! until both their request and their final response are complete, and are emitted in
//! request order.

use std::collections::VecDeque;

use tcpsight_core::Value;

use crate::{Dir, L7Event, join, opt_str, opt_u64};

/// The largest header block buffered (request line or status line included).
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// The most transactions waiting for their response (pipelining depth).
pub const MAX_PENDING: usize = 32;
/// Stored strings are cut to this many bytes (the URI to [`MAX_URI`]).
pub const MAX_FIELD: usize = 512;
pub const MAX_URI: usize = 4096;
/// The longest chunk-size line (with extensions) or trailer line accepted.
const MAX_CHUNK_LINE: u32 = 4096;
const MAX_HEADERS: usize = 128;
/// A gap between messages at least this long is taken to have held one message
/// ("GET / HTTP/1.0\r\n\r\n" is 18 bytes, "HTTP/1.1 200\r\n\r\n" 17).
const MIN_MESSAGE: u64 = 16;

/// Flags on a transaction: what could not be seen, and why.
pub mod flags {
    /// The request's header block exceeded 16 KB: the request direction gave up.
    pub const REQ_HEADERS_TRUNCATED: u16 = 1 << 0;
    pub const RESP_HEADERS_TRUNCATED: u16 = 1 << 1;
    /// Bytes of the request were not captured (the count is in request_gap_bytes).
    pub const REQ_GAP: u16 = 1 << 2;
    pub const RESP_GAP: u16 = 1 << 3;
    /// The request's header block did not parse as HTTP/1.x.
    pub const REQ_MALFORMED: u16 = 1 << 4;
    pub const RESP_MALFORMED: u16 = 1 << 5;
    /// No response was seen (connection ended, or the response direction gave up).
    pub const NO_RESPONSE: u16 = 1 << 6;
    /// A response with no request seen for it.
    pub const NO_REQUEST: u16 = 1 << 7;
    /// The connection ended inside the request or the response body.
    pub const REQ_INCOMPLETE: u16 = 1 << 8;
    pub const RESP_INCOMPLETE: u16 = 1 << 9;
    /// The response body was delimited by the end of the connection.
    pub const RESP_UNTIL_CLOSE: u16 = 1 << 10;
    /// After this transaction the connection left HTTP (101 Switching Protocols or a
    /// 2xx answer to CONNECT).
    pub const TUNNEL: u16 = 1 << 11;

    pub const NAMES: [(u16, &str); 12] = [
        (REQ_HEADERS_TRUNCATED, "req_headers_truncated"),
        (RESP_HEADERS_TRUNCATED, "resp_headers_truncated"),
        (REQ_GAP, "req_gap"),
        (RESP_GAP, "resp_gap"),
        (REQ_MALFORMED, "req_malformed"),
        (RESP_MALFORMED, "resp_malformed"),
        (NO_RESPONSE, "no_response"),
        (NO_REQUEST, "no_request"),
        (REQ_INCOMPLETE, "req_incomplete"),
        (RESP_INCOMPLETE, "resp_incomplete"),
        (RESP_UNTIL_CLOSE, "resp_until_close"),
        (TUNNEL, "tunnel"),
    ];
}

/// One request and its final response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpTransaction {
    /// 1, 2, ... in request order within the connection.
    pub trans_depth: u32,
    pub method: Option<String>,
    pub host: Option<String>,
    pub uri: Option<String>,
    /// The request's HTTP version ("1.1").
    pub version: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    /// Body bytes after transfer decoding (chunk framing not counted). `None` when the
    /// framing was lost.
    pub request_body_len: Option<u64>,
    /// The last interim (1xx) response's code and reason, e.g. 100 Continue.
    pub info_code: Option<u16>,
    pub info_msg: Option<String>,
    pub status_code: Option<u16>,
    pub status_msg: Option<String>,
    /// The response's HTTP version.
    pub response_version: Option<String>,
    /// The response's Content-Type header.
    pub content_type: Option<String>,
    pub response_body_len: Option<u64>,
    /// The response's Server header.
    pub server: Option<String>,
    pub request_first_ns: Option<u64>,
    pub request_last_ns: Option<u64>,
    /// First byte of the final (non-1xx) response.
    pub response_first_ns: Option<u64>,
    pub response_last_ns: Option<u64>,
    pub request_gap_bytes: u64,
    pub response_gap_bytes: u64,
    /// [`flags`] bits.
    pub flags: u16,
}

impl HttpTransaction {
    /// From the request's first byte to the final response's first byte.
    pub fn response_ns(&self) -> Option<u64> {
        Some(
            self.response_first_ns?
                .saturating_sub(self.request_first_ns?),
        )
    }

    /// Visits every field in schema order: the one definition of the http log's schema.
    /// `flags` is a comma-joined list of flag names ("" when none). Values borrow from
    /// `self` or from a joined list built for the call, so `f` takes any lifetime.
    pub fn for_each_field(&self, mut f: impl FnMut(&'static str, Value<'_>)) {
        f("trans_depth", Value::U64(self.trans_depth as u64));
        f("method", opt_str(&self.method));
        f("host", opt_str(&self.host));
        f("uri", opt_str(&self.uri));
        f("version", opt_str(&self.version));
        f("user_agent", opt_str(&self.user_agent));
        f("referrer", opt_str(&self.referrer));
        f("request_body_len", opt_u64(self.request_body_len));
        f("info_code", opt_u64(self.info_code.map(u64::from)));
        f("info_msg", opt_str(&self.info_msg));
        f("status_code", opt_u64(self.status_code.map(u64::from)));
        f("status_msg", opt_str(&self.status_msg));
        f("response_version", opt_str(&self.response_version));
        f("content_type", opt_str(&self.content_type));
        f("response_body_len", opt_u64(self.response_body_len));
        f("server", opt_str(&self.server));
        f(
            "request_first",
            self.request_first_ns.map_or(Value::Null, Value::Epoch),
        );
        f(
            "request_last",
            self.request_last_ns.map_or(Value::Null, Value::Epoch),
        );
        f(
            "response_first",
            self.response_first_ns.map_or(Value::Null, Value::Epoch),
        );
        f(
            "response_last",
            self.response_last_ns.map_or(Value::Null, Value::Epoch),
        );
        f(
            "response_us",
            self.response_ns().map_or(Value::Null, Value::Micros),
        );
        f("request_gap_bytes", Value::U64(self.request_gap_bytes));
        f("response_gap_bytes", Value::U64(self.response_gap_bytes));
        f("flags", Value::Str(&join(self.flag_names())));
    }

    /// The field names in schema order.
    pub fn field_names() -> Vec<&'static str> {
        let mut v = Vec::new();
        HttpTransaction::default().for_each_field(|n, _| v.push(n));
        v
    }

    /// The flag names set, in [`flags::NAMES`] order.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut buf = [""; flags::NAMES.len()];
        let n = set_flag_names(self.flags, &mut buf);
        buf[..n].to_vec()
    }
}

fn set_flag_names(bits: u16, out: &mut [&'static str; flags::NAMES.len()]) -> usize {
    let mut n = 0;
    for (bit, name) in flags::NAMES {
        if bits & bit != 0 {
            out[n] = name;
            n += 1;
        }
    }
    n
}

#[derive(Debug)]
struct Entry {
    tx: HttpTransaction,
    req_done: bool,
    resp_done: bool,
    /// Stands for a response whose transaction was already emitted (queue overflow):
    /// read for its framing, never emitted.
    discard: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// In the chunk-size line: the size read so far, whether past the digits, length.
    Size {
        value: u64,
        digits: bool,
        after: bool,
        len: u32,
    },
    Data(u64),
    /// After chunk data: expecting CRLF.
    DataEnd {
        cr: bool,
    },
    /// In the trailer section; `len` is the current line's length so far.
    Trailer {
        len: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between messages: blank lines are skipped.
    Idle,
    Headers,
    Body(Body),
    /// Lost sync: looking for a plausible start line at the start of a line.
    Resync {
        line_start: bool,
    },
    /// Gave up on this direction.
    Dead,
    /// The connection left HTTP.
    Tunnel,
}

#[derive(Debug)]
struct Side {
    phase: Phase,
    buf: Vec<u8>,
    /// Where the end-of-headers search resumes in `buf`.
    scan: usize,
    /// First byte of the message being read.
    msg_first_ns: u64,
    /// trans_depth of the transaction this side is reading, if any.
    cur: Option<u32>,
    /// Decoded body bytes so far; `None` once the chunk framing was lost.
    body: Option<u64>,
    /// The response being read is interim (1xx) or final.
    gap_in_msg: u64,
}

impl Side {
    fn new() -> Side {
        Side {
            phase: Phase::Idle,
            buf: Vec::new(),
            scan: 0,
            msg_first_ns: 0,
            cur: None,
            body: Some(0),
            gap_in_msg: 0,
        }
    }

    fn release_buf(&mut self) {
        self.buf.clear();
        self.scan = 0;
        if self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        }
    }

    fn alive(&self) -> bool {
        !matches!(self.phase, Phase::Dead | Phase::Tunnel)
    }
}

/// HTTP state of one connection.
#[derive(Debug)]
pub struct Http {
    req: Side,
    resp: Side,
    queue: VecDeque<Entry>,
    next_depth: u32,
    /// Transactions emitted before their response came (queue overflow): that many
    /// coming responses are theirs and are read but not paired with later requests.
    owed_responses: u32,
    /// Transactions emitted.
    pub requests: u32,
    pub status_4xx: u32,
    pub status_5xx: u32,
    /// The Host of the first request that had one.
    pub first_host: Option<String>,
    /// Whether transactions carry their text fields (URI, user agent, status message,
    /// content type, server...). Without a log to write them to, only what the
    /// connection's record needs is kept (method, status code, lengths, the first
    /// Host): the strings were most of the parser's allocations.
    pub details: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

const METHODS: [&[u8]; 14] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"TRACE ",
    b"PATCH ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
];

/// Whether `b` (the start of a line) could begin a request line: `Some(true)` yes,
/// `Some(false)` no, `None` too short to tell.
pub(crate) fn plausible_request(b: &[u8]) -> Option<bool> {
    let mut undecided = false;
    for m in METHODS {
        if b.len() >= m.len() {
            if b.starts_with(m) {
                return Some(true);
            }
        } else if m.starts_with(b) {
            undecided = true;
        }
    }
    if undecided { None } else { Some(false) }
}

pub(crate) fn plausible_response(b: &[u8]) -> Option<bool> {
    let p: &[u8] = b"HTTP/1.";
    if b.len() >= p.len() {
        Some(b.starts_with(p))
    } else if p.starts_with(b) {
        None
    } else {
        Some(false)
    }
}

/// Whether a message's first bytes can begin a start line, leniently (any method
/// token): `Some(false)` once they cannot.
fn start_line_ok(dir: Dir, b: &[u8]) -> Option<bool> {
    match dir {
        Dir::ToClient => plausible_response(b),
        Dir::ToServer => {
            // A method token (1-24 letters, '-' or '_') then a space.
            for (i, &c) in b.iter().enumerate() {
                if c == b' ' {
                    return Some(i > 0);
                }
                if i >= 24 || !(c.is_ascii_alphabetic() || c == b'-' || c == b'_') {
                    return Some(false);
                }
            }
            None
        }
    }
}

/// "HTTP/1.0 " or "HTTP/1.1 " and three digits and a space or CR at the start of `b`.
fn status_line_at(b: &[u8]) -> bool {
    b.len() >= 13
        && b.starts_with(b"HTTP/1.")
        && matches!(b[7], b'0' | b'1')
        && b[8] == b' '
        && b[9..12].iter().all(u8::is_ascii_digit)
        && matches!(b[12], b' ' | b'\r' | b'\n')
}

fn text(b: &[u8], cap: usize) -> String {
    let b = &b[..b.len().min(cap)];
    let s = String::from_utf8_lossy(b).into_owned();
    if s.len() > cap {
        // Lossy replacement grew it: cut at a char boundary.
        let mut end = cap;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    } else {
        s
    }
}

enum BodyKind {
    None,
    Body(Body),
    Tunnel,
}

/// Body framing from the headers (RFC 9112 6.3): chunked as the last transfer coding,
/// else another transfer coding (until close, responses only), else Content-Length.
/// `Err` on an unparsable Content-Length.
fn framing(headers: &[httparse::Header], is_request: bool) -> Result<Body, ()> {
    let mut te = None;
    let mut cl: Option<u64> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).map_err(|_| ())?;
            // "a, a" lists of one value are allowed; differing values are not.
            for part in v.split(',') {
                let n: u64 = part.trim().parse().map_err(|_| ())?;
                if cl.is_some_and(|c| c != n) {
                    return Err(());
                }
                cl = Some(n);
            }
        }
    }
    if let Some(te) = te {
        let last = te.rsplit(|&c| c == b',').next().unwrap_or(b"");
        let last = last.trim_ascii();
        if last.eq_ignore_ascii_case(b"chunked") {
            return Ok(Body::Chunked(Chunk::Size {
                value: 0,
                digits: false,
                after: false,
                len: 0,
            }));
        }
        return Ok(if is_request {
            Body::Length(0)
        } else {
            Body::UntilClose
        });
    }
    Ok(match cl {
        Some(n) => Body::Length(n),
        None if is_request => Body::Length(0),
        None => Body::UntilClose,
    })
}

fn header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Advances a chunked body over `data`; returns (bytes consumed, decoded bytes, done,
/// malformed).
fn chunked(state: &mut Chunk, data: &[u8]) -> (usize, u64, bool, bool) {
    let mut i = 0;
    let mut decoded = 0u64;
    while i < data.len() {
        match state {
            Chunk::Data(rem) => {
                let take = (*rem).min((data.len() - i) as u64);
                *rem -= take;
                decoded += take;
                i += take as usize;
                if *rem == 0 {
                    *state = Chunk::DataEnd { cr: false };
                }
            }
            Chunk::DataEnd { cr } => {
                let b = data[i];
                i += 1;
                match b {
                    b'\r' if !*cr => *cr = true,
                    b'\n' => {
                        *state = Chunk::Size {
                            value: 0,
                            digits: false,
                            after: false,
                            len: 0,
                        }
                    }
                    _ => return (i, decoded, false, true),
                }
            }
            Chunk::Size {
                value,
                digits,
                after,
                len,
            } => {
                let b = data[i];
                i += 1;
                *len += 1;
                if *len > MAX_CHUNK_LINE {
                    return (i, decoded, false, true);
                }
                if b == b'\n' {
                    if !*digits {
                        return (i, decoded, false, true);
                    }
                    *state = if *value == 0 {
                        Chunk::Trailer { len: 0 }
                    } else {
                        Chunk::Data(*value)
                    };
                } else if !*after && b.is_ascii_hexdigit() {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    if *value > (u64::MAX >> 8) {
                        return (i, decoded, false, true);
                    }
                    *value = *value * 16 + d;
                    *digits = true;
                } else if *digits && matches!(b, b';' | b' ' | b'\t' | b'\r') {
                    // Chunk extensions (and the CR) are skipped up to the LF.
                    *after = true;
                } else if !*after {
                    return (i, decoded, false, true);
                }
            }
            Chunk::Trailer { len } => {
                let b = data[i];
                i += 1;
                if b == b'\n' {
                    if *len == 0 {
                        return (i, decoded, true, false);
                    }
                    *len = 0;
                } else if b != b'\r' {
                    *len += 1;
                    if *len > MAX_CHUNK_LINE {
                        return (i, decoded, false, true);
                    }
                }
            }
        }
    }
    (i, decoded, false, false)
}

impl Http {
    pub fn new() -> Http {
        Http {
            req: Side::new(),
            resp: Side::new(),
            queue: VecDeque::new(),
            next_depth: 1,
            owed_responses: 0,
            requests: 0,
            status_4xx: 0,
            status_5xx: 0,
            first_host: None,
            details: true,
        }
    }

    /// Whether either direction still parses HTTP.
    pub fn wants_more(&self) -> bool {
        self.req.alive() || self.resp.alive()
    }

    /// Heap and inline bytes held now (buffers, queued transactions' strings).
    pub fn state_bytes(&self) -> usize {
        let s = |o: &Option<String>| o.as_ref().map_or(0, |s| s.capacity());
        let q: usize = self
            .queue
            .iter()
            .map(|e| {
                let t = &e.tx;
                core::mem::size_of::<Entry>()
                    + s(&t.method)
                    + s(&t.host)
                    + s(&t.uri)
                    + s(&t.version)
                    + s(&t.user_agent)
                    + s(&t.referrer)
                    + s(&t.info_msg)
                    + s(&t.status_msg)
                    + s(&t.response_version)
                    + s(&t.content_type)
                    + s(&t.server)
            })
            .sum();
        core::mem::size_of::<Http>()
            + self.req.buf.capacity()
            + self.resp.buf.capacity()
            + q
            + self.first_host.as_ref().map_or(0, |h| h.capacity())
    }

    fn find(&mut self, depth: u32) -> Option<&mut Entry> {
        self.queue.iter_mut().find(|e| e.tx.trans_depth == depth)
    }

    fn new_entry(&mut self, out: &mut Vec<L7Event>) -> u32 {
        if self.queue.len() >= MAX_PENDING {
            // Too many unanswered requests: the oldest goes out without its response.
            if let Some(mut e) = self.queue.pop_front() {
                if !e.resp_done {
                    e.tx.flags |= flags::NO_RESPONSE;
                    if self.resp.cur == Some(e.tx.trans_depth) {
                        // Its response is being read: it goes on as a discarded one.
                        self.queue.push_front(Entry {
                            tx: HttpTransaction {
                                trans_depth: e.tx.trans_depth,
                                ..Default::default()
                            },
                            req_done: true,
                            resp_done: false,
                            discard: true,
                        });
                    } else {
                        self.owed_responses += 1;
                    }
                }
                if !e.discard {
                    self.emit(e.tx, out);
                }
            }
        }
        let depth = self.next_depth;
        self.next_depth += 1;
        self.queue.push_back(Entry {
            tx: HttpTransaction {
                trans_depth: depth,
                ..Default::default()
            },
            req_done: false,
            resp_done: false,
            discard: false,
        });
        depth
    }

    fn emit(&mut self, tx: HttpTransaction, out: &mut Vec<L7Event>) {
        if tx.flags & flags::NO_REQUEST == 0 {
            self.requests += 1;
        }
        match tx.status_code {
            Some(400..=499) => self.status_4xx += 1,
            Some(500..=599) => self.status_5xx += 1,
            _ => {}
        }
        out.push(L7Event::Http(tx));
    }

    fn flush_done(&mut self, out: &mut Vec<L7Event>) {
        while self
            .queue
            .front()
            .is_some_and(|e| e.req_done && e.resp_done)
        {
            let e = self.queue.pop_front().unwrap();
            if !e.discard {
                self.emit(e.tx, out);
            }
        }
    }

    /// The transaction the response side answers: the oldest one not answered yet, or a
    /// new request-less one.
    fn response_target(&mut self, out: &mut Vec<L7Event>) -> u32 {
        if self.owed_responses > 0 {
            // The response of a transaction emitted early: read, then dropped.
            self.owed_responses -= 1;
            // Depth 0 is never a real transaction's; one response is read at a time.
            let depth = 0;
            self.queue.push_front(Entry {
                tx: HttpTransaction {
                    trans_depth: depth,
                    ..Default::default()
                },
                req_done: true,
                resp_done: false,
                discard: true,
            });
            return depth;
        }
        if let Some(e) = self.queue.iter().find(|e| !e.resp_done) {
            return e.tx.trans_depth;
        }
        let d = self.new_entry(out);
        let e = self.find(d).unwrap();
        e.req_done = true;
        e.tx.flags |= flags::NO_REQUEST;
        d
    }

    pub fn on_data(&mut self, dir: Dir, ts: u64, mut data: &[u8], out: &mut Vec<L7Event>) {
        while !data.is_empty() {
            let side = match dir {
                Dir::ToServer => &mut self.req,
                Dir::ToClient => &mut self.resp,
            };
            let n = match side.phase {
                Phase::Dead | Phase::Tunnel => return,
                Phase::Idle => {
                    let skip = data
                        .iter()
                        .position(|&b| b != b'\r' && b != b'\n')
                        .unwrap_or(data.len());
                    if skip < data.len() {
                        self.start_message(dir, ts, out);
                    }
                    skip
                }
                Phase::Headers => self.headers(dir, ts, data, out),
                Phase::Body(_) => self.body(dir, ts, data, out),
                Phase::Resync { .. } => self.resync(dir, ts, data, out),
            };
            data = &data[n..];
        }
    }

    /// A message starts on `dir` at `ts` (its first byte is being read).
    fn start_message(&mut self, dir: Dir, ts: u64, out: &mut Vec<L7Event>) {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        side.phase = Phase::Headers;
        side.msg_first_ns = ts;
        side.scan = 0;
        if dir == Dir::ToServer {
            let gap = core::mem::take(&mut self.req.gap_in_msg);
            let d = self.new_entry(out);
            let e = self.find(d).unwrap();
            e.tx.request_first_ns = Some(ts);
            e.tx.request_gap_bytes = gap;
            self.req.cur = Some(d);
        }
    }

    /// Scans for a plausible start line at the start of a line; consumes bytes up to
    /// the point where it is recognised (the line's first bytes are kept in `buf` and
    /// become the start of the header block).
    fn resync(&mut self, dir: Dir, ts: u64, data: &[u8], out: &mut Vec<L7Event>) -> usize {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        let Phase::Resync { mut line_start } = side.phase else {
            return 0;
        };
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if b == b'\n' {
                side.buf.clear();
                line_start = true;
                i += 1;
                continue;
            }
            if !line_start {
                // Responses may also restart mid-line: after a body whose length was
                // lost, the next status line follows its last byte directly. A full
                // "HTTP/1.x ddd " within this delivery is required there.
                let resp = dir == Dir::ToClient;
                match data[i..]
                    .iter()
                    .position(|&c| c == b'\n' || (resp && c == b'H'))
                {
                    Some(p) => {
                        i += p;
                        if data[i] == b'H' {
                            if status_line_at(&data[i..]) {
                                line_start = true;
                            } else {
                                i += 1;
                            }
                        }
                    }
                    None => i = data.len(),
                }
                continue;
            }
            if side.buf.is_empty() && b == b'\r' {
                i += 1;
                continue;
            }
            side.buf.push(b);
            i += 1;
            let verdict = match dir {
                Dir::ToServer => plausible_request(&side.buf),
                Dir::ToClient => plausible_response(&side.buf),
            };
            match verdict {
                Some(true) => {
                    let prefix = core::mem::take(&mut side.buf);
                    self.start_message(dir, ts, out);
                    let side = match dir {
                        Dir::ToServer => &mut self.req,
                        Dir::ToClient => &mut self.resp,
                    };
                    side.buf = prefix;
                    side.scan = 0;
                    return i;
                }
                Some(false) => {
                    side.buf.clear();
                    line_start = false;
                }
                None => {}
            }
        }
        side.phase = Phase::Resync { line_start };
        i
    }

    fn headers(&mut self, dir: Dir, ts: u64, data: &[u8], out: &mut Vec<L7Event>) -> usize {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        let room = MAX_HEADER_BLOCK - side.buf.len();
        let take = data.len().min(room);
        // The common case: a whole header block at the start of one delivery, parsed
        // where it lies (copying the segment first cost more than parsing it).
        if side.buf.is_empty()
            && start_line_ok(dir, &data[..take.min(32)]) != Some(false)
            && let Some(end) = find_headers_end(&data[..take])
        {
            match dir {
                Dir::ToServer => self.request_headers(&data[..end], ts, out),
                Dir::ToClient => self.response_headers(&data[..end], ts, out),
            }
            return end;
        }
        let start = side.buf.len();
        side.buf.extend_from_slice(&data[..take]);
        if start < 32 && start_line_ok(dir, &side.buf[..side.buf.len().min(32)]) == Some(false) {
            // Not a start line (a capture that began inside a body, or junk): no message
            // starts here; skip to a plausible one.
            side.release_buf();
            side.phase = Phase::Resync { line_start: false };
            if dir == Dir::ToServer
                && let Some(d) = self.req.cur.take()
            {
                let answered = self
                    .queue
                    .iter()
                    .any(|e| e.tx.trans_depth == d && e.resp_done);
                if answered || self.resp.cur == Some(d) {
                    // A response already went to it: keep it, as malformed.
                    if let Some(e) = self.find(d) {
                        e.tx.flags |= flags::REQ_MALFORMED;
                        e.req_done = true;
                    }
                    self.flush_done(out);
                } else {
                    self.queue.retain(|e| e.tx.trans_depth != d);
                    if self.next_depth == d + 1 {
                        self.next_depth = d;
                    }
                }
            }
            // Bytes after the first line break are looked at again by the resync scan.
            let nl = data[..take].iter().position(|&c| c == b'\n');
            return nl.unwrap_or(take);
        }
        // Look for the blank line ending the block, from a little before the new bytes.
        let from = side.scan.min(start.saturating_sub(3));
        let end = find_headers_end(&side.buf[from..]).map(|e| from + e);
        let Some(end) = end else {
            side.scan = side.buf.len();
            if side.buf.len() >= MAX_HEADER_BLOCK {
                self.headers_truncated(dir, ts, out);
            }
            return take;
        };
        // Bytes of `data` that belong to the header block.
        let used = end - start;
        let block = core::mem::take(&mut side.buf);
        match dir {
            Dir::ToServer => self.request_headers(&block[..end], ts, out),
            Dir::ToClient => self.response_headers(&block[..end], ts, out),
        }
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        side.buf = block;
        side.release_buf();
        used
    }

    fn headers_truncated(&mut self, dir: Dir, ts: u64, out: &mut Vec<L7Event>) {
        let block = core::mem::take(
            &mut match dir {
                Dir::ToServer => &mut self.req,
                Dir::ToClient => &mut self.resp,
            }
            .buf,
        );
        match dir {
            Dir::ToServer => {
                let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut r = httparse::Request::new(&mut hs);
                let _ = r.parse(&block);
                let (m, p, v) = (r.method, r.path, r.version);
                if let Some(d) = self.req.cur.take()
                    && let Some(e) = self.find(d)
                {
                    e.tx.method = m.map(|m| text(m.as_bytes(), MAX_FIELD));
                    e.tx.uri = p.map(|p| text(p.as_bytes(), MAX_URI));
                    e.tx.version = v.map(|v| format!("1.{v}"));
                    e.tx.flags |= flags::REQ_HEADERS_TRUNCATED;
                    e.tx.request_last_ns = Some(ts);
                    e.req_done = true;
                }
            }
            Dir::ToClient => {
                let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut r = httparse::Response::new(&mut hs);
                let _ = r.parse(&block);
                let (code, reason, v) = (r.code, r.reason, r.version);
                let first = self.resp.msg_first_ns;
                let d = self.response_target(out);
                let e = self.find(d).unwrap();
                e.tx.status_code = code;
                e.tx.status_msg = reason.map(|r| text(r.as_bytes(), MAX_FIELD));
                e.tx.response_version = v.map(|v| format!("1.{v}"));
                e.tx.flags |= flags::RESP_HEADERS_TRUNCATED;
                e.tx.response_first_ns = Some(first);
                e.tx.response_last_ns = Some(ts);
                e.resp_done = true;
            }
        }
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        side.phase = Phase::Dead;
        side.buf = Vec::new();
        self.flush_done(out);
    }

    fn request_headers(&mut self, block: &[u8], ts: u64, out: &mut Vec<L7Event>) {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut hs);
        let mut cfg = httparse::ParserConfig::default();
        cfg.allow_multiple_spaces_in_request_line_delimiters(true)
            .ignore_invalid_headers_in_requests(true);
        let parsed = cfg.parse_request(&mut r, block);
        let Some(d) = self.req.cur else { return };
        if !self.queue.iter().any(|e| e.tx.trans_depth == d) {
            // Emitted early (queue overflow) while its headers were read: go on for the
            // framing in a stand-in that is never emitted nor answered.
            self.queue.push_back(Entry {
                tx: HttpTransaction {
                    trans_depth: d,
                    ..Default::default()
                },
                req_done: false,
                resp_done: true,
                discard: true,
            });
        }
        let first_host = &mut self.first_host;
        let e = self
            .queue
            .iter_mut()
            .find(|e| e.tx.trans_depth == d)
            .expect("current request is queued");
        let tx = &mut e.tx;
        let details = self.details;
        tx.method = r.method.map(|m| text(m.as_bytes(), MAX_FIELD));
        if details {
            tx.uri = r.path.map(|p| text(p.as_bytes(), MAX_URI));
            tx.version = r.version.map(|v| format!("1.{v}"));
        }
        tx.request_gap_bytes += self.req.gap_in_msg;
        if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
            tx.flags |= flags::REQ_MALFORMED;
            tx.request_last_ns = Some(ts);
            e.req_done = true;
            self.req.cur = None;
            self.req.phase = Phase::Resync { line_start: true };
            self.flush_done(out);
            return;
        }
        let get = |n| header(r.headers, n).map(|v| text(v, MAX_FIELD));
        if details || first_host.is_none() {
            tx.host = get("host");
        }
        if details {
            tx.user_agent = get("user-agent");
            tx.referrer = get("referer");
        }
        if first_host.is_none() {
            first_host.clone_from(&tx.host);
        }
        let connect = r.method == Some("CONNECT");
        match framing(r.headers, true) {
            Ok(Body::Length(0)) => {
                tx.request_body_len = Some(0);
                tx.request_last_ns = Some(ts);
                e.req_done = true;
                self.req.cur = None;
                // After CONNECT the client's bytes are the tunnel's (or a new CONNECT
                // after a refusal, not followed): requests are no longer parsed.
                self.req.phase = if connect { Phase::Tunnel } else { Phase::Idle };
                self.flush_done(out);
            }
            Ok(b) => {
                self.req.body = Some(0);
                self.req.phase = Phase::Body(b);
            }
            Err(()) => {
                tx.flags |= flags::REQ_MALFORMED;
                tx.request_last_ns = Some(ts);
                e.req_done = true;
                self.req.cur = None;
                self.req.phase = Phase::Resync { line_start: true };
                self.flush_done(out);
            }
        }
    }

    fn response_headers(&mut self, block: &[u8], ts: u64, out: &mut Vec<L7Event>) {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut hs);
        let mut cfg = httparse::ParserConfig::default();
        cfg.allow_spaces_after_header_name_in_responses(true)
            .allow_obsolete_multiline_headers_in_responses(true)
            .allow_multiple_spaces_in_response_status_delimiters(true)
            .ignore_invalid_headers_in_responses(true);
        let parsed = cfg.parse_response(&mut r, block);
        let first = self.resp.msg_first_ns;
        let gap = core::mem::take(&mut self.resp.gap_in_msg);
        let d = match self.resp.cur {
            Some(d) if self.queue.iter().any(|e| e.tx.trans_depth == d) => d,
            _ => self.response_target(out),
        };
        self.resp.cur = Some(d);
        let details = self.details;
        let e = self.find(d).unwrap();
        let tx = &mut e.tx;
        tx.response_gap_bytes += gap;
        let code = r.code;
        if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
            tx.status_code = code;
            tx.response_version = r.version.map(|v| format!("1.{v}"));
            tx.flags |= flags::RESP_MALFORMED;
            tx.response_first_ns = Some(first);
            tx.response_last_ns = Some(ts);
            e.resp_done = true;
            self.resp.cur = None;
            self.resp.phase = Phase::Resync { line_start: true };
            self.flush_done(out);
            return;
        }
        let code = code.unwrap_or(0);
        let reason = r
            .reason
            .filter(|_| details)
            .map(|m| text(m.as_bytes(), MAX_FIELD));
        if (100..200).contains(&code) && code != 101 {
            // Interim: the transaction goes on to its final response.
            tx.info_code = Some(code);
            tx.info_msg = reason;
            self.resp.phase = Phase::Idle;
            return;
        }
        tx.status_code = Some(code);
        tx.status_msg = reason;
        tx.response_first_ns = Some(first);
        if details {
            tx.response_version = r.version.map(|v| format!("1.{v}"));
            let get = |n| header(r.headers, n).map(|v| text(v, MAX_FIELD));
            tx.content_type = get("content-type");
            tx.server = get("server");
        }
        let method = tx.method.as_deref();
        let kind = if code == 101 || (method == Some("CONNECT") && (200..300).contains(&code)) {
            BodyKind::Tunnel
        } else if method == Some("HEAD") || code == 204 || code == 304 {
            BodyKind::None
        } else {
            match framing(r.headers, false) {
                Ok(Body::Length(0)) => BodyKind::None,
                Ok(b) => BodyKind::Body(b),
                Err(()) => {
                    tx.flags |= flags::RESP_MALFORMED;
                    BodyKind::Body(Body::UntilClose)
                }
            }
        };
        match kind {
            BodyKind::None => {
                tx.response_body_len = Some(0);
                tx.response_last_ns = Some(ts);
                e.resp_done = true;
                self.resp.cur = None;
                self.resp.phase = Phase::Idle;
            }
            BodyKind::Tunnel => {
                tx.response_body_len = Some(0);
                tx.response_last_ns = Some(ts);
                tx.flags |= flags::TUNNEL;
                e.resp_done = true;
                self.resp.cur = None;
                self.resp.phase = Phase::Tunnel;
                self.req.phase = Phase::Tunnel;
                // A request still being read ends here.
                if let Some(rd) = self.req.cur.take()
                    && let Some(re) = self.find(rd)
                {
                    re.req_done = true;
                }
            }
            BodyKind::Body(b) => {
                self.resp.body = Some(0);
                self.resp.phase = Phase::Body(b);
            }
        }
        self.flush_done(out);
    }

    fn body(&mut self, dir: Dir, ts: u64, data: &[u8], out: &mut Vec<L7Event>) -> usize {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        let Phase::Body(mut b) = side.phase else {
            return 0;
        };
        let (used, decoded, done, bad) = match &mut b {
            Body::Length(rem) => {
                let take = (*rem).min(data.len() as u64);
                *rem -= take;
                (take as usize, take, *rem == 0, false)
            }
            Body::UntilClose => (data.len(), data.len() as u64, false, false),
            Body::Chunked(c) => chunked(c, data),
        };
        side.phase = Phase::Body(b);
        if let Some(n) = side.body.as_mut() {
            *n += decoded;
        }
        if bad {
            side.body = None;
            self.finish_message(dir, ts, flags::REQ_MALFORMED, out);
            let side = match dir {
                Dir::ToServer => &mut self.req,
                Dir::ToClient => &mut self.resp,
            };
            side.phase = Phase::Resync { line_start: false };
        } else if done {
            self.finish_message(dir, ts, 0, out);
        }
        used
    }

    /// Ends the message `dir` is reading at `ts`; `req_flag` is a REQ_* flag to set
    /// (shifted to its RESP_* twin for responses). The side goes back to Idle.
    fn finish_message(&mut self, dir: Dir, ts: u64, req_flag: u16, out: &mut Vec<L7Event>) {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        side.phase = Phase::Idle;
        let body = side.body;
        let gap = core::mem::take(&mut side.gap_in_msg);
        let Some(d) = side.cur.take() else { return };
        if let Some(e) = self.find(d) {
            match dir {
                Dir::ToServer => {
                    e.tx.request_body_len = body;
                    e.tx.request_last_ns = Some(ts);
                    e.tx.request_gap_bytes += gap;
                    e.tx.flags |= req_flag;
                    e.req_done = true;
                }
                Dir::ToClient => {
                    e.tx.response_body_len = body;
                    e.tx.response_last_ns = Some(ts);
                    e.tx.response_gap_bytes += gap;
                    e.tx.flags |= req_flag << 1;
                    e.resp_done = true;
                }
            }
        }
        self.flush_done(out);
    }

    pub fn on_gap(&mut self, dir: Dir, ts: u64, len: u64, out: &mut Vec<L7Event>) {
        if len == 0 {
            return;
        }
        let (gap_flag, side) = match dir {
            Dir::ToServer => (flags::REQ_GAP, &mut self.req),
            Dir::ToClient => (flags::RESP_GAP, &mut self.resp),
        };
        match side.phase {
            Phase::Dead | Phase::Tunnel => {}
            Phase::Resync { .. } => side.phase = Phase::Resync { line_start: false },
            Phase::Body(Body::Length(rem)) if len <= rem => {
                side.gap_in_msg += len;
                side.body = side.body.map(|b| b + len);
                side.phase = Phase::Body(Body::Length(rem - len));
                self.mark(dir, gap_flag);
                if rem == len {
                    self.finish_message(dir, ts, 0, out);
                }
            }
            Phase::Body(Body::UntilClose) => {
                side.gap_in_msg += len;
                side.body = side.body.map(|b| b + len);
                self.mark(dir, gap_flag);
            }
            Phase::Body(Body::Chunked(Chunk::Data(rem))) if len < rem => {
                side.gap_in_msg += len;
                side.body = side.body.map(|b| b + len);
                side.phase = Phase::Body(Body::Chunked(Chunk::Data(rem - len)));
                self.mark(dir, gap_flag);
            }
            Phase::Body(b) => {
                // The gap runs past the body's end (or into chunk framing): what follows
                // is unknown. The body's length is known only for Content-Length, and
                // only then is the rest of the gap known to lie beyond the message.
                let known = match b {
                    Body::Length(rem) => Some(rem),
                    _ => None,
                };
                side.gap_in_msg += known.unwrap_or(len);
                side.body = match known {
                    Some(rem) => side.body.map(|n| n + rem),
                    None => None,
                };
                self.mark(dir, gap_flag);
                self.finish_message(dir, ts, 0, out);
                match known {
                    Some(rem) => self.lost_message(dir, ts, len - rem, out),
                    None => self.lose_sync(dir),
                }
            }
            Phase::Idle => self.lost_message(dir, ts, len, out),
            Phase::Headers => {
                let side = match dir {
                    Dir::ToServer => &mut self.req,
                    Dir::ToClient => &mut self.resp,
                };
                side.release_buf();
                side.gap_in_msg += len;
                self.mark(dir, gap_flag);
                self.abandon_message(dir, ts, out);
            }
        }
    }

    fn mark(&mut self, dir: Dir, flag: u16) {
        let cur = match dir {
            Dir::ToServer => self.req.cur,
            Dir::ToClient => self.resp.cur,
        };
        if let Some(d) = cur
            && let Some(e) = self.find(d)
        {
            e.tx.flags |= flag;
        }
    }

    /// A gap of `len` bytes between messages (or past one): assumed to hold one lost
    /// message. A request gets a placeholder transaction (fields unknown), a response
    /// completes the oldest unanswered transaction with unknown fields. Then resync.
    fn lost_message(&mut self, dir: Dir, ts: u64, len: u64, out: &mut Vec<L7Event>) {
        let _ = ts;
        if len < MIN_MESSAGE {
            // Too short for a message: only the line structure is lost.
            self.lose_sync(dir);
            return;
        }
        match dir {
            Dir::ToServer => {
                let d = self.new_entry(out);
                let e = self.find(d).unwrap();
                e.tx.flags |= flags::REQ_GAP;
                e.tx.request_gap_bytes = len;
                e.tx.request_body_len = None;
                e.req_done = true;
            }
            Dir::ToClient => {
                // Only if a request is waiting: otherwise nothing is known to be lost.
                if let Some(e) = self.queue.iter_mut().find(|e| !e.resp_done) {
                    e.tx.flags |= flags::RESP_GAP;
                    e.tx.response_gap_bytes += len;
                    e.resp_done = true;
                }
            }
        }
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        side.phase = Phase::Resync { line_start: false };
        side.buf.clear();
        self.flush_done(out);
    }

    fn lose_sync(&mut self, dir: Dir) {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        side.phase = Phase::Resync { line_start: false };
        side.buf.clear();
    }

    /// A gap inside a header block: the message's fields are unknown; its transaction is
    /// complete with what is known, and the side resyncs.
    fn abandon_message(&mut self, dir: Dir, ts: u64, out: &mut Vec<L7Event>) {
        let side = match dir {
            Dir::ToServer => &mut self.req,
            Dir::ToClient => &mut self.resp,
        };
        let gap = core::mem::take(&mut side.gap_in_msg);
        let first = side.msg_first_ns;
        side.phase = Phase::Resync { line_start: false };
        match dir {
            Dir::ToServer => {
                if let Some(d) = self.req.cur.take()
                    && let Some(e) = self.find(d)
                {
                    e.tx.request_gap_bytes += gap;
                    e.tx.request_last_ns = Some(ts);
                    e.tx.request_body_len = None;
                    e.req_done = true;
                }
            }
            Dir::ToClient => {
                let d = self.resp.cur.take();
                let d = match d {
                    Some(d) => d,
                    None => self.response_target(out),
                };
                if let Some(e) = self.find(d) {
                    e.tx.flags |= flags::RESP_GAP;
                    e.tx.response_gap_bytes += gap;
                    e.tx.response_first_ns = Some(first);
                    e.tx.response_last_ns = Some(ts);
                    e.resp_done = true;
                }
            }
        }
        self.flush_done(out);
    }

    pub fn on_end(&mut self, ts: u64, out: &mut Vec<L7Event>) {
        // A response read until close ends here.
        if let Phase::Body(b) = self.resp.phase {
            let flag = if b == Body::UntilClose {
                flags::RESP_UNTIL_CLOSE
            } else {
                flags::RESP_INCOMPLETE
            };
            if let Some(d) = self.resp.cur
                && let Some(e) = self.find(d)
            {
                e.tx.flags |= flag;
            }
            self.finish_message(Dir::ToClient, ts, 0, out);
        }
        let in_body = matches!(self.req.phase, Phase::Body(_));
        let body = self.req.body;
        if (in_body || self.req.phase == Phase::Headers)
            && let Some(d) = self.req.cur.take()
            && let Some(e) = self.find(d)
        {
            e.tx.flags |= flags::REQ_INCOMPLETE;
            if in_body {
                e.tx.request_body_len = body;
            }
            e.tx.request_last_ns.get_or_insert(ts);
            e.req_done = true;
        }
        if self.resp.phase == Phase::Headers
            && let Some(e) = self.queue.iter_mut().find(|e| !e.resp_done)
        {
            e.tx.flags |= flags::RESP_INCOMPLETE;
            e.tx.response_first_ns = Some(self.resp.msg_first_ns);
        }
        while let Some(mut e) = self.queue.pop_front() {
            if e.discard {
                continue;
            }
            if !e.resp_done && e.tx.status_code.is_none() {
                e.tx.flags |= flags::NO_RESPONSE;
            }
            self.emit(e.tx, out);
        }
        self.req.phase = Phase::Dead;
        self.resp.phase = Phase::Dead;
        self.req.buf = Vec::new();
        self.resp.buf = Vec::new();
    }
}

/// The end (exclusive) of a header block: after "\r\n\r\n" or "\n\n" (or "\n\r\n").
/// Line breaks are found with memchr (SIMD): the byte loop was a sixth of the HTTP
/// parser's time on real traffic.
fn find_headers_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &b[i..]) {
        let nl = i + p;
        let rest = &b[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if rest.is_empty() || (rest.len() == 1 && rest[0] == b'\r') {
            return None;
        }
        i = nl + 1;
    }
    None
}
