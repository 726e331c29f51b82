//! TLS handshake observation: ClientHello, ServerHello, and when the handshake is done.
//!
//! The record layer is framed here (5-byte header, then the body is skipped without
//! buffering unless it carries a hello still to be read); handshake messages spanning
//! records are reassembled in a buffer of at most [`MAX_HANDSHAKE`] bytes per direction,
//! kept only until that direction's hello is parsed. The hello itself is decoded by
//! `tls-parser`; the extension block is walked here as raw (type, length, data) triples
//! because JA3/JA4 need the exact wire order and codes, and `tls-parser` decodes each of
//! SNI, ALPN and supported_versions.

use md5::Md5;
use sha2::{Digest, Sha256};
use tcpsight_core::Value;
use tls_parser::{TlsMessage, TlsMessageHandshake};

use crate::{Dir, L7Event, join, opt_str};

/// The largest handshake message reassembled (a ClientHello with a post-quantum key
/// share is about 1.8 KB; 32 KB leaves room for padding and many extensions).
pub const MAX_HANDSHAKE: usize = 32 * 1024;
/// The largest record body accepted (2^14 plus the 2048 bytes of expansion TLS allows).
const MAX_RECORD: u32 = 16384 + 2048;

/// SHA-256("HelloRetryRequest"): a ServerHello with this random is a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

pub mod flags {
    /// Bytes of the ClientHello (or of the records before it) were not captured.
    pub const CLIENT_GAP: u16 = 1 << 0;
    pub const SERVER_GAP: u16 = 1 << 1;
    /// A hello did not parse.
    pub const CLIENT_HELLO_MALFORMED: u16 = 1 << 2;
    pub const SERVER_HELLO_MALFORMED: u16 = 1 << 3;
    /// A handshake message was larger than the reassembly bound.
    pub const HELLO_TOO_LARGE: u16 = 1 << 4;
    /// The server answered with a HelloRetryRequest first.
    pub const HELLO_RETRY: u16 = 1 << 5;
    /// A record header was not TLS (framing lost): that direction gave up.
    pub const BAD_RECORD: u16 = 1 << 6;
    /// An alert record was seen before the handshake was established.
    pub const ALERT: u16 = 1 << 7;

    pub const NAMES: [(u16, &str); 8] = [
        (CLIENT_GAP, "client_gap"),
        (SERVER_GAP, "server_gap"),
        (CLIENT_HELLO_MALFORMED, "client_hello_malformed"),
        (SERVER_HELLO_MALFORMED, "server_hello_malformed"),
        (HELLO_TOO_LARGE, "hello_too_large"),
        (HELLO_RETRY, "hello_retry"),
        (BAD_RECORD, "bad_record"),
        (ALERT, "alert"),
    ];
}

/// What the handshake showed. Emitted once per connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsHandshake {
    /// The negotiated version ("TLSv1.2"): ServerHello's supported_versions if present,
    /// else its legacy version.
    pub version: Option<&'static str>,
    /// The negotiated cipher suite: IANA name, or "0x" and 4 hex digits if unknown.
    pub cipher: Option<String>,
    /// SNI host name (the first host_name entry).
    pub server_name: Option<String>,
    pub alpn_offered: Vec<String>,
    pub alpn_chosen: Option<String>,
    /// ClientHello's legacy version field.
    pub client_version: Option<&'static str>,
    /// Versions the client offered: supported_versions (GREASE removed, client order),
    /// or the legacy version alone when the extension is absent.
    pub versions_offered: Vec<&'static str>,
    /// The server resumed an earlier session (see `resumption` for the sign).
    pub resumed: bool,
    /// "session_id" (the server echoed the client's non-empty session id), "psk"
    /// (TLS 1.3 ServerHello with pre_shared_key), "ticket" (abbreviated TLS <= 1.2
    /// handshake after the client offered a session ticket), "abbreviated" (server
    /// ChangeCipherSpec before the client's, without any of the others).
    pub resumption: Option<&'static str>,
    pub established: bool,
    pub ja3: Option<String>,
    pub ja3s: Option<String>,
    pub ja4: Option<String>,
    /// First byte of the ClientHello's record.
    pub client_first_ns: Option<u64>,
    /// First byte of the ServerHello's record (the final one after a HelloRetryRequest).
    pub server_hello_ns: Option<u64>,
    pub established_ns: Option<u64>,
    /// [`flags`] bits.
    pub flags: u16,
}

