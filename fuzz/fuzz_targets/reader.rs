//! Fuzz target: bytes as a capture file (pcap, pcapng, gzip or zstd, detected by magic)
//! through `CaptureReader::from_reader`, reading every frame and decoding it.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tcpsight_io::CaptureReader;

const NAME: &str = "fuzz-input";

fuzz_target!(|data: &[u8]| {
    let mut r = match CaptureReader::from_reader(NAME, Box::new(Cursor::new(data.to_vec()))) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.to_string().starts_with(NAME), "{e}");
            return;
        }
    };
    let mut frames = 0u64;
    loop {
        if let Some(f) = r.current() {
            frames += 1;
            assert!(f.orig_len as usize >= f.data.len());
            let _ = tcpsight_core::decode::decode(f.link, f.data, f.orig_len);
        }
        match r.advance() {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let text = e.to_string();
                assert!(text.starts_with(NAME), "{text}");
                if let Some(o) = e.offset {
                    assert!(text.contains(&format!("byte {o}")), "{text}");
                }
                break;
            }
        }
    }
    // A finished reader stays finished.
    assert!(matches!(r.advance(), Ok(false)) && r.current().is_none());
    assert_eq!(r.frames_read(), frames);
});
