//! One capture file: pcap (us/ns, either byte order) or pcapng (any number of sections
//! and interfaces, per-interface link type, if_tsresol and if_tsoffset).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pcap_parser::pcapng::Block;
use std::io::Read;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use tcpsight_core::LinkType;

use crate::error::ReadError;
use crate::legacy::{LegacyReader, Problem, Record};
use crate::open::open;

/// Start with 1 MiB of buffer; grow for larger records up to this bound. A record
/// claiming more is treated as corruption rather than allocated.
const INITIAL_BUFFER: usize = 1 << 20;
const MAX_BUFFER: usize = crate::legacy::MAX_RECORD;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Pcap,
    PcapNg,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_s: i64,
    /// The last Interface Statistics Block's isb_ifrecv and isb_ifdrop.
    received: Option<u64>,
    dropped: Option<u64>,
}

impl Interface {
    /// A timestamp of this interface (units of its if_tsresol) in ns since the epoch.
    fn ns(&self, raw: u64) -> u64 {
        let secs = raw / self.resolution.max(1);
        let frac = raw % self.resolution.max(1);
        let secs = (secs as i64).saturating_add(self.offset_s).max(0) as u64;
        ns_from(secs, frac, self.resolution)
    }
}

/// What a pcapng file's Interface Statistics Blocks say about the capture that wrote
/// it (tcpsight's own writer and dumpcap end their files with one per interface).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The latest isb_endtime (ns since the epoch): the capture had seen everything up
    /// to then, which may be well after its last packet on a quiet interface.
    pub end_ns: Option<u64>,
    /// isb_ifrecv: packets the capture received, the last block's of each interface,
    /// summed over interfaces (and sections).
    pub received: Option<u64>,
    /// isb_ifdrop: packets it dropped, summed likewise.
    pub dropped: Option<u64>,
}

impl Recorded {
    fn add(&mut self, i: &Interface) {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        self.received = sum(self.received, i.received);
        self.dropped = sum(self.dropped, i.dropped);
    }
}

/// A frame borrowed from a reader until its next call.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub ts_ns: u64,
    pub link: LinkType,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// The interface it was captured on, where known: a pcapng interface's if_name, a
    /// live frame's interface (on `any`, each frame's own).
    pub interface: Option<&'a str>,
}

pub struct CaptureReader {
    path: String,
    source: Source,
    raw_bytes: Arc<AtomicU64>,
    size: Option<u64>,
    compression: &'static str,
    /// Digits after the decimal point the timestamps carry (6 for us, 9 for ns).
    ts_digits: u8,
    has_frame: bool,
    frames: u64,
    /// Frames skipped because they named an interface the file never described.
    pub orphan_frames: u64,
    done: bool,
}

enum Source {
    Legacy(LegacyReader, Option<Record>),
    Ng(Box<NgState>),
}

/// pcapng through pcap-parser; the current frame is copied out of its buffer.
struct NgState {
    inner: Box<dyn PcapReaderIterator + Send>,
    /// Bytes of the capture stream consumed so far (the current block's start).
    offset: u64,
    buffer_size: usize,
    interfaces: Vec<Interface>,
    /// Each interface's if_name, beside `interfaces` (same index).
    names: Vec<Option<Box<str>>>,
    /// The current frame's interface (an index into both).
    cur_if: usize,
    buf: Vec<u8>,
    cur_ts: u64,
    cur_link: LinkType,
    cur_orig: u32,
    /// Statistics of the sections already ended (their interfaces are forgotten).
    recorded: Recorded,
}

fn digits_of(resolution: u64) -> u8 {
    let mut d = 0u8;
    let mut r = resolution;
    while r >= 10 && d < 9 {
        r /= 10;
        d += 1;
    }
    d.max(1)
}

/// Units per second from pcapng's if_tsresol: 10^n, or 2^n when the high bit is set.
/// (pcap-parser 0.17 rejects the binary form and would leave microseconds.)
fn ts_resolution(tsresol: u8) -> u64 {
    let n = (tsresol & 0x7f) as u32;
    let r = if tsresol & 0x80 != 0 {
        2u64.checked_pow(n)
    } else {
        10u64.checked_pow(n)
    };
    // Beyond 2^64 units per second no timestamp could be represented; nanoseconds
    // are the finest the engine keeps anyway.
    r.unwrap_or(1_000_000_000).max(1)
}

