//! Fuzz target: one UDP payload through `tcpsight_udp::guess`.
//!
//! Input: bytes 0-1 how much the UDP header's length differs from the payload's
//! (signed: shorter is a bad header, longer a snaplen cut), bytes 2-5 the two ports,
//! the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpsight_udp::{Proto, guess};

fuzz_target!(|data: &[u8]| {
    let [d0, d1, p0, p1, p2, p3, payload @ ..] = data else { return };
    let delta = i16::from_be_bytes([*d0, *d1]) as i64;
    let len = (payload.len() as i64 + delta).clamp(0, u32::MAX as i64) as u32;
    let g = guess(payload, len, u16::from_be_bytes([*p0, *p1]), u16::from_be_bytes([*p2, *p3]));
    // A version only with QUIC, and nothing guessed from no bytes.
    assert_eq!(g.quic_version.is_some(), g.proto == Proto::Quic);
    assert!(!payload.is_empty() || g.proto == Proto::Unknown);
    if let Some(v) = g.quic_version {
        let _ = tcpsight_udp::guess::quic_version_name(v);
    }
});
