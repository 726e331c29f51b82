//! `--flows`, `--http-log`, `--tls-log`: the CLI's names for tcpsight-export's file
//! formats, and the writers opened from a path (`-` for stdout).

use std::fs::File;
use std::io::{self, BufWriter, Write};

use tcpsight_core::Schema;
use tcpsight_export::RecordSink;
use tcpsight_export::columns::{self, Column};
pub use tcpsight_export::lines::FlowWriter;
use tcpsight_export::lines::RECORD_TS_DIGITS;
use tcpsight_export::parquet::ParquetWriter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl FlowFormat {
    pub fn name(self) -> &'static str {
        match self {
            FlowFormat::Jsonl => "jsonl",
            FlowFormat::Csv => "csv",
            FlowFormat::Parquet => "parquet",
        }
    }

    /// The format a file name asks for, if it says.
    pub fn of_name(path: &str) -> Option<FlowFormat> {
        let p = path.to_ascii_lowercase();
        if p.ends_with(".csv") {
            Some(FlowFormat::Csv)
        } else if p.ends_with(".parquet") || p.ends_with(".pq") {
            Some(FlowFormat::Parquet)
        } else if p.ends_with(".jsonl") || p.ends_with(".json") || p.ends_with(".ndjson") {
            Some(FlowFormat::Jsonl)
        } else {
            None
        }
    }
}

type Out = Box<dyn Write + Send>;

fn create(path: &str) -> Result<Out, String> {
    Ok(if path == "-" {
        Box::new(BufWriter::with_capacity(1 << 16, io::stdout()))
    } else {
        let f = File::create(path).map_err(|e| format!("{path}: cannot create: {e}"))?;
        Box::new(BufWriter::with_capacity(1 << 16, f))
    })
}

/// A writer of one record type in any file format.
pub enum Writer {
    Lines(FlowWriter<Out>),
    Parquet(Box<ParquetWriter<Out>>),
}

impl Writer {
    /// Opens `path` for records whose columns are `cols` (Parquet) and field names
    /// `names` (CSV's header).
    pub fn open(path: &str, format: FlowFormat, cols: Vec<Column>) -> Result<Writer, String> {
        let out = create(path)?;
        let names = cols.iter().map(|c| c.name).collect();
        Ok(match format {
            FlowFormat::Jsonl | FlowFormat::Csv => {
                let f = if format == FlowFormat::Csv {
                    tcpsight_export::lines::FlowFormat::Csv
                } else {
                    tcpsight_export::lines::FlowFormat::Jsonl
                };
                Writer::Lines(FlowWriter::new(out, f, RECORD_TS_DIGITS).with_names(names))
            }
            FlowFormat::Parquet => Writer::Parquet(Box::new(
                ParquetWriter::with_columns(out, cols).map_err(|e| format!("{path}: {e}"))?,
            )),
        })
    }

    /// The connection records' file.
    pub fn records(path: &str, format: FlowFormat) -> Result<Writer, String> {
        Writer::open(path, format, columns::conn_records())
    }

    pub fn write<R: Schema>(&mut self, r: &R) -> io::Result<()> {
        match self {
            Writer::Lines(w) => w.write(r),
            Writer::Parquet(w) => ParquetWriter::write(w, r),
        }
    }

    /// Flushes (line formats) or completes the file (Parquet).
    pub fn finish(&mut self) -> io::Result<()> {
        match self {
            Writer::Lines(w) => w.flush(),
            Writer::Parquet(w) => w.close(),
        }
    }
}

impl RecordSink for Writer {
    fn write(&mut self, r: &tcpsight_core::ConnRecord) -> io::Result<()> {
        Writer::write(self, r)
    }
    fn finish(&mut self) -> io::Result<()> {
        Writer::finish(self)
    }
}
