//! Generated streams: HTTP framing cases, chunkings, gaps, TLS hellos, identification,
//! and arbitrary input.

use proptest::prelude::*;
use tcpsight_l7::http::flags as hf;
use tcpsight_l7::tls::flags as tf;
use tcpsight_l7::{Analyzer, AppProto, Dir, HttpTransaction, L7Event, TlsHandshake};

enum Step<'a> {
    D(Dir, u64, &'a [u8]),
    Gap(Dir, u64),
}
use Step::*;

const C: Dir = Dir::ToServer;
const S: Dir = Dir::ToClient;

fn run(steps: &[Step]) -> (Vec<L7Event>, Analyzer) {
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match s {
            D(d, ts, b) => {
                a.on_data(*d, *ts, b, &mut out);
            }
            Gap(d, n) => a.on_gap(*d, i as u64, *n, &mut out),
        }
    }
    a.on_end(1_000_000, &mut out);
    (out, a)
}

fn http(evs: &[L7Event]) -> Vec<HttpTransaction> {
    evs.iter()
        .filter_map(|e| match e {
            L7Event::Http(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn tls(evs: &[L7Event]) -> Vec<TlsHandshake> {
    evs.iter()
        .filter_map(|e| match e {
            L7Event::Tls(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

const REQS: &[u8] = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n\
POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello\
HEAD /c HTTP/1.1\r\nHost: example.com\r\n\r\n\
PUT /d HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /e HTTP/1.1\r\nHost: example.com\r\nReferer: http://x/\r\n\r\n";

const RESPS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: s/1\r\nContent-Length: 4\r\n\r\nabcd\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;x\r\n12345\r\nA \r\n0123456789\r\n0\r\nTrailer-One: 1\r\nTrailer-Two: 2\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 77\r\n\r\n";

fn check_pipelined(t: &[HttpTransaction]) {
    assert_eq!(t.len(), 5, "{t:#?}");
    let got: Vec<_> = t
        .iter()
        .map(|t| {
            (
                t.trans_depth,
                t.method.as_deref().unwrap(),
                t.uri.as_deref().unwrap(),
                t.request_body_len,
                t.status_code,
                t.response_body_len,
                t.info_code,
                t.flags,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "GET", "/a", Some(0), Some(200), Some(4), None, 0),
            (2, "POST", "/b", Some(5), Some(201), Some(15), Some(100), 0),
            // HEAD: Content-Length 1000 but no body.
            (3, "HEAD", "/c", Some(0), Some(200), Some(0), None, 0),
            (4, "PUT", "/d", Some(3), Some(204), Some(0), None, 0),
            // 304: no body whatever Content-Length says.
            (5, "GET", "/e", Some(0), Some(304), Some(0), None, 0),
        ]
    );
    assert_eq!(t[0].content_type.as_deref(), Some("text/plain"));
    assert_eq!(t[0].server.as_deref(), Some("s/1"));
    assert_eq!(t[0].user_agent.as_deref(), Some("t/1"));
    assert_eq!(t[4].referrer.as_deref(), Some("http://x/"));
    assert_eq!(t[1].info_msg.as_deref(), Some("Continue"));
}

#[test]
fn pipelined_keepalive_continue_head_204_304_chunked() {
    let (evs, a) = run(&[D(C, 1, REQS), D(S, 2, RESPS)]);
    let t = http(&evs);
    check_pipelined(&t);
    assert_eq!(t[0].request_first_ns, Some(1));
    assert_eq!(t[0].response_first_ns, Some(2));
    assert_eq!(t[0].response_ns(), Some(1));
    let s = a.summary();
    assert_eq!(s.app_proto, AppProto::Http);
    assert_eq!(s.server_name.as_deref(), Some("example.com"));
    assert_eq!(s.http_requests, 5);
}

#[test]
fn pipelined_split_at_every_byte_boundary() {
    let whole = http(&run(&[D(C, 1, REQS), D(S, 1, RESPS)]).0);
    for i in 0..=REQS.len() {
        let t = http(&run(&[D(C, 1, &REQS[..i]), D(C, 1, &REQS[i..]), D(S, 1, RESPS)]).0);
        assert_eq!(t, whole, "request split at {i}");
    }
    for i in 0..=RESPS.len() {
        let t = http(&run(&[D(C, 1, REQS), D(S, 1, &RESPS[..i]), D(S, 1, &RESPS[i..])]).0);
        assert_eq!(t, whole, "response split at {i}");
    }
}

/// Splits `b` at the given cut points (taken modulo its length).
fn chunks<'a>(b: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut c: Vec<usize> = cuts.iter().map(|x| x % (b.len() + 1)).collect();
    c.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for x in c {
        out.push(&b[start..x]);
        start = x;
    }
    out.push(&b[start..]);
    out
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(
        rc in prop::collection::vec(any::<usize>(), 0..12),
        sc in prop::collection::vec(any::<usize>(), 0..12),
        lead in 0usize..13,
    ) {
        let whole = http(&run(&[D(C, 1, REQS), D(S, 1, RESPS)]).0);
        let (rq, rs) = (chunks(REQS, &rc), chunks(RESPS, &sc));
        // All request chunks, with up to `lead` response chunks interleaved after the
        // request bytes they answer are in (the first response after the first request).
        let mut steps = Vec::new();
        let first_req_end = REQS.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut sent = 0;
        let mut si = 0;
        for r in &rq {
            steps.push(D(C, 1, r));
            sent += r.len();
            // Only the first response's bytes may overtake the later requests.
            while si < lead.min(rs.len()) && sent >= first_req_end
                && rs[..=si].iter().map(|c| c.len()).sum::<usize>() <= 80
            {
                steps.push(D(S, 1, rs[si]));
                si += 1;
            }
        }
        for s in &rs[si..] {
            steps.push(D(S, 1, s));
        }
        prop_assert_eq!(http(&run(&steps).0), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_state_stays_bounded(
        first in prop::sample::select(vec![
            &b""[..], b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"\x16\x03\x01\x00\x50\x01",
            b"\x16\x03\x03\x00\x50\x02", b"220 x\r\n",
        ]),
        steps in prop::collection::vec(
            (any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), 0u64..5000),
            0..40),
    ) {
        let mut a = Analyzer::new();
        let mut out = Vec::new();
        a.on_data(C, 0, first, &mut out);
        a.on_data(S, 0, first, &mut out);
        for (i, (to_server, gap, data, glen)) in steps.iter().enumerate() {
            let d = if *to_server { C } else { S };
            if *gap {
                a.on_gap(d, i as u64, *glen, &mut out);
            } else {
                a.on_data(d, i as u64, data, &mut out);
            }
            prop_assert!(a.state_bytes() < 200 * 1024, "{}", a.state_bytes());
        }
        a.on_end(u64::MAX, &mut out);
        let _ = a.summary();
        for e in &out {
            match e {
                L7Event::Http(t) => t.for_each_field(|_, _| {}),
                L7Event::Tls(t) => t.for_each_field(|_, _| {}),
            }
        }
    }
}

#[test]
fn response_until_close_gets_its_length_at_the_end() {
    let (evs, _) = run(&[
        D(C, 1, b"GET / HTTP/1.0\r\n\r\n"),
        D(S, 2, b"HTTP/1.0 200 OK\r\n\r\nabc"),
        D(S, 3, b"defgh"),
    ]);
    let t = http(&evs);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].response_body_len, Some(8));
    assert_eq!(t[0].response_last_ns, Some(1_000_000));
    assert_eq!(t[0].flag_names(), vec!["resp_until_close"]);
}

#[test]
fn request_without_response_is_emitted_at_the_end() {
    let (evs, _) = run(&[D(C, 1, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")]);
    let t = http(&evs);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].status_code, None);
    assert_eq!(t[0].flag_names(), vec!["no_response"]);
}

#[test]
fn header_block_over_16k_is_flagged_and_the_direction_gives_up() {
    let mut big = b"GET /big HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    a.on_data(C, 1, &big[..9000], &mut out);
    a.on_data(C, 2, &big[9000..], &mut out);
    assert!(
        a.state_bytes() < 4096,
        "buffer released: {}",
        a.state_bytes()
    );
    a.on_data(
        S,
        3,
        b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    a.on_end(4, &mut out);
    let t = http(&out);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert_eq!(t[0].method.as_deref(), Some("GET"));
    assert_eq!(t[0].uri.as_deref(), Some("/big"));
    assert_eq!(t[0].status_code, Some(431));
    assert_eq!(t[0].flag_names(), vec!["req_headers_truncated"]);
    assert_eq!(a.summary().http_4xx, 1);
}

#[test]
fn gap_in_body_advances_the_count() {
    let (evs, _) = run(&[
        D(C, 1, b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        D(
            S,
            2,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        ),
        Gap(S, 80),
        D(
            S,
            3,
            b"0123456789HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
    ]);
    let t = http(&evs);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].response_body_len, Some(100));
    assert_eq!(t[0].response_gap_bytes, 80);
    assert_eq!(t[0].flag_names(), vec!["resp_gap"]);
    assert_eq!(t[1].status_code, Some(404));
    assert_eq!(t[1].flags, 0);
}

#[test]
fn gap_in_chunk_data_keeps_framing_and_in_chunk_size_loses_it() {
    let (evs, _) = run(&[
        D(C, 1, b"GET / HTTP/1.1\r\n\r\n"),
        D(
            S,
            2,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123",
        ),
        Gap(S, 8),
        D(S, 3, b"cdef\r\n0\r\n\r\n"),
    ]);
    let t = http(&evs);
    assert_eq!(t[0].response_body_len, Some(16));
    assert_eq!(t[0].flag_names(), vec!["resp_gap"]);
    let (evs, _) = run(&[
        D(C, 1, b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        D(
            S,
            2,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
        ),
        Gap(S, 30),
        D(S, 3, b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
    ]);
    let t = http(&evs);
    assert_eq!(t.len(), 2);
    // The framing was lost: the length is unknown, not guessed.
    assert_eq!(t[0].response_body_len, None);
    assert_eq!(t[0].flag_names(), vec!["resp_gap"]);
    assert_eq!(t[1].response_body_len, Some(1));
}

#[test]
fn gap_in_headers_marks_the_transaction_and_resyncs() {
    let (evs, _) = run(&[
        D(C, 1, b"GET /a HTTP/1.1\r\nHost: h\r\nX-Long: "),
        Gap(C, 500),
        D(C, 2, b"tail\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        D(S, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]);
    let t = http(&evs);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert_eq!(t[0].method, None, "not seen whole: not guessed");
    assert_eq!(t[0].request_gap_bytes, 500);
    assert_eq!(t[0].flag_names(), vec!["req_gap"]);
    assert_eq!(t[0].status_code, Some(200));
    assert_eq!(t[1].uri.as_deref(), Some("/b"));
    assert_eq!(t[1].response_body_len, Some(2));
}

#[test]
fn a_lost_response_is_assigned_to_the_oldest_request() {
    let (evs, _) = run(&[
        D(C, 1, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        Gap(S, 120),
        D(S, 3, b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let t = http(&evs);
    assert_eq!(t[0].status_code, None);
    assert_eq!(t[0].flag_names(), vec!["resp_gap"]);
    assert_eq!(t[1].status_code, Some(302));
}

#[test]
fn upgrade_and_connect_end_http_parsing() {
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    a.on_data(
        C,
        1,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        &mut out,
    );
    let more = a.on_data(
        S,
        2,
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello",
        &mut out,
    );
    assert!(!more, "no more payload needed after 101");
    assert_eq!(http(&out)[0].flag_names(), vec!["tunnel"]);
}

// --- TLS ---

struct Hello {
    version: u16,
    ciphers: Vec<u16>,
    exts: Vec<(u16, Vec<u8>)>,
    session_id: Vec<u8>,
}

fn list16(v: &[u16]) -> Vec<u8> {
    let mut b = ((v.len() * 2) as u16).to_be_bytes().to_vec();
    for x in v {
        b.extend_from_slice(&x.to_be_bytes());
    }
    b
}

fn sni(name: &str) -> Vec<u8> {
    let mut e = vec![0];
    e.extend_from_slice(&(name.len() as u16).to_be_bytes());
    e.extend_from_slice(name.as_bytes());
    let mut b = (e.len() as u16).to_be_bytes().to_vec();
    b.extend(e);
    b
}

fn alpn(protos: &[&str]) -> Vec<u8> {
    let mut e = Vec::new();
    for p in protos {
        e.push(p.len() as u8);
        e.extend_from_slice(p.as_bytes());
    }
    let mut b = (e.len() as u16).to_be_bytes().to_vec();
    b.extend(e);
    b
}

fn record(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 3, 1];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    record(22, &m)
}

fn ext_block(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut e = Vec::new();
    for (t, d) in exts {
        e.extend_from_slice(&t.to_be_bytes());
        e.extend_from_slice(&(d.len() as u16).to_be_bytes());
        e.extend_from_slice(d);
    }
    let mut b = (e.len() as u16).to_be_bytes().to_vec();
    b.extend(e);
    b
}

fn client_hello(h: &Hello) -> Vec<u8> {
    let mut b = h.version.to_be_bytes().to_vec();
    b.extend_from_slice(&[7; 32]);
    b.push(h.session_id.len() as u8);
    b.extend_from_slice(&h.session_id);
    b.extend(list16(&h.ciphers));
    b.extend_from_slice(&[1, 0]);
    if !h.exts.is_empty() {
        b.extend(ext_block(&h.exts));
    }
    handshake(1, &b)
}

fn server_hello(version: u16, cipher: u16, session_id: &[u8], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&[9; 32]);
    b.push(session_id.len() as u8);
    b.extend_from_slice(session_id);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    if !exts.is_empty() {
        b.extend(ext_block(exts));
    }
    handshake(2, &b)
}

/// The FoxIO JA4 specification's example ClientHello (Chrome): 15 ciphers, 16
/// extensions with SNI and ALPN h2, GREASE added (to be ignored).
fn foxio_example() -> Hello {
    let ciphers = vec![
        0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];
    let sig = vec![
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];
    let exts = vec![
        (0x2a2a, vec![]),
        (0x0000, sni("example.com")),
        (0x0017, vec![]),
        (0xff01, vec![0]),
        (0x000a, list16(&[0x3a3a, 0x001d, 0x0017, 0x0018])),
        (0x000b, vec![1, 0]),
        (0x0023, vec![]),
        (0x0010, alpn(&["h2", "http/1.1"])),
        (0x0005, vec![1, 0, 0, 0, 0]),
        (0x000d, list16(&sig)),
        (0x0012, vec![]),
        (0x0033, vec![0, 0]),
        (0x002d, vec![1, 1]),
        (0x002b, {
            let mut v = vec![6];
            for x in [0x4a4a, 0x0304, 0x0303] {
                v.extend_from_slice(&(x as u16).to_be_bytes());
            }
            v
        }),
        (0x001b, vec![2, 0, 2]),
        (0x4469, vec![0, 3, 2, b'h', b'2']),
        (0x0015, vec![0; 10]),
        (0x5a5a, vec![0]),
    ];
    Hello {
        version: 0x0303,
        ciphers,
        exts,
        session_id: vec![5; 32],
    }
}

#[test]
fn ja4_matches_the_foxio_specification_example() {
    let ch = client_hello(&foxio_example());
    let (evs, _) = run(&[D(C, 1, &ch)]);
    let t = tls(&evs);
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].ja4.as_deref(),
        Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
    );
    assert_eq!(t[0].server_name.as_deref(), Some("example.com"));
    assert_eq!(t[0].alpn_offered, vec!["h2", "http/1.1"]);
    assert_eq!(t[0].versions_offered, vec!["TLSv1.3", "TLSv1.2"]);
    assert!(!t[0].established);
}

#[test]
fn ja3_string_removes_grease() {
    let h = foxio_example();
    let ch = client_hello(&h);
    let msg = &ch[5..];
    let (s, _, _) = tcpsight_l7::tls::parse_client_hello(msg).unwrap();
    assert_eq!(
        tcpsight_l7::tls::ja3_string(&s),
        "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
         0-23-65281-10-11-35-16-5-13-18-51-45-43-27-17513-21,29-23-24,0"
    );
}

#[test]
fn tls13_handshake_is_established_at_the_clients_first_application_data() {
    let ch = client_hello(&foxio_example());
    let sv = {
        let mut v = vec![];
        v.extend_from_slice(&0x0304u16.to_be_bytes());
        v
    };
    let sh = server_hello(
        0x0303,
        0x1301,
        &[5; 32],
        &[(0x002b, sv), (0x0033, vec![0, 0x1d, 0, 0])],
    );
    let mut server = sh.clone();
    server.extend(record(20, &[1]));
    server.extend(record(23, &[0; 40])); // encrypted extensions etc.
    let mut client2 = record(20, &[1]);
    client2.extend(record(23, &[0; 30])); // the client's encrypted Finished
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    // The ClientHello split in three deliveries, the record header cut.
    assert!(a.on_data(C, 10, &ch[..3], &mut out));
    assert!(a.on_data(C, 11, &ch[3..100], &mut out));
    assert!(a.on_data(C, 12, &ch[100..], &mut out));
    assert!(a.on_data(S, 20, &server, &mut out));
    assert!(out.is_empty());
    let more = a.on_data(C, 30, &client2, &mut out);
    assert!(!more, "TLS needs nothing after the handshake");
    let t = tls(&out);
    assert_eq!(t.len(), 1);
    let t = &t[0];
    assert!(t.established);
    assert_eq!(t.version, Some("TLSv1.3"));
    assert_eq!(t.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(
        (t.client_first_ns, t.server_hello_ns, t.established_ns),
        (Some(10), Some(20), Some(30))
    );
    assert!(!t.resumed);
    assert_eq!(a.summary().tls_version, Some("TLSv1.3"));
    assert_eq!(a.summary().server_name.as_deref(), Some("example.com"));
    let mut names = Vec::new();
    t.for_each_field(|n, v| names.push((n, format!("{v:?}"))));
    assert_eq!(
        names.iter().map(|x| x.0).collect::<Vec<_>>(),
        TlsHandshake::field_names()
    );
    assert!(names.contains(&("alpn_offered", "Str(\"h2,http/1.1\")".into())));
    assert!(names.contains(&("setup_us", "Micros(20)".into())));
}

#[test]
fn tls12_full_and_resumed_handshakes() {
    let hello = Hello {
        version: 0x0303,
        ciphers: vec![0xc02f, 0x009c],
        exts: vec![(0x0000, sni("a.example")), (0x0023, vec![1, 2, 3])],
        session_id: vec![1; 32],
    };
    let ch = client_hello(&hello);
    // Full: server picks a new session id; client CCS first, then server CCS.
    let sh = server_hello(0x0303, 0xc02f, &[2; 32], &[(0xff01, vec![0])]);
    let (evs, _) = run(&[
        D(C, 1, &ch),
        D(S, 2, &sh),
        D(
            C,
            3,
            &[record(22, &[0; 70]), record(20, &[1]), record(22, &[0; 40])].concat(),
        ),
        D(S, 4, &[record(20, &[1]), record(22, &[0; 40])].concat()),
    ]);
    let t = &tls(&evs)[0];
    assert!(t.established);
    assert_eq!(t.established_ns, Some(4));
    assert_eq!(t.version, Some("TLSv1.2"));
    assert_eq!(
        t.cipher.as_deref(),
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    );
    assert!(!t.resumed);
    assert!(t.ja3s.is_some());
    // Resumed: the server echoes the session id and finishes first.
    let sh = server_hello(0x0303, 0xc02f, &[1; 32], &[]);
    let (evs, _) = run(&[
        D(C, 1, &ch),
        D(S, 2, &[sh, record(20, &[1]), record(22, &[0; 40])].concat()),
        D(C, 3, &[record(20, &[1]), record(22, &[0; 40])].concat()),
    ]);
    let t = &tls(&evs)[0];
    assert!(t.established && t.resumed);
    assert_eq!(t.resumption, Some("session_id"));
    // Resumed by ticket: new session id, but the server's CCS comes first.
    let sh = server_hello(0x0303, 0xc02f, &[], &[(0x0023, vec![])]);
    let (evs, _) = run(&[
        D(C, 1, &ch),
        D(S, 2, &[sh, record(20, &[1])].concat()),
        D(C, 3, &record(20, &[1])),
    ]);
    assert_eq!(tls(&evs)[0].resumption, Some("ticket"));
}

#[test]
fn sslv3_hello_without_extensions() {
    let hello = Hello {
        version: 0x0300,
        ciphers: vec![0x000a, 0x0005],
        exts: vec![],
        session_id: vec![],
    };
    let mut ch = client_hello(&hello);
    ch[2] = 0; // record version 3.0
    let sh = server_hello(0x0300, 0x000a, &[], &[]);
    let (evs, a) = run(&[D(C, 1, &ch), D(S, 2, &sh)]);
    let t = &tls(&evs)[0];
    assert_eq!(t.version, Some("SSLv3"));
    assert_eq!(t.client_version, Some("SSLv3"));
    assert_eq!(t.versions_offered, vec!["SSLv3"]);
    assert_eq!(t.server_name, None);
    assert!(t.ja4.as_deref().unwrap().starts_with("ts3i0200"));
    assert_eq!(
        t.ja4.as_deref().unwrap(),
        "ts3i020000_".to_string() + &t.ja4.as_deref().unwrap()[11..]
    );
    assert!(t.ja4.as_deref().unwrap().ends_with("_000000000000"));
    assert_eq!(a.summary().app_proto, AppProto::Tls);
}

#[test]
fn client_hello_gap_is_flagged_not_guessed() {
    let ch = client_hello(&foxio_example());
    let (evs, _) = run(&[D(C, 1, &ch[..50]), Gap(C, 20), D(C, 2, &ch[70..])]);
    let t = &tls(&evs)[0];
    assert_eq!(t.ja3, None);
    assert_eq!(t.server_name, None);
    assert_ne!(t.flags & tf::CLIENT_GAP, 0);
}

#[test]
fn identification_rules() {
    let cases: &[(&[u8], &[u8], AppProto)] = &[
        (b"GET / HTTP/1.1\r\n", b"", AppProto::Http),
        (b"", b"HTTP/1.1 200 OK\r\n", AppProto::Http),
        (b"SSH-2.0-OpenSSH_9.0\r\n", b"", AppProto::Ssh),
        (b"", b"SSH-2.0-x\r\n", AppProto::Ssh),
        (b"EHLO me\r\n", b"220 mail.example.com ESMTP\r\n", AppProto::Smtp),
        (b"USER anonymous\r\n", b"220 Welcome\r\n", AppProto::Ftp),
        (b"", b"* OK IMAP4rev1 ready\r\n", AppProto::Imap),
        (b"", b"+OK POP3 ready\r\n", AppProto::Pop3),
        (b"*1\r\n$4\r\nPING\r\n", b"", AppProto::Redis),
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", b"", AppProto::Postgresql),
        (b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd", b"", AppProto::Mqtt),
        (b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00", b"", AppProto::Rdp),
        (b"\x00\x00\x00\x40\xfeSMB\x40\x00", b"", AppProto::Smb),
        (
            b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01",
            b"",
            AppProto::Dns,
        ),
        (
            b"",
            b"\x4a\x00\x00\x00\x0a8.0.33\x00\x08\x00\x00\x00abcdefgh\x00\xff\xff\xff\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00ijklmnopqrst\x00caching_sha2_password\x00",
            AppProto::Mysql,
        ),
        (b"\x01\x02\x03 random", b"more random", AppProto::Unknown),
    ];
    for (c, s, want) in cases {
        let mut a = Analyzer::new();
        let mut out = Vec::new();
        if !s.is_empty() {
            a.on_data(S, 1, s, &mut out);
        }
        if !c.is_empty() {
            a.on_data(C, 2, c, &mut out);
        }
        a.on_end(3, &mut out);
        assert_eq!(a.summary().app_proto, *want, "{c:?} / {s:?}");
        assert_eq!(want.name(), format!("{want:?}").to_lowercase());
    }
    // An SMTP greeting without a client command: the banner's text decides at the end.
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    assert!(a.on_data(S, 1, b"220 mx ESMTP Postfix\r\n", &mut out));
    a.on_end(2, &mut out);
    assert_eq!(a.summary().app_proto, AppProto::Smtp);
    // Identified non-parsed protocols need no more payload.
    let mut a = Analyzer::new();
    assert!(!a.on_data(S, 1, b"SSH-2.0-x\r\n", &mut out));
}

#[test]
fn field_lists_are_stable_and_flags_render_comma_joined() {
    let names = HttpTransaction::field_names();
    assert_eq!(names.first(), Some(&"trans_depth"));
    for n in [
        "method",
        "host",
        "uri",
        "version",
        "user_agent",
        "referrer",
        "request_body_len",
        "status_code",
        "status_msg",
        "content_type",
        "response_body_len",
        "server",
        "request_first",
        "request_last",
        "response_first",
        "response_last",
        "response_us",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    let t = HttpTransaction {
        flags: hf::REQ_GAP | hf::NO_RESPONSE,
        ..Default::default()
    };
    let mut flags = String::new();
    t.for_each_field(|n, v| {
        if n == "flags" {
            flags = format!("{v:?}");
        }
    });
    assert_eq!(flags, "Str(\"req_gap,no_response\")");
}

#[test]
fn analyzer_is_small() {
    let inline = std::mem::size_of::<Analyzer>();
    assert!(inline <= 200, "{inline}");
    let mut a = Analyzer::new();
    let fresh = a.state_bytes();
    assert!(fresh < 512, "{fresh}");
    let mut out = Vec::new();
    a.on_data(C, 1, &REQS[..60], &mut out);
    let http_mid = a.state_bytes();
    a.on_data(C, 1, &REQS[60..], &mut out);
    let http_waiting = a.state_bytes();
    let mut t = Analyzer::new();
    let ch = client_hello(&foxio_example());
    t.on_data(C, 1, &ch[..200], &mut out);
    let tls_mid = t.state_bytes();
    t.on_data(C, 1, &ch[200..], &mut out);
    let tls_after_hello = t.state_bytes();
    println!(
        "Analyzer: {inline} bytes inline; state_bytes fresh {fresh}, HTTP inside a header \
         block {http_mid}, HTTP with 5 requests waiting {http_waiting}, TLS inside the \
         ClientHello {tls_mid}, TLS after it {tls_after_hello}"
    );
    assert!(tls_after_hello < 2048 && http_waiting < 8192);
}

#[test]
fn pipelining_deeper_than_the_queue_keeps_later_pairs_right() {
    let mut reqs = Vec::new();
    let mut resps = Vec::new();
    for i in 0..40 {
        reqs.extend_from_slice(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes());
        resps.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {i}\r\n\r\n").as_bytes(),
        );
        resps.extend(std::iter::repeat_n(b'x', i));
    }
    let t = http(&run(&[D(C, 1, &reqs), D(S, 2, &resps)]).0);
    assert_eq!(t.len(), 40);
    let overflowed = 40 - tcpsight_l7::http::MAX_PENDING;
    for (i, t) in t.iter().enumerate() {
        assert_eq!(t.uri.as_deref(), Some(format!("/{i}").as_str()));
        if i < overflowed {
            // Emitted before its response came; that response is read and dropped.
            assert_eq!((t.status_code, t.flag_names()), (None, vec!["no_response"]));
        } else {
            assert_eq!(t.response_body_len, Some(i as u64), "pairing of {i}");
        }
    }
}

/// Throughput of on_data over a large keep-alive HTTP stream (printed, not asserted).
#[test]
fn throughput_print() {
    let mut reqs = Vec::new();
    let mut resps = Vec::new();
    let body = vec![b'x'; 16 * 1024];
    let mut req_ends = Vec::new();
    for i in 0..2000 {
        req_ends.push(reqs.len());
        reqs.extend_from_slice(format!("GET /item/{i} HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n").as_bytes());
        resps.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nServer: bench\r\nContent-Length: 16384\r\n\r\n");
        resps.extend_from_slice(&body);
    }
    let start = std::time::Instant::now();
    let mut a = Analyzer::new();
    let mut out = Vec::new();
    let (mut ri, mut si) = (0, 0);
    // Interleaved in 1448-byte segments, requests a few ahead of their responses.
    req_ends.remove(0);
    req_ends.push(reqs.len());
    let per_resp = resps.len() / 2000;
    while ri < reqs.len() || si < resps.len() {
        let sent = req_ends.partition_point(|&e| e <= ri);
        if ri < reqs.len() && sent <= si / per_resp + 4 {
            let n = (reqs.len() - ri).min(1448);
            a.on_data(C, 1, &reqs[ri..ri + n], &mut out);
            ri += n;
        } else {
            let n = (resps.len() - si).min(1448);
            a.on_data(S, 2, &resps[si..si + n], &mut out);
            si += n;
        }
    }
    a.on_end(3, &mut out);
    let secs = start.elapsed().as_secs_f64();
    let bytes = (reqs.len() + resps.len()) as f64;
    let t = http(&out);
    assert_eq!(t.len(), 2000);
    assert!(
        t.iter()
            .all(|t| t.flags == 0 && t.response_body_len == Some(16384))
    );
    println!(
        "on_data throughput: {:.0} MB/s ({} bytes, 2000 transactions, {:.1} ms)",
        bytes / secs / 1e6,
        bytes,
        secs * 1e3
    );
}

#[test]
fn responses_racing_a_request_that_turns_out_malformed_or_overflowed_do_not_panic() {
    // A 100 Continue answers a request whose first bytes then prove it is not one.
    let (evs, _) = run(&[
        D(C, 1, b"GET"),
        D(S, 2, b"HTTP/1.1 100 Continue\r\n\r\n"),
        D(C, 3, b"\x00\x01 junk\r\n\r\n"),
        D(S, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let t = http(&evs);
    assert!(!t.is_empty());
    // 40 request-less responses while a request's headers are still being read.
    let mut resps = Vec::new();
    for _ in 0..40 {
        resps.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    let (evs, _) = run(&[
        D(C, 1, b"GET /slow HTTP/1.1\r\nHost: h\r\n"),
        D(S, 2, &resps),
        D(
            C,
            3,
            b"Content-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n",
        ),
    ]);
    let t = http(&evs);
    assert!(t.iter().any(|t| t.uri.as_deref() == Some("/next")));
}
