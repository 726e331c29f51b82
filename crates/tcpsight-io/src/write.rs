//! Writing captures: pcap (nanosecond timestamps) or pcapng, one link type per file.
//!
//! Written here rather than with a crate: the two formats take a few dozen lines, frames
//! come straight from the capture ring as borrowed slices, and writing one costs one
//! buffered copy and no allocation (pcap-parser only reads; pcap-file's writers would
//! add a dependency for what these lines do).

use std::io::{self, Write};

use tcpsight_core::LinkType;

/// File format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFormat {
    /// Classic pcap with nanosecond timestamps (magic a1b23c4d), as `tcpdump --nano`.
    Pcap,
    /// pcapng: one section, one interface (if_tsresol 9: nanoseconds).
    PcapNg,
}

impl WriteFormat {
    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            WriteFormat::Pcap => "pcap",
            WriteFormat::PcapNg => "pcapng",
        }
    }
}

/// Writes frames to `W` in the chosen format. The caller buffers `W` and flushes it.
pub struct CaptureWriter<W: Write> {
    out: W,
    format: WriteFormat,
    snaplen: u32,
    pub frames: u64,
    pub bytes: u64,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<W: Write> CaptureWriter<W> {
    /// Starts a file: writes the file header (pcap) or section and interface blocks
    /// (pcapng) for frames of `link` cut at `snaplen`.
    pub fn new(
        mut out: W,
        format: WriteFormat,
        link: LinkType,
        snaplen: u32,
        interface: &str,
    ) -> io::Result<Self> {
        match format {
            WriteFormat::Pcap => {
                let mut h = [0u8; 24];
                h[0..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
                h[4..6].copy_from_slice(&2u16.to_le_bytes());
                h[6..8].copy_from_slice(&4u16.to_le_bytes());
                h[16..20].copy_from_slice(&snaplen.to_le_bytes());
                h[20..24].copy_from_slice(&link.0.to_le_bytes());
                out.write_all(&h)?;
            }
            WriteFormat::PcapNg => {
                // Section Header Block: byte-order magic, version 1.0, unknown length.
                let mut shb = Vec::with_capacity(28);
                shb.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
                shb.extend_from_slice(&28u32.to_le_bytes());
                shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
                shb.extend_from_slice(&1u16.to_le_bytes());
                shb.extend_from_slice(&0u16.to_le_bytes());
                shb.extend_from_slice(&(-1i64).to_le_bytes());
                shb.extend_from_slice(&28u32.to_le_bytes());
                out.write_all(&shb)?;
                // Interface Description Block with if_name and if_tsresol = 9.
                let mut opts = Vec::new();
                let name = interface.as_bytes();
                opts.extend_from_slice(&2u16.to_le_bytes());
                opts.extend_from_slice(&(name.len() as u16).to_le_bytes());
                opts.extend_from_slice(name);
                opts.resize(opts.len() + pad4(name.len()), 0);
                opts.extend_from_slice(&9u16.to_le_bytes());
                opts.extend_from_slice(&1u16.to_le_bytes());
                opts.extend_from_slice(&[9, 0, 0, 0]);
                opts.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
                let len = 20 + opts.len() as u32;
                let mut idb = Vec::with_capacity(len as usize);
                idb.extend_from_slice(&1u32.to_le_bytes());
                idb.extend_from_slice(&len.to_le_bytes());
                idb.extend_from_slice(&(link.0 as u16).to_le_bytes());
                idb.extend_from_slice(&0u16.to_le_bytes());
                idb.extend_from_slice(&snaplen.to_le_bytes());
                idb.extend_from_slice(&opts);
                idb.extend_from_slice(&len.to_le_bytes());
                out.write_all(&idb)?;
            }
        }
        Ok(CaptureWriter {
            out,
            format,
            snaplen,
            frames: 0,
            bytes: 0,
        })
    }

    /// Appends one frame captured at `ts_ns` (ns since the epoch), `orig_len` bytes long
    /// on the wire. Frames longer than the snaplen are cut.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        let caplen = data.len() as u32;
        let orig_len = orig_len.max(caplen);
        match self.format {
            WriteFormat::Pcap => {
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
                h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
                h[8..12].copy_from_slice(&caplen.to_le_bytes());
                h[12..16].copy_from_slice(&orig_len.to_le_bytes());
                self.out.write_all(&h)?;
                self.out.write_all(data)?;
                self.bytes += 16 + data.len() as u64;
            }
            WriteFormat::PcapNg => {
                let pad = pad4(data.len());
                let len = (32 + data.len() + pad) as u32;
                let mut h = [0u8; 28];
                h[0..4].copy_from_slice(&6u32.to_le_bytes());
                h[4..8].copy_from_slice(&len.to_le_bytes());
                // h[8..12]: interface 0
                h[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
                h[16..20].copy_from_slice(&(ts_ns as u32).to_le_bytes());
                h[20..24].copy_from_slice(&caplen.to_le_bytes());
                h[24..28].copy_from_slice(&orig_len.to_le_bytes());
                self.out.write_all(&h)?;
                self.out.write_all(data)?;
                self.out.write_all(&[0u8; 3][..pad])?;
                self.out.write_all(&len.to_le_bytes())?;
                self.bytes += len as u64;
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaptureReader;

    fn roundtrip(format: WriteFormat) {
        let frames: Vec<(u64, Vec<u8>, u32)> = (0..5u8)
            .map(|i| {
                (
                    1_700_000_000_123_456_789 + i as u64 * 1_001,
                    vec![i; 60 + i as usize],
                    1000 + i as u32,
                )
            })
            .collect();
        let mut w = CaptureWriter::new(Vec::new(), format, LinkType::ETHERNET, 64, "eth0").unwrap();
        for (ts, d, len) in &frames {
            w.write(*ts, d, *len).unwrap();
        }
        assert_eq!(w.frames, 5);
        let bytes = w.finish().unwrap();
        let mut r = CaptureReader::from_reader("mem", Box::new(io::Cursor::new(bytes))).unwrap();
        assert_eq!(r.link_types(), vec![LinkType::ETHERNET]);
        // The reader holds the first frame once opened.
        for (i, (ts, d, len)) in frames.iter().enumerate() {
            if i > 0 {
                assert!(r.advance().unwrap(), "frame {i}");
            }
            let f = r.current().unwrap();
            assert_eq!(f.ts_ns, *ts);
            // Cut at the snaplen (64); the wire length is kept.
            assert_eq!(f.data, &d[..d.len().min(64)]);
            assert_eq!(f.orig_len, *len);
        }
        assert!(!r.advance().unwrap());
    }

    #[test]
    fn pcap_roundtrip_keeps_nanoseconds_lengths_and_bytes() {
        roundtrip(WriteFormat::Pcap);
    }

    #[test]
    fn pcapng_roundtrip_keeps_nanoseconds_lengths_and_bytes() {
        roundtrip(WriteFormat::PcapNg);
    }
}
