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
    /// The format a file name asks for: classic pcap when it ends in `.pcap`, pcapng
    /// otherwise (`.pcapng`, no extension, `-` for stdout): pcapng can carry the
    /// capture's end time and the kernel's counters ([`CaptureEnd`]), pcap cannot.
    pub fn for_name(name: &str) -> WriteFormat {
        if name.to_ascii_lowercase().ends_with(".pcap") {
            WriteFormat::Pcap
        } else {
            WriteFormat::PcapNg
        }
    }

    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            WriteFormat::Pcap => "pcap",
            WriteFormat::PcapNg => "pcapng",
        }
    }
}

/// What a live capture knew when a file ended, for the Interface Statistics Block that
/// closes a pcapng file (classic pcap has no place for it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureEnd {
    /// Capture time the file was opened at (isb_starttime).
    pub start_ns: u64,
    /// Capture time everything up to which was seen (isb_endtime): the engine's final
    /// clock, past the last packet when the interface went quiet before the stop. A
    /// replay advances to it before finishing, so it decides what the live run decided.
    pub end_ns: u64,
    /// Packets the kernel's socket received over the file's span, ring full or not
    /// (isb_ifrecv); None when unknown (a replay of a file that did not say).
    pub received: Option<u64>,
    /// Of those, dropped because the ring was full (isb_ifdrop).
    pub dropped: Option<u64>,
}

