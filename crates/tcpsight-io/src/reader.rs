//! One capture file: pcap (us/ns, either byte order) or pcapng (any number of sections
//! and interfaces, per-interface link type, if_tsresol and if_tsoffset).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use tcpsight_core::LinkType;

use crate::error::ReadError;
use crate::open::open;

/// Start with 1 MiB of buffer; grow for larger records up to this bound. A record
/// claiming more is treated as corruption rather than allocated.
const INITIAL_BUFFER: usize = 1 << 20;
const MAX_BUFFER: usize = 64 << 20;

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
}

/// A frame borrowed from a reader until its next call.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub ts_ns: u64,
    pub link: LinkType,
    pub data: &'a [u8],
    pub orig_len: u32,
}

pub struct CaptureReader {
    path: String,
    inner: Box<dyn PcapReaderIterator + Send>,
    raw_bytes: Arc<AtomicU64>,
    size: Option<u64>,
    compression: &'static str,
    format: FileFormat,
    /// Bytes of the capture stream consumed so far (the current block's start).
    offset: u64,
    buffer_size: usize,
    legacy: Option<Interface>,
    interfaces: Vec<Interface>,
    /// Digits after the decimal point the timestamps carry (6 for us, 9 for ns).
    ts_digits: u8,
    // The current frame, copied out of the parser's buffer.
    buf: Vec<u8>,
    cur_ts: u64,
    cur_link: LinkType,
    cur_orig: u32,
    has_frame: bool,
    frames: u64,
    /// Frames skipped because they named an interface the file never described.
    pub orphan_frames: u64,
    done: bool,
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

fn ns_from(secs: u64, frac: u64, resolution: u64) -> u64 {
    let frac_ns = if resolution == 1_000_000_000 {
        frac
    } else {
        ((frac as u128 * 1_000_000_000u128) / resolution.max(1) as u128) as u64
    };
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}

impl CaptureReader {
    /// Opens `path` (`-` = stdin) and reads its file header.
    pub fn open(path: &str) -> Result<CaptureReader, ReadError> {
        Self::from_opened(path, open(path)?)
    }

    /// Reads a capture from any byte stream; `name` labels errors.
    pub fn from_reader(name: &str, reader: Box<dyn std::io::Read + Send>) -> Result<CaptureReader, ReadError> {
        Self::from_opened(name, crate::open::wrap(name, reader, None)?)
    }

    fn from_opened(path: &str, opened: crate::open::Opened) -> Result<CaptureReader, ReadError> {
        let inner = pcap_parser::create_reader(INITIAL_BUFFER, opened.reader).map_err(|e| {
            let msg = match e {
                PcapError::HeaderNotRecognized => "not a pcap or pcapng file (unknown magic number)".to_string(),
                PcapError::Eof | PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
                    "file ends inside the file header".to_string()
                }
                other => format!("cannot read the file header: {other:?}"),
            };
            ReadError::new(path, Some(0), msg)
        })?;
        let mut r = CaptureReader {
            path: path.to_string(),
            inner,
            raw_bytes: opened.raw_bytes,
            size: opened.size,
            compression: opened.compression,
            format: FileFormat::Pcap,
            offset: 0,
            buffer_size: INITIAL_BUFFER,
            legacy: None,
            interfaces: Vec::new(),
            ts_digits: 6,
            buf: Vec::with_capacity(2048),
            cur_ts: 0,
            cur_link: LinkType(0),
            cur_orig: 0,
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
        self.format
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
        let mut v: Vec<LinkType> = self.legacy.iter().chain(&self.interfaces).map(|i| i.link).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// The frame loaded by the last [`advance`](Self::advance), if any.
    pub fn current(&self) -> Option<FrameRef<'_>> {
        self.has_frame.then(|| FrameRef {
            ts_ns: self.cur_ts,
            link: self.cur_link,
            data: &self.buf,
            orig_len: self.cur_orig,
        })
    }

