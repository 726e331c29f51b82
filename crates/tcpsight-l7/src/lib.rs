//! Application-layer (L7) parsers over in-order TCP stream bytes, sans-IO.
//!
//! The engine hands each connection's in-order, deduplicated payload of each direction
//! to an [`Analyzer`] ([`Analyzer::on_data`]), reports bytes it did not capture
//! ([`Analyzer::on_gap`]) and the connection's end ([`Analyzer::on_end`]). Timestamps
//! are capture-time nanoseconds passed in; nothing here reads a clock, does I/O or
//! spawns threads. Events ([`L7Event`]: finished HTTP transactions, TLS handshakes) are
//! pushed to the caller's vector; [`Analyzer::summary`] gives per-connection figures.
//!
//! # What each parser covers
//!
//! - **HTTP/1.0 and 1.1** ([`http`]): one [`HttpTransaction`] per request/response
//!   pair, keep-alive and pipelining included. Interim 1xx responses (100 Continue) do
//!   not end a transaction (the last one is kept in `info_code`/`info_msg`, as Zeek
//!   does). HEAD responses and 1xx/204/304 have no body; otherwise bodies are delimited
//!   by chunked framing (decoded byte by byte, extensions and trailers skipped), by
//!   Content-Length, or by the end of the connection. Bodies are counted, never
//!   buffered. 101 Switching Protocols and a 2xx answer to CONNECT end HTTP parsing (the
//!   bytes after are another protocol); after a CONNECT request, later client bytes are
//!   not parsed as requests.
//! - **TLS** ([`tls`]): SSLv3 and TLS 1.0–1.3 ClientHello and ServerHello (SSLv2
//!   hellos are not read): SNI, ALPN offered and chosen, versions offered and chosen
//!   (the ServerHello's supported_versions decides 1.3), cipher, resumption signs,
//!   JA3, JA3S and JA4, and when the handshake was established. One [`TlsHandshake`]
//!   per connection, when established or at the end.
//! - **DNS** ([`dns`]): [`dns::parse_message`] for one message (UDP payload or one
//!   length-prefixed TCP message) with A/AAAA/CNAME answers and CNAME chains resolved
//!   to the queried name, and [`dns::NameCache`], a bounded (client, server) -> name
//!   map. The analyzer itself only identifies DNS over TCP; the engine or a UDP path
//!   feeds messages to the parser.
//!
//! # Protocol identification (`app_proto`)
//!
//! From the first payload bytes of either direction, never from the port. The first
//! bytes of each direction (at most [`DETECT_MAX`] = 512) are kept until a rule
//! matches; when the direction that spoke first matches a rule, its match wins,
//! otherwise the other direction's. Rules (C = from the client, S = from the server):
//!
//! | proto | rule |
//! | --- | --- |
//! | http | C: a method (GET, POST, HEAD, PUT, DELETE, OPTIONS, CONNECT, TRACE, PATCH, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE) and a space; S: `HTTP/1.` |
//! | tls | C: record header 0x16 0x03 (minor <= 4), length 4..=18432, handshake type 1 (ClientHello); S: the same with type 2 (ServerHello) |
//! | ssh | C or S: `SSH-` |
//! | smtp | S: `220` + space or `-`, and C: `EHLO`/`HELO` (any case) |
//! | ftp | S: `220` + space or `-`, and C: `USER`/`AUTH`/`FEAT`/`SYST`/`OPTS`/`PASS` |
//! | imap | S: `* OK` or `* PREAUTH` |
//! | pop3 | S: `+OK` |
//! | redis | C: RESP array of bulk strings, `*` 1–5 digits `\r\n$` |
//! | mysql | S: initial handshake: 3-byte length 20..=1024, sequence 0, protocol 10, a NUL-terminated printable version |
//! | postgresql | C: StartupMessage (length 8..=10000, protocol 3.0 = 196608), SSLRequest or GSSENCRequest (length 8), CancelRequest (length 16) |
//! | mqtt | C: CONNECT (0x10), remaining length, protocol name `MQTT` (3.1.1, 5) or `MQIsdp` (3.1) |
//! | rdp | C: TPKT 0x03 0x00 (length >= 11) + X.224 Connection Request (0xE0); S: the same with Connection Confirm (0xD0) |
//! | smb | C or S: NetBIOS session message (type 0) then `\xffSMB`, `\xfeSMB` or `\xfdSMB` |
//! | dns | C: 2-byte length 12.., then a query (QR 0) whose header and questions parse, with at least one question; S: the same for a response (QR 1) |
//!
//! SMTP and FTP both greet with "220": the client's first command decides; if the
//! client says something else (or nothing before the end), the banner's first line
//! decides when it contains "SMTP" (e.g. "ESMTP") or "FTP"; otherwise unknown. When
//! every rule has failed on the bytes seen, or a prefix buffer is full, the protocol
//! is `unknown` and [`Analyzer::on_data`] returns false.
//!
//! # Bounds
//!
//! An [`Analyzer`] is 72 bytes inline (a test keeps it under 200);
//! [`Analyzer::state_bytes`] gives the live figure with its heap: 176 bytes fresh,
//! about 1.2 KB inside an HTTP header block, 2.7 KB with five pipelined requests
//! waiting, 0.8 KB once a TLS ClientHello is read (measured by the `analyzer_is_small`
//! test). Upper bounds while parsing: detection keeps at most 2 × 512 bytes (and 32
//! timestamps a direction), freed once the protocol is known. HTTP keeps a header block
//! of at most 16 KB per direction while reading it and up to 32 transactions waiting for
//! their responses, each with strings of at most 512 bytes (URI 4096): about 37 KB worst
//! case a transaction, a few hundred bytes typically. TLS keeps at most 32 KB of
//! handshake per direction until that direction's hello is read, then only its fixed
//! fields (under 1 KB). A gap before any payload leaves the protocol unknown.
//! After the TLS handshake is emitted, an unknown or non-parsed protocol is identified,
//! or HTTP gave up in both directions, no buffer is held and `on_data` returns false.
//!
//! # Dependencies
//!
//! - `httparse`: the HTTP/1.x request/status line and header parser used by hyper;
//!   zero-copy, no allocation, fuzzed upstream; it accepts a complete header block we
//!   buffer ourselves.
//! - `tls-parser` (Rusticata): TLS handshake message decoding (ClientHello,
//!   ServerHello, SNI/ALPN/supported_versions extensions) and the IANA cipher-suite
//!   table for names. Record framing and the extension walk for fingerprints are done
//!   here, since JA3/JA4 need raw codes in wire order.
//! - `md-5` and `sha2` (RustCrypto): JA3/JA3S are MD5, JA4 truncated SHA-256.
//! - DNS: a hand-written parser (see [`dns`] for why not hickory-proto/simple-dns).
//! - `hashbrown`/`foldhash`: the name cache's table, as in tcpsight-core.
//!
//! # Differences from Zeek and tshark
//!
//! - `uri` is the request target as sent (not percent-decoded as Zeek's `uri`), as
//!   tshark's `http.request.uri`.
//! - `version` is the request's version; the response's is `response_version` (Zeek
//!   has one `version`, the reply's).
//! - Strings are cut at 512 bytes (URI 4096) and made UTF-8 lossily.
//! - Versions are named "TLSv1.2"/"TLSv1.3" (Zeek: "TLSv12"/"TLSv13").
//! - TLS 1.3 `established` is the client's first application_data record after the
//!   ServerHello (its encrypted Finished, in practice); Zeek's is similar (it waits for
//!   encrypted records from both sides). TLS <= 1.2: when both ChangeCipherSpec
//!   records were seen, at the second one (Zeek: at the server's Finished).
//! - A gap in the response direction between messages (16 bytes or more) is taken to
//!   hold exactly one lost response: the oldest unanswered request gets it (fields
//!   unknown, flag `resp_gap`); a gap in the request direction makes a placeholder
//!   transaction (flag `req_gap`). Zeek instead stops parsing the direction's messages
//!   until it resyncs, and tshark marks the bytes as continuation.

