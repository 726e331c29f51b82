//! The L7 analysis of a whole run: one [`Analyzer`] per connection fed from the
//! engine's in-order payload, names learned from DNS answers, and the per-connection
//! fields filled into each record before it reaches a sink.
//!
//! Faces hold an [`L7`] inside their observer and pass it the engine's reports: this
//! keeps the order of the engine (a transaction is logged when its response ends, a
//! record's L7 fields are known when the record is reported) and lets each face decide
//! where the HTTP and TLS logs go ([`L7Log`]).

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use tcpsight_core::{
    AppFields, ConnId, ConnRecord, Datagram, Endpoint, HandshakeEvent, Payload, Schema, Side, Value,
};

use crate::dns::{self, NameCache};
use crate::{Analyzer, Dir, HttpTransaction, L7Event, TlsHandshake};

/// Where the connection an L7 event belongs to is.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub id: ConnId,
    pub client: Endpoint,
    pub server: Endpoint,
}

/// Receives the HTTP transactions and TLS handshakes as they finish.
pub trait L7Log {
    fn http(&mut self, _ctx: &Context, _t: &HttpTransaction) {}
    fn tls(&mut self, _ctx: &Context, _t: &TlsHandshake) {}
}

/// `log` with addresses (and host names, when hashed) anonymized: what every face's
/// L7 logs go through under `--anonymize`.
pub struct Anonymized<'a, L> {
    pub log: &'a mut L,
    pub anon: &'a mut tcpsight_anon::Anonymizer,
}

impl<L: L7Log> Anonymized<'_, L> {
    fn context(&mut self, ctx: &Context) -> Context {
        Context {
            client: self.anon.endpoint(ctx.client),
            server: self.anon.endpoint(ctx.server),
            ..*ctx
        }
    }
}

impl<L: L7Log> L7Log for Anonymized<'_, L> {
    fn http(&mut self, ctx: &Context, t: &HttpTransaction) {
        let ctx = self.context(ctx);
        if self.anon.hashes_names() {
            let t = HttpTransaction {
                host: t.host.as_deref().map(|h| self.anon.name(h)),
                ..t.clone()
            };
            self.log.http(&ctx, &t);
        } else {
            self.log.http(&ctx, t);
        }
    }
    fn tls(&mut self, ctx: &Context, t: &TlsHandshake) {
        let ctx = self.context(ctx);
        if self.anon.hashes_names() {
            let t = TlsHandshake {
                server_name: t.server_name.as_deref().map(|h| self.anon.name(h)),
                ..t.clone()
            };
            self.log.tls(&ctx, &t);
        } else {
            self.log.tls(&ctx, t);
        }
    }
}

/// No logs: only the record fields.
impl L7Log for () {}

/// Counters for the run's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L7Counts {
    /// Connections whose payload was analysed.
    pub connections: u64,
    pub http_transactions: u64,
    pub tls_handshakes: u64,
    /// DNS responses read (UDP port 53), and those that did not parse.
    pub dns_answers: u64,
    pub dns_malformed: u64,
}

/// Names remembered from DNS answers (per client and server address). About
/// `NameCache::ENTRY_BYTES` plus the name per entry.
pub const DEFAULT_NAME_CACHE: usize = 100_000;

struct ConnL7 {
    analyzer: Analyzer,
    client: Endpoint,
    server: Endpoint,
}

/// The L7 analysis of one run (see the module docs).
pub struct L7 {
    conns: HashMap<ConnId, ConnL7, FixedState>,
    /// Names looked up when a connection starts (its handshake or first payload): an
    /// answer seen after the connection began does not name it.
    names_at_start: HashMap<ConnId, Box<str>, FixedState>,
    names: NameCache,
    events: Vec<L7Event>,
    /// Transactions keep their text fields (only needed for an HTTP log).
    details: bool,
    pub counts: L7Counts,
}

impl Default for L7 {
    fn default() -> Self {
        L7::new(DEFAULT_NAME_CACHE)
    }
}

impl L7 {
    pub fn new(name_cache: usize) -> L7 {
        L7 {
            conns: HashMap::with_hasher(FixedState::default()),
            names_at_start: HashMap::with_hasher(FixedState::default()),
            names: NameCache::new(name_cache.max(1)),
            events: Vec::new(),
            details: true,
            counts: L7Counts::default(),
        }
    }

