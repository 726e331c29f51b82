//! Real captures through the test reassembler and the analyzer, compared with tshark's
//! dissection (tests/data/*.tsv, made by tests/data/make.sh).

mod common;

use std::collections::BTreeMap;

use common::{analyze, flows};
use tcpsight_l7::{AppProto, HttpTransaction, L7Event, TlsHandshake};

const CAP: &str = "testdata/captures";

fn data(name: &str) -> Vec<Vec<String>> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Rows grouped by connection: the first two columns (client port, server port), in
/// order within a connection.
fn by_stream(rows: Vec<Vec<String>>) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut m: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for mut r in rows {
        let c = r.remove(0);
        let s = r.remove(0);
        m.entry(format!("{c}-{s}")).or_default().push(r);
    }
    m
}

/// A connection's key as in the tshark files: its ports, client port first.
type Key = (u16, u16);

/// Asserts equality, listing only the connections that differ.
fn same(
    got: &BTreeMap<String, Vec<Vec<String>>>,
    want: &BTreeMap<String, Vec<Vec<String>>>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for k in got.keys().chain(want.keys()) {
        if got.get(k) != want.get(k) && !diffs.iter().any(|(d, _, _)| d == k) {
            diffs.push((k.clone(), got.get(k), want.get(k)));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what} differ from tshark (connection, ours, tshark's):\n{diffs:#?}"
    );
}

/// Responses we find and tshark does not, with why (each is checked to still be so).
const EXTRA_RESPONSES: &[(&str, &str, &str)] = &[(
    "ndpi/instagram.pcap",
    "44379-80",
    "the status line starts inside the first segment after a capture gap (frame 240); \
     tshark waits for the missing bytes and never dissects it, we resync on it",
)];

struct Run {
    http: Vec<(Key, HttpTransaction)>,
    tls: Vec<(Key, TlsHandshake)>,
    protos: Vec<AppProto>,
}

fn run(file: &str) -> Run {
    let mut r = Run {
        http: vec![],
        tls: vec![],
        protos: vec![],
    };
    for f in flows(&format!("{CAP}/{file}")) {
        let (evs, a) = analyze(&f);
        r.protos.push(a.summary().app_proto);
        let key = (f.client.1, f.server.1);
        for e in evs {
            match e {
                L7Event::Http(t) => r.http.push((key, t)),
                L7Event::Tls(t) => r.tls.push((key, t)),
            }
        }
    }
    r
}

fn s(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

/// HTTP requests and responses per stream against tshark's. Returns the number compared.
fn check_http(file: &str, name: &str) -> (usize, usize) {
    let r = run(file);
    let req: BTreeMap<String, Vec<Vec<String>>> = by_stream(
        r.http
            .iter()
            .filter(|(_, t)| t.method.is_some())
            .map(|(i, t)| {
                vec![
                    i.0.to_string(),
                    i.1.to_string(),
                    s(&t.method),
                    s(&t.host),
                    s(&t.uri),
                    s(&t.user_agent),
                ]
            })
            .collect(),
    );
    let resp = by_stream(
        r.http
            .iter()
            .filter(|(_, t)| t.status_code.is_some())
            .map(|(i, t)| {
                vec![
                    i.0.to_string(),
                    i.1.to_string(),
                    t.status_code.unwrap().to_string(),
                    s(&t.content_type),
                    s(&t.server),
                ]
            })
            .collect(),
    );
    let want_req = by_stream(data(&format!("{name}.http-requests.tsv")));
    // tshark joins repeated headers with ','; we keep the first Server header. tshark
    // lists interim 1xx responses as responses; ours are part of their transaction
    // (info_code), so they are counted against the transactions that have one.
    let mut interim = 0;
    let want_resp: BTreeMap<String, Vec<Vec<String>>> =
        by_stream(data(&format!("{name}.http-responses.tsv")))
            .into_iter()
            .map(|(k, rows)| {
                let rows = rows
                    .into_iter()
                    .filter(|r| {
                        let info = r[0].starts_with('1') && r[0] != "101";
                        interim += info as usize;
                        !info
                    })
                    .map(|mut r| {
                        r[2] = r[2].split(',').next().unwrap_or("").to_string();
                        r
                    })
                    .collect();
                (k, rows)
            })
            .collect();
    let ours_interim = r.http.iter().filter(|(_, t)| t.info_code.is_some()).count();
    assert_eq!(ours_interim, interim, "{file}: interim responses");
    // Known differences: connections where we see a response tshark does not dissect.
    let mut resp = resp;
    for (f, key, why) in EXTRA_RESPONSES {
        if *f == file {
            assert!(
                !want_resp.contains_key(*key),
                "{file} {key}: tshark has it now"
            );
            let ours = resp.remove(*key);
            assert!(ours.is_some_and(|r| !r.is_empty()), "{file} {key}: {why}");
        }
    }
    same(&req, &want_req, &format!("{file}: requests"));
    same(&resp, &want_resp, &format!("{file}: responses"));
    (
        want_req.values().map(Vec::len).sum(),
        want_resp.values().map(Vec::len).sum(),
    )
}

#[test]
fn http_pipelined_requests_match_tshark() {
    assert_eq!(
        check_http(
            "zeek/http-pipelined-requests.pcap",
            "http-pipelined-requests"
        ),
        (5, 5)
    );
}

#[test]
fn http_wikipedia_matches_tshark() {
    assert_eq!(check_http("zeek/wikipedia.pcap", "wikipedia"), (15, 15));
}

#[test]
fn http_range_multiflows_matches_tshark() {
    assert_eq!(
        check_http(
            "suricata-verify/http-range-multiflows.pcap",
            "http-range-multiflows"
        ),
        (41, 41)
    );
}

#[test]
fn http_1000_requests_one_dropped_response() {
    assert_eq!(
        check_http(
            "zeek/http-1000-requests-one-dropped-response.pcap",
            "http-1000-requests-one-dropped-response"
        ),
        (1000, 999)
    );
}

/// ClientHello (SNI, ALPN, JA3) and ServerHello (version, cipher, JA3S) per stream
/// against tshark's. Returns the numbers of client and server hellos compared.
fn check_tls(file: &str, name: &str) -> (usize, usize) {
    let r = run(file);
    let ch = by_stream(
        r.tls
            .iter()
            .filter(|(_, t)| t.client_first_ns.is_some())
            .map(|(i, t)| {
                vec![
                    i.0.to_string(),
                    i.1.to_string(),
                    s(&t.server_name),
                    t.alpn_offered.join(","),
                    s(&t.ja3),
                ]
            })
            .collect(),
    );
    let sh = by_stream(
        r.tls
            .iter()
            .filter(|(_, t)| t.server_hello_ns.is_some())
            .map(|(i, t)| {
                vec![
                    i.0.to_string(),
                    i.1.to_string(),
                    t.version.unwrap().to_string(),
                    s(&t.cipher),
                    s(&t.ja3s),
                ]
            })
            .collect(),
    );
    // One record per connection: after a HelloRetryRequest, tshark lists the second
    // ClientHello too; ours (and the fingerprints) are the first one's.
    let retried: Vec<String> = r
        .tls
        .iter()
        .filter(|(_, t)| t.flags & tcpsight_l7::tls::flags::HELLO_RETRY != 0)
        .map(|(k, _)| format!("{}-{}", k.0, k.1))
        .collect();
    let mut want_ch = by_stream(data(&format!("{name}.tls-client-hello.tsv")));
    for k in &retried {
        if let Some(rows) = want_ch.get_mut(k) {
            assert_eq!(
                rows.len(),
                2,
                "{k}: two ClientHellos around a HelloRetryRequest"
            );
            rows.truncate(1);
        }
    }
    let want_sh: BTreeMap<String, Vec<Vec<String>>> =
        by_stream(data(&format!("{name}.tls-server-hello.tsv")))
            .into_iter()
            .map(|(k, rows)| {
                let rows = rows
                    .into_iter()
                    .map(|r| {
                        let hex =
                            |x: &str| u16::from_str_radix(x.trim_start_matches("0x"), 16).unwrap();
                        // supported_versions if present, else the legacy version.
                        let v = if r[0].is_empty() { &r[1] } else { &r[0] };
                        vec![
                            tcpsight_l7::tls::version_name(hex(v)).to_string(),
                            tcpsight_l7::tls::cipher_name(hex(&r[2])),
                            r[3].clone(),
                        ]
                    })
                    .collect();
                (k, rows)
            })
            .collect();
    // tshark lists the HelloRetryRequest as a ServerHello (type 2); ours is the real one.
    let mut want_sh = want_sh;
    for k in &retried {
        if let Some(rows) = want_sh.get_mut(k) {
            assert_eq!(rows.len(), 2, "{k}: HelloRetryRequest and ServerHello");
            rows.remove(0);
        }
    }
    same(&ch, &want_ch, &format!("{file}: client hellos"));
    same(&sh, &want_sh, &format!("{file}: server hellos"));
    (
        want_ch.values().map(Vec::len).sum(),
        want_sh.values().map(Vec::len).sum(),
    )
}

#[test]
fn tls_subjectaltname_matches_tshark() {
    assert_eq!(
        check_tls(
            "suricata-verify/tls-subjectaltname.pcap",
            "tls-subjectaltname"
        ),
        (40, 40)
    );
}

#[test]
fn tls_openjdk_sll2_matches_tshark() {
    assert_eq!(
        check_tls("zeek/tls-openjdk-sll2.pcap", "tls-openjdk-sll2"),
        (1, 1)
    );
}

#[test]
fn tls_reddit_ipv6_matches_tshark() {
    assert_eq!(check_tls("ndpi/reddit-ipv6.pcap", "reddit-ipv6"), (59, 59));
}

#[test]
fn tls_ndpi_captures_match_tshark() {
    assert_eq!(check_tls("ndpi/instagram.pcap", "instagram"), (11, 11));
    assert_eq!(check_tls("ndpi/alexa-app.pcapng", "alexa-app"), (88, 88));
    assert_eq!(check_tls("ndpi/1kxun.pcap", "1kxun"), (4, 4));
    assert_eq!(
        check_tls("ndpi/KakaoTalk_talk-sll.pcap", "KakaoTalk_talk-sll"),
        (3, 3)
    );
}

#[test]
fn http_ndpi_and_suricata_captures_match_tshark() {
    assert_eq!(
        check_http(
            "suricata-verify/tls-subjectaltname.pcap",
            "tls-subjectaltname"
        ),
        (37, 37)
    );
    assert_eq!(check_http("ndpi/1kxun.pcap", "1kxun"), (133, 121));
    assert_eq!(check_http("ndpi/gnutella.pcap", "gnutella"), (3, 3));
    assert_eq!(check_http("ndpi/instagram.pcap", "instagram"), (8, 3));
}

/// Writes the `l7_stream` fuzz seeds (fuzz/seeds/l7_stream/) from real connections, in
/// that target's record format. Run by hand:
/// `cargo test -p tcpsight-l7 --test captures write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = format!("{}/../../fuzz/seeds/l7_stream", env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    // (capture, client port, name): small whole connections of each kind.
    let picks = [
        ("zeek/http-pipelined-requests.pcap", None, "http-pipelined"),
        ("ndpi/1kxun.pcap", Some(49608), "http-100-continue"),
        ("zeek/http-get-to-ssh-server-nsec.pcap", None, "http-to-ssh"),
        ("zeek/tls-openjdk-sll2.pcap", None, "tls12-openjdk"),
        ("ndpi/reddit-ipv6.pcap", Some(39736), "tls13-hello-retry"),
        ("ndpi/reddit-ipv6.pcap", Some(40028), "tls13"),
        (
            "zeek/http-1000-requests-one-dropped-response.pcap",
            None,
            "http-gap",
        ),
    ];
    for (file, port, name) in picks {
        let f = flows(&format!("{CAP}/{file}"))
            .into_iter()
            .find(|f| port.is_none_or(|p| f.client.1 == p))
            .unwrap();
        let mut seed = Vec::new();
        for ev in &f.events {
            if seed.len() > 6000 {
                break;
            }
            match ev {
                common::Ev::Data(d, _, b) => {
                    let b = &b[..b.len().min(2000)];
                    seed.push(matches!(d, tcpsight_l7::Dir::ToClient) as u8);
                    seed.extend_from_slice(&(b.len() as u16).to_le_bytes());
                    seed.extend_from_slice(b);
                }
                common::Ev::Gap(d, _, n) => {
                    seed.push(matches!(d, tcpsight_l7::Dir::ToClient) as u8 | 2);
                    seed.extend_from_slice(&(*n as u16).to_le_bytes());
                }
            }
        }
        std::fs::write(format!("{dir}/{name}"), seed).unwrap();
    }
}