pub mod detect;
pub mod dns;
pub mod http;
pub mod observe;
pub mod tls;

pub use detect::AppProto;
pub use http::HttpTransaction;
pub use observe::{Anonymized, L7, L7Log};
pub use tls::TlsHandshake;

use tcpsight_core::Value;

/// The most bytes of each direction kept for identification.
pub const DETECT_MAX: usize = 512;
const DETECT_SEGS: usize = 32;

/// The direction of bytes. The client is the side that sent the SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    ToServer,
    ToClient,
}

impl Dir {
    fn idx(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }
}

/// Something an analyzer finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L7Event {
    Http(HttpTransaction),
    Tls(TlsHandshake),
}

/// Per-connection figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub app_proto: AppProto,
    /// TLS SNI, or the Host header of the first HTTP request that had one.
    pub server_name: Option<String>,
    /// HTTP transactions with a request seen.
    pub http_requests: u32,
    pub http_4xx: u32,
    pub http_5xx: u32,
    /// The negotiated TLS version ("TLSv1.3").
    pub tls_version: Option<&'static str>,
}

/// The first bytes of each direction, with the timestamps they came at.
#[derive(Debug, Default)]
struct Prefix {
    bytes: [Vec<u8>; 2],
    /// (end offset, ts) of each delivery; the last one absorbs overflow.
    segs: [Vec<(u32, u64)>; 2],
    /// Which direction's first byte came first.
    first: Option<Dir>,
}

