//! Opening an input: file or stdin, then gzip/zstd detection by magic bytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ReadError;

/// Counts bytes read from the underlying file, for progress reporting.
pub(crate) struct Counting<R> {
    inner: R,
    pub count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub(crate) struct Opened {
    pub reader: Box<dyn Read + Send>,
    pub raw_bytes: Arc<AtomicU64>,
    /// Size of the file on disk, when known (not for stdin).
    pub size: Option<u64>,
    pub compression: &'static str,
}

const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

pub(crate) fn open(path: &str) -> Result<Opened, ReadError> {
    let err = |m: String| ReadError::new(path, None, m);
    let (raw, size): (Box<dyn Read + Send>, Option<u64>) = if path == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let meta = std::fs::metadata(path).map_err(|e| err(describe_io(&e)))?;
        if meta.is_dir() {
            return Err(err("is a directory, not a capture file".into()));
        }
        let f = File::open(path).map_err(|e| err(describe_io(&e)))?;
        (Box::new(f), Some(meta.len()))
    };
    wrap(path, raw, size)
}

/// Detects compression on any byte stream (`name` is used in error messages).
pub(crate) fn wrap(
    path: &str,
    raw: Box<dyn Read + Send>,
    size: Option<u64>,
) -> Result<Opened, ReadError> {
    let err = |m: String| ReadError::new(path, None, m);
    let count = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: raw,
        count: count.clone(),
    };
    let mut buffered = BufReader::with_capacity(1 << 16, counting);
    let head = buffered
        .fill_buf()
        .map_err(|e| err(describe_io(&e)))?
        .to_vec();
    if head.is_empty() {
        return Err(err("empty file".into()));
    }
    let (reader, compression): (Box<dyn Read + Send>, _) = if head.starts_with(&GZIP) {
        (
            Box::new(flate2::read::MultiGzDecoder::new(buffered)),
            "gzip",
        )
    } else if head.starts_with(&ZSTD) {
        let d = ruzstd::decoding::StreamingDecoder::new(buffered)
            .map_err(|e| err(format!("bad zstd stream: {e}")))?;
        (Box::new(d), "zstd")
    } else {
        (Box::new(buffered), "none")
    };
    Ok(Opened {
        reader,
        raw_bytes: count,
        size,
        compression,
    })
}

pub(crate) fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
