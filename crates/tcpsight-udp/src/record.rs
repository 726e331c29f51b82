//! One finished UDP flow and its one schema (docs/fields.md, "UDP flows").

use tcpsight_core::{Addr, Schema, Value};

use crate::guess::{Proto, quic_version_name};

/// Why a flow's record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// No datagram either way for the idle timeout.
    Idle,
    /// The input ended.
    End,
    /// The table was full and this flow's deadline came first.
    Evicted,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            End::Idle => "idle",
            End::End => "end",
            End::Evicted => "evicted",
        }
    }
}

/// One direction: `c2s` is what the client (the sender of the flow's first datagram)
/// sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpDir {
    pub pkts: u64,
    /// UDP payload bytes from the UDP headers (captured or not).
    pub bytes: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

impl UdpDir {
    pub(crate) fn add(&mut self, ts_ns: u64, len: u32) {
        self.pkts += 1;
        self.bytes += len as u64;
        self.first_ns.get_or_insert(ts_ns);
        self.last_ns = Some(self.last_ns.map_or(ts_ns, |l| l.max(ts_ns)));
    }
}

/// A UDP flow: the datagrams between two endpoints (and VLAN) with no idle gap longer
/// than the timeout.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpRecord {
    pub ts_first_ns: u64,
    pub ts_last_ns: u64,
    pub client: Addr,
    pub client_port: u16,
    pub server: Addr,
    pub server_port: u16,
    pub vlan: u32,
    pub proto: Proto,
    pub quic_version: Option<u32>,
    pub end: End,
    pub c2s: UdpDir,
    pub s2c: UdpDir,
}

impl UdpRecord {
    pub fn duration_ns(&self) -> u64 {
        self.ts_last_ns.saturating_sub(self.ts_first_ns)
    }

    /// A record with every optional field set (column types) and one with none.
    pub fn examples() -> [UdpRecord; 2] {
        let dir = UdpDir {
            pkts: 1,
            bytes: 1,
            first_ns: Some(0),
            last_ns: Some(0),
        };
        let full = UdpRecord {
            ts_first_ns: 0,
            ts_last_ns: 0,
            client: Addr::from_v4([0, 0, 0, 0]),
            client_port: 0,
            server: Addr::from_v4([0, 0, 0, 0]),
            server_port: 0,
            vlan: 0,
            proto: Proto::Quic,
            quic_version: Some(1),
            end: End::Idle,
            c2s: dir,
            s2c: dir,
        };
        let empty = UdpRecord {
            proto: Proto::Unknown,
            quic_version: None,
            s2c: UdpDir::default(),
            c2s: UdpDir::default(),
            ..full.clone()
        };
        [full, empty]
    }
}

fn opt(v: Option<u64>, f: fn(u64) -> Value<'static>) -> Value<'static> {
    v.map_or(Value::Null, f)
}

impl Schema for UdpRecord {
    fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, mut f: F) {
        f("ts_first", Value::Epoch(self.ts_first_ns));
        f("ts_last", Value::Epoch(self.ts_last_ns));
        f("ts_first_ns", Value::U64(self.ts_first_ns));
        f("ts_last_ns", Value::U64(self.ts_last_ns));
        f("client_ip", Value::Addr(self.client));
        f("client_port", Value::U64(self.client_port as u64));
        f("server_ip", Value::Addr(self.server));
        f("server_port", Value::U64(self.server_port as u64));
        f("vlan", Value::U64(self.vlan as u64));
        f("duration_us", Value::Micros(self.duration_ns()));
        f("proto", Value::Str(self.proto.name()));
        let version = self.quic_version.map(quic_version_name);
        f(
            "quic_version",
            version.as_deref().map_or(Value::Null, Value::Str),
        );
        f("end", Value::Str(self.end.name()));
        for (names, d) in [(&C2S, &self.c2s), (&S2C, &self.s2c)] {
            f(names[0], Value::U64(d.pkts));
            f(names[1], Value::U64(d.bytes));
            f(names[2], opt(d.first_ns, Value::Epoch));
            f(names[3], opt(d.last_ns, Value::Epoch));
        }
    }
}

const C2S: [&str; 4] = ["c2s_pkts", "c2s_bytes", "c2s_first", "c2s_last"];
const S2C: [&str; 4] = ["s2c_pkts", "s2c_bytes", "s2c_first", "s2c_last"];

/// The names of every UDP record field, in output order.
pub fn field_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    UdpRecord::examples()[0].for_each_field(|n, _| names.push(n));
    names
}