    /// Loads the next frame. `Ok(false)` at the end of the file; an error leaves the
    /// reader finished, with every frame before the damage already handed out.
    pub fn advance(&mut self) -> Result<bool, ReadError> {
        self.has_frame = false;
        if self.done {
            return Ok(false);
        }
        match self.advance_inner() {
            Ok(more) => {
                if !more {
                    self.done = true;
                }
                Ok(more)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn err(&self, msg: impl Into<String>) -> ReadError {
        ReadError::new(&self.path, Some(self.offset), msg)
    }

    fn advance_inner(&mut self) -> Result<bool, ReadError> {
        loop {
            let next = self.inner.next();
            match next {
                Ok((len, block)) => {
                    let got = Self::take_block(
                        block,
                        &mut self.format,
                        &mut self.legacy,
                        &mut self.interfaces,
                        &mut self.ts_digits,
                        &mut self.buf,
                        &mut self.cur_ts,
                        &mut self.cur_link,
                        &mut self.cur_orig,
                    );
                    self.inner.consume(len);
                    self.offset += len as u64;
                    match got {
                        Taken::Frame => {
                            self.has_frame = true;
                            self.frames += 1;
                            return Ok(true);
                        }
                        Taken::Orphan => self.orphan_frames += 1,
                        Taken::Other => {}
                    }
                }
                Err(PcapError::Eof) => return Ok(false),
                Err(PcapError::Incomplete(_)) => {
                    // At the end of input refill() reads nothing and the next call
                    // reports UnexpectedEof or Eof, so this cannot loop without progress.
                    if self.inner.refill().is_err() {
                        return Err(self.err("read error"));
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(self.err("file ends in the middle of a record (truncated capture)"));
                }
                Err(PcapError::BufferTooSmall) => {
                    // A record larger than the buffer: double it, up to a bound.
                    self.buffer_size *= 2;
                    if self.buffer_size > MAX_BUFFER || !self.inner.grow(self.buffer_size) {
                        return Err(self.err("record length is impossible (over 64 MiB): corrupt file"));
                    }
                }
                Err(PcapError::ReadError) => return Err(self.err("read error")),
                Err(e) => {
                    let what = match e {
                        PcapError::NomError(_, k) => format!("malformed record ({k:?})"),
                        PcapError::OwnedNomError(_, k) => format!("malformed record ({k:?})"),
                        PcapError::HeaderNotRecognized => "unrecognized block".to_string(),
                        _ => "malformed record".to_string(),
                    };
                    return Err(self.err(what));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn take_block(
        block: PcapBlockOwned<'_>,
        format: &mut FileFormat,
        legacy: &mut Option<Interface>,
        interfaces: &mut Vec<Interface>,
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
            PcapBlockOwned::LegacyHeader(h) => {
                *format = FileFormat::Pcap;
                let resolution = if h.is_nanosecond_precision() { 1_000_000_000 } else { 1_000_000 };
                *ts_digits = digits_of(resolution);
                *legacy = Some(Interface {
                    link: LinkType(h.network.0 as u32),
                    resolution,
                    offset_s: 0,
                });
                Taken::Other
            }
            PcapBlockOwned::Legacy(b) => {
                let Some(i) = *legacy else { return Taken::Orphan };
                let t = ns_from(b.ts_sec as u64, b.ts_usec as u64, i.resolution);
                frame(t, i.link, b.data, b.origlen)
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                *format = FileFormat::PcapNg;
                interfaces.clear();
                Taken::Other
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                let resolution = idb.ts_resolution().unwrap_or(1_000_000);
                *ts_digits = (*ts_digits).max(digits_of(resolution));
                interfaces.push(Interface {
                    link: LinkType(idb.linktype.0 as u32),
                    resolution,
                    offset_s: idb.ts_offset(),
                });
                Taken::Other
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let Some(i) = interfaces.get(epb.if_id as usize).copied() else {
                    return Taken::Orphan;
                };
                let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let secs = raw / i.resolution.max(1);
                let frac = raw % i.resolution.max(1);
                let secs = (secs as i64).saturating_add(i.offset_s).max(0) as u64;
                let caplen = (epb.caplen as usize).min(epb.data.len());
                frame(ns_from(secs, frac, i.resolution), i.link, &epb.data[..caplen], epb.origlen)
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                // Simple packets have no timestamp; they keep the previous frame's time.
                let Some(i) = interfaces.first().copied() else { return Taken::Orphan };
                frame(prev_ts, i.link, spb.data, spb.origlen)
            }
            PcapBlockOwned::NG(_) => Taken::Other,
        }
    }
}

enum Taken {
    Frame,
    Orphan,
    Other,
}
