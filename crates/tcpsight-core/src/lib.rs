//! tcpsight-core: the sans-IO TCP connection analysis engine.
//!
//! Feed [`Engine::process`] frames in capture order (timestamp in ns, link type, bytes,
//! original length); it reports decided handshakes and finished connections to an
//! [`Observer`]. Call [`Engine::finish`] at the end of input.
//!
//! Layout: `decode` (frames to TCP segments and ICMP quotes) -> `engine` (flow table,
//! expiry) -> `conn` (one connection: handshake, close, exchanges) -> `dir` (one
//! direction: sequence analysis, RTT, gaps) -> `record` (the output schema).

pub mod addr;
pub mod build;
mod conn;
pub mod decode;
mod dir;
pub mod engine;
pub mod flow;
mod history;
pub mod names;
pub mod record;
pub mod seq;
pub mod stats;
mod stream;
mod time;
mod timers;

pub use addr::Addr;
pub use decode::LinkType;
pub use engine::{
    CaptureStats, Cause, Collect, Config, ConnId, Datagram, Engine, EngineCounts, ExchangeEvent,
    HandshakeEvent, Observer, Payload, connection_hash,
};
pub use flow::{Endpoint, FlowKey, Side};
pub use record::{AppFields, Close, ConnRecord, DirRecord, Outcome, Schema, Value};
