//! `analyze --udp-flows`: every UDP conversation of every capture with UDP, checked
//! against tshark's (testdata/oracle/udp, from tools/oracle/udp.py: `conv,udp`'s frames
//! each way and the UDP payload bytes each way); the records and the summary pinned by
//! golden files; the same bytes with --threads 2.

use std::collections::HashMap;

use serde_json::Value;

use crate::golden::{analyze, check};

/// (capture under testdata/captures, oracle name). vxlan-netns is left out on purpose:
/// its UDP is VXLAN's outer header, which the engine decodes through to the inner
/// packets (conv,udp counts the outer datagrams).
const CAPTURES: &[(&str, &str)] = &[
    ("ndpi/gnutella.pcap", "ndpi__gnutella"),
    ("ndpi/1kxun.pcap", "ndpi__1kxun"),
    (
        "suricata-verify/tls-subjectaltname.pcap",
        "suricata-verify__tls-subjectaltname",
    ),
    ("ndpi/alexa-app.pcapng", "ndpi__alexa-app"),
    ("zeek/wikipedia.pcap", "zeek__wikipedia"),
    ("ndpi/ethereum.pcap", "ndpi__ethereum"),
    ("tcpreplay/test.pcap", "tcpreplay__test"),
    ("ndpi/instagram.pcap", "ndpi__instagram"),
    (
        "ndpi/sites-22-interfaces.pcapng",
        "ndpi__sites-22-interfaces",
    ),
    ("ndpi/KakaoTalk_talk-sll.pcap", "ndpi__KakaoTalk_talk-sll"),
    ("generated/l7-mix.pcap", "generated__l7-mix"),
];

type Ep = (String, u64);
/// Per conversation (its two endpoints, sorted): (frames, payload bytes) sent by each.
type Convs = HashMap<(Ep, Ep), HashMap<Ep, (u64, u64)>>;

fn pair(a: Ep, b: Ep) -> (Ep, Ep) {
    if a <= b { (a, b) } else { (b, a) }
}

fn oracle(name: &str) -> Convs {
    let path = format!(
        "{}/../../testdata/oracle/udp/{name}.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut m = Convs::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        let (a, b) = ((f[0].to_string(), n(1)), (f[2].to_string(), n(3)));
        let sides = HashMap::from([(a.clone(), (n(4), n(5))), (b.clone(), (n(6), n(7)))]);
        assert!(m.insert(pair(a, b), sides).is_none(), "{name}: duplicate");
    }
    m
}

fn ours(capture: &str) -> Convs {
    // tshark's conversations have no idle timeout: neither, here.
    let (code, out, err) = analyze(
        &format!("testdata/captures/{capture}"),
        &["--udp-flows", "-", "--udp-idle-timeout", "1e9"],
    );
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
    let mut m = Convs::new();
    for l in String::from_utf8(out).unwrap().lines() {
        let r: Value = serde_json::from_str(l).unwrap();
        let ep = |ip: &str, port: &str| {
            (
                r[ip].as_str().unwrap().to_string(),
                r[port].as_u64().unwrap(),
            )
        };
        let (c, s) = (
            ep("client_ip", "client_port"),
            ep("server_ip", "server_port"),
        );
        let n = |k: &str| r[k].as_u64().unwrap();
        let sides = HashMap::from([
            (c.clone(), (n("c2s_pkts"), n("c2s_bytes"))),
            (s.clone(), (n("s2c_pkts"), n("s2c_bytes"))),
        ]);
        assert!(
            m.insert(pair(c, s), sides).is_none(),
            "{capture}: one conversation, two flows"
        );
    }
    m
}

#[test]
fn udp_flows_match_tshark_conversations() {
    let mut total = 0;
    for (capture, name) in CAPTURES {
        let (want, got) = (oracle(name), ours(capture));
        let mut bad: Vec<String> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("{k:?}: tshark {v:?}, tcpsight {:?}", got.get(k)))
            .collect();
        bad.extend(
            got.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k:?}: not a tshark conversation")),
        );
        assert!(bad.is_empty(), "{capture}:\n{}", bad.join("\n"));
        total += want.len();
    }
    assert_eq!(total, 859, "every conversation of every capture compared");
}

/// The records at the default idle timeout (gnutella's 600 s split some of its 613
/// conversations), the summary's UDP lines, and a capture with QUIC.
#[test]
fn udp_golden_and_threads() {
    let mut failures = Vec::new();
    for (tag, capture) in [
        ("gnutella", "testdata/captures/ndpi/gnutella.pcap"),
        (
            "sites-22-interfaces",
            "testdata/captures/ndpi/sites-22-interfaces.pcapng",
        ),
    ] {
        for (suffix, args) in [
            ("udp-flows.jsonl", &["--udp-flows", "-"][..]),
            ("udp-flows.csv", &[][..]),
            ("udp.json", &["--udp", "--json"][..]),
        ] {
            // --format names --flows' format; --udp-flows goes by its name, so CSV is
            // asked for through a file name here.
            let csv_path = format!("{}/udp-{tag}.csv", env!("CARGO_TARGET_TMPDIR"));
            let args: Vec<&str> = if suffix.ends_with(".csv") {
                vec!["--udp-flows", &csv_path]
            } else {
                args.to_vec()
            };
            // What the golden holds of a run: the CSV file, only the UDP part of the
            // JSON document (the rest is the TCP goldens' business), else stdout.
            let pinned = |out: Vec<u8>| -> Vec<u8> {
                if suffix.ends_with(".csv") {
                    std::fs::read(&csv_path).unwrap()
                } else if suffix.ends_with(".json") {
                    let doc: Value = serde_json::from_slice(&out).unwrap();
                    let mut t = serde_json::to_string_pretty(&doc["udp"]).unwrap();
                    t.push('\n');
                    t.into_bytes()
                } else {
                    out
                }
            };
            let (code, out, err) = analyze(capture, &args);
            assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&err));
            let got = pinned(out);
            failures.extend(check(&format!("udp/{tag}.{suffix}"), &got));
            let mut threaded = args.clone();
            threaded.extend(["--threads", "2"]);
            let (_, out2, err2) = analyze(capture, &threaded);
            let got2 = pinned(out2);
            assert_eq!(got, got2, "{capture} {args:?}: --threads 2 differs");
            assert_eq!(err, err2, "{capture} {args:?}: --threads 2 report differs");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn udp_summary_counts_quic() {
    let (code, out, _) = analyze(
        "testdata/captures/ndpi/sites-22-interfaces.pcapng",
        &["--udp"],
    );
    assert_eq!(code, Some(0));
    let text = String::from_utf8(out).unwrap();
    // tshark: 6 QUIC frames in 4 conversations, all version 1 (quic.version == 1).
    assert!(
        text.contains("UDP flows: 4 (6 datagrams), by protocol: quic 4\n  QUIC: 4 flows (v1 4)\n"),
        "{text}"
    );
}

#[test]
fn every_udp_field_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fields.md"))
        .unwrap();
    let missing: Vec<_> = tcpsight_udp::record::field_names()
        .into_iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "UDP fields missing from docs/fields.md: {missing:?}"
    );
    for p in tcpsight_udp::Proto::ALL {
        assert!(
            doc.contains(&format!("`{}`", p.name())),
            "protocol {} undocumented",
            p.name()
        );
    }
}
