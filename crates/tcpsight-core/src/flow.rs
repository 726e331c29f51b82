//! Flow keys: the 4-tuple plus VLAN and tunnel, in a canonical order so both directions
//! meet.

use crate::addr::Addr;

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: Addr,
    pub port: u16,
}

/// Direction-free key: `lo` is the smaller endpoint. Loopback and same-address
/// connections stay distinct by port, so they are keyed correctly too. Ordered by
/// (lo, hi, vlan, tunnel): the tie-break of reports due at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub lo: Endpoint,
    pub hi: Endpoint,
    pub vlan: u32,
    /// The virtual networks the connection's packets travel in (VXLAN or Geneve VNI,
    /// the key of Ethernet over GRE, PBB I-SID: `decode::Tunnel::key`), 0 outside them.
    /// It sits in the key's padding (the key stays 72 bytes).
    pub tunnel: u32,
}

/// Hashed as five words (the derived impl made nine small writes, a tenth of the
/// per-packet instructions); the tunnel part is folded into the first address word (a
/// v4 address leaves it zero), so the key is still hashed once in five writes.
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let (a, b) = (self.lo.addr.words(), self.hi.addr.words());
        h.write_u64(a.0 ^ self.tunnel as u64);
        h.write_u64(a.1);
        h.write_u64(b.0);
        h.write_u64(b.1);
        h.write_u64(
            ((self.lo.port as u64) << 48)
                | ((self.hi.port as u64) << 32)
                | ((self.vlan as u64) << 2)
                | ((a.2 as u64) << 1)
                | b.2 as u64,
        );
    }
}

impl FlowKey {
    /// The key for a packet from `src` to `dst`, and whether `src` is the `lo` end.
    #[inline]
    pub fn new(src: Endpoint, dst: Endpoint, vlan: u32, tunnel: u32) -> (FlowKey, bool) {
        if src <= dst {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    vlan,
                    tunnel,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    vlan,
                    tunnel,
                },
                false,
            )
        }
    }
}

/// Which side of a connection sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client = 0,
    Server = 1,
}

impl Side {
    #[inline]
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}
