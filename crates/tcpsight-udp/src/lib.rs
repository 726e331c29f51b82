//! tcpsight-udp: UDP flows, Tstat's log_udp_complete, over the engine's datagram seam
//! (`Config::datagrams`, `Observer::on_datagram`).
//!
//! - [`guess`]: the application protocol from a datagram's payload (DNS and its
//!   relatives, QUIC long headers with their version, NTP, DHCP, STUN, ...).
//! - [`table`]: [`UdpTable`], flows keyed by 5-tuple (and VLAN), ended by an idle
//!   timeout in capture time, at most a fixed number at once (the rest evicted and
//!   counted).
//! - [`record`]: [`UdpRecord`], one finished flow, with its one schema (the same
//!   [`tcpsight_core::Schema`] the connection records and every writer use).
//!
//! The table is fed on the thread that runs the observers: a sharded run delivers
//! every datagram there in the single engine's order, so flows are the same with any
//! number of threads.

pub mod guess;
pub mod record;
pub mod table;

pub use guess::{Guess, Proto, guess};
pub use record::{End, UdpDir, UdpRecord, field_names};
pub use table::{UdpConfig, UdpStats, UdpTable};
