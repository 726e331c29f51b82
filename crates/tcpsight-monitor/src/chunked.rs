//! A file of whole lines written in chunks, under a temporary name until committed, that
//! survives a full disk: each chunk (1 MB of lines, or one zstd frame of them) is
//! written whole or not at all. A chunk that fails is cut off the file again (the file
//! is truncated to its last good length), its lines are counted as lost, and writing
//! resumes with the next chunk when space returns. Nothing already written is lost and
//! no line is ever half-written.
//!
//! Compression is ruzstd's encoder, in Rust (the default build links no C library).
//! ruzstd panics if its output writer fails, so each chunk is compressed into memory
//! (which cannot fail) and then written. A file of concatenated zstd frames is one
//! valid zstd stream (`zstd -dc`, DuckDB and ClickHouse read it whole), and every frame
//! on disk is complete: a monitor killed mid-period leaves readable frames behind in
//! its `.part` file.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ruzstd::encoding::{CompressionLevel, compress_to_vec};

/// Bytes of text per chunk: big enough for the compression ratio (records repeat field
/// names and addresses), small enough to bound memory.
pub const CHUNK_BYTES: usize = 1 << 20;

pub struct ChunkedFile {
    part: PathBuf,
    path: PathBuf,
    file: File,
    /// Length of the file up to its last complete chunk.
    good_len: u64,
    buf: Vec<u8>,
    lines_in_buf: u64,
    compress: bool,
    lines_written: u64,
    lost_lines: u64,
    /// The latest write error not yet taken by [`ChunkedFile::take_error`].
    error: Option<io::Error>,
}

impl ChunkedFile {
    /// Creates `dir/.NAME.part`; `commit` renames it to `dir/NAME`.
    pub fn create(dir: &Path, name: &str, compress: bool) -> io::Result<ChunkedFile> {
        let part = dir.join(format!(".{name}.part"));
        let file = File::create(&part)?;
        Ok(ChunkedFile {
            part,
            path: dir.join(name),
            file,
            good_len: 0,
            buf: Vec::with_capacity(CHUNK_BYTES),
            lines_in_buf: 0,
            compress,
            lines_written: 0,
            lost_lines: 0,
            error: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn chunk(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = if self.compress {
            let z = compress_to_vec(&self.buf[..], CompressionLevel::Fastest);
            self.file.write_all(&z).map(|()| z.len())
        } else {
            self.file.write_all(&self.buf).map(|()| self.buf.len())
        };
        match result {
            Ok(n) => {
                self.good_len += n as u64;
                self.lines_written += self.lines_in_buf;
            }
            Err(e) => {
                // Cut the partial chunk off so the file stays whole lines (or frames).
                let _ = self.file.set_len(self.good_len);
                let _ = self.file.seek(SeekFrom::Start(self.good_len));
                self.lost_lines += self.lines_in_buf;
                self.error = Some(e);
            }
        }
        // Given up either way: a full disk must not make memory grow without bound.
        self.buf.clear();
        self.lines_in_buf = 0;
    }

    /// Lines that reached the file, and lines lost to write errors, so far.
    pub fn lines(&self) -> (u64, u64) {
        (self.lines_written, self.lost_lines)
    }

    /// The latest write error, once.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Writes what is buffered, syncs, and renames the file to its final name. Returns
    /// the final path and the (written, lost) line counts; an error if the rename
    /// failed (the `.part` file is left).
    pub fn commit(mut self) -> (io::Result<PathBuf>, (u64, u64), Option<io::Error>) {
        self.chunk();
        let counts = self.lines();
        let err = self.error.take();
        let _ = self.file.sync_all();
        let r = fs::rename(&self.part, &self.path).map(|()| self.path.clone());
        (r, counts, err)
    }
}

/// Writes never fail: a failed chunk is counted ([`ChunkedFile::lines`],
/// [`ChunkedFile::take_error`]) and the writer goes on, so one record writer serves a
/// disk that fills and empties again.
impl Write for ChunkedFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.lines_in_buf += memchr_count(data);
        if self.buf.len() >= CHUNK_BYTES && self.buf.last() == Some(&b'\n') {
            self.chunk();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn memchr_count(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::decoding::StreamingDecoder;
    use std::io::Read;

    pub(crate) fn unzstd(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = z;
        while !rest.is_empty() {
            let mut d = StreamingDecoder::new(&mut rest).unwrap();
            d.read_to_end(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn compressed_round_trip_across_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = ChunkedFile::create(tmp.path(), "x.jsonl.zst", true).unwrap();
        let mut text = Vec::new();
        for i in 0..100_000u32 {
            let line = format!("{{\"n\":{i},\"server\":\"10.0.0.{}\"}}\n", i % 7);
            text.extend_from_slice(line.as_bytes());
            f.write_all(line.as_bytes()).unwrap();
        }
        assert!(text.len() > 2 * CHUNK_BYTES);
        assert!(tmp.path().join(".x.jsonl.zst.part").exists());
        let (path, (written, lost), err) = f.commit();
        let path = path.unwrap();
        assert_eq!((written, lost), (100_000, 0));
        assert!(err.is_none());
        let z = fs::read(path).unwrap();
        assert!(z.len() * 4 < text.len(), "{} of {}", z.len(), text.len());
        assert_eq!(unzstd(&z), text);
        assert!(!tmp.path().join(".x.jsonl.zst.part").exists());
    }
}
