//! Classic pcap (microsecond or nanosecond, either byte order), read without copying.
//!
//! pcap-parser reads these files correctly but cost about 200 instructions per record
//! here (buffer bookkeeping, nom parsing, and a copy out of its buffer because its
//! blocks borrow the reader), against about 30 for this loop; on a headers-only capture
//! that was a third of the whole run (callgrind, BENCHMARKS.md). pcapng stays on
//! pcap-parser.

use std::io::Read;

use tcpsight_core::LinkType;

/// Records claiming more than this are corruption, not packets.
pub(crate) const MAX_RECORD: usize = 64 << 20;
const BUFFER: usize = 1 << 20;

pub(crate) struct LegacyReader {
    src: Box<dyn Read + Send>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    swapped: bool,
    pub nanos: bool,
    pub link: LinkType,
    /// Stream offset of `buf[0]`.
    buf_offset: u64,
}

/// A record found in the buffer.
pub(crate) struct Record {
    pub ts_ns: u64,
    pub start: usize,
    pub len: usize,
    pub orig_len: u32,
}

pub(crate) enum Problem {
    Truncated,
    Impossible(u64),
    Io(String),
}

impl LegacyReader {
    /// `header` is the 24-byte file header already read from `src`.
    pub fn new(header: &[u8; 24], src: Box<dyn Read + Send>) -> Option<LegacyReader> {
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (swapped, nanos) = match magic {
            0xa1b2c3d4 => (false, false),
            0xa1b23c4d => (false, true),
            0xd4c3b2a1 => (true, false),
            0x4d3cb2a1 => (true, true),
            _ => return None,
        };
        let rd = |i: usize| {
            let b = [header[i], header[i + 1], header[i + 2], header[i + 3]];
            if swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        // The link type is the low 16 bits; the upper bits may carry FCS information.
        let link = LinkType(rd(20) & 0xffff);
        Some(LegacyReader {
            src,
            buf: vec![0; BUFFER],
            pos: 0,
            end: 0,
            eof: false,
            swapped,
            nanos,
            link,
            buf_offset: 24,
        })
    }

    /// Stream offset of the next record.
    pub fn offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    pub fn data(&self, r: &Record) -> &[u8] {
        &self.buf[r.start..r.start + r.len]
    }

    /// The four fields of a record header.
    #[inline]
    fn header_at(&self, p: usize) -> [u32; 4] {
        let h: &[u8; 16] = self.buf[p..p + 16].try_into().expect("16 bytes");
        let mut out = [0u32; 4];
        for (i, o) in out.iter_mut().enumerate() {
            let b = [h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]];
            *o = if self.swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            };
        }
        out
    }

    /// Makes at least `need` bytes available from `pos`, unless the input ends first.
    #[cold]
    fn fill(&mut self, need: usize) -> Result<bool, Problem> {
        if self.end - self.pos >= need {
            return Ok(true);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.buf_offset += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if need > self.buf.len() {
            self.buf.resize(need.next_power_of_two(), 0);
        }
        while self.end < need && !self.eof {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Problem::Io(e.to_string())),
            }
        }
        Ok(self.end - self.pos >= need)
    }

    /// The next record, `Ok(None)` at a clean end of file.
    #[inline]
    pub fn next(&mut self) -> Result<Option<Record>, Problem> {
        if self.end - self.pos < 16 && !self.fill(16)? {
            return if self.end == self.pos {
                Ok(None)
            } else {
                Err(Problem::Truncated)
            };
        }
        let [secs, frac, caplen, orig_len] = self.header_at(self.pos);
        let (secs, frac, caplen) = (secs as u64, frac as u64, caplen as usize);
        if caplen > MAX_RECORD {
            return Err(Problem::Impossible(caplen as u64));
        }
        if self.end - self.pos < 16 + caplen && !self.fill(16 + caplen)? {
            return Err(Problem::Truncated);
        }
        let p = self.pos;
        self.pos += 16 + caplen;
        let frac_ns = if self.nanos { frac } else { frac * 1000 };
        Ok(Some(Record {
            ts_ns: secs * 1_000_000_000 + frac_ns,
            start: p + 16,
            len: caplen,
            orig_len,
        }))
    }
}
