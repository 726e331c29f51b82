//! The `/metrics` endpoint: a small HTTP/1.1 server on std's TcpListener (one request
//! per connection, `Connection: close`), enough for Prometheus scrapes and curl.
//!
//! It never touches the packet path: requests are served on their own threads, at most
//! `MAX_CLIENTS` at a time (others get 503 at once), each with read and write timeouts
//! so a slow or silent client holds one thread for a bounded time. A request that is
//! not HTTP gets 400; any method but GET and HEAD 405; any path but `/metrics` and `/`
//! 404.
//!
//! Encoding the exposition costs CPU (a few ms for a few hundred destinations), so
//! scrapes share it: one encoding at a time, at most one per format every
//! `MIN_ENCODE_INTERVAL`, and every request gets a body encoded after it arrived
//! (never older figures than it asked at). 100 scrapers in a tight loop then cost about
//! what 10 scrapes a second do, instead of both cores (measured: a replay 13 times
//! slower beside them before).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::metrics::Metrics;

/// Requests served at once (a thread each, mostly asleep on a slow client).
pub const MAX_CLIENTS: usize = 128;
/// A request's head must arrive within this, and a response be taken within it.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop looks for new connections and for the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// The least time between two encodings of one format.
pub const MIN_ENCODE_INTERVAL: Duration = Duration::from_millis(100);

/// An encoding: when it began, and the body.
type Encoded = (std::time::Instant, Arc<Vec<u8>>);

/// The metrics and their latest encodings, shared by the request threads.
struct Expositions {
    metrics: Metrics,
    /// Per format: when the latest encoding began, and its body. The lock is held while
    /// encoding, so concurrent requests wait for one encoding and share it.
    latest: std::sync::Mutex<[Option<Encoded>; 3]>,
}

impl Expositions {
    /// A body of `format` encoded after `arrived`.
    fn body(&self, format: Format, arrived: std::time::Instant) -> Result<Arc<Vec<u8>>, String> {
        let i = format as usize;
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, body)) = &latest[i] {
            if *at >= arrived {
                return Ok(body.clone());
            }
            let next = *at + MIN_ENCODE_INTERVAL;
            let now = std::time::Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let at = std::time::Instant::now();
        let body = Arc::new(match format {
            Format::Protobuf => self.metrics.encode_protobuf()?,
            Format::OpenMetrics => self.metrics.encode_text().into_bytes(),
            Format::Text => self.metrics.encode_prometheus_text().into_bytes(),
        });
        latest[i] = Some((at, body.clone()));
        Ok(body)
    }
}

pub const TEXT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROTOBUF_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// A running server; dropping it stops accepting.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (`127.0.0.1:9465`, `[::1]:9465`, `:9465` for every address).
    pub fn start(addr: &str, metrics: Metrics) -> Result<MetricsServer, String> {
        let spec = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr.to_string()
        };
        let listener = TcpListener::bind(&spec)
            .map_err(|e| format!("--metrics {addr}: cannot listen: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        // Non-blocking accepts polled every ACCEPT_POLL: stopping needs no connection
        // to ourselves (which a namespace without loopback would refuse).
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let busy = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(Expositions {
            metrics,
            latest: Default::default(),
        });
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(ACCEPT_POLL);
                            continue;
                        }
                        Err(_) => {
                            // Out of descriptors and the like: try again shortly.
                            std::thread::sleep(ACCEPT_POLL);
                            continue;
                        }
                    };
                    let _ = stream.set_nonblocking(false);
                    if busy.load(Ordering::Relaxed) >= MAX_CLIENTS {
                        let mut s = stream;
                        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                        let _ = respond(&mut s, 503, "text/plain", b"busy\n", false);
                        continue;
                    }
                    busy.fetch_add(1, Ordering::Relaxed);
                    let (m, b) = (metrics.clone(), busy.clone());
                    let spawned = std::thread::Builder::new()
                        .name("metrics-client".into())
                        .spawn(move || {
                            let mut stream = stream;
                            serve_one(&mut stream, &m);
                            // Free before the client sees the connection close, so one
                            // that scrapes again at once is never counted twice.
                            b.fetch_sub(1, Ordering::Relaxed);
                            drop(stream);
                        });
                    if spawned.is_err() {
                        busy.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| format!("--metrics: cannot start the server thread: {e}"))?;
        Ok(MetricsServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The exposition formats, by the request's Accept header: Prometheus protobuf (native
/// histograms), OpenMetrics text, else the Prometheus text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Protobuf,
    OpenMetrics,
    Text,
}

pub const PROMETHEUS_TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { format: Format, head: bool },
    Index { head: bool },
    NotFound,
    BadMethod,
    Bad,
}

/// Parses a request head (bytes up to and including the blank line).
fn parse(head: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Request::Bad,
    }
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Request::BadMethod,
    };
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let accept = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("accept"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .collect::<Vec<_>>()
                .join(",");
            let format = if accept.contains("application/vnd.google.protobuf") {
                Format::Protobuf
            } else if accept.contains("application/openmetrics-text") {
                Format::OpenMetrics
            } else {
                Format::Text
            };
            Request::Metrics {
                format,
                head: head_only,
            }
        }
        "/" => Request::Index { head: head_only },
        _ => Request::NotFound,
    }
}