    /// Whether HTTP transactions carry their text fields: needed for an HTTP log, not
    /// for the records' fields (which are the same either way).
    pub fn with_details(mut self, details: bool) -> Self {
        self.details = details;
        self
    }

    /// The name cache (for its eviction counters).
    pub fn names(&self) -> &NameCache {
        &self.names
    }

    /// A handshake was decided: the connection's client and server are known, and the
    /// name the client resolved the server by is looked up now.
    pub fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.name_at_start(e.id, e.client, e.server, e.first_syn_ns.unwrap_or(e.ts_ns));
    }

    fn name_at_start(&mut self, id: ConnId, client: Endpoint, server: Endpoint, ts: u64) {
        if self.names.is_empty() || self.names_at_start.contains_key(&id) {
            return;
        }
        if let Some(name) = self.names.lookup(client.addr, server.addr, ts) {
            self.names_at_start.insert(id, name.into());
        }
    }

    /// New in-order payload; returns whether the connection's payload is still wanted.
    pub fn on_payload(&mut self, p: &Payload, log: &mut impl L7Log) -> bool {
        let conn = match self.conns.get_mut(&p.id) {
            Some(c) => c,
            None => {
                self.name_at_start(p.id, p.client, p.server, p.ts_ns);
                self.counts.connections += 1;
                self.conns.entry(p.id).or_insert(ConnL7 {
                    analyzer: Analyzer::new().with_details(self.details),
                    client: p.client,
                    server: p.server,
                })
            }
        };
        let dir = match p.from {
            Side::Client => Dir::ToServer,
            Side::Server => Dir::ToClient,
        };
        if p.gap > 0 {
            conn.analyzer.on_gap(dir, p.ts_ns, p.gap, &mut self.events);
        }
        let more = p.data.is_empty()
            || conn
                .analyzer
                .on_data(dir, p.ts_ns, p.data, &mut self.events);
        let ctx = Context {
            id: p.id,
            client: conn.client,
            server: conn.server,
        };
        self.emit(&ctx, log);
        more
    }

    /// A UDP datagram: DNS answers (from port 53) teach names.
    pub fn on_datagram(&mut self, d: &Datagram) {
        if d.src.port != 53 || d.data.len() < 12 {
            return;
        }
        match dns::parse_message(d.data) {
            Ok(msg) if msg.response => {
                self.counts.dns_answers += 1;
                self.names.insert_message(d.dst.addr, &msg, d.ts_ns);
            }
            Ok(_) => {}
            Err(_) => self.counts.dns_malformed += 1,
        }
    }

    /// A connection's final record: its analysis ends (what is pending is logged) and
    /// its L7 fields are returned, `None` when nothing is known about it.
    pub fn finish(&mut self, r: &ConnRecord, log: &mut impl L7Log) -> Option<AppFields> {
        let dns_name = self.names_at_start.remove(&r.id);
        let mut conn = self.conns.remove(&r.id);
        if let Some(c) = conn.as_mut() {
            c.analyzer.on_end(r.ts_last_ns, &mut self.events);
            let ctx = Context {
                id: r.id,
                client: c.client,
                server: c.server,
            };
            self.emit(&ctx, log);
        }
        fields(dns_name, conn.as_ref().map(|c| &c.analyzer))
    }

    /// An interim record: the L7 fields so far, the analysis going on.
    pub fn so_far(&self, r: &ConnRecord) -> Option<AppFields> {
        let dns_name = self.names_at_start.get(&r.id).cloned();
        fields(dns_name, self.conns.get(&r.id).map(|c| &c.analyzer))
    }

    fn emit(&mut self, ctx: &Context, log: &mut impl L7Log) {
        for e in self.events.drain(..) {
            match &e {
                L7Event::Http(t) => {
                    self.counts.http_transactions += 1;
                    log.http(ctx, t);
                }
                L7Event::Tls(t) => {
                    self.counts.tls_handshakes += 1;
                    log.tls(ctx, t);
                }
            }
        }
    }
}

/// A record's L7 fields from the name looked up at its start and its analyzer's
/// summary; `None` when neither says anything.
fn fields(dns_name: Option<Box<str>>, analyzer: Option<&Analyzer>) -> Option<AppFields> {
    if dns_name.is_none() && analyzer.is_none() {
        return None;
    }
    let mut f = AppFields {
        server_name: dns_name.clone(),
        dns_name,
        ..AppFields::default()
    };
    if let Some(a) = analyzer {
        fill(&mut f, a);
    }
    Some(f)
}

