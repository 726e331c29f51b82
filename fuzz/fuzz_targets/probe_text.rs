//! Fuzz target: text parsers of `tcpsight probe`: every line of the input through
//! `parse_line` (trace_pipe / tcp_probe lines), and the whole input through
//! `Format::parse` (an event's tracefs format file). Input: the bytes as (lossy) UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpsight_probe::event::parse_line;
use tcpsight_probe::format::Format;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = parse_line(line);
    }
    let _ = Format::parse(&text);
});
