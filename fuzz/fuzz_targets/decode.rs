//! Fuzz target: one frame through `tcpsight_core::decode::decode`.
//!
//! Input: byte 0 picks the link type (`LINKS[b % 21]`: the supported ones and one
//! unsupported), byte 1 how much longer the frame was on the wire (`orig_len =
//! frame.len() + b * 8`, 0 = not truncated), the rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpsight_core::LinkType;
use tcpsight_core::decode::{self, DecodeError, Decoded};

// The ten first supported link types, one unsupported (147), then the others (in the
// engine target, 4 bits reach the first 16).
const LINKS: [u32; 21] = [
    0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147, 127, 105, 9, 239, 192, 50, 51, 104, 107, 178,
];

fuzz_target!(|data: &[u8]| {
    let [sel, extra, frame @ ..] = data else { return };
    let link = LinkType(LINKS[*sel as usize % LINKS.len()]);
    let orig_len = frame.len() as u32 + *extra as u32 * 8;
    let r = decode::decode(link, frame, orig_len);
    // The engine's decoder (with the tunnel record) says the same.
    let mut t = decode::Tunnel::default();
    assert_eq!(decode::decode_with(link, frame, orig_len, &mut t), r);
    assert!(t.path.layers().len() <= decode::MAX_DEPTH);
    let _ = t.path.to_string();
    if let Some(u) = t.unknown {
        let _ = u.to_string();
    }
    match r {
        Err(DecodeError::UnknownLinkType(t)) => assert!(!link.is_supported() && t == link.0),
        _ => assert!(link.is_supported(), "unsupported link type decoded: {r:?}"),
    }
    match r {
        Ok(Decoded::Tcp(seg)) => {
            // A snaplen-cut frame is always flagged as such.
            assert!(*extra == 0 || seg.truncated, "{seg:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(_) => {}
    }
});
