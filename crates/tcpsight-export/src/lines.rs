//! Records as JSON Lines or CSV, from each record type's single schema
//! ([`Schema`]): connection records, and the L7 logs' transactions.

use std::io::{self, Write};

use tcpsight_core::{ConnRecord, Schema, Value};

use crate::RecordSink;
use crate::text as format;

/// Decimals of the epoch timestamps in record files: microseconds, which a float64
/// column (what DuckDB and pandas infer) holds exactly for dates this century.
pub const RECORD_TS_DIGITS: u8 = 6;

/// The line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFormat {
    Jsonl,
    Csv,
}

pub struct FlowWriter<W: Write> {
    out: W,
    format: FlowFormat,
    ts_digits: u8,
    line: String,
    header_done: bool,
    /// The CSV header, written before the first line or, with no lines, at the end.
    names: Vec<&'static str>,
}

impl<W: Write> FlowWriter<W> {
    /// `ts_digits`: decimals of epoch timestamps. Record files use 6 whatever the
    /// capture (`RECORD_TS_DIGITS`): 9 would not survive a float64 column.
    pub fn new(out: W, format: FlowFormat, ts_digits: u8) -> Self {
        FlowWriter {
            out,
            format,
            ts_digits,
            line: String::with_capacity(1024),
            header_done: false,
            names: tcpsight_core::record::field_names(),
        }
    }

    /// A writer of another record type than connections, whose fields are `names`.
    pub fn with_names(mut self, names: Vec<&'static str>) -> Self {
        self.names = names;
        self
    }

    fn header(&mut self) -> io::Result<()> {
        if self.format == FlowFormat::Csv && !self.header_done {
            writeln!(self.out, "{}", self.names.join(","))?;
            self.header_done = true;
        }
        Ok(())
    }

    pub fn write<R: Schema>(&mut self, r: &R) -> io::Result<()> {
        self.line.clear();
        match self.format {
            FlowFormat::Jsonl => self.json_line(r),
            FlowFormat::Csv => {
                self.header()?;
                self.csv_line(r)
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    /// Flushes; a CSV file without records still gets its header.
    pub fn flush(&mut self) -> io::Result<()> {
        self.header()?;
        self.out.flush()
    }

    /// The underlying writer (to ask it for its own error counts).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes and gives the underlying writer back (to close or rename a file).
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> RecordSink for FlowWriter<W> {
    fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        FlowWriter::write(self, r)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl<W: Write> FlowWriter<W> {
    fn json_line<R: Schema>(&mut self, r: &R) {
        let digits = self.ts_digits;
        let line = &mut self.line;
        line.push('{');
        let mut first = true;
        r.for_each_field(|name, v| {
            if !first {
                line.push(',');
            }
            first = false;
            line.push('"');
            line.push_str(name);
            line.push_str("\":");
            match v {
                Value::Str(s) => json_string(s, line),
                Value::Addr(a) => {
                    line.push('"');
                    format::addr(a, line);
                    line.push('"');
                }
                other => value(other, digits, line, "null"),
            }
        });
        line.push('}');
    }

    fn csv_line<R: Schema>(&mut self, r: &R) {
        let digits = self.ts_digits;
        let line = &mut self.line;
        let mut first = true;
        r.for_each_field(|_, v| {
            if !first {
                line.push(',');
            }
            first = false;
            match v {
                Value::Str(s) => csv_string(s, line),
                Value::Addr(a) => format::addr(a, line),
                other => value(other, digits, line, ""),
            }
        });
    }
}

/// One type per field whatever the capture's timestamp precision: durations are whole
/// microseconds (rounded), so DuckDB, ClickHouse and pandas infer the same integer
/// column from a microsecond and a nanosecond capture.
fn value(v: Value, digits: u8, out: &mut String, null: &str) {
    match v {
        Value::Null => out.push_str(null),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::U64(n) => format::int(n, out),
        Value::Epoch(ns) => format::epoch(ns, digits, out),
        Value::Micros(ns) => format::int(ns.saturating_add(500) / 1000, out),
        Value::MicrosF(ns) => format::int((ns.max(0.0) / 1000.0).round() as u64, out),
        Value::Str(s) => out.push_str(s),
        Value::Addr(a) => format::addr(a, out),
    }
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
/// Most values (addresses, enums, Zeek history letters) need none; URIs, user agents
/// and names seen on the wire may.
fn csv_string(s: &str, out: &mut String) {
    if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = String::new();
        for s in ["plain", "a,b", "say \"hi\"", "two\nlines", ""] {
            csv_string(s, &mut out);
            out.push('|');
        }
        assert_eq!(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"||");
    }

    #[test]
    fn json_escapes_quotes_backslashes_and_controls() {
        let mut out = String::new();
        json_string("a\"b\\c\u{1}d", &mut out);
        assert_eq!(out, r#""a\"b\\c\u0001d""#);
    }
}