/// The request head, which must arrive whole within `IO_TIMEOUT` (a client trickling a
/// byte now and then would otherwise hold its thread for as long as it likes).
fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return (!buf.is_empty()).then_some(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if memchr_blank_line(&buf) || buf.len() >= MAX_HEAD {
            return Some(buf);
        }
    }
}

fn memchr_blank_line(b: &[u8]) -> bool {
    b.windows(4).any(|w| w == b"\r\n\r\n") || b.windows(2).any(|w| w == b"\n\n")
}

fn serve_one(s: &mut TcpStream, m: &Expositions) {
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let Some(head) = read_head(s) else {
        return;
    };
    let arrived = std::time::Instant::now();
    let _ = match parse(&head) {
        Request::Metrics { format, head } => {
            let ctype = match format {
                Format::Protobuf => PROTOBUF_TYPE,
                Format::OpenMetrics => TEXT_TYPE,
                Format::Text => PROMETHEUS_TEXT_TYPE,
            };
            match m.body(format, arrived) {
                Ok(body) => respond(s, 200, ctype, &body, head),
                Err(e) => respond(s, 500, "text/plain", e.as_bytes(), head),
            }
        }
        Request::Index { head } => respond(
            s,
            200,
            "text/plain; charset=utf-8",
            b"tcpsight: metrics at /metrics\n",
            head,
        ),
        Request::NotFound => respond(s, 404, "text/plain", b"not found; try /metrics\n", false),
        Request::BadMethod => respond(s, 405, "text/plain", b"only GET and HEAD\n", false),
        Request::Bad => respond(s, 400, "text/plain", b"bad request\n", false),
    };
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes())?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req).unwrap();
        // The request is all there is (a cut request must not wait for the timeout).
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn requests_good_and_bad() {
        let srv = MetricsServer::start("127.0.0.1:0", Metrics::new()).unwrap();
        let a = srv.local_addr();
        let ok = get(a, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains(PROMETHEUS_TEXT_TYPE), "{ok}");
        assert!(
            ok.contains("# TYPE tcpsight_frames_total counter\ntcpsight_frames_total 0"),
            "{ok}"
        );
        assert!(!ok.contains("# EOF"), "{ok}");
        let om = get(
            a,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        );
        assert!(
            om.contains(TEXT_TYPE) && om.trim_end().ends_with("# EOF"),
            "{om}"
        );
        let pb = get(
            a,
            b"GET /metrics HTTP/1.1\r\nAccept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited\r\n\r\n",
        );
        assert!(pb.contains(PROTOBUF_TYPE), "{pb}");
        assert!(get(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(a, b"\x16\x03\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(get(a, b"GET /metrics HTTP/1.1\r\n").starts_with("HTTP/1.1 400"));
        let head = get(a, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200") && !head.contains("tcpsight_frames"),
            "{head}"
        );
        // A silent client does not stop others being served.
        let _silent = TcpStream::connect(a).unwrap();
        assert!(get(a, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    /// 100 silent clients and 100 concurrent scrapers: every scrape is answered.
    #[test]
    fn a_hundred_slow_clients_and_scrapers_are_all_served() {
        let srv = MetricsServer::start("127.0.0.1:0", Metrics::new()).unwrap();
        let a = srv.local_addr();
        let silent: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(a).unwrap()).collect();
        let scrapers: Vec<_> = (0..100)
            .map(|_| std::thread::spawn(move || get(a, b"GET /metrics HTTP/1.1\r\n\r\n")))
            .collect();
        let mut ok = 0;
        let mut busy = 0;
        for t in scrapers {
            let r = t.join().unwrap();
            if r.starts_with("HTTP/1.1 200") {
                ok += 1;
            } else if r.starts_with("HTTP/1.1 503") {
                busy += 1;
            }
        }
        assert_eq!(ok + busy, 100);
        // Silent clients hold at most MAX_CLIENTS threads; the rest are served.
        assert!(
            ok >= 100 - (200 - MAX_CLIENTS as i32).max(0),
            "{ok} served, {busy} busy"
        );
        drop(silent);
        assert!(get(a, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    /// A client trickling its request a byte at a time is cut off once the head has
    /// taken IO_TIMEOUT, not served (or held) for as long as it trickles.
    #[test]
    fn a_trickled_request_head_is_cut_off_at_the_timeout() {
        let srv = MetricsServer::start("127.0.0.1:0", Metrics::new()).unwrap();
        let mut s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let t0 = std::time::Instant::now();
        let closed = loop {
            assert!(t0.elapsed() < IO_TIMEOUT * 2, "still open");
            if s.write_all(b"G").is_err() {
                break t0.elapsed();
            }
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Ok(0) => break t0.elapsed(),
                Ok(_) => panic!("answered a request that never ended"),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            closed >= IO_TIMEOUT - Duration::from_millis(200),
            "{closed:?}"
        );
        assert!(closed < IO_TIMEOUT + Duration::from_secs(2), "{closed:?}");
    }

    #[test]
    fn parse_never_panics() {
        use proptest::prelude::*;
        proptest!(|(b in proptest::collection::vec(any::<u8>(), 0..300))| {
            let _ = parse(&b);
        });
    }
}