/// The analyzer's summary into the record's fields; the SNI or Host wins over the DNS
/// name for `server_name`.
fn fill(fields: &mut AppFields, a: &Analyzer) {
    let s = a.summary();
    fields.app_proto = Some(s.app_proto.name());
    if let Some(name) = s.server_name {
        fields.server_name = Some(name.into());
    }
    if s.http_requests > 0 || s.app_proto == crate::AppProto::Http {
        fields.http_requests = Some(s.http_requests);
        fields.http_4xx = Some(s.http_4xx);
        fields.http_5xx = Some(s.http_5xx);
    }
    fields.tls_version = s.tls_version;
}

/// A log line: the connection's endpoints, then the event's own fields.
pub struct Logged<'a, T> {
    pub ctx: &'a Context,
    pub event: &'a T,
}

fn endpoints(ctx: &Context, f: &mut impl FnMut(&'static str, Value<'_>)) {
    f("client_ip", Value::Addr(ctx.client.addr));
    f("client_port", Value::U64(ctx.client.port as u64));
    f("server_ip", Value::Addr(ctx.server.addr));
    f("server_port", Value::U64(ctx.server.port as u64));
}

fn ts(ns: Option<u64>) -> Value<'static> {
    ns.map_or(Value::Null, Value::Epoch)
}

impl Schema for Logged<'_, HttpTransaction> {
    fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, mut f: F) {
        let t = self.event;
        f("ts", ts(t.request_first_ns.or(t.response_first_ns)));
        endpoints(self.ctx, &mut f);
        t.for_each_field(&mut f);
    }
}

impl Schema for Logged<'_, TlsHandshake> {
    fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, mut f: F) {
        let t = self.event;
        f("ts", ts(t.client_first_ns.or(t.server_hello_ns)));
        endpoints(self.ctx, &mut f);
        t.for_each_field(&mut f);
    }
}

/// The names of an HTTP log line's fields, in order.
pub fn http_log_fields() -> Vec<&'static str> {
    let mut names = vec!["ts", "client_ip", "client_port", "server_ip", "server_port"];
    names.extend(HttpTransaction::field_names());
    names
}

/// The names of a TLS log line's fields, in order.
pub fn tls_log_fields() -> Vec<&'static str> {
    let mut names = vec!["ts", "client_ip", "client_port", "server_ip", "server_port"];
    names.extend(TlsHandshake::field_names());
    names
}

/// A context for the examples below.
pub fn example_context() -> Context {
    let e = Endpoint {
        addr: tcpsight_core::Addr::from_v4([0, 0, 0, 0]),
        port: 0,
    };
    Context {
        id: ConnId::default(),
        client: e,
        server: e,
    }
}

/// An HTTP transaction with every optional field set, and one with none: a typed
/// sink (Parquet, ClickHouse) takes the log's column types and nullability from them.
pub fn http_log_examples() -> [HttpTransaction; 2] {
    let s = || Some(String::new());
    let full = HttpTransaction {
        method: s(),
        host: s(),
        uri: s(),
        version: s(),
        user_agent: s(),
        referrer: s(),
        request_body_len: Some(0),
        info_code: Some(100),
        info_msg: s(),
        status_code: Some(200),
        status_msg: s(),
        response_version: s(),
        content_type: s(),
        response_body_len: Some(0),
        server: s(),
        request_first_ns: Some(0),
        request_last_ns: Some(0),
        response_first_ns: Some(0),
        response_last_ns: Some(0),
        ..HttpTransaction::default()
    };
    [full, HttpTransaction::default()]
}

/// A TLS handshake with every optional field set, and one with none (as above).
pub fn tls_log_examples() -> [TlsHandshake; 2] {
    let s = || Some(String::new());
    let full = TlsHandshake {
        version: Some("TLSv1.3"),
        cipher: s(),
        server_name: s(),
        alpn_chosen: s(),
        client_version: Some("TLSv1.2"),
        resumption: Some("psk"),
        ja3: s(),
        ja3s: s(),
        ja4: s(),
        client_first_ns: Some(0),
        server_hello_ns: Some(0),
        established_ns: Some(0),
        ..TlsHandshake::default()
    };
    [full, TlsHandshake::default()]
}
