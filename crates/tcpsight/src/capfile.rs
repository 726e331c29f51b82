//! Where `-w` writes a capture (watch, capture, analyze -i): a file, or stdout for `-`
//! as tcpdump's `-w -`, in the format its name asks for, closed with the capture's end
//! time and kernel counters where the format has room for them (pcapng).

use std::fs::File;
use std::io::{self, BufWriter, Stdout, Write};
use std::path::Path;

use tcpsight_core::LinkType;
use tcpsight_io::{CaptureEnd, CaptureWriter, WriteFormat};

/// A capture's destination.
pub enum Dest {
    File(File),
    Stdout(Stdout),
}

impl Write for Dest {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Dest::File(f) => f.write(b),
            Dest::Stdout(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Dest::File(f) => f.flush(),
            Dest::Stdout(s) => s.flush(),
        }
    }
}

pub type Writer = CaptureWriter<BufWriter<Dest>>;

/// `-w -`: the capture goes to stdout.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The format for `path`: classic pcap for a `.pcap` name, pcapng otherwise (and for
/// stdout), which keeps the end time a replay needs to decide as the live run did.
/// `pcapng` (capture's --pcapng) asks for pcapng; with a `.pcap` name that is refused
/// rather than writing a file whose name lies about it.
pub fn format(path: &Path, pcapng: bool) -> Result<WriteFormat, String> {
    let by_name = WriteFormat::for_name(&path.to_string_lossy());
    if pcapng && by_name == WriteFormat::Pcap {
        return Err(format!(
            "{}: --pcapng with a .pcap name; name it .pcapng (the format follows the name)",
            path.display()
        ));
    }
    Ok(by_name)
}

/// Creates `path` (stdout for `-`) and writes the capture's header.
pub fn create(
    path: &Path,
    format: WriteFormat,
    link: LinkType,
    snaplen: u32,
    interface: &str,
) -> Result<Writer, String> {
    let dest = if is_stdout(path) {
        Dest::Stdout(io::stdout())
    } else {
        Dest::File(
            File::create(path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?,
        )
    };
    CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, dest),
        format,
        link,
        snaplen,
        interface,
    )
    .map_err(|e| describe(path, &e))
}

/// Ends the capture with `end` (pcapng: an Interface Statistics Block), flushes it and,
/// for a file, syncs it to disk: every packet written is there before anyone is told.
pub fn close(mut w: Writer, end: &CaptureEnd) -> io::Result<()> {
    w.statistics(end)?;
    match w.finish()?.into_inner().map_err(|e| e.into_error())? {
        Dest::File(f) => f.sync_all(),
        Dest::Stdout(_) => Ok(()),
    }
}

/// An error writing `path`, for a message.
pub fn describe(path: &Path, e: &io::Error) -> String {
    if is_stdout(path) {
        format!("writing the capture to stdout: {e}")
    } else {
        format!("{}: {e}", path.display())
    }
}