impl TlsHandshake {
    /// Visits every field in schema order: the one definition of the tls log's schema.
    /// Lists (alpn_offered, versions_offered, flags) are comma-joined strings.
    /// Values borrow from `self` or from a joined list built for the call, so `f` takes
    /// any lifetime.
    pub fn for_each_field(&self, mut f: impl FnMut(&'static str, Value<'_>)) {
        f("version", self.version.map_or(Value::Null, Value::Str));
        f("cipher", opt_str(&self.cipher));
        f("server_name", opt_str(&self.server_name));
        f("alpn_offered", Value::Str(&join(&self.alpn_offered)));
        f("alpn_chosen", opt_str(&self.alpn_chosen));
        f(
            "client_version",
            self.client_version.map_or(Value::Null, Value::Str),
        );
        f(
            "versions_offered",
            Value::Str(&join(&self.versions_offered)),
        );
        f("resumed", Value::Bool(self.resumed));
        f(
            "resumption",
            self.resumption.map_or(Value::Null, Value::Str),
        );
        f("established", Value::Bool(self.established));
        f("ja3", opt_str(&self.ja3));
        f("ja3s", opt_str(&self.ja3s));
        f("ja4", opt_str(&self.ja4));
        let t = |v: Option<u64>| v.map_or(Value::Null, Value::Epoch);
        f("client_first", t(self.client_first_ns));
        f("server_hello", t(self.server_hello_ns));
        f("established_at", t(self.established_ns));
        let d = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Value::Micros(b.saturating_sub(a)),
            _ => Value::Null,
        };
        f("hello_us", d(self.client_first_ns, self.server_hello_ns));
        f("setup_us", d(self.client_first_ns, self.established_ns));
        let names = flags::NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n);
        f("flags", Value::Str(&join(names)));
    }

    pub fn field_names() -> Vec<&'static str> {
        let mut v = Vec::new();
        TlsHandshake::default().for_each_field(|n, _| v.push(n));
        v
    }
}

/// The name of a protocol version code, as in the logs.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0002 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv1.0",
        0x0302 => "TLSv1.1",
        0x0303 => "TLSv1.2",
        0x0304 => "TLSv1.3",
        0x7f00..=0x7fff => "TLSv1.3-draft",
        0xfeff => "DTLSv1.0",
        0xfefd => "DTLSv1.2",
        0xfefc => "DTLSv1.3",
        _ => "unknown",
    }
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// What JA3/JA4 need from a ClientHello, in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloSummary {
    pub version: u16,
    pub ciphers: Vec<u16>,
    pub extensions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub sig_algs: Vec<u16>,
    pub supported_versions: Vec<u16>,
    pub alpn: Vec<Vec<u8>>,
    pub sni: Option<String>,
}

fn join_dec<T: core::fmt::Display>(v: impl Iterator<Item = T>) -> String {
    let mut s = String::new();
    for (i, x) in v.enumerate() {
        if i > 0 {
            s.push('-');
        }
        s.push_str(&x.to_string());
    }
    s
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// JA3: MD5 of "version,ciphers,extensions,groups,point formats" (decimal, '-'
/// joined, GREASE removed from ciphers, extensions and groups).
pub fn ja3_string(h: &HelloSummary) -> String {
    format!(
        "{},{},{},{},{}",
        h.version,
        join_dec(h.ciphers.iter().filter(|c| !is_grease(**c))),
        join_dec(h.extensions.iter().filter(|c| !is_grease(**c))),
        join_dec(h.groups.iter().filter(|c| !is_grease(**c))),
        join_dec(h.point_formats.iter()),
    )
}

pub fn ja3(h: &HelloSummary) -> String {
    hex(&Md5::digest(ja3_string(h).as_bytes()))
}

/// JA3S: MD5 of "version,cipher,extensions" of the ServerHello.
pub fn ja3s(version: u16, cipher: u16, extensions: &[u16]) -> String {
    let s = format!(
        "{},{},{}",
        version,
        cipher,
        join_dec(extensions.iter().filter(|c| !is_grease(**c)))
    );
    hex(&Md5::digest(s.as_bytes()))
}

fn sha12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_string();
    }
    hex(&Sha256::digest(s.as_bytes())[..6])
}

fn hex4_list(v: &[u16]) -> String {
    let mut s = String::new();
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{x:04x}"));
    }
    s
}

