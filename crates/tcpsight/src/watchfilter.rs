//! tcpeek's filter language: `name:RX|TX@addr[/prefix]:port[:port...][,addr:port...]`.
//!
//! `*` or `%` stand for any address or port. RX selects connections to this host (the
//! server address is local), TX connections from it (the client address is local); the
//! rule's address is the peer's. Ports are server ports. A connection counts in every
//! named filter it matches; a filter without a name excludes what it matches from all.
//! Unlike tcpeek, a connection is counted once per filter however many rules match, and
//! IPv6 works.

use std::net::IpAddr;

use tcpsight_core::{Addr, Endpoint};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Rx,
    Tx,
    /// Either direction (the default filter when no local address is known).
    Any,
}

/// A network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }

    /// One address (a /32 or /128).
    pub fn host(addr: IpAddr) -> Net {
        Net {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn contains(&self, a: Addr) -> bool {
        let ip = a.ip();
        let (x, y, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - self.prefix as u32;
        (x >> shift) == (y >> shift)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// None = any address.
    net: Option<Net>,
    /// Empty = any port.
    ports: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Empty for an exclusion filter.
    pub name: String,
    pub dir: Direction,
    rules: Vec<Rule>,
}

fn any(s: &str) -> bool {
    s == "*" || s == "%"
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, String> {
        let bad = |why: &str| {
            format!("filter {s:?}: {why} (expected name:RX|TX@addr[/prefix]:port[:port...][,...])")
        };
        let (head, rules) = s.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let (name, dir) = head
            .split_once(':')
            .ok_or_else(|| bad("no ':' before the direction"))?;
        let dir = match dir {
            "RX" | "rx" => Direction::Rx,
            "TX" | "tx" => Direction::Tx,
            _ => return Err(bad("direction must be RX or TX")),
        };
        let mut out = Vec::new();
        for r in rules.split(',') {
            // IPv6 addresses hold colons: the ports are what follows the last "]:" or,
            // without brackets, the address is everything up to the first ':' for IPv4
            // and wildcards; IPv6 must be bracketed: [fd00::/64]:80.
            let (addr, ports) = if let Some(rest) = r.strip_prefix('[') {
                let (a, p) = rest.split_once("]:").ok_or_else(|| bad("unclosed '['"))?;
                (a, p)
            } else {
                r.split_once(':')
                    .ok_or_else(|| bad("a rule needs addr:port"))?
            };
            let net = if any(addr) {
                None
            } else {
                Some(Net::parse(addr).map_err(|e| bad(&e))?)
            };
            let mut list = Vec::new();
            for p in ports.split(':') {
                if any(p) {
                    list.clear();
                    break;
                }
                list.push(
                    p.parse::<u16>()
                        .map_err(|_| bad(&format!("{p:?} is not a port")))?,
                );
            }
            out.push(Rule { net, ports: list });
        }
        Ok(Filter {
            name: name.to_string(),
            dir,
            rules: out,
        })
    }

    /// Everything, either direction: the default when no local address is known.
    pub fn all() -> Filter {
        Filter {
            name: "ALL".into(),
            dir: Direction::Any,
            rules: vec![Rule {
                net: None,
                ports: vec![],
            }],
        }
    }

    pub fn default_rx_tx() -> Vec<Filter> {
        let r = || {
            vec![Rule {
                net: None,
                ports: vec![],
            }]
        };
        vec![
            Filter {
                name: "RX".into(),
                dir: Direction::Rx,
                rules: r(),
            },
            Filter {
                name: "TX".into(),
                dir: Direction::Tx,
                rules: r(),
            },
        ]
    }

    /// Whether the connection `client -> server` matches, with `local` the host's nets.
    pub fn matches(&self, client: Endpoint, server: Endpoint, local: &[Net]) -> bool {
        let is_local = |a: Addr| local.iter().any(|n| n.contains(a));
        let peer = match self.dir {
            Direction::Rx if is_local(server.addr) => client.addr,
            Direction::Tx if is_local(client.addr) => server.addr,
            Direction::Any => client.addr,
            _ => return false,
        };
        self.rules.iter().any(|r| {
            r.net.is_none_or(|n| n.contains(peer))
                && (r.ports.is_empty() || r.ports.contains(&server.port))
        })
    }
}

/// The filters of a watch: named ones count, unnamed ones exclude.
#[derive(Clone, Debug)]
pub struct FilterSet {
    pub named: Vec<Filter>,
    exclude: Vec<Filter>,
    local: Vec<Net>,
}

impl FilterSet {
    pub fn new(filters: Vec<Filter>, local: Vec<Net>) -> Result<FilterSet, String> {
        let (exclude, given): (Vec<_>, Vec<_>) =
            filters.into_iter().partition(|f| f.name.is_empty());
        // tcpeek keeps its RX and TX totals beside named filters (its users read them):
        // the defaults come first, unless a filter of the same name replaces one.
        let defaults = if local.is_empty() {
            vec![Filter::all()]
        } else {
            Filter::default_rx_tx()
        };
        let mut named: Vec<Filter> = defaults
            .into_iter()
            .filter(|d| !given.iter().any(|g| g.name == d.name))
            .collect();
        named.extend(given);
        if local.is_empty()
            && named
                .iter()
                .chain(&exclude)
                .any(|f| f.dir != Direction::Any)
        {
            return Err(
                "RX and TX filters need to know the local addresses: give --local NET".into(),
            );
        }
        Ok(FilterSet {
            named,
            exclude,
            local,
        })
    }

    /// Indices of the named filters the connection counts in (none if excluded).
    pub fn matching(&self, client: Endpoint, server: Endpoint) -> Vec<usize> {
        if self
            .exclude
            .iter()
            .any(|f| f.matches(client, server, &self.local))
        {
            return Vec::new();
        }
        (0..self.named.len())
            .filter(|&i| self.named[i].matches(client, server, &self.local))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: &str, port: u16) -> Endpoint {
        Endpoint {
            addr: Addr::from(a.parse::<IpAddr>().unwrap()),
            port,
        }
    }

    #[test]
    fn parses_tcpeek_filters() {
        let f = Filter::parse("web:RX@*:80:443").unwrap();
        assert_eq!((f.name.as_str(), f.dir), ("web", Direction::Rx));
        let f = Filter::parse("db:TX@10.0.0.0/8:5432,192.168.1.5:3306").unwrap();
        assert_eq!(f.rules.len(), 2);
        let f = Filter::parse(":RX@%:22").unwrap();
        assert!(f.name.is_empty());
        assert!(Filter::parse("x:IN@*:80").is_err());
        assert!(Filter::parse("x:RX@*").is_err());
        assert!(Filter::parse("x:RX@*:http").is_err());
        assert!(Filter::parse("x:RX@[fd00::/64]:80").is_ok());
    }

    #[test]
    fn rx_tx_exclusion_and_counting_once() {
        let local = vec![Net::parse("10.77.0.2/32").unwrap()];
        let set = FilterSet::new(
            vec![
                Filter::parse("web:RX@*:80:80").unwrap(), // tcpeek counted this twice
                Filter::parse("out:TX@*:*").unwrap(),
                Filter::parse(":RX@10.77.0.99:*").unwrap(),
            ],
            local,
        )
        .unwrap();
        // Issue 15, 1.12: tcpeek's RX and TX totals stay beside the named filters.
        let names: Vec<&str> = set.named.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["RX", "TX", "web", "out"]);
        assert_eq!(
            set.matching(ep("10.77.0.1", 5000), ep("10.77.0.2", 80)),
            vec![0, 2]
        );
        assert_eq!(
            set.matching(ep("10.77.0.2", 5000), ep("1.2.3.4", 443)),
            vec![1, 3]
        );
        assert!(
            set.matching(ep("10.77.0.99", 5000), ep("10.77.0.2", 80))
                .is_empty()
        );
        // Port 22 is in no named filter, but still in the RX total.
        assert_eq!(
            set.matching(ep("10.77.0.1", 5000), ep("10.77.0.2", 22)),
            vec![0]
        );
    }

    /// A filter named like a default replaces it.
    #[test]
    fn a_filter_named_rx_replaces_the_default() {
        let set = FilterSet::new(
            vec![Filter::parse("RX:RX@*:80").unwrap()],
            vec![Net::parse("10.77.0.2/32").unwrap()],
        )
        .unwrap();
        let names: Vec<&str> = set.named.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["TX", "RX"]);
        assert!(
            set.matching(ep("10.77.0.1", 5000), ep("10.77.0.2", 22))
                .is_empty(),
            "the user's RX (port 80 only) replaced the default"
        );
    }

    #[test]
    fn ipv6_nets() {
        let n = Net::parse("fd77::/16").unwrap();
        assert!(n.contains(Addr::from("fd77:9::5".parse::<IpAddr>().unwrap())));
        assert!(!n.contains(Addr::from("fd78::1".parse::<IpAddr>().unwrap())));
        assert!(!n.contains(Addr::from_v4([10, 0, 0, 1])));
        assert!(FilterSet::new(vec![Filter::parse("a:RX@*:*").unwrap()], vec![]).is_err());
    }
}