#[derive(Debug)]
enum State {
    Detecting(Box<Prefix>),
    Http(Box<http::Http>),
    Tls(Box<tls::Tls>),
    /// Identified (or unknown): nothing more is parsed.
    Done,
}

/// The L7 analyzer of one connection.
#[derive(Debug)]
pub struct Analyzer {
    proto: AppProto,
    state: State,
    /// Figures kept after a parser's state is dropped.
    summary_http: (u32, u32, u32),
    server_name: Option<String>,
    tls_version: Option<&'static str>,
    ended: bool,
    details: bool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

impl Analyzer {
    pub fn new() -> Self {
        Analyzer {
            proto: AppProto::Unknown,
            state: State::Detecting(Box::default()),
            summary_http: (0, 0, 0),
            server_name: None,
            tls_version: None,
            ended: false,
            details: true,
        }
    }

    /// Whether HTTP transactions carry their text fields (see `http::Http::details`);
    /// on by default. Off, the record's figures are the same, the log lines thinner.
    pub fn with_details(mut self, details: bool) -> Self {
        self.details = details;
        self
    }

    /// In-order new bytes of `dir` (never repeated), seen at `ts_ns`. Events are pushed
    /// to `out`. Returns false when the analyzer needs no more payload of this
    /// connection in either direction (unknown or non-parsed protocol identified, TLS
    /// handshake done, HTTP given up or tunnelled in both directions).
    pub fn on_data(&mut self, dir: Dir, ts_ns: u64, data: &[u8], out: &mut Vec<L7Event>) -> bool {
        if self.ended {
            return false;
        }
        match &mut self.state {
            State::Detecting(p) => {
                if data.is_empty() {
                    return true;
                }
                let i = dir.idx();
                p.first.get_or_insert(dir);
                let room = DETECT_MAX - p.bytes[i].len();
                let take = room.min(data.len());
                p.bytes[i].extend_from_slice(&data[..take]);
                let end = p.bytes[i].len() as u32;
                if p.segs[i].len() < DETECT_SEGS {
                    p.segs[i].push((end, ts_ns));
                } else if let Some(last) = p.segs[i].last_mut() {
                    last.0 = end;
                }
                let full = p.bytes[i].len() >= DETECT_MAX;
                let d = detect::detect(
                    &p.bytes[0],
                    &p.bytes[1],
                    p.first == Some(Dir::ToServer),
                    full,
                );
                match d {
                    detect::Detect::More => true,
                    detect::Detect::Found(proto) => {
                        let State::Detecting(p) = core::mem::replace(&mut self.state, State::Done)
                        else {
                            unreachable!()
                        };
                        self.start(proto, *p, out);
                        // The part of this delivery beyond the prefix buffer.
                        if take < data.len() {
                            self.feed(dir, ts_ns, &data[take..], out);
                        }
                        self.wants_more()
                    }
                }
            }
            _ => {
                self.feed(dir, ts_ns, data, out);
                self.wants_more()
            }
        }
    }

    fn start(&mut self, proto: AppProto, p: Prefix, out: &mut Vec<L7Event>) {
        self.proto = proto;
        self.state = match proto {
            AppProto::Http => {
                let mut h = Box::new(http::Http::new());
                h.details = self.details;
                State::Http(h)
            }
            AppProto::Tls => State::Tls(Box::default()),
            _ => State::Done,
        };
        if matches!(self.state, State::Done) {
            return;
        }
        // Replay the prefixes, the first speaker's first, with their timestamps.
        let first = p.first.unwrap_or(Dir::ToServer);
        let second = match first {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        };
        for dir in [first, second] {
            let i = dir.idx();
            let mut start = 0usize;
            for &(end, ts) in &p.segs[i] {
                let end = end as usize;
                if end > start {
                    self.feed(dir, ts, &p.bytes[i][start..end], out);
                }
                start = end;
            }
        }
    }

    fn feed(&mut self, dir: Dir, ts: u64, data: &[u8], out: &mut Vec<L7Event>) {
        match &mut self.state {
            State::Http(h) => {
                h.on_data(dir, ts, data, out);
                if !h.wants_more() {
                    self.finish_http();
                }
            }
            State::Tls(t) => {
                t.on_data(dir, ts, data, out);
                self.note_tls();
            }
            _ => {}
        }
    }

    fn note_tls(&mut self) {
        if let State::Tls(t) = &self.state {
            let hs = t.handshake();
            if self.server_name.is_none() {
                self.server_name.clone_from(&hs.server_name);
            }
            self.tls_version = hs.version;
            if !t.wants_more() {
                self.state = State::Done;
            }
        }
    }

