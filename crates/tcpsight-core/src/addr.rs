//! IP addresses in one 16-byte form, so a flow key hashes and compares as plain bytes.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 address. IPv4 is kept as its IPv4-mapped IPv6 form
/// (`::ffff:a.b.c.d`) plus a flag, so both families share one key layout; the 128 bits
/// are two integers, so keys compare and hash in a few instructions (byte arrays went
/// through memcmp), and 8-byte alignment keeps a key at 56 bytes (u128 would pad it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    hi: u64,
    lo: u64,
    v4: bool,
}

impl Addr {
    #[inline]
    pub fn from_v4(o: [u8; 4]) -> Addr {
        Addr {
            hi: 0,
            lo: 0xffff_0000_0000 | u32::from_be_bytes(o) as u64,
            v4: true,
        }
    }

    #[inline]
    pub fn from_v6(bytes: [u8; 16]) -> Addr {
        let bits = u128::from_be_bytes(bytes);
        Addr {
            hi: (bits >> 64) as u64,
            lo: bits as u64,
            v4: false,
        }
    }

    pub fn is_v4(&self) -> bool {
        self.v4
    }

    /// The address as two words and the family flag, for hashing.
    #[inline]
    pub fn words(&self) -> (u64, u64, bool) {
        (self.hi, self.lo, self.v4)
    }

    pub fn ip(&self) -> IpAddr {
        if self.v4 {
            IpAddr::V4(Ipv4Addr::from(self.lo as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(((self.hi as u128) << 64) | self.lo as u128))
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
