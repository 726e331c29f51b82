//! Typed columns from a record type's one schema ([`Schema`]), for the sinks that need
//! a column's type before the first row (Parquet, ClickHouse's table, IPFIX's
//! template): the type of a field is the kind of value it has in a record with every
//! optional field set, and it is nullable when a record with none set has it null.

use tcpsight_core::{ConnRecord, DirRecord, Schema, Value};

/// A column's type, as every typed sink stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counts, ports, bytes, whole microseconds (`U64`, `Micros`, `MicrosF`).
    Int,
    /// An instant (`Epoch`), kept in microseconds since the epoch.
    Timestamp,
    Bool,
    /// Text, and addresses in their usual text form.
    Str,
}

impl Kind {
    /// The kind of a value; `None` for null.
    pub fn of(v: &Value) -> Option<Kind> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => Kind::Bool,
            Value::U64(_) | Value::Micros(_) | Value::MicrosF(_) => Kind::Int,
            Value::Epoch(_) => Kind::Timestamp,
            Value::Str(_) | Value::Addr(_) => Kind::Str,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
}

/// The columns of a record type: `full` has every optional field set, `empty` none.
/// A field null even in `full` is an error (its type would be unknown).
pub fn of<R: Schema>(full: &R, empty: &R) -> Result<Vec<Column>, String> {
    let mut cols = Vec::new();
    let mut err = None;
    full.for_each_field(|name, v| match Kind::of(&v) {
        Some(kind) => cols.push(Column {
            name,
            kind,
            nullable: false,
        }),
        None => {
            err.get_or_insert_with(|| format!("field {name}: no type (null in the example)"));
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let mut i = 0;
    empty.for_each_field(|name, v| {
        if let Some(c) = cols.get_mut(i)
            && c.name == name
            && v == Value::Null
        {
            c.nullable = true;
        }
        i += 1;
    });
    if i != cols.len() {
        return Err(format!(
            "the two examples have {} and {i} fields",
            cols.len()
        ));
    }
    Ok(cols)
}

/// A connection record with no optional field set.
pub fn empty_record() -> ConnRecord {
    let dir = DirRecord::default();
    ConnRecord {
        closed_by: None,
        close_first: None,
        counts_at_decision: None,
        connect_ns: None,
        server_rtt_ns: None,
        client_rtt_ns: None,
        syn_retry_ns: None,
        closed_after_ns: None,
        c2s: dir.clone(),
        s2c: dir,
        response_p50_ns: None,
        response_max_ns: None,
        server_total_ns: None,
        server_max_ns: None,
        request_transfer_total_ns: None,
        response_transfer_total_ns: None,
        response_transfer_max_ns: None,
        icmp_type: None,
        icmp_code: None,
        tunnel: None,
        // Control-only: the figures such a trace lacks are null (nullable columns).
        control_only: true,
        interface: None,
        app: Default::default(),
        ..ConnRecord::example()
    }
}

/// A connection record with every optional field set (`ConnRecord::example` and both
/// directions' options, and an ICMP error with a name).
pub fn full_record() -> ConnRecord {
    let dir = DirRecord {
        mss: Some(1460),
        wscale: Some(7),
        rtt_min_ns: Some(1),
        rtt_avg_ns: Some(1.0),
        rtt_max_ns: Some(1),
        rtt_std_ns: Some(0.0),
        ttl_min: Some(64),
        ttl_max: Some(64),
        win_first: Some(65535),
        win_min: Some(65535),
        win_max: Some(65535),
        first_payload_ns: Some(1),
        last_payload_ns: Some(1),
        ..DirRecord::default()
    };
    ConnRecord {
        c2s: dir.clone(),
        s2c: dir,
        icmp_type: Some(3),
        icmp_code: Some(3),
        ..ConnRecord::example()
    }
}

/// The connection record's columns.
pub fn conn_records() -> Vec<Column> {
    of(&full_record(), &empty_record()).expect("the full record sets every field")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_columns() {
        let cols = conn_records();
        assert_eq!(cols.len(), tcpsight_core::record::field_names().len());
        let get = |n: &str| *cols.iter().find(|c| c.name == n).unwrap();
        assert_eq!(get("ts_first").kind, Kind::Timestamp);
        assert_eq!(get("client_ip").kind, Kind::Str);
        assert!(!get("client_ip").nullable);
        assert_eq!(get("c2s_sack_ok").kind, Kind::Bool);
        assert_eq!(get("connect_us").kind, Kind::Int);
        assert!(get("connect_us").nullable);
        assert!(get("c2s_rtt_avg_us").nullable);
        assert!(get("closed_by").nullable);
        assert!(get("icmp_reason").nullable);
        assert!(get("server_name").nullable);
        assert!(!get("history").nullable);
        assert!(!get("c2s_pkts").nullable);
    }
}