/// Writes frames to `W` in the chosen format. The caller buffers `W` and flushes it.
pub struct CaptureWriter<W: Write> {
    out: W,
    format: WriteFormat,
    snaplen: u32,
    link: LinkType,
    /// pcapng: the interfaces described so far (their names), in block order; frames
    /// name theirs by index ([`CaptureWriter::write_on`]).
    interfaces: Vec<Box<str>>,
    pub frames: u64,
    pub bytes: u64,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Writes an Interface Description Block (if_name, if_tsresol = 9); returns its length.
fn write_idb(out: &mut impl Write, link: LinkType, snaplen: u32, name: &str) -> io::Result<u32> {
    let mut opts = Vec::new();
    let name = name.as_bytes();
    let name = &name[..name.len().min(u16::MAX as usize - 3)];
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
    Ok(len)
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
                write_idb(&mut out, link, snaplen, interface)?;
            }
        }
        Ok(CaptureWriter {
            out,
            format,
            snaplen,
            link,
            interfaces: vec![interface.into()],
            frames: 0,
            bytes: 0,
        })
    }

    /// Appends one frame captured at `ts_ns` (ns since the epoch), `orig_len` bytes long
    /// on the wire. Frames longer than the snaplen are cut.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        self.write_frame(ts_ns, data, orig_len, 0)
    }

    /// As [`write`](Self::write), for a frame seen on `interface` (on `any`, each
    /// frame's own): pcapng gets an Interface Description Block for each interface
    /// the first time one of its frames comes, so readers (tshark, tcpsight) name it.
    /// pcap has no place for it.
    pub fn write_on(
        &mut self,
        ts_ns: u64,
        data: &[u8],
        orig_len: u32,
        interface: Option<&str>,
    ) -> io::Result<()> {
        let id = match (self.format, interface) {
            (WriteFormat::PcapNg, Some(name)) => self.interface_id(name)?,
            _ => 0,
        };
        self.write_frame(ts_ns, data, orig_len, id)
    }

    /// The index of interface `name`, described now if it is new.
    fn interface_id(&mut self, name: &str) -> io::Result<u32> {
        let known = self.interfaces.len();
        let i = tcpsight_core::names::index_of(&mut self.interfaces, name, u32::MAX as usize)
            .unwrap_or(0);
        if self.interfaces.len() > known {
            self.bytes += write_idb(&mut self.out, self.link, self.snaplen, name)? as u64;
        }
        Ok(i as u32)
    }

    /// Appends one frame of interface `interface` (pcapng's id; pcap ignores it).
    fn write_frame(
        &mut self,
        ts_ns: u64,
        data: &[u8],
        orig_len: u32,
        interface: u32,
    ) -> io::Result<()> {
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
                h[8..12].copy_from_slice(&interface.to_le_bytes());
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

    /// Ends a pcapng file with an Interface Statistics Block carrying `end` (its end
    /// time and the kernel's counters), as dumpcap ends its files. Returns false for
    /// classic pcap, which has no place for them.
    pub fn statistics(&mut self, end: &CaptureEnd) -> io::Result<bool> {
        if self.format == WriteFormat::Pcap {
            return Ok(false);
        }
        let split = |t: u64| {
            let mut v = [0u8; 8];
            v[0..4].copy_from_slice(&((t >> 32) as u32).to_le_bytes());
            v[4..8].copy_from_slice(&(t as u32).to_le_bytes());
            v
        };
        // isb_starttime, isb_endtime (high then low word, in if_tsresol units: ns),
        // isb_ifrecv, isb_ifdrop (when known), isb_usrdeliv (frames in this file).
        let options = [
            (2u16, Some(split(end.start_ns))),
            (3, Some(split(end.end_ns))),
            (4, end.received.map(u64::to_le_bytes)),
            (5, end.dropped.map(u64::to_le_bytes)),
            (8, Some(self.frames.to_le_bytes())),
        ];
        let mut opts = [0u8; 5 * 12 + 4];
        let mut at = 0;
        for (code, value) in options {
            let Some(value) = value else { continue };
            opts[at..at + 2].copy_from_slice(&code.to_le_bytes());
            opts[at + 2..at + 4].copy_from_slice(&8u16.to_le_bytes());
            opts[at + 4..at + 12].copy_from_slice(&value);
            at += 12;
        }
        // opt_endofopt: four zero bytes after the last option.
        let opts = &opts[..at + 4];
        // Type, length, interface, timestamp (20), the options, the length again (4).
        let len = (24 + opts.len()) as u32;
        let mut h = [0u8; 20];
        h[0..4].copy_from_slice(&5u32.to_le_bytes());
        h[4..8].copy_from_slice(&len.to_le_bytes());
        // h[8..12]: interface 0; the block's own timestamp is when the counters were read.
        h[12..16].copy_from_slice(&((end.end_ns >> 32) as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(end.end_ns as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(opts)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.bytes += len as u64;
        Ok(true)
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

    /// Frames of `any` keep their own interface: a pcapng file describes each the first
    /// time it comes and a reader names every frame's; pcap names none.
    #[test]
    fn frames_keep_their_interface_in_pcapng() {
        for format in [WriteFormat::PcapNg, WriteFormat::Pcap] {
            let mut w = CaptureWriter::new(Vec::new(), format, LinkType::RAW, 128, "any").unwrap();
            let names = [Some("veth1"), Some("br0"), Some("veth1"), None, Some("br0")];
            for (i, n) in names.iter().enumerate() {
                w.write_on(1_000 + i as u64, &[0x45; 20], 20, *n).unwrap();
            }
            let bytes = w.finish().unwrap();
            let mut r =
                CaptureReader::from_reader("mem", Box::new(io::Cursor::new(bytes))).unwrap();
            let mut got = Vec::new();
            while let Some(f) = r.current() {
                got.push(f.interface.map(str::to_string));
                if !r.advance().unwrap() {
                    break;
                }
            }
            let want: Vec<Option<String>> = match format {
                // A frame without a name is on the file's own interface (`any`).
                WriteFormat::PcapNg => ["veth1", "br0", "veth1", "any", "br0"]
                    .map(|n| Some(n.to_string()))
                    .to_vec(),
                WriteFormat::Pcap => vec![None; 5],
            };
            assert_eq!(got, want, "{format:?}");
        }
    }

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

    fn ended(format: WriteFormat, end: &CaptureEnd) -> (bool, crate::Recorded, u64) {
        let mut w = CaptureWriter::new(Vec::new(), format, LinkType::ETHERNET, 64, "lo").unwrap();
        for i in 0..3u64 {
            w.write(1_700_000_000_000_000_000 + i, &[0u8; 60], 60)
                .unwrap();
        }
        let written = w.statistics(end).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = CaptureReader::from_reader("mem", Box::new(io::Cursor::new(bytes))).unwrap();
        let mut frames = 1;
        while r.advance().unwrap() {
            frames += 1;
        }
        (written, r.recorded(), frames)
    }

    #[test]
    fn pcapng_ends_with_the_capture_end_time_and_kernel_counters() {
        let end = CaptureEnd {
            start_ns: 1_699_999_999_000_000_000,
            // Seconds after the last frame: the interface was quiet until the stop.
            end_ns: 1_700_000_004_123_456_789,
            received: Some(5),
            dropped: Some(2),
        };
        let (written, rec, frames) = ended(WriteFormat::PcapNg, &end);
        assert!(written);
        assert_eq!(frames, 3, "the statistics block is not a frame");
        assert_eq!(rec.end_ns, Some(end.end_ns));
        assert_eq!((rec.received, rec.dropped), (Some(5), Some(2)));
        // Counters left out when unknown.
        let (_, rec, _) = ended(
            WriteFormat::PcapNg,
            &CaptureEnd {
                received: None,
                dropped: None,
                ..end
            },
        );
        assert_eq!(rec.end_ns, Some(end.end_ns));
        assert_eq!((rec.received, rec.dropped), (None, None));
        // Classic pcap has no place for them: nothing is written, nothing read.
        let (written, rec, frames) = ended(WriteFormat::Pcap, &end);
        assert!(!written);
        assert_eq!(frames, 3);
        assert_eq!(rec, crate::Recorded::default());
    }

    #[test]
    fn the_format_follows_the_name() {
        assert_eq!(WriteFormat::for_name("a.pcap"), WriteFormat::Pcap);
        assert_eq!(WriteFormat::for_name("dir/A.PCAP"), WriteFormat::Pcap);
        for n in ["a.pcapng", "-", "trace", "a.pcap.gz", "x.cap"] {
            assert_eq!(WriteFormat::for_name(n), WriteFormat::PcapNg, "{n}");
        }
    }
}
