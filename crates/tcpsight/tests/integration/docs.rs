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
