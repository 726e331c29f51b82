//! IP addresses in one 16-byte form, so a flow key hashes and compares as plain bytes.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address. IPv4 is kept as its IPv4-mapped IPv6 form
/// (`::ffff:a.b.c.d`) plus a flag, so both families share one key layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    bytes: [u8; 16],
    v4: bool,
}

impl Addr {
    #[inline]
    pub fn from_v4(o: [u8; 4]) -> Addr {
        let mut bytes = [0u8; 16];
        bytes[10] = 0xff;
        bytes[11] = 0xff;
        bytes[12..].copy_from_slice(&o);
        Addr { bytes, v4: true }
    }

    #[inline]
    pub fn from_v6(bytes: [u8; 16]) -> Addr {
        Addr { bytes, v4: false }
    }

    pub fn is_v4(&self) -> bool {
        self.v4
    }

    pub fn ip(&self) -> IpAddr {
        if self.v4 {
            let b = &self.bytes;
            IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.bytes))
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(a) => Addr::from_v4(a.octets()),
            IpAddr::V6(a) => Addr::from_v6(a.octets()),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip().fmt(f)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip().fmt(f)
    }
}
