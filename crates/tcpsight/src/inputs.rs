//! Opening the capture files a command reads.

use tcpsight_io::{CaptureReader, ReadError};

/// What watch and top say when given neither an interface nor a file.
pub const NO_INPUT: &str =
    "nothing to read: give -i IFACE to watch an interface live, or -r FILE to replay a capture";

/// Opens every file; those that cannot be used are reported on stderr (one line each)
/// and returned as errors, the others as readers.
pub fn open_all(files: &[String]) -> (Vec<CaptureReader>, Vec<ReadError>) {
    let mut errors = Vec::new();
    let mut readers = Vec::new();
    for f in files {
        match CaptureReader::open(f) {
            Ok(r)
                if !r.link_types().is_empty()
                    && r.link_types().iter().all(|l| !l.is_supported()) =>
            {
                let names: Vec<String> = r.link_types().iter().map(|l| l.label()).collect();
                let e = ReadError::new(
                    f,
                    None,
                    format!(
                        "link type {} not supported (supported: {})",
                        names.join(", "),
                        tcpsight_core::LinkType::supported_names().join(", ")
                    ),
                );
                eprintln!("tcpsight: {e}");
                errors.push(e);
            }
            Ok(r) => readers.push(r),
            Err(e) => {
                eprintln!("tcpsight: {e}");
                errors.push(e);
            }
        }
    }
    (readers, errors)
}

/// A tcpdump-syntax packet filter for frames read from files (user space, libpcap's
/// interpreter), compiled for the inputs' link types up front so errors come first.
pub fn packet_filter(
    expr: Option<&str>,
    readers: &[CaptureReader],
) -> Result<Option<tcpsight_bpf::LinkFilter>, String> {
    let Some(expr) = expr.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let mut links: Vec<u32> = readers
        .iter()
        .flat_map(|r| r.link_types())
        .filter(|l| l.is_supported())
        .map(|l| l.0)
        .collect();
    links.sort_unstable();
    links.dedup();
    tcpsight_bpf::LinkFilter::new(expr, &links).map(Some)
}
