//! Records as Parquet files: one typed column per schema field ([`crate::columns`]),
//! row groups of [`DEFAULT_ROW_GROUP_ROWS`] records, zstd-compressed pages.
//!
//! Types (docs/export.md): integers are INT64 (signed: every engine reads it, and no
//! count comes near 2^63), instants TIMESTAMP(MICROS, UTC), booleans BOOLEAN, text and
//! addresses BYTE_ARRAY (UTF8). A column is OPTIONAL exactly where the field may be
//! null (docs/fields.md), else REQUIRED. Memory is bounded by one row group: the rows
//! are kept column by column until the group is written.
//!
//! Written with the Apache Arrow project's `parquet` crate, its low-level column writer
//! only (no Arrow arrays: the rows are already typed, and Arrow doubled the build).

use std::io::{self, Write};
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use tcpsight_core::{ConnRecord, Schema, Value};

use crate::RecordSink;
use crate::columns::{self, Column, Kind};

/// Records per row group: about 25 MB of buffered columns at most for a connection
/// record (80 columns), and enough rows for engines to read groups in parallel.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 32_768;

/// The zstd level of the pages (zstd's default: fast, and about 8 times smaller than
/// JSON Lines on the bundled captures).
pub const ZSTD_LEVEL: i32 = 3;

enum Values {
    Int(Vec<i64>),
    Bool(Vec<bool>),
    /// Text end to end in one buffer, and where each value ends: no allocation per
    /// value (one per string made most of the writer's cost).
    Str(Vec<u8>, Vec<usize>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(_, ends) => ends.len(),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Values::Int(v) => v.truncate(n),
            Values::Bool(v) => v.truncate(n),
            Values::Str(data, ends) => {
                ends.truncate(n);
                data.truncate(ends.last().copied().unwrap_or(0));
            }
        }
    }

    fn clear(&mut self) {
        self.truncate(0)
    }
}

struct ColumnBuf {
    col: Column,
    values: Values,
    /// Definition levels (1 present, 0 null), for nullable columns only.
    defs: Vec<i16>,
}

pub struct ParquetWriter<W: Write + Send> {
    writer: Option<SerializedFileWriter<W>>,
    cols: Vec<ColumnBuf>,
    rows: usize,
    group_rows: usize,
    /// Lengths at the start of the row being added, to take a bad row back whole.
    marks: Vec<(usize, usize)>,
    text: String,
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("parquet: {e}"))
}

/// The Parquet schema of `cols`.
pub fn schema(cols: &[Column]) -> Result<Type, String> {
    let fields = cols
        .iter()
        .map(|c| {
            let (physical, logical) = match c.kind {
                Kind::Int => (Physical::INT64, None),
                Kind::Timestamp => (
                    Physical::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
                ),
                Kind::Bool => (Physical::BOOLEAN, None),
                Kind::Str => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            };
            Type::primitive_type_builder(c.name, physical)
                .with_repetition(if c.nullable {
                    Repetition::OPTIONAL
                } else {
                    Repetition::REQUIRED
                })
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Type::group_type_builder("tcpsight")
        .with_fields(fields)
        .build()
        .map_err(|e| e.to_string())
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of connection records.
    pub fn new(out: W) -> io::Result<Self> {
        Self::with_columns(out, columns::conn_records())
    }

    /// A writer of any record type whose columns are `cols` (from [`columns::of`]).
    pub fn with_columns(out: W, cols: Vec<Column>) -> io::Result<Self> {
        let schema = Arc::new(schema(&cols).map_err(err)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).map_err(err)?,
            ))
            .set_max_row_group_row_count(Some(usize::MAX))
            .set_created_by(format!("tcpsight {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(out, schema, Arc::new(props)).map_err(err)?;
        let cols = cols
            .into_iter()
            .map(|col| ColumnBuf {
                values: match col.kind {
                    Kind::Int | Kind::Timestamp => Values::Int(Vec::new()),
                    Kind::Bool => Values::Bool(Vec::new()),
                    Kind::Str => Values::Str(Vec::new(), Vec::new()),
                },
                defs: Vec::new(),
                col,
            })
            .collect();
        Ok(ParquetWriter {
            writer: Some(writer),
            cols,
            rows: 0,
            group_rows: DEFAULT_ROW_GROUP_ROWS,
            marks: Vec::new(),
            text: String::new(),
        })
    }

    /// Records per row group (at least 1).
    pub fn with_row_group_rows(mut self, n: usize) -> Self {
        self.group_rows = n.max(1);
        self
    }

    /// Adds one record; a record whose fields do not fit the columns (a null in a
    /// required column, a value of another type) is refused whole, as an error.
    pub fn write<R: Schema>(&mut self, r: &R) -> io::Result<()> {
        if self.writer.is_none() {
            return Err(err("the file is already finished"));
        }
        self.marks.clear();
        self.marks
            .extend(self.cols.iter().map(|c| (c.values.len(), c.defs.len())));
        let mut bad: Option<String> = None;
        let mut i = 0;
        let (cols, text) = (&mut self.cols, &mut self.text);
        r.for_each_field(|name, v| {
            let Some(c) = cols.get_mut(i) else {
                bad.get_or_insert_with(|| format!("field {name} beyond the schema"));
                return;
            };
            i += 1;
            if bad.is_none()
                && let Err(e) = push(c, name, v, text)
            {
                bad = Some(e);
            }
        });
        if bad.is_none() && i != self.cols.len() {
            bad = Some(format!("{i} fields for {} columns", self.cols.len()));
        }
        if let Some(e) = bad {
            for (c, &(v, d)) in self.cols.iter_mut().zip(&self.marks) {
                c.values.truncate(v);
                c.defs.truncate(d);
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, err(e)));
        }
        self.rows += 1;
        if self.rows >= self.group_rows {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| err("the file is already finished"))?;
        let mut group = writer.next_row_group().map_err(err)?;
        for c in &mut self.cols {
            let mut w = group
                .next_column()
                .map_err(err)?
                .ok_or_else(|| err("fewer columns than the schema"))?;
            let defs = c.col.nullable.then_some(&c.defs[..]);
            match &mut c.values {
                Values::Int(v) => w.typed::<Int64Type>().write_batch(v, defs, None),
                Values::Bool(v) => w.typed::<BoolType>().write_batch(v, defs, None),
                Values::Str(data, ends) => {
                    let all = bytes::Bytes::from(std::mem::take(data));
                    let mut start = 0;
                    let v: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let b = ByteArray::from(all.slice(start..end));
                            start = end;
                            b
                        })
                        .collect();
                    w.typed::<ByteArrayType>().write_batch(&v, defs, None)
                }
            }
            .map_err(err)?;
            w.close().map_err(err)?;
            c.values.clear();
            c.defs.clear();
        }
        group.close().map_err(err)?;
        self.rows = 0;
        Ok(())
    }

    /// The underlying writer (to ask it for its own error counts); None once closed.
    pub fn get_mut(&mut self) -> Option<&mut W> {
        self.writer.as_mut().map(|w| w.inner_mut())
    }

    /// Writes what is buffered and the file's footer, and gives the writer back (to
    /// commit or rename the file).
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush_group()?;
        match self.writer.take() {
            Some(w) => w.into_inner().map_err(err),
            None => Err(err("closed already")),
        }
    }

    /// Writes what is buffered and the file's footer; the file is complete after it.
    pub fn close(&mut self) -> io::Result<()> {
        self.flush_group()?;
        match self.writer.take() {
            Some(w) => w.close().map(|_| ()).map_err(err),
            None => Ok(()),
        }
    }
}