fn ns_from(secs: u64, frac: u64, resolution: u64) -> u64 {
    let frac_ns = if resolution == 1_000_000_000 {
        frac
    } else {
        ((frac as u128 * 1_000_000_000u128) / resolution.max(1) as u128) as u64
    };
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}

/// Reads up to `buf.len()` bytes, fewer only at the end of input.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl CaptureReader {
    /// Opens `path` (`-` = stdin) and reads its file header.
    pub fn open(path: &str) -> Result<CaptureReader, ReadError> {
        Self::from_opened(path, open(path)?)
    }

    /// Reads a capture from any byte stream; `name` labels errors.
    pub fn from_reader(
        name: &str,
        reader: Box<dyn std::io::Read + Send>,
    ) -> Result<CaptureReader, ReadError> {
        Self::from_opened(name, crate::open::wrap(name, reader, None)?)
    }

    fn from_opened(path: &str, opened: crate::open::Opened) -> Result<CaptureReader, ReadError> {
        let mut src = opened.reader;
        let mut head = [0u8; 24];
        let n = read_up_to(&mut src, &mut head)
            .map_err(|e| ReadError::new(path, Some(0), e.to_string()))?;
        let legacy = (n == 24).then_some(()).and_then(|_| {
            // Only consumes `src` when the magic matches.
            let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            matches!(magic, 0xa1b2c3d4 | 0xa1b23c4d | 0xd4c3b2a1 | 0x4d3cb2a1).then_some(())
        });
        let (source, ts_digits) = if legacy.is_some() {
            let l = LegacyReader::new(&head, src).expect("magic checked");
            let digits = if l.nanos { 9 } else { 6 };
            (Source::Legacy(l, None), digits)
        } else {
            // pcap-parser looks at what one read() returns; give it a full first chunk.
            let mut first = head[..n].to_vec();
            first.resize(1 << 16, 0);
            let more = read_up_to(&mut src, &mut first[n..])
                .map_err(|e| ReadError::new(path, Some(0), e.to_string()))?;
            first.truncate(n + more);
            let rest = std::io::Cursor::new(first).chain(src);
            let inner = pcap_parser::create_reader(INITIAL_BUFFER, rest).map_err(|e| {
                let msg = match e {
                    PcapError::HeaderNotRecognized => {
                        "not a pcap or pcapng file (unknown magic number)".to_string()
                    }
                    PcapError::Eof | PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
                        "file ends inside the file header".to_string()
                    }
                    other => format!("cannot read the file header: {other:?}"),
                };
                ReadError::new(path, Some(0), msg)
            })?;
            let ng = NgState {
                inner,
                offset: 0,
                buffer_size: INITIAL_BUFFER,
                interfaces: Vec::new(),
                buf: Vec::with_capacity(2048),
                cur_ts: 0,
                cur_link: LinkType(0),
                cur_orig: 0,
                names: Vec::new(),
                cur_if: 0,
                recorded: Recorded::default(),
            };
            (Source::Ng(Box::new(ng)), 6)
        };
        let mut r = CaptureReader {
            path: path.to_string(),
            source,
            raw_bytes: opened.raw_bytes,
            size: opened.size,
            compression: opened.compression,
            ts_digits,
            has_frame: false,
            frames: 0,
            orphan_frames: 0,
            done: false,
        };
        // Read up to the first frame so the format and link types are known.
        r.advance()?;
        Ok(r)
    }

    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn format(&self) -> FileFormat {
        match self.source {
            Source::Legacy(..) => FileFormat::Pcap,
            Source::Ng(_) => FileFormat::PcapNg,
        }
    }
    pub fn compression(&self) -> &'static str {
        self.compression
    }
    pub fn ts_digits(&self) -> u8 {
        self.ts_digits
    }
    /// Bytes read from the file on disk (compressed bytes for .gz/.zst).
    pub fn raw_bytes_read(&self) -> u64 {
        self.raw_bytes.load(Ordering::Relaxed)
    }
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Link types declared so far (the file header's, or the pcapng interfaces').
    pub fn link_types(&self) -> Vec<LinkType> {
        let mut v: Vec<LinkType> = match &self.source {
            Source::Legacy(l, _) => vec![l.link],
            Source::Ng(ng) => ng.interfaces.iter().map(|i| i.link).collect(),
        };
        v.sort();
        v.dedup();
        v
    }

    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// What the file's Interface Statistics Blocks said so far (complete once the
    /// reader has reached the end: they usually close the file). Classic pcap has none.
    pub fn recorded(&self) -> Recorded {
        match &self.source {
            Source::Legacy(..) => Recorded::default(),
            Source::Ng(ng) => {
                let mut r = ng.recorded;
                for i in &ng.interfaces {
                    r.add(i);
                }
                r
            }
        }
    }

    /// The frame loaded by the last [`advance`](Self::advance), if any.
    #[inline]
    pub fn current(&self) -> Option<FrameRef<'_>> {
        if !self.has_frame {
            return None;
        }
        match &self.source {
            Source::Legacy(l, Some(r)) => Some(FrameRef {
                ts_ns: r.ts_ns,
                link: l.link,
                data: l.data(r),
                orig_len: r.orig_len.max(r.len as u32),
                interface: None,
            }),
            Source::Legacy(_, None) => None,
            Source::Ng(ng) => Some(FrameRef {
                ts_ns: ng.cur_ts,
                link: ng.cur_link,
                data: &ng.buf,
                orig_len: ng.cur_orig,
                interface: ng.names.get(ng.cur_if).and_then(|n| n.as_deref()),
            }),
        }
    }

    /// Loads the next frame. `Ok(false)` at the end of the file; an error leaves the
    /// reader finished, with every frame before the damage already handed out.
    #[inline]
    pub fn advance(&mut self) -> Result<bool, ReadError> {
        self.has_frame = false;
        if self.done {
            return Ok(false);
        }
        let got = match &mut self.source {
            Source::Legacy(l, cur) => {
                let at = l.offset();
                match l.next() {
                    Ok(r) => {
                        let more = r.is_some();
                        *cur = r;
                        Ok(more)
                    }
                    Err(p) => {
                        *cur = None;
                        Err(ReadError::new(
                            &self.path,
                            Some(at),
                            match p {
                                Problem::Truncated => {
                                    "file ends in the middle of a record (truncated capture)"
                                        .to_string()
                                }
                                Problem::Impossible(n) => {
                                    format!(
                                        "record length {n} is impossible (over 64 MiB): corrupt file"
                                    )
                                }
                                Problem::Io(e) => format!("read error: {e}"),
                            },
                        ))
                    }
                }
            }
            Source::Ng(ng) => ng.advance(&self.path, &mut self.ts_digits, &mut self.orphan_frames),
        };
        match got {
            Ok(true) => {
                self.has_frame = true;
                self.frames += 1;
                Ok(true)
            }
            Ok(false) => {
                self.done = true;
                Ok(false)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

impl NgState {
    fn err(&self, path: &str, msg: impl Into<String>) -> ReadError {
        ReadError::new(path, Some(self.offset), msg)
    }

    fn advance(
        &mut self,
        path: &str,
        ts_digits: &mut u8,
        orphans: &mut u64,
    ) -> Result<bool, ReadError> {
        loop {
            let next = self.inner.next();
            match next {
                Ok((len, block)) => {
                    let got = take_block(
                        block,
                        &mut self.interfaces,
                        (&mut self.names, &mut self.cur_if),
                        &mut self.recorded,
                        ts_digits,
                        &mut self.buf,
                        &mut self.cur_ts,
                        &mut self.cur_link,
                        &mut self.cur_orig,
                    );
                    self.inner.consume(len);
                    self.offset += len as u64;
                    match got {
                        Taken::Frame => return Ok(true),
                        Taken::Orphan => *orphans += 1,
                        Taken::Other => {}
                    }
                }
                Err(PcapError::Eof) => return Ok(false),
                Err(PcapError::Incomplete(_)) => {
                    // At the end of input refill() reads nothing and the next call
                    // reports UnexpectedEof or Eof, so this cannot loop without progress.
                    if self.inner.refill().is_err() {
                        return Err(self.err(path, "read error"));
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(self.err(
                        path,
                        "file ends in the middle of a block (truncated capture)",
                    ));
                }
                Err(PcapError::BufferTooSmall) => {
                    // A block larger than the buffer: double it, up to a bound.
                    self.buffer_size *= 2;
                    if self.buffer_size > MAX_BUFFER || !self.inner.grow(self.buffer_size) {
                        return Err(self.err(
                            path,
                            "block length is impossible (over 64 MiB): corrupt file",
                        ));
                    }
                }
                Err(PcapError::ReadError) => return Err(self.err(path, "read error")),
                Err(e) => {
                    let what = match e {
                        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => {
                            format!("malformed block ({k:?})")
                        }
                        _ => "malformed block".to_string(),
                    };
                    return Err(self.err(path, what));
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn take_block(
    block: PcapBlockOwned<'_>,
    interfaces: &mut Vec<Interface>,
    (names, cur_if): (&mut Vec<Option<Box<str>>>, &mut usize),
    recorded: &mut Recorded,
    ts_digits: &mut u8,
    buf: &mut Vec<u8>,
    ts: &mut u64,
    link: &mut LinkType,
    orig: &mut u32,
) -> Taken {
    let prev_ts = *ts;
    let mut frame = |t: u64, l: LinkType, data: &[u8], o: u32| {
        buf.clear();
        buf.extend_from_slice(data);
        *ts = t;
        *link = l;
        *orig = o.max(data.len() as u32);
        Taken::Frame
    };
    match block {
        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
            // A new section's interfaces are numbered from 0 again: keep what the
            // old ones' statistics said.
            for i in interfaces.iter() {
                recorded.add(i);
            }
            interfaces.clear();
            names.clear();
            Taken::Other
        }
        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
            let resolution = ts_resolution(idb.if_tsresol);
            *ts_digits = (*ts_digits).max(digits_of(resolution.min(1_000_000_000)));
            names.push(
                idb.if_name()
                    .and_then(Result::ok)
                    .filter(|n| !n.is_empty())
                    .map(Box::from),
            );
            interfaces.push(Interface {
                link: LinkType(idb.linktype.0 as u32),
                resolution,
                offset_s: idb.ts_offset(),
                received: None,
                dropped: None,
            });
            Taken::Other
        }
        PcapBlockOwned::NG(Block::InterfaceStatistics(isb)) => {
            // Statistics of an interface never described mean nothing; malformed
            // options are ignored (the frames are what matters).
            let Some(i) = interfaces.get_mut(isb.if_id as usize) else {
                return Taken::Other;
            };
            if let Some(Ok((high, low))) = isb.isb_endtime() {
                let end = i.ns(((high as u64) << 32) | low as u64);
                recorded.end_ns = Some(recorded.end_ns.map_or(end, |e| e.max(end)));
            }
            if let Some(Ok(n)) = isb.isb_ifrecv() {
                i.received = Some(n);
            }
            if let Some(Ok(n)) = isb.isb_ifdrop() {
                i.dropped = Some(n);
            }
            Taken::Other
        }
        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
            let Some(i) = interfaces.get(epb.if_id as usize).copied() else {
                return Taken::Orphan;
            };
            *cur_if = epb.if_id as usize;
            let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
            let caplen = (epb.caplen as usize).min(epb.data.len());
            frame(i.ns(raw), i.link, &epb.data[..caplen], epb.origlen)
        }
        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
            // Simple packets have no timestamp; they keep the previous frame's time.
            let Some(i) = interfaces.first().copied() else {
                return Taken::Orphan;
            };
            *cur_if = 0;
            frame(prev_ts, i.link, spb.data, spb.origlen)
        }
        // Legacy blocks cannot come from a pcapng reader; anything else is metadata.
        _ => Taken::Other,
    }
}

enum Taken {
    Frame,
    Orphan,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_timestamp_resolutions() {
        assert_eq!(ts_resolution(6), 1_000_000);
        assert_eq!(ts_resolution(9), 1_000_000_000);
        // Binary resolution (high bit): 2^20 units per second.
        assert_eq!(ts_resolution(0x80 | 20), 1 << 20);
        assert_eq!(ns_from(3, 1 << 19, 1 << 20), 3_500_000_000);
        // Absurd values do not overflow.
        assert_eq!(ts_resolution(127), 1_000_000_000);
        assert_eq!(ts_resolution(0xff), 1_000_000_000);
    }
}
