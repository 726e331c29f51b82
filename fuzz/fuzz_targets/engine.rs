//! Fuzz target: a sequence of frames with timestamps through `Engine::process`, then
//! `Engine::finish`, then the invariants the property tests check.
//!
//! Input format (fuzz/README.md), repeated until the input runs out:
//!
//! ```text
//! ctrl:u8  ts:(u16le | u64le)  len:u16le  [extra:u8]  data[len]
//! ctrl bits 0-3  link type: LINKS[bits % 21] (the first 16: supported ones and one unsupported)
//! ctrl bits 4-5  timestamp: 0 = previous + ts ms, 1 = previous + ts s,
//!                           2 = previous - ts ms, 3 = ts is an absolute u64le in ns
//! ctrl bit 6     truncated: `extra` follows, orig_len = len + 1 + extra * 64
//! ```
//!
//! `len` is cut to what is left of the input. The first timestamp is relative to
//! 1.7e18 ns (late 2023). With the environment variable TCPSIGHT_FUZZ_CLAMP_TS set,
//! timestamps are kept below 2^62 ns, to fuzz past the known `now + sweep_interval`
//! overflow at the top of the u64 range (fuzz/regressions/engine/).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

use tcpsight_core::{Collect, Config, ConnId, Engine, LinkType, Observer, Payload};

/// Payload chunks of each direction follow each other: no overlap, no hole untold.
#[derive(Default)]
struct Streams {
    next: HashMap<(ConnId, usize), u64>,
    delivered: HashMap<ConnId, u64>,
}

impl Observer for Streams {
    fn on_payload(&mut self, p: &Payload) -> bool {
        let next = self.next.entry((p.id, p.from as usize)).or_default();
        assert_eq!(p.offset, *next + p.gap, "{p:?}");
        *next = p.offset + p.data.len() as u64;
        *self.delivered.entry(p.id).or_default() += p.data.len() as u64;
        true
    }
}

// The ten first supported link types, one unsupported (147), then the others (in the
// engine target, 4 bits reach the first 16).
const LINKS: [u32; 21] = [
    0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147, 127, 105, 9, 239, 192, 50, 51, 104, 107, 178,
];
const START_NS: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn clamp_ts() -> bool {
    static CLAMP: OnceLock<bool> = OnceLock::new();
    *CLAMP.get_or_init(|| std::env::var_os("TCPSIGHT_FUZZ_CLAMP_TS").is_some())
}

struct Frame<'a> {
    ts: u64,
    link: LinkType,
    data: &'a [u8],
    orig_len: u32,
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn parse(mut input: &[u8]) -> Vec<Frame<'_>> {
    let clamp = clamp_ts();
    let mut ts = START_NS;
    let mut frames = Vec::new();
    while let Some(&[ctrl]) = take(&mut input, 1) {
        let link = LinkType(LINKS[(ctrl & 0x0f) as usize % LINKS.len()]);
        let mode = (ctrl >> 4) & 3;
        let step = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as u64;
        ts = match mode {
            0 => ts.saturating_add(step(take(&mut input, 2).unwrap_or(&[0, 0])) * MS),
            1 => ts.saturating_add(step(take(&mut input, 2).unwrap_or(&[0, 0])) * S),
            2 => ts.saturating_sub(step(take(&mut input, 2).unwrap_or(&[0, 0])) * MS),
            _ => match take(&mut input, 8) {
                Some(b) => u64::from_le_bytes(b.try_into().unwrap()),
                None => break,
            },
        };
        if clamp {
            ts &= (1 << 62) - 1;
        }
        let Some(len) = take(&mut input, 2) else { break };
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let extra = if ctrl & 0x40 != 0 {
            match take(&mut input, 1) {
                Some(&[e]) => Some(e),
                _ => break,
            }
        } else {
            None
        };
        let len = len.min(input.len());
        let data = take(&mut input, len).unwrap_or(&[]);
        let orig_len = data.len() as u32 + extra.map_or(0, |e| 1 + e as u32 * 64);
        frames.push(Frame {
            ts,
            link,
            data,
            orig_len,
        });
    }
    frames
}

fuzz_target!(|input: &[u8]| {
    let frames = parse(input);
    let mut engine = Engine::new(Config {
        payload: true,
        ..Config::default()
    });
    let mut obs = (Collect::default(), Streams::default());
    for f in &frames {
        engine.process(f.ts, f.link, f.data, f.orig_len, &mut obs);
    }
    engine.finish(&mut obs);
    let (out, streams) = obs;

    let st = engine.stats();
    assert_eq!(st.frames, frames.len() as u64);
    let buckets = st.tcp_packets + st.icmp_errors + st.fragments + st.not_tcp + st.undecodable_total();
    assert_eq!(buckets, st.frames, "{st:?}");
    assert!(st.icmp_matched <= st.icmp_errors);
    assert_eq!(engine.active(), 0);
    assert_eq!(out.records.len() as u64, st.connections);
    let pkts: u64 = out.records.iter().map(|r| r.c2s.pkts + r.s2c.pkts).sum();
    assert_eq!(pkts, st.tcp_packets);
    let min_ts = frames.iter().map(|f| f.ts).min();
    let max_ts = frames.iter().map(|f| f.ts).max();
    for r in &out.records {
        assert!(r.ts_first_ns <= r.ts_last_ns, "{r:?}");
        assert!(Some(r.ts_first_ns) >= min_ts && Some(r.ts_last_ns) <= max_ts, "{r:?}");
        assert!(r.c2s.pkts + r.s2c.pkts >= 1, "{r:?}");
        // Each byte once: never more than the segments carried.
        let delivered = streams.delivered.get(&r.id).copied().unwrap_or(0);
        assert!(delivered <= r.c2s.payload_bytes + r.s2c.payload_bytes, "{r:?}");
        if let (Some(p50), Some(max)) = (r.response_p50_ns, r.response_max_ns) {
            assert!(p50 <= max, "{r:?}");
        }
    }
    assert!(out.handshakes.len() <= out.records.len());
});
