//! Reading trace files: plain or gzip (detected by its magic bytes, not by the name),
//! `-` for stdin, line by line; lines that are not trace lines are counted and skipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use crate::event::{Event, Line, parse_line};

/// What reading a trace found besides its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadStats {
    pub lines: u64,
    pub events: u64,
    pub comments: u64,
    pub garbage: u64,
    /// Events the kernel reported lost (`[LOST N EVENTS]` lines).
    pub lost: u64,
    /// The first garbage line: its number and (up to 80 characters of) its text.
    pub first_garbage: Option<(u64, String)>,
    /// The file could not be read to its end (a truncated gzip stream, an I/O error):
    /// what. The events before it were kept.
    pub read_error: Option<String>,
}

impl ReadStats {
    /// One line for stderr when lines were skipped, naming the first one.
    pub fn garbage_note(&self, what: &str) -> Option<String> {
        let (n, text) = self.first_garbage.as_ref()?;
        Some(format!(
            "{what}: {} of {} lines are not trace lines and were skipped (first: line {n}: {text:?})",
            self.garbage, self.lines
        ))
    }
}

/// Opens a trace: `-` is stdin; gzip is decompressed.
pub fn open(path: &str) -> Result<Box<dyn BufRead>, String> {
    let inner: Box<dyn Read> = if path == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|e| format!("{path}: {e}"))?)
    };
    let mut r = BufReader::with_capacity(1 << 16, inner);
    let gz = r
        .fill_buf()
        .map_err(|e| format!("{path}: {e}"))?
        .starts_with(&[0x1f, 0x8b]);
    let mut r: Box<dyn BufRead> = if gz {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(r),
        ))
    } else {
        Box::new(r)
    };
    // A capture file or other binary data is not a trace: say so once, rather than
    // skipping every "line" of it.
    if let Ok(head) = r.fill_buf()
        && let Some(what) = binary_kind(head)
    {
        return Err(format!(
            "{path}: {what}, not a kernel trace (probe reads what `tcpsight probe trace` \
             writes; `tcpsight analyze` reads captures)"
        ));
    }
    Ok(r)
}

/// What a file starting with `head` is, if it is binary rather than trace text.
fn binary_kind(head: &[u8]) -> Option<&'static str> {
    let magic = head
        .get(..4)
        .map(|m| u32::from_le_bytes(m.try_into().unwrap()));
    match magic {
        Some(0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1) => Some("a pcap capture"),
        Some(0x0a0d_0d0a) => Some("a pcapng capture"),
        Some(0xfd2f_b528) => Some("zstd-compressed data"),
        _ if head.iter().take(4096).any(|&b| b == 0) => Some("binary data"),
        _ => None,
    }
}

/// Feeds every event of `r` to `each`. A read error (a truncated gzip file) ends the
/// reading and is returned with what was read before it kept.
pub fn for_each_event(
    r: &mut dyn BufRead,
    stats: &mut ReadStats,
    mut each: impl FnMut(Event),
) -> Result<(), String> {
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("after line {}: {e}", stats.lines)),
        }
        stats.lines += 1;
        let line = String::from_utf8_lossy(&buf);
        match parse_line(&line) {
            Ok(Line::Event(e)) => {
                stats.events += 1;
                each(e);
            }
            Ok(Line::Comment) => stats.comments += 1,
            Ok(Line::Lost(n)) => stats.lost += n,
            Err(_) => {
                stats.garbage += 1;
                if stats.first_garbage.is_none() {
                    let t: String = line.trim_end().chars().take(80).collect();
                    stats.first_garbage = Some((stats.lines, t));
                }
            }
        }
    }
}

/// Reads a whole trace file into memory. A file that cannot be opened is an error; one
/// that breaks off (truncated gzip, I/O error) keeps every event read before the
/// damage, and says what happened in `read_error`.
pub fn read_file(path: &str) -> Result<(Vec<Event>, ReadStats), String> {
    let mut r = open(path)?;
    let mut stats = ReadStats::default();
    let mut events = Vec::new();
    if let Err(e) = for_each_event(&mut *r, &mut stats, |e| events.push(e)) {
        stats.read_error = Some(format!("{path}: {e}"));
    }
    Ok((events, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_gzip_and_garbage() {
        let text: &[u8] = b"# tracer: nop\nx-1 [000] .... 1.5: tcp_probe: src=1.2.3.4:5 dest=5.6.7.8:9 srtt=3\n\xff\xfe garbage\nCPU:0 [LOST 4 EVENTS]\nx-1 [000] .... 2.5: tcp_receive_reset: sport=5 dport=9\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, text).unwrap();
        let g = dir.path().join("t.log");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&g).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(text).unwrap();
        enc.finish().unwrap();
        for path in [&p, &g] {
            let (ev, st) = read_file(path.to_str().unwrap()).unwrap();
            assert_eq!(ev.len(), 2);
            assert_eq!(st.lines, 5);
            assert_eq!((st.events, st.comments, st.garbage, st.lost), (2, 1, 1, 4));
            assert_eq!(st.first_garbage.as_ref().unwrap().0, 3);
            assert!(st.garbage_note("f").unwrap().contains("1 of 5 lines"));
        }
        assert!(
            read_file("/nonexistent/x")
                .unwrap_err()
                .contains("/nonexistent/x")
        );
    }

    #[test]
    fn truncated_gzip_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("t.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for _ in 0..1000 {
            enc.write_all(b"x-1 [000] .... 1.5: tcp_probe: srtt=3\n")
                .unwrap();
        }
        let bytes = enc.finish().unwrap();
        std::fs::write(&g, &bytes[..bytes.len() / 2]).unwrap();
        // The events before the damage are kept, and the damage is named.
        let (events, st) = read_file(g.to_str().unwrap()).unwrap();
        assert!(
            !events.is_empty() && events.len() < 1000,
            "{}",
            events.len()
        );
        assert!(st.read_error.unwrap().contains("t.gz"));
    }
}
