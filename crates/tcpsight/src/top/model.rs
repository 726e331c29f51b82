//! The figures behind `tcpsight top`: per-endpoint aggregation over a sliding window of
//! capture time or cumulatively, independent of the terminal.
//!
//! The model is an engine [`Observer`]. It keeps a compact record of every connection
//! ([`Conn`]: the table's [`ConnFacts`] plus endpoints, times and outcome) and every
//! request/response exchange since the start or the last reset, and computes rows on
//! demand with the same [`HostStats`] as `tcpsight analyze`, so the two agree: replaying a
//! capture to its end, the cumulative table is analyze's table.
//!
//! A connection counts from its decided handshake on (a live view must show a SYN when it
//! happens, as trtop did), first with what the handshake tells (Syn, SynAck, Est, Lat),
//! then, once the engine reports it finished, with its full record, which replaces the
//! provisional one. Time is capture time only (the core is sans-IO): the window is the
//! last `window` nanoseconds before the latest packet, not wall-clock time, so trtop's
//! wall-clock rates (parsing speed, offline) are gone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use regex::Regex;
use tcpsight_core::{
    Addr, Close, ConnRecord, Endpoint, ExchangeEvent, HandshakeEvent, Observer, Outcome,
};
use tcpsight_live::owners::{Owner, SocketOwners};

use crate::output::table::{self, ConnFacts, HostStats, Row, SortBy};
use crate::watchfilter::{FilterSet, Net};

/// How connections are grouped into rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Server address (trtop's destinations)
    Host,
    /// Server address and port
    #[value(name = "host:port")]
    HostPort,
    /// Client address
    Client,
    /// The named filters of --filter (tcpeek's language, as in `watch`)
    Filter,
}

/// A row's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Addr(Addr),
    AddrPort(Addr, u16),
    Filter(usize),
}

impl Key {
    pub fn addr(&self) -> Option<Addr> {
        match *self {
            Key::Addr(a) | Key::AddrPort(a, _) => Some(a),
            Key::Filter(_) => None,
        }
    }
}

/// A connection's outcome as the table sees it: the handshake's, or `Open` for an
/// established connection not finished yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Done(Outcome),
    /// Handshake decided, connection not reported yet.
    Open(Outcome),
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Done(o) => o.name(),
            State::Open(Outcome::Established) => "open",
            State::Open(o) => o.name(),
        }
    }
}

/// One connection as the model keeps it (about 120 bytes).
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// When it counts in the window: its last packet (finished) or its handshake's decision.
    pub ts_ns: u64,
    pub ts_first_ns: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    pub vlan: u32,
    pub state: State,
    pub close: Close,
    pub facts: ConnFacts,
    /// The local process owning it (live, --process): its pid and the index of its
    /// command name in the model's [`Processes`].
    pub owner: Option<(u32, u32)>,
}

#[derive(Clone, Copy, Debug)]
struct Exchange {
    ts_ns: u64,
    client: Endpoint,
    server: Endpoint,
    response_ns: u64,
    server_ns: u64,
}

type ConnKey = (Endpoint, Endpoint, u32);

/// Which connections the rows count: the `/` filter's terms. Different keys must all
/// match; several terms of one key are alternatives (`port:80 port:443`).
#[derive(Clone, Debug, Default)]
pub struct RowFilter {
    pub text: String,
    hosts: Vec<Regex>,
    ports: Vec<u16>,
    nets: Vec<Net>,
    outcomes: Vec<&'static str>,
}

const OUTCOME_NAMES: [&str; 7] = [
    "established",
    "rejected",
    "unreachable",
    "timeout",
    "pending",
    "midstream",
    "open",
];