/// JA4 (FoxIO, TCP): `t` + version + `d`/`i` (SNI present or not) + cipher count +
/// extension count (2 digits each, GREASE excluded, at most 99) + first and last
/// character of the first ALPN value ("00" if none; its hex's first and last digit if
/// either byte is not alphanumeric), then `_` + the first 12 hex digits of SHA-256 of
/// the sorted cipher list, then `_` + the same of the sorted extension list without SNI
/// and ALPN, followed by `_` and the signature algorithms in wire order when there are
/// any. Lists are 4-digit lower-case hex joined by ','; an empty list hashes to
/// "000000000000".
pub fn ja4(h: &HelloSummary) -> String {
    let version = h
        .supported_versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .max()
        .unwrap_or(h.version);
    let ver = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    };
    let mut ciphers: Vec<u16> = h
        .ciphers
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let exts: Vec<u16> = h
        .extensions
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let sni = if exts.contains(&0) { 'd' } else { 'i' };
    let alpn = match h.alpn.first() {
        Some(a) if !a.is_empty() => {
            let (f, l) = (a[0], a[a.len() - 1]);
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{}{}", f as char, l as char)
            } else {
                let hx = hex(a);
                let b = hx.as_bytes();
                format!("{}{}", b[0] as char, b[b.len() - 1] as char)
            }
        }
        _ => "00".to_string(),
    };
    let a = format!(
        "t{ver}{sni}{:02}{:02}{alpn}",
        ciphers.len().min(99),
        exts.len().min(99)
    );
    ciphers.sort_unstable();
    let b = sha12(&hex4_list(&ciphers));
    let mut e: Vec<u16> = exts.into_iter().filter(|&x| x != 0 && x != 0x10).collect();
    e.sort_unstable();
    let sig: Vec<u16> = h
        .sig_algs
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let c = if e.is_empty() {
        "000000000000".to_string()
    } else if sig.is_empty() {
        sha12(&hex4_list(&e))
    } else {
        sha12(&format!("{}_{}", hex4_list(&e), hex4_list(&sig)))
    };
    format!("{a}_{b}_{c}")
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// Walks an extension block: (type, data) in wire order; stops at a malformed one.
fn walk_extensions(mut b: &[u8], mut f: impl FnMut(u16, &[u8], &[u8])) {
    while b.len() >= 4 {
        let t = u16::from_be_bytes([b[0], b[1]]);
        let l = u16::from_be_bytes([b[2], b[3]]) as usize;
        if b.len() < 4 + l {
            return;
        }
        f(t, &b[4..4 + l], &b[..4 + l]);
        b = &b[4 + l..];
    }
}

/// Reads the parts of a ClientHello handshake message (header included) that the log
/// and the fingerprints need. `None` if it does not parse.
pub fn parse_client_hello(msg: &[u8]) -> Option<(HelloSummary, bool, bool)> {
    let (_, m) = tls_parser::parse_tls_message_handshake(msg).ok()?;
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = m else {
        return None;
    };
    let mut h = HelloSummary {
        version: ch.version.0,
        ciphers: ch.ciphers.iter().map(|c| c.0).collect(),
        ..Default::default()
    };
    let mut ticket = false;
    let has_session_id = ch.session_id.is_some_and(|s| !s.is_empty());
    if let Some(ext) = ch.ext {
        walk_extensions(ext, |t, data, whole| {
            h.extensions.push(t);
            match t {
                10 if data.len() >= 2 => h.groups = u16s(&data[2..]),
                11 if !data.is_empty() => {
                    let n = (data[0] as usize).min(data.len() - 1);
                    h.point_formats = data[1..1 + n].to_vec();
                }
                13 if data.len() >= 2 => h.sig_algs = u16s(&data[2..]),
                35 => ticket = !data.is_empty(),
                0 | 16 | 43 => match tls_parser::parse_tls_extension(whole) {
                    Ok((_, tls_parser::TlsExtension::SNI(names))) => {
                        h.sni = names
                            .iter()
                            .find(|(t, _)| t.0 == 0)
                            .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                    }
                    Ok((_, tls_parser::TlsExtension::ALPN(list))) => {
                        h.alpn = list.iter().map(|p| p.to_vec()).collect();
                    }
                    Ok((_, tls_parser::TlsExtension::SupportedVersions(v))) => {
                        h.supported_versions = v.iter().map(|v| v.0).collect();
                    }
                    _ => {}
                },
                _ => {}
            }
        });
    }
    Some((h, ticket, has_session_id))
}

