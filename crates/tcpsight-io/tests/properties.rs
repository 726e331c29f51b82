//! Property tests for the capture reader: no byte stream makes it panic or loop, valid
//! files read back exactly, and a file cut anywhere yields every record before the cut
//! and then a clean end or an error that says where.
//!
//! Case counts keep the file to a few seconds in a debug build; raise them locally with
//! `PROPTEST_CASES=5000`.

use std::io::{Cursor, Write};

use proptest::prelude::*;
use tcpsight_io::{CaptureReader, ReadError};

const NAME: &str = "prop-input.pcap";

/// Upper bound on `advance` calls: far more than any input here can hold (a frame costs
/// at least 16 bytes), so reaching it means the reader stopped making progress.
const MAX_ADVANCES: usize = 200_000;

#[derive(Clone, Debug, PartialEq)]
struct Rec {
    ts_ns: u64,
    link: u32,
    data: Vec<u8>,
    orig_len: u32,
}

/// How a read ended.
#[derive(Debug)]
enum End {
    /// `from_reader` itself failed (no frame was handed out).
    Open(ReadError),
    Eof,
    Err(ReadError),
}

/// Reads every frame the way the CLI does: `from_reader` loads the first frame, then
/// `current()` / `advance()` until `Ok(false)` or an error.
fn read_all(bytes: Vec<u8>) -> (Vec<Rec>, End) {
    let mut r = match CaptureReader::from_reader(NAME, Box::new(Cursor::new(bytes))) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), End::Open(e)),
    };
    let mut out = Vec::new();
    for _ in 0..MAX_ADVANCES {
        if let Some(f) = r.current() {
            assert!(
                f.orig_len as usize >= f.data.len(),
                "orig_len below captured length"
            );
            out.push(Rec {
                ts_ns: f.ts_ns,
                link: f.link.0,
                data: f.data.to_vec(),
                orig_len: f.orig_len,
            });
        }
        match r.advance() {
            Ok(true) => {}
            Ok(false) => {
                // Finished readers stay finished.
                assert!(matches!(r.advance(), Ok(false)) && r.current().is_none());
                return (out, End::Eof);
            }
            Err(e) => {
                assert!(matches!(r.advance(), Ok(false)) && r.current().is_none());
                return (out, End::Err(e));
            }
        }
    }
    panic!("reader did not finish after {MAX_ADVANCES} advances");
}

/// Every error names the input; errors from within the stream also say "byte N".
fn check_error_text(e: &ReadError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(
        text.contains(NAME),
        "error does not name the file: {}",
        text
    );
    prop_assert!(!e.message.is_empty());
    if let Some(o) = e.offset {
        prop_assert!(
            text.contains(&format!("byte {o}")),
            "error does not give its offset: {}",
            text
        );
    }
    Ok(())
}