    fn finish_http(&mut self) {
        if let State::Http(h) = &self.state {
            self.summary_http = (h.requests, h.status_4xx, h.status_5xx);
            if self.server_name.is_none() {
                self.server_name.clone_from(&h.first_host);
            }
            self.state = State::Done;
        }
    }

    fn wants_more(&self) -> bool {
        !matches!(self.state, State::Done)
    }

    /// `len` bytes of `dir` were not captured.
    pub fn on_gap(&mut self, dir: Dir, ts_ns: u64, len: u64, out: &mut Vec<L7Event>) {
        if self.ended {
            return;
        }
        match &mut self.state {
            State::Detecting(p) => {
                // What came before the gap is all identification will see of `dir`.
                let i = dir.idx();
                if p.bytes[i].is_empty() && p.bytes[1 - i].is_empty() {
                    // Nothing seen yet: the first bytes are lost, identification is
                    // not possible from this direction's start.
                    self.proto = AppProto::Unknown;
                    self.state = State::Done;
                    return;
                }
                let d = detect::detect(
                    &p.bytes[0],
                    &p.bytes[1],
                    p.first == Some(Dir::ToServer),
                    true,
                );
                let detect::Detect::Found(proto) = d else {
                    return;
                };
                let State::Detecting(p) = core::mem::replace(&mut self.state, State::Done) else {
                    unreachable!()
                };
                self.start(proto, *p, out);
                self.on_gap(dir, ts_ns, len, out);
            }
            State::Http(h) => {
                h.on_gap(dir, ts_ns, len, out);
                if !h.wants_more() {
                    self.finish_http();
                }
            }
            State::Tls(t) => {
                t.on_gap(dir, ts_ns, len, out);
                self.note_tls();
            }
            State::Done => {}
        }
    }

    /// The connection ended at `ts_ns`: pending transactions and the handshake are
    /// emitted. Later calls do nothing.
    pub fn on_end(&mut self, ts_ns: u64, out: &mut Vec<L7Event>) {
        if self.ended {
            return;
        }
        self.ended = true;
        match core::mem::replace(&mut self.state, State::Done) {
            State::Detecting(p) => {
                let d = detect::detect(
                    &p.bytes[0],
                    &p.bytes[1],
                    p.first == Some(Dir::ToServer),
                    true,
                );
                if let detect::Detect::Found(proto) = d {
                    self.start(proto, *p, out);
                    self.ended = false;
                    self.on_end(ts_ns, out);
                }
            }
            State::Http(mut h) => {
                h.on_end(ts_ns, out);
                self.state = State::Http(h);
                self.finish_http();
            }
            State::Tls(mut t) => {
                t.on_end(out);
                self.state = State::Tls(t);
                self.note_tls();
                self.state = State::Done;
            }
            State::Done => {}
        }
    }

    pub fn summary(&self) -> Summary {
        let (mut reqs, mut c4, mut c5) = self.summary_http;
        let mut name = self.server_name.clone();
        if let State::Http(h) = &self.state {
            (reqs, c4, c5) = (h.requests, h.status_4xx, h.status_5xx);
            if name.is_none() {
                name.clone_from(&h.first_host);
            }
        }
        Summary {
            app_proto: self.proto,
            server_name: name,
            http_requests: reqs,
            http_4xx: c4,
            http_5xx: c5,
            tls_version: self.tls_version,
        }
    }

    /// The protocol identified so far (`Unknown` while undecided).
    pub fn app_proto(&self) -> AppProto {
        self.proto
    }

    /// Bytes held now: the analyzer inline plus its parsers' buffers and strings.
    pub fn state_bytes(&self) -> usize {
        core::mem::size_of::<Analyzer>()
            + self.server_name.as_ref().map_or(0, |s| s.capacity())
            + match &self.state {
                State::Detecting(p) => {
                    core::mem::size_of::<Prefix>()
                        + p.bytes.iter().map(|b| b.capacity()).sum::<usize>()
                        + p.segs.iter().map(|s| s.capacity() * 16).sum::<usize>()
                }
                State::Http(h) => h.state_bytes(),
                State::Tls(t) => t.state_bytes(),
                State::Done => 0,
            }
    }
}

pub(crate) fn opt_str(s: &Option<String>) -> Value<'_> {
    s.as_deref().map_or(Value::Null, Value::Str)
}

pub(crate) fn opt_u64(v: Option<u64>) -> Value<'static> {
    v.map_or(Value::Null, Value::U64)
}

/// A list as one comma-joined string ("" when empty).
pub(crate) fn join(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut s = String::new();
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(x.as_ref());
    }
    s
}
