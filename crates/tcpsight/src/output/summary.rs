//! Capture summary and handshake outcome totals (tcpeek's summary, extended).

use serde_json::{Value as Json, json};
pub use tcpsight_agg::Outcomes;
use tcpsight_core::{CaptureStats, Outcome};

use crate::format::{thousands, utc};

/// What the summary says about the inputs.
pub struct InputInfo {
    pub files: Vec<String>,
    pub formats: Vec<String>,
    pub ts_digits: u8,
    /// The tcpdump-syntax packet filter, and how many frames it did not match.
    pub packet_filter: Option<(String, u64)>,
}

pub fn render(input: &InputInfo, st: &CaptureStats, o: &Outcomes) -> String {
    let mut s = String::new();
    let links: Vec<String> = st.link_types.keys().map(|l| l.name()).collect();
    s.push_str(&format!(
        "Capture   {} file{} ({}), link type{} {}\n",
        input.files.len(),
        if input.files.len() == 1 { "" } else { "s" },
        input.formats.join(", "),
        if links.len() == 1 { "" } else { "s" },
        if links.is_empty() {
            "-".into()
        } else {
            links.join(", ")
        }
    ));
    match (st.first_ns, st.last_ns) {
        (Some(a), Some(b)) => s.push_str(&format!(
            "          {} .. {} UTC ({:.3} s)\n",
            utc(a, input.ts_digits),
            utc(b, input.ts_digits),
            (b - a) as f64 / 1e9
        )),
        _ => s.push_str("          no packets\n"),
    }
    if let Some((expr, rejected)) = &input.packet_filter {
        s.push_str(&format!(
            "Filter    \"{expr}\": {} frames did not match (not counted below)\n",
            thousands(*rejected)
        ));
    }
    s.push_str(&format!(
        "Packets   {} frames, {} TCP, {} ICMP errors ({} matched a connection), {} other\n",
        thousands(st.frames),
        thousands(st.tcp_packets),
        thousands(st.icmp_errors),
        thousands(st.icmp_matched),
        thousands(st.not_tcp),
    ));
    s.push_str(&format!(
        "          {} truncated by snaplen, {} undecodable, {} later IP fragments, {} out of time order\n",
        thousands(st.truncated),
        thousands(st.undecodable_total()),
        thousands(st.fragments),
        thousands(st.ts_backwards),
    ));
    for (why, n) in &st.undecodable {
        s.push_str(&format!(
            "          undecodable: {} x {why}\n",
            thousands(*n)
        ));
    }
    s.push_str(&tunnels(st));
    let failed = o.get(Outcome::Rejected) + o.get(Outcome::Unreachable) + o.get(Outcome::Timeout);
    s.push_str(&format!("\nConnections {}\n", thousands(o.connections)));
    s.push_str(&format!(
        "  success       {:>9}   (SYN dup {}, S/A dup {})\n",
        thousands(o.get(Outcome::Established)),
        thousands(o.dup_syn),
        thousands(o.dup_synack)
    ));
    s.push_str(&format!("  failure       {:>9}\n", thousands(failed)));
    s.push_str(&format!(
        "    rejected    {:>9}   (RST answered the SYN)\n",
        thousands(o.get(Outcome::Rejected))
    ));
    s.push_str(&format!(
        "    unreachable {:>9}   (ICMP error quoted the SYN)\n",
        thousands(o.get(Outcome::Unreachable))
    ));
    s.push_str(&format!(
        "    timeout     {:>9}   (no answer in time)\n",
        thousands(o.get(Outcome::Timeout))
    ));
    s.push_str(&format!(
        "  pending       {:>9}   (trace ended during the handshake)\n",
        thousands(o.get(Outcome::Pending))
    ));
    s.push_str(&format!(
        "  midstream     {:>9}   (already open when the capture began)\n",
        thousands(o.get(Outcome::Midstream))
    ));
    if o.control_only > 0 {
        s.push_str(&format!(
            "  control-only  {:>9}   (only SYN, FIN and RST packets seen, as in a control-only\n\
             \x20                            capture: connect time, RTT, retransmissions, gaps and\n\
             \x20                            messages unknown, shown as - or null; bytes from sequence numbers)\n",
            thousands(o.control_only)
        ));
    }
    s
}

/// Frames per encapsulation, tunnel fragments and what was not understood (nothing
/// when the capture has none of them).
fn tunnels(st: &CaptureStats) -> String {
    let mut s = String::new();
    if !st.encapsulations.is_empty() || st.tunnel_fragments > 0 {
        let kinds: Vec<String> = st
            .encapsulations
            .iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        s.push_str(&format!(
            "Tunnels   frames: {}; {} tunnel fragments\n",
            if kinds.is_empty() {
                "-".to_string()
            } else {
                kinds.join(", ")
            },
            thousands(st.tunnel_fragments)
        ));
    }
    for (what, n) in &st.not_understood {
        s.push_str(&format!(
            "          not understood: {} x {what}\n",
            thousands(*n)
        ));
    }
    s
}

pub fn to_json(input: &InputInfo, st: &CaptureStats, o: &Outcomes) -> Json {
    let outcomes: serde_json::Map<String, Json> = Outcome::ALL
        .iter()
        .map(|k| (k.name().to_string(), json!(o.get(*k))))
        .collect();
    json!({
        "files": input.files,
        "formats": input.formats,
        "packet_filter": input.packet_filter.as_ref().map(|(e, r)| json!({"expr": e, "frames_not_matched": r})),
        "link_types": st.link_types.keys().map(|l| l.name()).collect::<Vec<_>>(),
        "frames": st.frames,
        "tcp_packets": st.tcp_packets,
        "icmp_errors": st.icmp_errors,
        "icmp_matched": st.icmp_matched,
        "not_tcp": st.not_tcp,
        "truncated": st.truncated,
        "undecodable": st.undecodable_total(),
        "undecodable_by_reason": st.undecodable,
        "fragments": st.fragments,
        "encapsulations": st.encapsulations,
        "tunnel_fragments": st.tunnel_fragments,
        "not_understood": st.not_understood,
        "ts_backwards": st.ts_backwards,
        "first_ts_ns": st.first_ns,
        "last_ts_ns": st.last_ns,
        "connections": o.connections,
        "outcomes": outcomes,
        "dup_syn": o.dup_syn,
        "dup_synack": o.dup_synack,
        "control_only": o.control_only,
    })
}