impl RowFilter {
    /// Parses `host:REGEX port:N net:CIDR outcome:NAME` terms (a bare word is a host
    /// regex, matched case-insensitively against the row's name).
    pub fn parse(text: &str) -> Result<RowFilter, String> {
        let mut f = RowFilter {
            text: text.trim().to_string(),
            ..RowFilter::default()
        };
        for term in text.split_whitespace() {
            let (k, v) = match term.split_once(':') {
                Some((k, v)) if ["host", "port", "net", "outcome"].contains(&k) => (k, v),
                _ => ("host", term),
            };
            match k {
                "host" => f.hosts.push(
                    Regex::new(&format!("(?i){v}")).map_err(|_| format!("host:{v}: bad regex"))?,
                ),
                "port" => f
                    .ports
                    .push(v.parse().map_err(|_| format!("port:{v}: not a port"))?),
                "net" => f.nets.push(Net::parse(v).map_err(|e| format!("net:{e}"))?),
                _ => {
                    let v = v.to_ascii_lowercase();
                    let name = OUTCOME_NAMES
                        .iter()
                        .find(|n| n.starts_with(&v) && !v.is_empty())
                        .ok_or_else(|| {
                            format!("outcome:{v}: one of {}", OUTCOME_NAMES.join(", "))
                        })?;
                    f.outcomes.push(name);
                }
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.ports.is_empty()
            && self.nets.is_empty()
            && self.outcomes.is_empty()
    }

    fn conn_matches(&self, c: &Conn, endpoint: Addr) -> bool {
        (self.ports.is_empty() || self.ports.contains(&c.server.port))
            && (self.nets.is_empty() || self.nets.iter().any(|n| n.contains(endpoint)))
            && (self.outcomes.is_empty() || self.outcomes.contains(&c.state.name()))
    }

    /// Exchanges happen on established (or midstream) connections, finished or not.
    fn exchange_matches(&self, e: &Exchange, endpoint: Addr) -> bool {
        (self.ports.is_empty() || self.ports.contains(&e.server.port))
            && (self.nets.is_empty() || self.nets.iter().any(|n| n.contains(endpoint)))
            && (self.outcomes.is_empty()
                || self
                    .outcomes
                    .iter()
                    .any(|o| ["established", "midstream", "open"].contains(o)))
    }

    pub fn name_matches(&self, name: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|r| r.is_match(name))
    }
}

/// One computed row.
pub struct TopRow {
    pub key: Key,
    pub row: Row,
    /// The local processes owning the row's connections (--process): the commonest
    /// command name, with how many other names there are (`curl +2`).
    pub process: Option<String>,
}

impl TopRow {
    /// The row as the table shows it: with --process, the owning processes follow the
    /// endpoint in the first column (`10.0.0.2 [curl +1]`), so the `/` name filter
    /// finds rows by process too; JSON keeps them apart (`process`).
    pub fn shown(&self) -> Row {
        let mut row = self.row.clone();
        if let Some(p) = &self.process {
            row.host = format!("{} [{p}]", row.host);
        }
        row
    }
}

/// Which local process owns a connection, for `--process` (live): the socket tables'
/// cache that tcpsight-live's scanner keeps off the packet path, and the command names
/// seen, each kept once (connections hold an index).
#[derive(Clone)]
pub struct Processes {
    owners: Arc<SocketOwners>,
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

/// Distinct command names kept; past it, connections of new names stay unattributed.
const MAX_PROCESS_NAMES: usize = 65_536;

impl Processes {
    pub fn new(owners: Arc<SocketOwners>) -> Processes {
        Processes {
            owners,
            names: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn lookup(&self, client: Endpoint, server: Endpoint) -> Option<Owner> {
        let end = |e: Endpoint| std::net::SocketAddr::new(e.addr.ip(), e.port);
        self.owners.lookup(end(client), end(server))
    }

    /// The owner as a connection keeps it (pid, name index).
    fn intern(&mut self, o: Owner) -> Option<(u32, u32)> {
        if let Some(&i) = self.index.get(&o.comm) {
            return Some((o.pid, i));
        }
        if self.names.len() >= MAX_PROCESS_NAMES {
            return None;
        }
        let i = self.names.len() as u32;
        self.names.push(o.comm.clone());
        self.index.insert(o.comm, i);
        Some((o.pid, i))
    }
}

/// The longest sliding window, in seconds (a day).
pub const MAX_WINDOW_S: u64 = 86_400;

/// Per-second packet and connection counts, for the header's rates.
#[derive(Clone, Copy, Debug, Default)]
struct Second {
    sec: u64,
    frames: u64,
    conns: u64,
}

#[derive(Clone)]
pub struct Model {
    group: Group,
    filters: Option<Arc<FilterSet>>,
    only: Vec<Net>,
    /// Finished connections and decided handshakes, in the order they were reported.
    conns: VecDeque<Conn>,
    exchanges: VecDeque<Exchange>,
    /// Index in `conns` of connections whose handshake was decided but that are not
    /// finished, by key; `base` is the number of entries evicted from the front so far.
    open: HashMap<ConnKey, u64>,
    base: u64,
    /// Most connections and exchanges kept (the oldest go first).
    keep: usize,
    seconds: VecDeque<Second>,
    /// Capture time: first packet since start or reset, and latest.
    pub start_ns: Option<u64>,
    pub now_ns: u64,
    pub frames: u64,
    pub kernel_drops: u64,
    /// Frames dropped as copies from another interface (live `any`; None: no filter).
    pub copies: Option<u64>,
    /// Connections with capture gaps (since start or reset).
    pub gap_conns: u64,
    /// Connections dropped from memory by `keep` (since start or reset).
    pub evicted: u64,
    /// Connections seen (since start or reset).
    conns_total: u64,
    /// `--process`: the owners of local connections.
    pub processes: Option<Processes>,
    /// `--anonymize`: what the table shows of addresses (connections keep the real
    /// ones, which --only and the filters are written in).
    anon: Option<tcpsight_anon::Anonymizer>,
}

impl Model {
    pub fn new(group: Group, filters: Option<FilterSet>, only: Vec<Net>, keep: usize) -> Model {
        Model {
            group,
            filters: filters.map(Arc::new),
            only,
            conns: VecDeque::new(),
            exchanges: VecDeque::new(),
            open: HashMap::new(),
            base: 0,
            keep: keep.max(1),
            seconds: VecDeque::new(),
            start_ns: None,
            now_ns: 0,
            frames: 0,
            kernel_drops: 0,
            copies: None,
            gap_conns: 0,
            evicted: 0,
            conns_total: 0,
            processes: None,
            anon: None,
        }
    }

    /// Rows and connections show addresses as `anon` maps them.
    pub fn with_anonymizer(mut self, anon: tcpsight_anon::Anonymizer) -> Model {
        self.anon = Some(anon);
        self
    }

    /// An address as the table shows it.
    pub fn shown(&self, a: Addr) -> Addr {
        self.anon.as_ref().map_or(a, |an| an.map(a))
    }

    /// An endpoint as the table shows it.
    pub fn shown_endpoint(&self, e: Endpoint) -> Endpoint {
        Endpoint {
            addr: self.shown(e.addr),
            port: e.port,
        }
    }

    /// Rows name the local processes owning their connections (live).
    pub fn with_processes(mut self, owners: Arc<SocketOwners>) -> Model {
        self.processes = Some(Processes::new(owners));
        self
    }

    /// The owner of a connection, from the cache (rows of open connections look again
    /// each time: the scan that finds a new socket comes after its handshake).
    fn owner_of(&self, c: &Conn) -> Option<(u32, Arc<str>)> {
        let p = self.processes.as_ref()?;
        match c.owner {
            Some(o) => Some((o.0, p.names.get(o.1 as usize)?.clone())),
            None if matches!(c.state, State::Open(_)) => {
                p.lookup(c.client, c.server).map(|o| (o.pid, o.comm))
            }
            None => None,
        }
    }

    /// Counts a frame at capture time `ts_ns`.
    pub fn on_frame(&mut self, ts_ns: u64) {
        self.frames += 1;
        self.tick(ts_ns);
        if let Some(s) = self.seconds.back_mut() {
            s.frames += 1;
        }
    }

    /// Moves capture time forward (frames, or the live clock on an idle interface).
    pub fn tick(&mut self, ts_ns: u64) {
        self.start_ns.get_or_insert(ts_ns);
        self.now_ns = self.now_ns.max(ts_ns);
        let sec = self.now_ns / 1_000_000_000;
        if self.seconds.back().is_none_or(|s| s.sec < sec) {
            self.seconds.push_back(Second {
                sec,
                ..Second::default()
            });
            while self.seconds.len() > MAX_WINDOW_S as usize {
                self.seconds.pop_front();
            }
        }
    }

    /// Forgets everything (the `r` key): counting starts again from now.
    pub fn reset(&mut self) {
        // Connections still open are forgotten too: when one finishes, its record counts
        // as a connection reported after the reset.
        self.conns.clear();
        self.exchanges.clear();
        self.open.clear();
        self.base = 0;
        self.seconds.clear();
        self.start_ns = None;
        self.frames = 0;
        self.gap_conns = 0;
        self.evicted = 0;
        self.conns_total = 0;
        let now = self.now_ns;
        self.tick(now);
    }

    /// Calls `f` with each row key of a connection (several with --group-by filter, none
    /// if excluded); no allocation but for filters.
    fn each_key(&self, client: Endpoint, server: Endpoint, mut f: impl FnMut(Key)) {
        match self.group {
            Group::Host => f(Key::Addr(server.addr)),
            Group::HostPort => f(Key::AddrPort(server.addr, server.port)),
            Group::Client => f(Key::Addr(client.addr)),
            Group::Filter => {
                if let Some(fs) = &self.filters {
                    for i in fs.matching(client, server) {
                        f(Key::Filter(i));
                    }
                }
            }
        }
    }

    fn has_key(&self, client: Endpoint, server: Endpoint, key: Key) -> bool {
        let mut hit = false;
        self.each_key(client, server, |k| hit |= k == key);
        hit
    }

    /// The address a row stands for (the server's, or the client's with --group-by client).
    fn endpoint(&self, client: Endpoint, server: Endpoint) -> Addr {
        if self.group == Group::Client {
            client.addr
        } else {
            server.addr
        }
    }

    fn wanted(&self, client: Endpoint, server: Endpoint) -> bool {
        let a = self.endpoint(client, server);
        self.only.is_empty() || self.only.iter().any(|n| n.contains(a))
    }

    /// A row's label: address, address:port, or filter name; `names` maps addresses to
    /// resolved names (--resolve).
    pub fn label(&self, k: Key, names: &dyn Fn(Addr) -> Option<String>) -> String {
        match k {
            Key::Addr(a) => names(a).unwrap_or_else(|| self.shown(a).to_string()),
            Key::AddrPort(a, p) => {
                let a = self.shown(a);
                let host = names(a).unwrap_or_else(|| {
                    if a.is_v4() {
                        a.to_string()
                    } else {
                        format!("[{a}]")
                    }
                });
                format!("{host}:{p}")
            }
            Key::Filter(i) => self
                .filters
                .as_ref()
                .and_then(|f| f.named.get(i))
                .map_or_else(|| format!("filter {i}"), |f| f.name.clone()),
        }
    }

    fn push_conn(&mut self, c: Conn) {
        self.conns.push_back(c);
        while self.conns.len() > self.keep {
            self.conns.pop_front();
            self.base += 1;
            self.evicted += 1;
        }
        self.conns_total += 1;
        if let Some(s) = self.seconds.back_mut() {
            s.conns += 1;
        }
    }

    fn conn_at(&mut self, idx: u64) -> Option<&mut Conn> {
        let i = idx.checked_sub(self.base)?;
        self.conns.get_mut(i as usize)
    }

    /// Time the rows are over: the window (or everything since start), and its start.
    fn span(&self, window_ns: Option<u64>) -> (u64, f64) {
        let start = self.start_ns.unwrap_or(self.now_ns);
        let from = match window_ns {
            Some(w) => start.max(self.now_ns.saturating_sub(w)),
            None => start,
        };
        (from, (self.now_ns - from.min(self.now_ns)) as f64 / 1e9)
    }

    /// Rows over the last `window_ns` of capture time (`None`: since start or reset),
    /// counting only what `filter` passes, sorted.
    pub fn rows(
        &self,
        window_ns: Option<u64>,
        filter: &RowFilter,
        names: &dyn Fn(Addr) -> Option<String>,
        sort: SortBy,
        reverse: bool,
    ) -> Vec<TopRow> {
        let (from, span_s) = self.span(window_ns);
        let mut hosts: HashMap<Key, HostStats, foldhash::fast::RandomState> = HashMap::default();
        // --process: connections per command name, per row.
        let mut owners: HashMap<Key, HashMap<Arc<str>, u64>> = HashMap::new();
        for c in self.conns.iter().filter(|c| c.ts_ns >= from) {
            if !filter.conn_matches(c, self.endpoint(c.client, c.server)) {
                continue;
            }
            let owner = self.owner_of(c);
            self.each_key(c.client, c.server, |k| {
                hosts.entry(k).or_default().add_connection(&c.facts);
                if let Some((_, name)) = &owner {
                    *owners
                        .entry(k)
                        .or_default()
                        .entry(name.clone())
                        .or_default() += 1;
                }
            });
        }
        for e in self.exchanges.iter().filter(|e| e.ts_ns >= from) {
            if !filter.exchange_matches(e, self.endpoint(e.client, e.server)) {
                continue;
            }
            self.each_key(e.client, e.server, |k| {
                let h = hosts.entry(k).or_default();
                h.add_response(e.response_ns);
                h.add_split(e.response_ns, e.server_ns);
            });
        }
        // The commonest name; ties go to the first in name order, so a refresh does not
        // flip between equals.
        let process_of = |key: &Key| {
            let names = owners.get(key)?;
            let (top, _) = names
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
            Some(match names.len() - 1 {
                0 => top.to_string(),
                more => format!("{top} +{more}"),
            })
        };
        let mut rows: Vec<(Key, Row)> = hosts
            .iter()
            .map(|(k, h)| (*k, h.row(self.label(*k, names), span_s)))
            .filter(|(k, r)| {
                filter.name_matches(&r.host)
                    || owners
                        .get(k)
                        .is_some_and(|n| n.keys().any(|name| filter.name_matches(name)))
            })
            .collect();
        table::sort_rows(&mut rows, sort, reverse);
        rows.into_iter()
            .map(|(key, row)| TopRow {
                process: process_of(&key),
                key,
                row,
            })
            .collect()
    }

    /// The latest connections of one row that `filter` passes (the drill-down shows what
    /// the row counted), most recently started first.
    pub fn connections_of(
        &self,
        key: Key,
        window_ns: Option<u64>,
        filter: &RowFilter,
        limit: usize,
    ) -> Vec<Conn> {
        let (from, _) = self.span(window_ns);
        let mut list: Vec<Conn> = self
            .conns
            .iter()
            .filter(|c| {
                c.ts_ns >= from
                    && self.has_key(c.client, c.server, key)
                    && filter.conn_matches(c, self.endpoint(c.client, c.server))
            })
            .copied()
            .collect();
        list.sort_by(|a, b| {
            b.ts_first_ns
                .cmp(&a.ts_first_ns)
                .then(b.client.cmp(&a.client))
        });
        list.truncate(limit);
        list
    }

    /// Packets and new connections per second over the window (or since start).
    pub fn rates(&self, window_ns: Option<u64>) -> (f64, f64) {
        let (from, span) = self.span(window_ns);
        let from_sec = from / 1_000_000_000;
        // Per-second counts cover the longest window; cumulative rates use the totals.
        let (f, c) = match window_ns {
            None => (self.frames, self.conns_total),
            Some(_) => self
                .seconds
                .iter()
                .filter(|s| s.sec >= from_sec)
                .fold((0, 0), |(f, c), s| (f + s.frames, c + s.conns)),
        };
        let span = span.max(1.0);
        (f as f64 / span, c as f64 / span)
    }

    /// Capture time covered since start or reset, in seconds.
    pub fn elapsed_s(&self) -> f64 {
        self.span(None).1
    }
}

impl Observer for Model {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        if !self.wanted(e.client, e.server) {
            return;
        }
        let facts = ConnFacts {
            syn: e.syn_count > 0,
            synack: e.syn_count > 0 && e.synack_count > 0,
            est: e.syn_count > 0 && e.outcome == Outcome::Established,
            connect_ns: if e.outcome == Outcome::Established {
                e.elapsed_ns
            } else {
                None
            },
            // A refused handshake ended with the RST that decided it: its Rst counts now,
            // not when its record leaves the engine (75 s later, when SYN retries can no
            // longer come), which is outside a 60 s window.
            rst: e.outcome == Outcome::Rejected,
            ..ConnFacts::default()
        };
        let close = if e.outcome == Outcome::Rejected {
            Close::Rst
        } else {
            Close::Open
        };
        let owner = self.processes.as_mut().and_then(|p| {
            if e.outcome == Outcome::Established {
                p.owners.nudge();
            }
            let o = p.lookup(e.client, e.server)?;
            p.intern(o)
        });
        let c = Conn {
            ts_ns: e.ts_ns,
            ts_first_ns: e.first_syn_ns.unwrap_or(e.ts_ns),
            client: e.client,
            server: e.server,
            vlan: e.vlan,
            state: State::Open(e.outcome),
            close,
            facts,
            owner,
        };
        self.push_conn(c);
        let idx = self.base + self.conns.len() as u64 - 1;
        self.open.insert((e.client, e.server, e.vlan), idx);
    }

    fn on_exchange(&mut self, e: &ExchangeEvent) {
        if !self.wanted(e.client, e.server) {
            return;
        }
        self.exchanges.push_back(Exchange {
            ts_ns: e.ts_ns,
            client: e.client,
            server: e.server,
            response_ns: e.response_ns,
            server_ns: e.server_ns,
        });
        while self.exchanges.len() > self.keep.saturating_mul(4) {
            self.exchanges.pop_front();
        }
    }

    fn on_connection(&mut self, r: &ConnRecord) {
        let client = Endpoint {
            addr: r.client,
            port: r.client_port,
        };
        let server = Endpoint {
            addr: r.server,
            port: r.server_port,
        };
        if !self.wanted(client, server) {
            return;
        }
        let facts = ConnFacts::of(r);
        self.gap_conns += facts.gap as u64;
        // The owner is remembered a while after its socket closed (tcpsight-live's
        // KEEP), so a connection ending now is still found.
        let owner = self.processes.as_mut().and_then(|p| {
            let o = p.lookup(client, server)?;
            p.intern(o)
        });
        let mut c = Conn {
            ts_ns: r.ts_last_ns,
            ts_first_ns: r.ts_first_ns,
            client,
            server,
            vlan: r.vlan,
            state: State::Done(r.outcome),
            close: r.close,
            facts,
            owner,
        };
        // The full record replaces the provisional one where the handshake was seen.
        if let Some(idx) = self.open.remove(&(client, server, r.vlan))
            && let Some(slot) = self.conn_at(idx)
            && slot.client == client
            && slot.server == server
            && slot.vlan == r.vlan
        {
            c.owner = c.owner.or(slot.owner);
            *slot = c;
            return;
        }
        self.push_conn(c);
    }
}

/// Distinct row addresses, for the resolver.
pub fn addresses(rows: &[TopRow]) -> Vec<Addr> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter_map(|r| r.key.addr())
        .filter(|a| seen.insert(*a))
        .collect()
}
