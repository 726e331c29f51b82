//! tcpdump-syntax packet filters (`-f EXPR`), compiled by libpcap loaded at run time.
//! Frame counts were checked against `tcpdump -r FILE EXPR | wc -l` when written.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel);
    p.to_str().unwrap().to_string()
}

fn tcpsight(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tcpsight"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

const GENERATED: &str = "captures/generated/netns-25s-client.pcap.gz";

/// libpcap is optional at run time: without it these tests say so and skip, unless
/// TCPSIGHT_REQUIRE_LIBPCAP is set (CI installs libpcap and sets it).
fn have_libpcap() -> bool {
    let out = tcpsight(&["analyze", &data(GENERATED), "-f", "tcp", "--json"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("need libpcap at run time") {
        assert!(
            std::env::var_os("TCPSIGHT_REQUIRE_LIBPCAP").is_none(),
            "{err}"
        );
        eprintln!("skipped: {err}");
        return false;
    }
    true
}

fn analyze_json(expr: &str) -> serde_json::Value {
    let out = tcpsight(&["analyze", &data(GENERATED), "-f", expr, "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn analyze_filter_keeps_the_frames_tcpdump_keeps() {
    if !have_libpcap() {
        return;
    }
    // (expression, frames tcpdump keeps, connections by outcome)
    let cases = [
        ("tcp port 8000", 4430, 315, 0, 0),
        ("tcp port 443 or port 81", 403, 18, 18, 0),
        ("ip6", 18924, 26, 0, 18),
    ];
    for (expr, frames, established, rejected, unreachable) in cases {
        let d = analyze_json(expr);
        assert_eq!(d["frames"], frames, "{expr}");
        assert_eq!(d["packet_filter"]["expr"], expr);
        assert_eq!(
            d["packet_filter"]["frames_not_matched"],
            239_962 - frames,
            "{expr}"
        );
        assert_eq!(d["outcomes"]["established"], established, "{expr}");
        assert_eq!(d["outcomes"]["rejected"], rejected, "{expr}");
        assert_eq!(d["outcomes"]["unreachable"], unreachable, "{expr}");
    }
}

#[test]
fn filter_syntax_error_is_one_line_naming_the_expression() {
    if !have_libpcap() {
        return;
    }
    let out = tcpsight(&["analyze", &data(GENERATED), "-f", "tcp prot 80"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("tcpsight: filter \"tcp prot 80\": "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_libpcap_names_the_package_and_the_rest_still_works() {
    let env = [("TCPSIGHT_LIBPCAP", "/nonexistent/libpcap.so.0.8")];
    let out = tcpsight(&["analyze", &data(GENERATED), "-f", "tcp"], &env);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("install the package libpcap0.8"), "{err}");
    // Without a filter expression, libpcap is never loaded.
    let out = tcpsight(&["analyze", &data(GENERATED)], &env);
    assert!(out.status.success());
}