struct ServerHello {
    version: u16,
    cipher: u16,
    extensions: Vec<u16>,
    selected_version: Option<u16>,
    alpn: Option<String>,
    psk: bool,
    session_id: Vec<u8>,
    retry: bool,
}

fn parse_server_hello(msg: &[u8]) -> Option<ServerHello> {
    let (_, m) = tls_parser::parse_tls_message_handshake(msg).ok()?;
    let TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)) = m else {
        return None;
    };
    let mut s = ServerHello {
        version: sh.version.0,
        cipher: sh.cipher.0,
        extensions: Vec::new(),
        selected_version: None,
        alpn: None,
        psk: false,
        session_id: sh.session_id.unwrap_or(&[]).to_vec(),
        retry: sh.random == HRR_RANDOM,
    };
    if let Some(ext) = sh.ext {
        walk_extensions(ext, |t, data, _| {
            s.extensions.push(t);
            match t {
                43 if data.len() == 2 => {
                    s.selected_version = Some(u16::from_be_bytes([data[0], data[1]]))
                }
                41 => s.psk = true,
                16 if data.len() >= 3 => {
                    let n = (data[2] as usize).min(data.len() - 3);
                    s.alpn = Some(String::from_utf8_lossy(&data[3..3 + n]).into_owned());
                }
                _ => {}
            }
        });
    }
    Some(s)
}

/// The name of a cipher suite code.
pub fn cipher_name(id: u16) -> String {
    match tls_parser::TlsCipherSuite::from_id(id) {
        Some(c) => c.name.to_string(),
        None => format!("0x{id:04x}"),
    }
}

#[derive(Debug, Default)]
struct DirState {
    hdr: [u8; 5],
    hdr_len: u8,
    /// Type and bytes left of the record being read (`None` between records).
    record: Option<(u8, u32)>,
    /// Record started at (for the hello's timestamp).
    record_ns: u64,
    /// Handshake bytes being reassembled while the hello is still to be read.
    hs: Vec<u8>,
    /// Timestamp of the record that began the message in `hs`.
    hs_first_ns: u64,
    want_hello: bool,
    dead: bool,
    ccs_ns: Option<u64>,
}

/// TLS state of one connection.
#[derive(Debug)]
pub struct Tls {
    c: DirState,
    s: DirState,
    hs: TlsHandshake,
    version_code: Option<u16>,
    client_ticket: bool,
    client_session_id: Vec<u8>,
    emitted: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls::new()
    }
}

impl Tls {
    pub fn new() -> Tls {
        let mut t = Tls {
            c: DirState::default(),
            s: DirState::default(),
            hs: TlsHandshake::default(),
            version_code: None,
            client_ticket: false,
            client_session_id: Vec::new(),
            emitted: false,
        };
        t.c.want_hello = true;
        t.s.want_hello = true;
        t
    }

    pub fn handshake(&self) -> &TlsHandshake {
        &self.hs
    }

    pub fn wants_more(&self) -> bool {
        !self.emitted
    }

    pub fn state_bytes(&self) -> usize {
        let h = &self.hs;
        core::mem::size_of::<Tls>()
            + self.c.hs.capacity()
            + self.s.hs.capacity()
            + self.client_session_id.capacity()
            + h.cipher.as_ref().map_or(0, |s| s.capacity())
            + h.server_name.as_ref().map_or(0, |s| s.capacity())
            + h.alpn_offered
                .iter()
                .map(|s| s.capacity() + 24)
                .sum::<usize>()
            + h.alpn_chosen.as_ref().map_or(0, |s| s.capacity())
            + h.versions_offered.capacity() * 16
            + [&h.ja3, &h.ja3s, &h.ja4]
                .iter()
                .map(|s| s.as_ref().map_or(0, |s| s.capacity()))
                .sum::<usize>()
    }

    pub fn on_data(&mut self, dir: Dir, ts: u64, data: &[u8], out: &mut Vec<L7Event>) {
        self.records(dir, ts, data, out);
        self.give_up_if_dead(out);
    }

    /// Both directions lost their record framing: nothing more can be learnt.
    fn give_up_if_dead(&mut self, out: &mut Vec<L7Event>) {
        if self.c.dead && self.s.dead {
            self.emit(out);
        }
    }

