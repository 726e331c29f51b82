//! The documentation names every field of the record schema.

#[test]
fn every_record_field_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fields.md"))
        .unwrap();
    let mut missing = Vec::new();
    for name in tcpsight_core::record::field_names() {
        let base = name
            .strip_prefix("c2s_")
            .or_else(|| name.strip_prefix("s2c_"))
            .unwrap_or(name);
        if !doc.contains(&format!("`{base}`")) && !doc.contains(&format!("`{name}`")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "fields missing from docs/fields.md: {missing:?}"
    );
}

/// docs/monitor.md names every metric family, every bins field and the fields the
/// monitor adds to records.
#[test]
fn every_metric_and_bins_field_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/monitor.md"
    ))
    .unwrap();
    let mut missing = Vec::new();
    let m = tcpsight_monitor::Metrics::new();
    for line in m.encode_prometheus_text().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            if !doc.contains(&format!("`{name}`")) {
                missing.push(name.to_string());
            }
        }
    }
    let mut bins = tcpsight_monitor::Bins::new(
        tcpsight_agg::Grouping::HostPort,
        Some(tcpsight_monitor::LocalNets::parse("10.0.0.0/8").unwrap()),
    );
    bins.on_connection(&tcpsight_core::ConnRecord::example());
    let rows = bins.take_rows(0, 60_000_000_000);
    for key in rows[0].as_object().unwrap().keys() {
        if !doc.contains(&format!("`{key}`")) {
            missing.push(key.clone());
        }
    }
    for f in ["record", "direction", "pid", "process"] {
        if !doc.contains(&format!("`{f}`")) {
            missing.push(f.into());
        }
    }
    assert!(
        missing.is_empty(),
        "missing from docs/monitor.md: {missing:?}"
    );
}
