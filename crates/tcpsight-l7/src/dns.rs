//! DNS messages (RFC 1035) and a bounded (client, server) -> name cache.
//!
//! [`parse_message`] reads one DNS message: a UDP payload, or one TCP message without its
//! two-byte length prefix. It is a small hand-written parser (about 200 lines) rather than
//! `hickory-proto` or `simple-dns`: tcpsight needs the header, the questions and the
//! A/AAAA/CNAME answers, nothing else, and a dependency-free parser adds no build time
//! (hickory-proto pulls in a dozen crates even without default features). Compression
//! pointers are followed only backwards (strictly before the label that points), so a
//! name can never loop, and a name is at most 255 bytes on the wire as RFC 1035 says.
//!
//! [`Message::resolved`] follows CNAME chains (DN-Hunter semantics): the address an
//! answer chain ends in maps to the name the client asked for, not to the CDN name.
//!
//! [`NameCache`] maps (DNS client, resolved server address) to that name, bounded in
//! entries with clock (second-chance) eviction and expiring by capture time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tcpsight_core::Addr;

/// Why a message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The message ends inside the named part.
    Short(&'static str),
    /// A name is malformed: a forward or looping pointer, a reserved label type, or
    /// longer than 255 bytes.
    BadName,
}

impl core::fmt::Display for DnsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DnsError::Short(what) => write!(f, "DNS message too short for its {what}"),
            DnsError::BadName => write!(f, "malformed DNS name"),
        }
    }
}

impl std::error::Error for DnsError {}

/// One question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lower-case, dot-separated, without the trailing dot ("" for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// The data of an answer record, for the types tcpsight uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// Any other type (or an A/AAAA of the wrong length): its type code only.
    Other(u16),
}

/// One answer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// A parsed message: header fields, questions and the answer section (authority and
/// additional sections are not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// True for a response.
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub truncated: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
}

/// An address an answer chain resolved to, with the name the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The queried name (the first question's name when the chain starts there).
    pub name: String,
    pub addr: IpAddr,
    /// The smallest TTL along the chain (the CNAMEs and the address record).
    pub ttl: u32,
}

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;

/// At most this many questions and answers are kept (a message may claim 65535).
const MAX_RECORDS: usize = 256;

