//! Fuzz target: a connection's byte stream, in chunks and directions, through
//! `tcpsight_l7::Analyzer`.
//!
//! Input: records until the input runs out: `ctrl:u8 len:u16le [data[len]]`. `ctrl` bit 0
//! is the direction (0 to the server, 1 to the client), bit 1 makes the record a gap of
//! `len` bytes (no data follows), bit 2 ends the connection after the record. `len` is cut
//! to what is left. Timestamps rise by 1 per record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpsight_l7::{Analyzer, Dir, L7Event};

fuzz_target!(|data: &[u8]| {
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut ts = 0u64;
    let mut ended = false;
    while let [ctrl, l0, l1, tail @ ..] = rest {
        ts += 1;
        let dir = if ctrl & 1 == 0 {
            Dir::ToServer
        } else {
            Dir::ToClient
        };
        let len = u16::from_le_bytes([*l0, *l1]) as usize;
        if ctrl & 2 != 0 {
            a.on_gap(dir, ts, len as u64, &mut out);
            rest = tail;
        } else {
            let n = len.min(tail.len());
            a.on_data(dir, ts, &tail[..n], &mut out);
            rest = &tail[n..];
        }
        // Bounded state: 2 x 16 KB header buffers, 32 queued transactions of at most
        // ~37 KB of strings, or 2 x 32 KB of TLS handshake.
        assert!(a.state_bytes() < 1_300_000, "state {}", a.state_bytes());
        if ctrl & 4 != 0 && !ended {
            a.on_end(ts, &mut out);
            ended = true;
        }
    }
    if !ended {
        a.on_end(ts + 1, &mut out);
    }
    let n = out.len();
    // After the end nothing more happens.
    a.on_data(Dir::ToServer, ts + 2, b"GET / HTTP/1.1\r\n\r\n", &mut out);
    a.on_end(ts + 3, &mut out);
    assert_eq!(out.len(), n);
    let mut tls = 0;
    for e in &out {
        match e {
            L7Event::Http(t) => t.for_each_field(|_, _| {}),
            L7Event::Tls(t) => {
                tls += 1;
                t.for_each_field(|_, _| {})
            }
        }
    }
    assert!(tls <= 1, "one TLS handshake per connection");
    let _ = a.summary();
});