    fn records(&mut self, dir: Dir, ts: u64, mut data: &[u8], out: &mut Vec<L7Event>) {
        while !data.is_empty() && !self.emitted {
            let d = match dir {
                Dir::ToServer => &mut self.c,
                Dir::ToClient => &mut self.s,
            };
            if d.dead {
                return;
            }
            match d.record {
                None => {
                    let need = 5 - d.hdr_len as usize;
                    let take = need.min(data.len());
                    if d.hdr_len == 0 {
                        d.record_ns = ts;
                    }
                    d.hdr[d.hdr_len as usize..d.hdr_len as usize + take]
                        .copy_from_slice(&data[..take]);
                    d.hdr_len += take as u8;
                    data = &data[take..];
                    if d.hdr_len < 5 {
                        return;
                    }
                    d.hdr_len = 0;
                    let h = d.hdr;
                    let len = u16::from_be_bytes([h[3], h[4]]) as u32;
                    if !(20..=24).contains(&h[0]) || h[1] != 3 || h[2] > 4 || len > MAX_RECORD {
                        d.dead = true;
                        d.hs = Vec::new();
                        self.hs.flags |= flags::BAD_RECORD;
                        return;
                    }
                    d.record = Some((h[0], len));
                    if len == 0 {
                        self.record_end(dir, ts, h[0], out);
                    }
                }
                Some((typ, rem)) => {
                    let take = (rem as usize).min(data.len());
                    if typ == 22 && d.want_hello {
                        if d.hs.is_empty() {
                            d.hs_first_ns = d.record_ns;
                        }
                        if d.hs.len() + take > MAX_HANDSHAKE {
                            d.want_hello = false;
                            d.hs = Vec::new();
                            self.hs.flags |= flags::HELLO_TOO_LARGE;
                        } else {
                            d.hs.extend_from_slice(&data[..take]);
                        }
                    }
                    let rem = rem - take as u32;
                    data = &data[take..];
                    d.record = if rem == 0 { None } else { Some((typ, rem)) };
                    if typ == 22 && d.want_hello {
                        self.handshake_messages(dir);
                    }
                    if rem == 0 {
                        self.record_end(dir, ts, typ, out);
                    }
                }
            }
        }
    }

    /// Reads the complete handshake messages buffered for `dir`.
    fn handshake_messages(&mut self, dir: Dir) {
        loop {
            let d = match dir {
                Dir::ToServer => &mut self.c,
                Dir::ToClient => &mut self.s,
            };
            if !d.want_hello || d.hs.len() < 4 {
                return;
            }
            let len = u32::from_be_bytes([0, d.hs[1], d.hs[2], d.hs[3]]) as usize;
            if 4 + len > MAX_HANDSHAKE {
                d.want_hello = false;
                d.hs = Vec::new();
                self.hs.flags |= flags::HELLO_TOO_LARGE;
                return;
            }
            if d.hs.len() < 4 + len {
                return;
            }
            let msg: Vec<u8> = d.hs.drain(..4 + len).collect();
            let first_ns = d.hs_first_ns;
            d.hs_first_ns = d.record_ns;
            match (dir, msg[0]) {
                (Dir::ToServer, 1) => self.client_hello(&msg, first_ns),
                (Dir::ToClient, 2) => self.server_hello(&msg, first_ns),
                _ => {}
            }
        }
    }