/// Parses one DNS message.
pub fn parse_message(msg: &[u8]) -> Result<Message, DnsError> {
    if msg.len() < 12 {
        return Err(DnsError::Short("header"));
    }
    let be16 = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let flags = be16(2);
    let qd = be16(4) as usize;
    let an = be16(6) as usize;
    let mut pos = 12;
    let mut questions = Vec::with_capacity(qd.min(4));
    for _ in 0..qd {
        let (name, p) = read_name(msg, pos)?;
        if p + 4 > msg.len() {
            return Err(DnsError::Short("question"));
        }
        if questions.len() < MAX_RECORDS {
            questions.push(Question {
                name,
                qtype: be16(p),
                qclass: be16(p + 2),
            });
        }
        pos = p + 4;
    }
    let mut answers = Vec::with_capacity(an.min(16));
    for _ in 0..an {
        let (name, p) = read_name(msg, pos)?;
        if p + 10 > msg.len() {
            return Err(DnsError::Short("answer"));
        }
        let rtype = be16(p);
        let ttl = u32::from_be_bytes([msg[p + 4], msg[p + 5], msg[p + 6], msg[p + 7]]);
        let rdlen = be16(p + 8) as usize;
        let rd = p + 10;
        if rd + rdlen > msg.len() {
            return Err(DnsError::Short("answer data"));
        }
        let rdata = &msg[rd..rd + rdlen];
        let data = match (rtype, rdlen) {
            (TYPE_A, 4) => RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
            (TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                RData::Aaaa(Ipv6Addr::from(b))
            }
            (TYPE_CNAME, _) => {
                let (target, end) = read_name(msg, rd)?;
                if end > rd + rdlen {
                    return Err(DnsError::BadName);
                }
                RData::Cname(target)
            }
            (t, _) => RData::Other(t),
        };
        if answers.len() < MAX_RECORDS {
            answers.push(Answer { name, ttl, data });
        }
        pos = rd + rdlen;
    }
    Ok(Message {
        id: be16(0),
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        truncated: flags & 0x0200 != 0,
        questions,
        answers,
    })
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after its
/// in-place part.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    let mut end = None;
    // Pointers must point strictly backwards from where they are: no loops.
    let mut limit = pos;
    loop {
        let Some(&len) = msg.get(pos) else {
            return Err(DnsError::Short("name"));
        };
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((name, end.unwrap_or(pos + 1)));
                }
                let l = len as usize;
                let Some(label) = msg.get(pos + 1..pos + 1 + l) else {
                    return Err(DnsError::Short("name"));
                };
                wire_len += l + 1;
                if wire_len > 255 {
                    return Err(DnsError::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    let c = b.to_ascii_lowercase();
                    if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                        name.push(c as char);
                    } else {
                        // Escaped as in zone files, so a name stays one printable token.
                        name.push_str(&format!("\\{:03}", b));
                    }
                }
                pos += 1 + l;
            }
            0xc0 => {
                let Some(&lo) = msg.get(pos + 1) else {
                    return Err(DnsError::Short("name"));
                };
                let target = (((len & 0x3f) as usize) << 8) | lo as usize;
                if target >= limit {
                    return Err(DnsError::BadName);
                }
                if end.is_none() {
                    end = Some(pos + 2);
                }
                limit = target;
                pos = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

impl Message {
    /// The addresses the answers resolve to, each with the name the client asked for:
    /// CNAME chains are followed from the first question's name (at most 16 links), so
    /// `www.example.com CNAME x.cdn.net`, `x.cdn.net A 1.2.3.4` gives
    /// (`www.example.com`, 1.2.3.4). Address records for names not reachable from the
    /// question are reported under their own name. TTL is the chain's minimum.
    pub fn resolved(&self) -> Vec<Resolved> {
        let mut out = Vec::new();
        let qname = self.questions.first().map(|q| q.name.as_str());
        for a in &self.answers {
            let addr = match a.data {
                RData::A(v4) => IpAddr::V4(v4),
                RData::Aaaa(v6) => IpAddr::V6(v6),
                _ => continue,
            };
            // Walk back from the address record's owner to the question through CNAMEs.
            let mut name = a.name.as_str();
            let mut ttl = a.ttl;
            for _ in 0..16 {
                if Some(name) == qname {
                    break;
                }
                let prev = self.answers.iter().find(|c| match &c.data {
                    RData::Cname(t) => t == name,
                    _ => false,
                });
                match prev {
                    Some(c) => {
                        ttl = ttl.min(c.ttl);
                        name = c.name.as_str();
                    }
                    None => break,
                }
            }
            out.push(Resolved {
                name: name.to_string(),
                addr,
                ttl,
            });
        }
        out
    }
}

/// Default bounds of a cache entry's life, in seconds: TTLs are capped at an hour
/// (a resolver's cache rarely holds longer, and a stale name is worse than none) and
/// raised to a minute (clients connect after the lookup, often after a TTL of 0-30 s
/// has run out in the capture's clock).
pub const DEFAULT_TTL_CAP_S: u32 = 3600;
pub const DEFAULT_TTL_FLOOR_S: u32 = 60;

struct Entry {
    client: Addr,
    server: Addr,
    name: Box<str>,
    expires_ns: u64,
    referenced: bool,
}

/// A bounded map (DNS client, resolved address) -> queried name.
///
/// Capacity is a number of entries; when full, an insert evicts by the clock
/// (second-chance) algorithm: expired entries first, otherwise the first not looked up
/// since the hand last passed. Evictions of live entries are counted in `evictions`.
/// Memory: [`NameCache::ENTRY_BYTES`] per entry plus the name's bytes (a `Box<str>`),
/// plus about 9 bytes of hash-table slot per entry.
pub struct NameCache {
    map: hashbrown::HashMap<(Addr, Addr), u32, foldhash::fast::FixedState>,
    entries: Vec<Entry>,
    capacity: usize,
    hand: usize,
    ttl_floor_s: u32,
    ttl_cap_s: u32,
    /// Live entries evicted to make room.
    pub evictions: u64,
    /// Entries replaced after they expired.
    pub expired: u64,
}

impl NameCache {
    /// Bytes of one entry in the slot array (without the name's heap bytes).
    pub const ENTRY_BYTES: usize = core::mem::size_of::<Entry>();

    /// A cache of at most `capacity` entries (at least 1) with the default TTL bounds.
    pub fn new(capacity: usize) -> NameCache {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        NameCache {
            map: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x7c75)),
            entries: Vec::new(),
            capacity,
            hand: 0,
            ttl_floor_s: DEFAULT_TTL_FLOOR_S,
            ttl_cap_s: DEFAULT_TTL_CAP_S,
            evictions: 0,
            expired: 0,
        }
    }

    /// Sets the TTL bounds (seconds); `floor` is lowered to `cap` if above it.
    pub fn with_ttl_bounds(mut self, floor_s: u32, cap_s: u32) -> NameCache {
        self.ttl_cap_s = cap_s;
        self.ttl_floor_s = floor_s.min(cap_s);
        self
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records that `client` resolved `name` to `server` at `now_ns` with `ttl_s`
    /// (clamped to the bounds). A newer answer for the same pair replaces the older.
    pub fn insert(&mut self, client: Addr, server: Addr, name: &str, ttl_s: u32, now_ns: u64) {
        let ttl = ttl_s.clamp(self.ttl_floor_s, self.ttl_cap_s) as u64;
        let expires_ns = now_ns.saturating_add(ttl * 1_000_000_000);
        if let Some(&i) = self.map.get(&(client, server)) {
            let e = &mut self.entries[i as usize];
            if &*e.name != name {
                e.name = name.into();
            }
            e.expires_ns = expires_ns;
            e.referenced = true;
            return;
        }
        let entry = Entry {
            client,
            server,
            name: name.into(),
            expires_ns,
            referenced: false,
        };
        if self.entries.len() < self.capacity {
            self.map.insert((client, server), self.entries.len() as u32);
            self.entries.push(entry);
            return;
        }
        let victim = self.pick_victim(now_ns);
        let old = &self.entries[victim];
        if old.expires_ns <= now_ns {
            self.expired += 1;
        } else {
            self.evictions += 1;
        }
        self.map.remove(&(old.client, old.server));
        self.map.insert((client, server), victim as u32);
        self.entries[victim] = entry;
    }

    fn pick_victim(&mut self, now_ns: u64) -> usize {
        let n = self.entries.len();
        // Two sweeps at most: the first clears reference bits.
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let e = &mut self.entries[i];
            if e.expires_ns <= now_ns || !e.referenced {
                return i;
            }
            e.referenced = false;
        }
        self.hand
    }

    /// The name `client` resolved `server` from, if that answer has not expired by
    /// `now_ns`.
    pub fn lookup(&mut self, client: Addr, server: Addr, now_ns: u64) -> Option<&str> {
        let &i = self.map.get(&(client, server))?;
        let e = &mut self.entries[i as usize];
        if e.expires_ns <= now_ns {
            return None;
        }
        e.referenced = true;
        Some(&e.name)
    }

    /// Inserts every address of a response message sent to `client`.
    pub fn insert_message(&mut self, client: Addr, msg: &Message, now_ns: u64) {
        if !msg.response || msg.rcode != 0 {
            return;
        }
        for r in msg.resolved() {
            self.insert(client, Addr::from(r.addr), &r.name, r.ttl, now_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a response: question `q` (type A), then `answers` as (owner, ttl, data).
    fn build(q: &str, answers: &[(&str, u32, RData)]) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            0x81,
            0x80,
            0,
            1,
            0,
            answers.len() as u8,
            0,
            0,
            0,
            0,
        ];
        let name = |m: &mut Vec<u8>, n: &str| {
            for l in n.split('.') {
                m.push(l.len() as u8);
                m.extend_from_slice(l.as_bytes());
            }
            m.push(0);
        };
        name(&mut m, q);
        m.extend_from_slice(&[0, 1, 0, 1]);
        for (owner, ttl, data) in answers {
            if *owner == q {
                m.extend_from_slice(&[0xc0, 12]); // pointer to the question's name
            } else {
                name(&mut m, owner);
            }
            let (t, rd): (u16, Vec<u8>) = match data {
                RData::A(a) => (1, a.octets().to_vec()),
                RData::Aaaa(a) => (28, a.octets().to_vec()),
                RData::Cname(c) => {
                    let mut v = Vec::new();
                    name(&mut v, c);
                    (5, v)
                }
                RData::Other(t) => (*t, vec![]),
            };
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            m.extend_from_slice(&rd);
        }
        m
    }

    #[test]
    fn cname_chain_maps_to_the_queried_name() {
        let m = build(
            "www.Example.com",
            &[
                ("www.Example.com", 300, RData::Cname("x.cdn.net".into())),
                ("x.cdn.net", 100, RData::Cname("y.edge.net".into())),
                ("y.edge.net", 20, RData::A(Ipv4Addr::new(1, 2, 3, 4))),
                (
                    "y.edge.net",
                    20,
                    RData::Aaaa("2001:db8::1".parse().unwrap()),
                ),
            ],
        );
        let msg = parse_message(&m).unwrap();
        assert!(msg.response);
        assert_eq!(msg.questions[0].name, "www.example.com");
        assert_eq!(msg.answers.len(), 4);
        let r = msg.resolved();
        assert_eq!(
            r,
            vec![
                Resolved {
                    name: "www.example.com".into(),
                    addr: "1.2.3.4".parse().unwrap(),
                    ttl: 20
                },
                Resolved {
                    name: "www.example.com".into(),
                    addr: "2001:db8::1".parse().unwrap(),
                    ttl: 20
                },
            ]
        );
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_rejected() {
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert_eq!(parse_message(&m), Err(DnsError::BadName));
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 14, 1, b'a', 0, 0, 1, 0, 1]); // forward
        assert_eq!(parse_message(&m), Err(DnsError::BadName));
        assert_eq!(parse_message(&[0; 5]), Err(DnsError::Short("header")));
    }

    #[test]
    fn cache_expires_by_capture_time_with_floor_and_cap() {
        let c = Addr::from_v4([10, 0, 0, 1]);
        let s = Addr::from_v4([1, 2, 3, 4]);
        let mut cache = NameCache::new(4);
        let sec = 1_000_000_000u64;
        cache.insert(c, s, "a.example", 0, 0); // raised to 60 s
        assert_eq!(cache.lookup(c, s, 59 * sec), Some("a.example"));
        assert_eq!(cache.lookup(c, s, 60 * sec), None);
        cache.insert(c, s, "b.example", 1_000_000, 100 * sec); // capped at 3600 s
        assert_eq!(cache.lookup(c, s, (100 + 3599) * sec), Some("b.example"));
        assert_eq!(cache.lookup(c, s, (100 + 3600) * sec), None);
        assert_eq!(cache.lookup(s, c, 0), None);
    }

    #[test]
    fn cache_is_bounded_and_counts_evictions() {
        let c = Addr::from_v4([10, 0, 0, 1]);
        let mut cache = NameCache::new(3);
        for i in 0..10u8 {
            cache.insert(c, Addr::from_v4([1, 1, 1, i]), &format!("n{i}"), 600, 0);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.evictions, 7);
        // A looked-up entry survives the next eviction (second chance).
        let hot = Addr::from_v4([1, 1, 1, 9]);
        assert_eq!(cache.lookup(c, hot, 1), Some("n9"));
        cache.insert(c, Addr::from_v4([2, 2, 2, 2]), "new", 600, 1);
        assert_eq!(cache.lookup(c, hot, 1), Some("n9"));
        // Expired entries are replaced without counting as evictions.
        let before = cache.evictions;
        cache.insert(
            c,
            Addr::from_v4([3, 3, 3, 3]),
            "later",
            600,
            10_000 * 1_000_000_000,
        );
        assert_eq!(cache.evictions, before);
        assert_eq!(cache.expired, 1);
    }
}
