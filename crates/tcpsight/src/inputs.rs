//! Opening the capture files a command reads.

use tcpsight_io::{CaptureReader, ReadError};

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
                let names: Vec<String> = r.link_types().iter().map(|l| l.name()).collect();
                let e = ReadError::new(
                    f,
                    None,
                    format!(
                        "link type {} not supported (supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, IPV4, IPV6, NULL, LOOP)",
                        names.join(", ")
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
