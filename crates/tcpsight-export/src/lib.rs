//! tcpsight-export: where connection records leave tcpsight.
//!
//! A [`RecordSink`] takes records one by one and is finished once at the end; the JSON
//! Lines and CSV writers ([`lines::FlowWriter`]) are the first sinks, and the Parquet,
//! ClickHouse, IPFIX and metrics sinks of the export and monitor issues plug in beside
//! them. Every writer takes its columns from the record's one schema
//! (`ConnRecord::for_each_field`), so the formats cannot drift apart.

pub mod clickhouse;
pub mod columns;
pub mod ipfix;
pub mod lines;
pub mod parquet;
pub mod text;
pub mod worker;

use std::io;

use tcpsight_core::ConnRecord;

/// Receives connection records; `finish` flushes whatever is buffered. An error is the
/// sink's: the caller reports it (with the path or address it writes to) and keeps
/// analysing.
pub trait RecordSink {
    fn write(&mut self, r: &ConnRecord) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
    /// After `finish`: one line on what was delivered and what was not (network sinks:
    /// records sent, dropped, failed attempts), for the face to show.
    fn report(&self) -> Option<String> {
        None
    }
}

impl<S: RecordSink + ?Sized> RecordSink for Box<S> {
    fn write(&mut self, r: &ConnRecord) -> io::Result<()> {
        (**self).write(r)
    }
    fn finish(&mut self) -> io::Result<()> {
        (**self).finish()
    }
    fn report(&self) -> Option<String> {
        (**self).report()
    }
}