fn int(v: &Value) -> Option<i64> {
    let n = match *v {
        Value::U64(n) => n,
        Value::Micros(ns) => ns.saturating_add(500) / 1000,
        Value::MicrosF(ns) => (ns.max(0.0) / 1000.0).round() as u64,
        Value::Epoch(ns) => ns / 1000,
        _ => return None,
    };
    Some(n.min(i64::MAX as u64) as i64)
}

fn push(c: &mut ColumnBuf, name: &str, v: Value, text: &mut String) -> Result<(), String> {
    if v == Value::Null {
        if !c.col.nullable {
            return Err(format!("field {name} is null but its column is required"));
        }
        c.defs.push(0);
        return Ok(());
    }
    if Kind::of(&v) != Some(c.col.kind) {
        return Err(format!(
            "field {name}: a {:?} value in a {:?} column",
            Kind::of(&v),
            c.col.kind
        ));
    }
    match (&mut c.values, v) {
        (Values::Bool(b), Value::Bool(x)) => b.push(x),
        (Values::Str(data, ends), Value::Str(x)) => {
            data.extend_from_slice(x.as_bytes());
            ends.push(data.len());
        }
        (Values::Str(data, ends), Value::Addr(a)) => {
            text.clear();
            crate::text::addr(a, text);
            data.extend_from_slice(text.as_bytes());
            ends.push(data.len());
        }
        (Values::Int(n), v) => n.push(int(&v).ok_or("not an integer")?),
        _ => return Err(format!("field {name}: mismatched value")),
    }
    if c.col.nullable {
        c.defs.push(1);
    }
    Ok(())
}

impl<W: Write + Send> RecordSink for ParquetWriter<W> {
    fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        ParquetWriter::write(self, r)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_bad_row_whole_and_goes_on() {
        let mut buf = Vec::new();
        let cols = columns::conn_records();
        let mut w = ParquetWriter::with_columns(&mut buf, cols).unwrap();
        w.write(&columns::full_record()).unwrap();
        w.write(&columns::empty_record()).unwrap();
        // A record type with one field fewer is refused, the buffer unchanged.
        struct Short;
        impl Schema for Short {
            fn for_each_field<F: FnMut(&'static str, Value<'_>)>(&self, mut f: F) {
                f("ts_first", Value::Epoch(1));
            }
        }
        assert!(w.write(&Short).is_err());
        assert!(
            w.cols
                .iter()
                .all(|c| c.defs.len() <= 2 && c.values.len() <= 2)
        );
        w.close().unwrap();
        assert!(w.write(&columns::full_record()).is_err());
        drop(w);
        assert_eq!(&buf[..4], b"PAR1");
        assert_eq!(&buf[buf.len() - 4..], b"PAR1");
    }
}
