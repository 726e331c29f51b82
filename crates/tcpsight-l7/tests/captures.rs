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

/// Rows grouped by tcp.stream (first column), in order within a stream.
fn by_stream(rows: Vec<Vec<String>>) -> BTreeMap<usize, Vec<Vec<String>>> {
    let mut m: BTreeMap<usize, Vec<Vec<String>>> = BTreeMap::new();
    for mut r in rows {
        let s = r.remove(0).parse().unwrap();
        m.entry(s).or_default().push(r);
    }
    m
}

struct Run {
    http: Vec<(usize, HttpTransaction)>,
    tls: Vec<(usize, TlsHandshake)>,
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
        for e in evs {
            match e {
                L7Event::Http(t) => r.http.push((f.index, t)),
                L7Event::Tls(t) => r.tls.push((f.index, t)),
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
    let req: BTreeMap<usize, Vec<Vec<String>>> = by_stream(
        r.http
            .iter()
            .filter(|(_, t)| t.method.is_some())
            .map(|(i, t)| {
                vec![
                    i.to_string(),
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
                    i.to_string(),
                    t.status_code.unwrap().to_string(),
                    s(&t.content_type),
                    s(&t.server),
                ]
            })
            .collect(),
    );
    let want_req = by_stream(data(&format!("{name}.http-requests.tsv")));
    let want_resp = by_stream(data(&format!("{name}.http-responses.tsv")));
    assert_eq!(req, want_req, "{file}: requests differ from tshark");
    assert_eq!(resp, want_resp, "{file}: responses differ from tshark");
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