    fn client_hello(&mut self, msg: &[u8], ts: u64) {
        self.c.want_hello = false;
        self.c.hs = Vec::new();
        let Some((h, ticket, _)) = parse_client_hello(msg) else {
            self.hs.flags |= flags::CLIENT_HELLO_MALFORMED;
            return;
        };
        if let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) =
            tls_parser::parse_tls_message_handshake(msg)
        {
            self.client_session_id = ch.session_id.unwrap_or(&[]).to_vec();
        }
        self.client_ticket = ticket;
        let hs = &mut self.hs;
        hs.client_first_ns = Some(ts);
        hs.server_name = h.sni.clone();
        hs.alpn_offered = h
            .alpn
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        hs.client_version = Some(version_name(h.version));
        hs.versions_offered = if h.extensions.contains(&43) {
            h.supported_versions
                .iter()
                .filter(|v| !is_grease(**v))
                .map(|&v| version_name(v))
                .collect()
        } else {
            vec![version_name(h.version)]
        };
        hs.ja3 = Some(ja3(&h));
        hs.ja4 = Some(ja4(&h));
    }

    fn server_hello(&mut self, msg: &[u8], ts: u64) {
        let Some(sh) = parse_server_hello(msg) else {
            self.s.want_hello = false;
            self.s.hs = Vec::new();
            self.hs.flags |= flags::SERVER_HELLO_MALFORMED;
            return;
        };
        if sh.retry {
            // A HelloRetryRequest: the real ServerHello follows the second ClientHello.
            self.hs.flags |= flags::HELLO_RETRY;
            return;
        }
        self.s.want_hello = false;
        self.s.hs = Vec::new();
        let v = sh.selected_version.unwrap_or(sh.version);
        self.version_code = Some(v);
        let hs = &mut self.hs;
        hs.server_hello_ns = Some(ts);
        hs.version = Some(version_name(v));
        hs.cipher = Some(cipher_name(sh.cipher));
        hs.alpn_chosen = sh.alpn;
        hs.ja3s = Some(ja3s(sh.version, sh.cipher, &sh.extensions));
        if v >= 0x0304 && sh.psk {
            hs.resumed = true;
            hs.resumption = Some("psk");
        } else if v < 0x0304 && !sh.session_id.is_empty() && sh.session_id == self.client_session_id
        {
            hs.resumed = true;
            hs.resumption = Some("session_id");
        }
    }

    fn record_end(&mut self, dir: Dir, ts: u64, typ: u8, out: &mut Vec<L7Event>) {
        let tls13 = self.version_code.is_some_and(|v| v >= 0x0304);
        match typ {
            20 => {
                let d = match dir {
                    Dir::ToServer => &mut self.c,
                    Dir::ToClient => &mut self.s,
                };
                d.ccs_ns.get_or_insert(ts);
                if !tls13 && self.version_code.is_some() {
                    if dir == Dir::ToClient && self.c.ccs_ns.is_none() && !self.hs.resumed {
                        // The server finishes first: an abbreviated (resumed) handshake.
                        self.hs.resumed = true;
                        self.hs.resumption = Some(if self.client_ticket {
                            "ticket"
                        } else {
                            "abbreviated"
                        });
                    }
                    if self.c.ccs_ns.is_some() && self.s.ccs_ns.is_some() {
                        self.establish(ts, out);
                    }
                }
            }
            21 => self.hs.flags |= flags::ALERT,
            23 if tls13 && dir == Dir::ToServer && self.hs.server_hello_ns.is_some() => {
                self.establish(ts, out);
            }
            _ => {}
        }
    }

    fn establish(&mut self, ts: u64, out: &mut Vec<L7Event>) {
        self.hs.established = true;
        self.hs.established_ns = Some(ts);
        self.emit(out);
    }

    fn emit(&mut self, out: &mut Vec<L7Event>) {
        if self.emitted {
            return;
        }
        self.emitted = true;
        self.c.hs = Vec::new();
        self.s.hs = Vec::new();
        out.push(L7Event::Tls(self.hs.clone()));
    }

    pub fn on_gap(&mut self, dir: Dir, ts: u64, len: u64, out: &mut Vec<L7Event>) {
        self.gap(dir, ts, len);
        self.give_up_if_dead(out);
    }

    fn gap(&mut self, dir: Dir, _ts: u64, len: u64) {
        let (d, flag) = match dir {
            Dir::ToServer => (&mut self.c, flags::CLIENT_GAP),
            Dir::ToClient => (&mut self.s, flags::SERVER_GAP),
        };
        if d.dead || self.emitted {
            return;
        }
        match d.record {
            Some((typ, rem)) if len <= rem as u64 => {
                if typ == 22 && d.want_hello {
                    // The hello being reassembled lost bytes: it cannot be read.
                    d.want_hello = false;
                    d.hs = Vec::new();
                    self.hs.flags |= flag;
                }
                let rem = rem - len as u32;
                d.record = if rem == 0 { None } else { Some((typ, rem)) };
            }
            _ => {
                // Record framing is lost: that direction gives up.
                d.dead = true;
                d.hs = Vec::new();
                self.hs.flags |= flag;
            }
        }
    }

    /// Emits the handshake as seen so far, if it was not emitted yet.
    pub fn on_end(&mut self, out: &mut Vec<L7Event>) {
        self.emit(out);
    }
}
