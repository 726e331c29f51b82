//! Per-connection records as JSON Lines or CSV, from the record's single schema.

use std::io::{self, Write};

use tcpsight_core::{ConnRecord, Value};

use crate::RecordSink;
use crate::text as format;

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
}

impl<W: Write> FlowWriter<W> {
    pub fn new(out: W, format: FlowFormat, ts_digits: u8) -> Self {
        FlowWriter {
            out,
            format,
            ts_digits,
            line: String::with_capacity(1024),
            header_done: false,
        }
    }

    pub fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        self.line.clear();
        match self.format {
            FlowFormat::Jsonl => self.json_line(r),
            FlowFormat::Csv => {
                if !self.header_done {
                    let names = tcpsight_core::record::field_names();
                    writeln!(self.out, "{}", names.join(","))?;
                    self.header_done = true;
                }
                self.csv_line(r)
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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
    fn json_line(&mut self, r: &ConnRecord) {
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

    fn csv_line(&mut self, r: &ConnRecord) {
        let digits = self.ts_digits;
        let line = &mut self.line;
        let mut first = true;
        r.for_each_field(|_, v| {
            if !first {
                line.push(',');
            }
            first = false;
            match v {
                // Field values never contain commas or quotes (addresses, enums, Zeek
                // history letters), so no quoting is needed.
                Value::Str(s) => line.push_str(s),
                Value::Addr(a) => format::addr(a, line),
                other => value(other, digits, line, ""),
            }
        });
    }
}

fn value(v: Value, digits: u8, out: &mut String, null: &str) {
    match v {
        Value::Null => out.push_str(null),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::U64(n) => format::int(n, out),
        Value::Epoch(ns) => format::epoch(ns, digits, out),
        Value::Micros(ns) => format::micros(ns, out),
        Value::MicrosF(ns) => format::micros_f(ns, out),
        Value::Str(s) => out.push_str(s),
        Value::Addr(a) => format::addr(a, out),
    }
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
