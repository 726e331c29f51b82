//! `--local NETS`: which addresses are this site's, and so which way a connection goes
//! (Tstat's `-N` internal networks).

use std::net::IpAddr;

use tcpsight_core::Addr;

/// Where a connection goes, seen from the local networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// A remote client to a local server.
    In,
    /// A local client to a remote server.
    Out,
    /// Both ends local.
    Local,
    /// Neither end local (transit, a mirrored port).
    External,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Local => "local",
            Direction::External => "external",
        }
    }
}

/// One network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    addr: u128,
    prefix: u8,
    v4: bool,
}

impl Net {
    fn contains(&self, a: &Addr) -> bool {
        if a.is_v4() != self.v4 {
            return false;
        }
        let bits = if self.v4 { 32 } else { 128 };
        let v = addr_bits(a);
        let shift = bits - self.prefix as u32;
        if shift >= 128 {
            return true;
        }
        (v >> shift) == (self.addr >> shift)
    }
}

fn addr_bits(a: &Addr) -> u128 {
    match a.ip() {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// The local networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalNets {
    nets: Vec<Net>,
}

impl LocalNets {
    /// Parses networks separated by commas, spaces or newlines: `10.0.0.0/8`,
    /// `2001:db8::/32`, or a bare address (a /32 or /128). `#` starts a comment (for
    /// a file of networks, as Tstat's `-N` takes).
    pub fn parse(text: &str) -> Result<LocalNets, String> {
        let mut nets = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            for word in line.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
                nets.push(parse_net(word)?);
            }
        }
        if nets.is_empty() {
            return Err("no network given (expected CIDRs such as 10.0.0.0/8,fd00::/8)".into());
        }
        Ok(LocalNets { nets })
    }

    /// `--local` takes networks, or the name of a file holding them.
    pub fn from_arg(arg: &str) -> Result<LocalNets, String> {
        let path = std::path::Path::new(arg);
        if (!arg.contains('/') || path.is_file())
            && let Ok(text) = std::fs::read_to_string(path)
        {
            return LocalNets::parse(&text).map_err(|e| format!("{arg}: {e}"));
        }
        LocalNets::parse(arg)
    }

    pub fn contains(&self, a: &Addr) -> bool {
        self.nets.iter().any(|n| n.contains(a))
    }

    pub fn direction(&self, client: &Addr, server: &Addr) -> Direction {
        match (self.contains(client), self.contains(server)) {
            (true, true) => Direction::Local,
            (true, false) => Direction::Out,
            (false, true) => Direction::In,
            (false, false) => Direction::External,
        }
    }
}

fn parse_net(word: &str) -> Result<Net, String> {
    let (ip, prefix) = match word.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (word, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{word:?} is not a network (expected e.g. 10.0.0.0/8)"))?;
    let (bits, v4) = match ip {
        IpAddr::V4(_) => (32u8, true),
        IpAddr::V6(_) => (128u8, false),
    };
    let prefix = match prefix {
        None => bits,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= bits => p,
            _ => return Err(format!("{word:?}: prefix length must be 0 to {bits}")),
        },
    };
    let addr = addr_bits(&Addr::from(ip));
    Ok(Net { addr, prefix, v4 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn directions() {
        let l = LocalNets::parse("10.0.0.0/8, fd00::/8\n192.0.2.7 # one host").unwrap();
        assert_eq!(l.direction(&a("10.1.2.3"), &a("8.8.8.8")), Direction::Out);
        assert_eq!(l.direction(&a("8.8.8.8"), &a("10.1.2.3")), Direction::In);
        assert_eq!(
            l.direction(&a("10.1.2.3"), &a("192.0.2.7")),
            Direction::Local
        );
        assert_eq!(
            l.direction(&a("192.0.2.8"), &a("11.0.0.1")),
            Direction::External
        );
        assert_eq!(
            l.direction(&a("fd12::1"), &a("2001:db8::1")),
            Direction::Out
        );
        // An IPv4 network never holds an IPv6 address.
        assert!(!l.contains(&a("::ffff:10.0.0.1")));
        let all = LocalNets::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(&a("1.2.3.4")) && !all.contains(&a("::1")));
    }

    #[test]
    fn bad_networks_say_which() {
        for bad in ["10.0.0.0/33", "fd00::/129", "ten/8", "", "# only a comment"] {
            assert!(LocalNets::parse(bad).is_err(), "{bad}");
        }
        let e = LocalNets::parse("10.0.0.0/8,banana").unwrap_err();
        assert!(e.contains("banana"), "{e}");
    }
}