fn check_end(end: &End) -> Result<(), TestCaseError> {
    match end {
        End::Open(e) | End::Err(e) => check_error_text(e),
        End::Eof => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Writers

#[derive(Clone, Copy, Debug)]
struct PcapFlavor {
    big_endian: bool,
    nanos: bool,
    link: u32,
}

fn pcap_header(f: PcapFlavor) -> Vec<u8> {
    let magic: u32 = if f.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut h = Vec::with_capacity(24);
    let put32 = |h: &mut Vec<u8>, v: u32| {
        h.extend_from_slice(&if f.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        })
    };
    put32(&mut h, magic);
    let (major, minor) = (2u16, 4u16);
    for v in [major, minor] {
        h.extend_from_slice(&if f.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    put32(&mut h, 0); // thiszone
    put32(&mut h, 0); // sigfigs
    put32(&mut h, 262_144); // snaplen
    put32(&mut h, f.link);
    h
}

/// A pcap file, the records it holds (as the reader should report them) and the byte
/// offset where each record ends.
fn pcap_file(f: PcapFlavor, recs: &[(u32, u32, Vec<u8>, u32)]) -> (Vec<u8>, Vec<Rec>, Vec<usize>) {
    let mut out = pcap_header(f);
    let mut want = Vec::new();
    let mut ends = Vec::new();
    let units = if f.nanos { 1_000_000_000 } else { 1_000_000 };
    for (sec, frac, data, extra) in recs {
        let frac = frac % units;
        let orig = data.len() as u32 + extra;
        for v in [*sec, frac, data.len() as u32, orig] {
            out.extend_from_slice(&if f.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
        out.extend_from_slice(data);
        ends.push(out.len());
        let frac_ns = if f.nanos {
            frac as u64
        } else {
            frac as u64 * 1000
        };
        want.push(Rec {
            ts_ns: *sec as u64 * 1_000_000_000 + frac_ns,
            link: f.link,
            data: data.clone(),
            orig_len: orig,
        });
    }
    (out, want, ends)
}

fn ng_block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend_from_slice(&total.to_le_bytes());
}

/// Section header (little-endian, unknown section length) and one interface per link
/// type, microsecond resolution.
fn pcapng_head(links: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    ng_block(&mut out, 0x0a0d_0d0a, &shb);
    for &l in links {
        let mut idb = Vec::new();
        idb.extend_from_slice(&l.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&262_144u32.to_le_bytes());
        ng_block(&mut out, 1, &idb);
    }
    out
}

/// A pcapng file with enhanced packet blocks `(interface, microseconds, data, extra)`.
fn pcapng_file(
    links: &[u16],
    recs: &[(usize, u64, Vec<u8>, u32)],
) -> (Vec<u8>, Vec<Rec>, Vec<usize>) {
    let mut out = pcapng_head(links);
    let mut want = Vec::new();
    let mut ends = Vec::new();
    for (iface, us, data, extra) in recs {
        let iface = iface % links.len();
        let orig = data.len() as u32 + extra;
        let mut epb = Vec::new();
        epb.extend_from_slice(&(iface as u32).to_le_bytes());
        epb.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(*us as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(data);
        ng_block(&mut out, 6, &epb);
        ends.push(out.len());
        want.push(Rec {
            ts_ns: us * 1000,
            link: links[iface] as u32,
            data: data.clone(),
            orig_len: orig,
        });
    }
    (out, want, ends)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------
// Strategies

fn flavor() -> impl Strategy<Value = PcapFlavor> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![0u32, 1, 101, 113, 228, 276, 147]),
    )
        .prop_map(|(big_endian, nanos, link)| PcapFlavor {
            big_endian,
            nanos,
            link,
        })
}

fn pcap_records() -> impl Strategy<Value = Vec<(u32, u32, Vec<u8>, u32)>> {
    prop::collection::vec(
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..120),
            prop_oneof![3 => Just(0u32), 1 => 0u32..70_000],
        ),
        0..12,
    )
}

fn pcapng_records() -> impl Strategy<Value = Vec<(usize, u64, Vec<u8>, u32)>> {
    prop::collection::vec(
        (
            0usize..4,
            // Microseconds up to year ~2500: no saturation in the ns conversion.
            0u64..(1 << 54),
            prop::collection::vec(any::<u8>(), 0..120),
            prop_oneof![3 => Just(0u32), 1 => 0u32..70_000],
        ),
        0..12,
    )
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn cases(n: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// After a cut at `cut`: every frame complete before it, then the end. `frame_ends` are
/// the offsets where frames end, `block_ends` where any block (file header included)
/// ends. A cut on a block boundary is a clean end of file; a cut inside a block is
/// either a clean end or an error naming the file and, as "byte N", the offset where the
/// damaged block starts.
fn check_cut(
    bytes: &[u8],
    want: &[Rec],
    frame_ends: &[usize],
    block_ends: &[usize],
    cut: usize,
) -> Result<(), TestCaseError> {
    let (got, end) = read_all(bytes[..cut].to_vec());
    let complete = frame_ends.iter().filter(|&&e| e <= cut).count();
    prop_assert_eq!(
        &got[..],
        &want[..complete],
        "cut at {} of {}",
        cut,
        bytes.len()
    );
    match &end {
        End::Eof => {}
        End::Open(e) | End::Err(e) => {
            check_error_text(e)?;
            let text = e.to_string();
            if cut == 0 {
                // Nothing to point into: "empty file".
                prop_assert!(text.contains("empty"), "{}", text);
            } else {
                prop_assert!(
                    text.contains("byte"),
                    "error without a byte offset: {}",
                    text
                );
                let block_start = block_ends
                    .iter()
                    .copied()
                    .filter(|&e| e <= cut)
                    .max()
                    .unwrap_or(0);
                prop_assert_eq!(
                    e.offset,
                    Some(block_start as u64),
                    "cut at {}: {}",
                    cut,
                    text
                );
            }
        }
    }
    if block_ends.contains(&cut) {
        prop_assert!(
            matches!(end, End::Eof),
            "cut on a block boundary ({}) must end cleanly: {:?}",
            cut,
            end
        );
    }
    Ok(())
}

/// Block boundaries of a pcap or pcapng file (either byte order), walked independently
/// of the reader: (frame ends, all block ends).
fn block_ends(data: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let u32_at = |at: usize, be: bool| {
        let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let (mut frames, mut blocks) = (Vec::new(), Vec::new());
    if data[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut at = 0;
        let mut be = false;
        while at + 12 <= data.len() {
            let kind = u32_at(at, be);
            if kind == 0x0a0d_0d0a {
                be = data[at + 8..at + 12] == [0x1a, 0x2b, 0x3c, 0x4d];
            }
            let len = u32_at(at + 4, be) as usize;
            at += len;
            blocks.push(at);
            if matches!(kind, 3 | 6) {
                frames.push(at);
            }
        }
    } else {
        let be = matches!(
            data[..4],
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]
        );
        let mut at = 24;
        blocks.push(at);
        while at + 16 <= data.len() {
            at += 16 + u32_at(at + 8, be) as usize;
            blocks.push(at);
            frames.push(at);
        }
    }
    (frames, blocks)
}

// ---------------------------------------------------------------------------
// Arbitrary input: no panic, no endless loop, errors that say where.

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn arbitrary_bytes(data in bytes(600)) {
        let (_, end) = read_all(data);
        check_end(&end)?;
    }

    /// Compressed-looking input: gzip and zstd magic followed by anything.
    #[test]
    fn arbitrary_bytes_after_compression_magic(zstd in any::<bool>(), tail in bytes(400)) {
        let mut data: Vec<u8> = if zstd { vec![0x28, 0xb5, 0x2f, 0xfd] } else { vec![0x1f, 0x8b] };
        data.extend_from_slice(&tail);
        let (_, end) = read_all(data);
        check_end(&end)?;
    }

    /// A valid pcapng with a few bytes overwritten.
    #[test]
    fn mutated_pcapng(links in prop::collection::vec(prop::sample::select(vec![1u16, 0, 101, 113]), 1..4), recs in pcapng_records(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let (mut data, _, _) = pcapng_file(&links, &recs);
        for (i, b) in edits {
            let i = i.index(data.len());
            data[i] = b;
        }
        let (_, end) = read_all(data);
        check_end(&end)?;
    }
}

// A pcapng block length read from arbitrary bytes is usually huge, and the reader then
// grows its buffer towards the 64 MiB bound before giving up, which is slow in a debug
// build: fewer cases here (the `reader` fuzz target covers this ground far faster).
proptest! {
    #![proptest_config(cases(16))]

    #[test]
    fn arbitrary_bytes_after_pcapng_head(links in prop::collection::vec(any::<u16>(), 0..3), tail in bytes(600)) {
        let mut data = pcapng_head(&links);
        data.extend_from_slice(&tail);
        let (_, end) = read_all(data);
        check_end(&end)?;
    }

    /// Arbitrary blocks with well-formed framing (type, matching lengths): exercises the
    /// block bodies rather than the length checks.
    #[test]
    fn arbitrary_pcapng_blocks(
        links in prop::collection::vec(any::<u16>(), 1..3),
        blocks in prop::collection::vec((prop::sample::select(vec![1u32, 2, 3, 5, 6, 0x0a0d_0d0a, 0xbad]), bytes(64)), 0..8),
    ) {
        let mut data = pcapng_head(&links);
        for (kind, body) in &blocks {
            ng_block(&mut data, *kind, body);
        }
        let (_, end) = read_all(data);
        check_end(&end)?;
    }
}

// ---------------------------------------------------------------------------
// Valid and truncated files.

// Classic pcap (and gzip) inputs are cheap to read: more cases.
proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_after_pcap_header(f in flavor(), tail in bytes(600)) {
        let mut data = pcap_header(f);
        data.extend_from_slice(&tail);
        let (_, end) = read_all(data);
        check_end(&end)?;
    }

    /// A valid pcap with a few bytes overwritten.
    #[test]
    fn mutated_pcap(f in flavor(), recs in pcap_records(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let (mut data, _, _) = pcap_file(f, &recs);
        for (i, b) in edits {
            let i = i.index(data.len());
            data[i] = b;
        }
        let (_, end) = read_all(data);
        check_end(&end)?;
    }

    /// A valid pcap reads back exactly (timestamps in ns, link type, bytes, original
    /// length) and ends with Ok(false).
    #[test]
    fn pcap_round_trip(f in flavor(), recs in pcap_records()) {
        let (data, want, _) = pcap_file(f, &recs);
        let (got, end) = read_all(data);
        prop_assert!(matches!(end, End::Eof), "{:?}", end);
        prop_assert_eq!(got, want);
    }

    /// The same file gzip-compressed reads back the same.
    #[test]
    fn gzip_round_trip(f in flavor(), recs in pcap_records()) {
        let (data, want, _) = pcap_file(f, &recs);
        let (got, end) = read_all(gzip(&data));
        prop_assert!(matches!(end, End::Eof), "{:?}", end);
        prop_assert_eq!(got, want);
    }

    /// A pcap cut at any byte yields exactly the records complete before the cut, then
    /// Ok(false) or an error naming the file and a byte offset (Ok(false) when the cut
    /// falls on a record boundary).
    #[test]
    fn truncated_pcap(f in flavor(), recs in pcap_records(), cut in any::<prop::sample::Index>()) {
        let (data, want, ends) = pcap_file(f, &recs);
        prop_assert_eq!(&block_ends(&data).0, &ends);
        let cut = cut.index(data.len() + 1);
        check_cut(&data, &want, &ends, &block_ends(&data).1, cut)?;
    }

    /// A gzip stream cut anywhere: the frames read are a prefix of the file's, and the
    /// read ends (cleanly or with an error naming the file).
    #[test]
    fn truncated_gzip(f in flavor(), recs in pcap_records(), cut in any::<prop::sample::Index>()) {
        let (data, want, _) = pcap_file(f, &recs);
        let gz = gzip(&data);
        let cut = cut.index(gz.len() + 1);
        let (got, end) = read_all(gz[..cut].to_vec());
        prop_assert!(got.len() <= want.len());
        prop_assert_eq!(&got[..], &want[..got.len()]);
        check_end(&end)?;
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn pcapng_round_trip(links in prop::collection::vec(prop::sample::select(vec![1u16, 0, 101, 113, 276]), 1..4), recs in pcapng_records()) {
        let (data, want, _) = pcapng_file(&links, &recs);
        let (got, end) = read_all(data);
        prop_assert!(matches!(end, End::Eof), "{:?}", end);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn truncated_pcapng(links in prop::collection::vec(prop::sample::select(vec![1u16, 0, 101, 113]), 1..4), recs in pcapng_records(), cut in any::<prop::sample::Index>()) {
        let (data, want, ends) = pcapng_file(&links, &recs);
        prop_assert_eq!(&block_ends(&data).0, &ends);
        let cut = cut.index(data.len() + 1);
        check_cut(&data, &want, &ends, &block_ends(&data).1, cut)?;
    }
}

/// Small real captures from testdata/captures (pcap and pcapng, both byte orders, us and
/// ns resolution, several interfaces).
const REAL_CAPTURES: [&str; 9] = [
    "zeek/tcp-syn-only.pcap",
    "zeek/tcp-syn-then-rst.pcap",
    "tcpdump/tcp-handshake-nano.pcap",
    "zeek/tcp-fin_retransmission.pcap",
    "zeek/tcp-retransmit-timeout.pcapng",
    "zeek/tcp-rst-inject-rae.pcap",
    "zeek/pcapng-multi-interface.pcapng",
    "zeek/http-get-to-ssh-server-nsec.pcap",
    "gopacket/pcapng-be-test100.pcapng",
];

fn real_capture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../testdata/captures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

proptest! {
    #![proptest_config(cases(96))]

    /// A real capture cut at any byte: the frames of the whole file up to the cut, then
    /// a clean end or an error at the damaged block's offset.
    #[test]
    fn truncated_real_capture(file in prop::sample::select(REAL_CAPTURES.to_vec()), cut in any::<prop::sample::Index>()) {
        let data = real_capture(file);
        let (want, end) = read_all(data.clone());
        prop_assert!(matches!(end, End::Eof), "{}: {:?}", file, end);
        let (frames, blocks) = block_ends(&data);
        prop_assert_eq!(frames.len(), want.len(), "{}", file);
        prop_assert_eq!(blocks.last().copied(), Some(data.len()));
        let cut = cut.index(data.len() + 1);
        check_cut(&data, &want, &frames, &blocks, cut)?;
    }
}

// ---------------------------------------------------------------------------
// Records larger than the reader's initial 1 MiB buffer (regression: the buffer used
// to stop growing at 2 MiB and call such records "over 256 MiB: corrupt").

#[test]
fn pcap_record_over_2_mib() {
    let f = PcapFlavor {
        big_endian: false,
        nanos: false,
        link: 1,
    };
    let big = vec![0x5au8; 3 << 20];
    let (data, want, _) = pcap_file(
        f,
        &[(1, 2, vec![1, 2, 3], 0), (3, 4, big, 0), (5, 6, vec![4], 0)],
    );
    let (got, end) = read_all(data);
    assert!(matches!(end, End::Eof), "{end:?}");
    assert_eq!(got, want);
}

#[test]
fn pcapng_block_over_2_mib() {
    let big = vec![0xa5u8; 3 << 20];
    let (data, want, _) = pcapng_file(
        &[1],
        &[(0, 1, vec![1, 2, 3], 0), (0, 2, big, 0), (0, 3, vec![4], 0)],
    );
    let (got, end) = read_all(data);
    assert!(matches!(end, End::Eof), "{end:?}");
    assert_eq!(got, want);
}
