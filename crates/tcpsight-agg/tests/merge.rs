//! Merging the aggregates of two parts of a real capture's records gives exactly the
//! aggregates of the whole: rows, outcome totals, per-filter totals.

use tcpsight_agg::table::ByKey;
use tcpsight_agg::{DestinationTable, Grouping, HostKey, Outcomes, Percentiles, Row, Totals};
use tcpsight_core::{
    ConnRecord, Engine, ExchangeEvent, HandshakeEvent, Observer, Outcome, engine::Config,
};
use tcpsight_io::{CaptureReader, MergedReader};

const PIPELINED: &str = "testdata/captures/zeek/http-pipelined-requests.pcap";
const NETNS: &str = "testdata/captures/generated/netns-25s-client.pcap.gz";

/// One engine finding, in the order the engine reported it.
#[derive(Clone)]
enum Event {
    Handshake(HandshakeEvent),
    Exchange(ExchangeEvent),
    Connection(Box<ConnRecord>),
}

#[derive(Default)]
struct Events(Vec<Event>);

impl Observer for Events {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.0.push(Event::Handshake(*e));
    }
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.0.push(Event::Exchange(*e));
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        self.0.push(Event::Connection(Box::new(r.clone())));
    }
}

fn events(capture: &str) -> (Vec<Event>, f64) {
    let path = format!("{}/../../{capture}", env!("CARGO_MANIFEST_DIR"));
    let reader = CaptureReader::open(&path).unwrap_or_else(|e| panic!("{capture}: {e}"));
    let mut merged = MergedReader::new(vec![reader]);
    let mut engine = Engine::new(Config::default());
    let mut out = Events::default();
    while let Some(f) = merged.next_frame() {
        engine.process(f.ts_ns, f.link, f.data, f.orig_len, &mut out);
    }
    engine.finish(&mut out);
    let st = engine.stats();
    let span = (st.last_ns.unwrap() - st.first_ns.unwrap()) as f64 / 1e9;
    (out.0, span)
}

/// Everything aggregated from some events.
#[derive(Clone)]
struct Aggregates {
    host: DestinationTable,
    host_port: DestinationTable,
    outcomes: Outcomes,
    /// tcpeek's totals of two filters: every handshake, and those to port 80.
    totals: [Totals; 2],
}

impl Aggregates {
    fn new() -> Self {
        Aggregates {
            host: DestinationTable::new(Grouping::Host),
            host_port: DestinationTable::new(Grouping::HostPort),
            outcomes: Outcomes::default(),
            totals: [Totals::default(); 2],
        }
    }

    fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut a = Aggregates::new();
        for e in events {
            match e {
                Event::Handshake(h) => {
                    a.totals[0].count(h);
                    if h.server.port == 80 {
                        a.totals[1].count(h);
                    }
                }
                Event::Exchange(x) => {
                    a.host.on_exchange(x);
                    a.host_port.on_exchange(x);
                }
                Event::Connection(r) => {
                    a.host.on_connection(r);
                    a.host_port.on_connection(r);
                    a.outcomes.add(r);
                }
            }
        }
        a
    }

    fn merge(&mut self, o: &Aggregates) {
        self.host.merge(&o.host);
        self.host_port.merge(&o.host_port);
        self.outcomes.merge(&o.outcomes);
        for (t, x) in self.totals.iter_mut().zip(&o.totals) {
            t.merge(x);
        }
    }

    fn rows(&self, span: f64) -> [Vec<(HostKey, Row)>; 2] {
        [self.host.keyed_rows(span), self.host_port.keyed_rows(span)]
    }
}

fn assert_same(whole: &Aggregates, merged: &Aggregates, span: f64, what: &str) {
    assert_eq!(merged.rows(span), whole.rows(span), "{what}: rows");
    assert_eq!(merged.outcomes, whole.outcomes, "{what}: outcomes");
    assert_eq!(merged.totals, whole.totals, "{what}: totals");
    assert_eq!(
        merged.host.rows(span, ByKey, true),
        whole.host.rows(span, ByKey, true),
        "{what}: ordered rows"
    );
    // The percentiles' state too, histograms included.
    let by_key = |t: &DestinationTable| {
        t.hosts()
            .map(|(k, h)| (*k, h.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        by_key(&merged.host_port),
        by_key(&whole.host_port),
        "{what}"
    );
    assert_eq!(by_key(&merged.host), by_key(&whole.host), "{what}");
}

/// Splits the events at several points, in two halves and interleaved, and into ten
/// parts merged in turn.
fn check_splits(events: &[Event], span: f64) -> Aggregates {
    let whole = Aggregates::of(events);
    let n = events.len();
    for cut in [0, 1, n / 3, n / 2, n - 1, n] {
        let mut a = Aggregates::of(&events[..cut]);
        a.merge(&Aggregates::of(&events[cut..]));
        assert_same(&whole, &a, span, &format!("cut at {cut} of {n}"));
    }
    let mut even = Aggregates::of(events.iter().step_by(2));
    even.merge(&Aggregates::of(events.iter().skip(1).step_by(2)));
    assert_same(&whole, &even, span, "interleaved");
    let mut parts = Aggregates::new();
    for chunk in events.chunks(n.div_ceil(10).max(1)) {
        parts.merge(&Aggregates::of(chunk));
    }
    assert_same(&whole, &parts, span, "ten parts");
    whole
}

#[test]
fn pipelined_http_merges_exactly() {
    let (events, span) = events(PIPELINED);
    let whole = check_splits(&events, span);
    let records = events
        .iter()
        .filter(|e| matches!(e, Event::Connection(_)))
        .count() as u64;
    assert!(records > 0);
    assert_eq!(whole.outcomes.connections, records);
    let rows = whole.host_port.keyed_rows(span);
    assert!(!rows.is_empty());
    // Pipelined requests: exchanges were measured, and at least one row has an Rtt.
    assert!(events.iter().any(|e| matches!(e, Event::Exchange(_))));
    assert!(
        rows.iter()
            .any(|(_, r)| r.resp_p95.is_some() && r.out.is_some_and(|o| o > 0))
    );
}

#[test]
fn netns_capture_merges_exactly() {
    let (events, span) = events(NETNS);
    let whole = check_splits(&events, span);
    let o = &whole.outcomes;
    assert!(o.get(Outcome::Established) > 0);
    assert_eq!(o.by_outcome.values().sum::<u64>(), o.connections);
    assert!(whole.totals[0].success > 0);
    assert!(whole.totals[0].success >= whole.totals[1].success);
    // The biggest destination's percentiles show whether the histogram path was taken.
    let biggest = whole
        .host
        .hosts()
        .max_by_key(|(_, h)| h.connections())
        .unwrap();
    // Beyond 4,096 values the table's percentiles are still `Quantiles`'s, as before.
    let mut lat = tcpsight_core::stats::Quantiles::<4096, 1000>::default();
    let mut rtt = tcpsight_core::stats::Quantiles::<4096, 1000>::default();
    for e in &events {
        match e {
            Event::Connection(r) if r.server == biggest.0.addr() => {
                r.connect_ns.inspect(|&c| lat.add(c));
            }
            Event::Exchange(x) if x.server.addr == biggest.0.addr() => rtt.add(x.response_ns),
            _ => {}
        }
    }
    assert!(!lat.is_exact() && !rtt.is_exact());
    let row = biggest.1.row(String::new(), span);
    assert_eq!(row.lat, [50.0, 95.0, 99.0].map(|p| lat.percentile(p)));
    assert_eq!(row.resp_p95, rtt.percentile(95.0));
    eprintln!(
        "netns: {} events, {} destinations, biggest {} with {} connections ({} connect \
         times, exact: {}; {} responses, exact: {})",
        events.len(),
        whole.host.len(),
        biggest.0,
        biggest.1.connections(),
        biggest.1.connect_times().count(),
        biggest.1.connect_times().is_exact(),
        biggest.1.response_times().count(),
        biggest.1.response_times().is_exact(),
    );
}

/// The histogram path of the percentiles, on the real capture's response times: a
/// small limit forces it, and the merged figures still equal the whole's.
#[test]
fn histogram_percentiles_merge_exactly_on_real_values() {
    let (events, _) = events(NETNS);
    let values: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Exchange(x) => Some(x.response_ns),
            Event::Connection(r) => r.connect_ns,
            _ => None,
        })
        .collect();
    assert!(values.len() > 100, "{} values", values.len());
    let mut whole = Percentiles::<64>::default();
    values.iter().for_each(|&v| whole.add(v));
    assert!(!whole.is_exact());
    for cut in [0, 10, 64, values.len() / 2, values.len()] {
        let (mut a, mut b) = (Percentiles::<64>::default(), Percentiles::<64>::default());
        values[..cut].iter().for_each(|&v| a.add(v));
        values[cut..].iter().for_each(|&v| b.add(v));
        a.merge(&b);
        assert_eq!(a, whole, "cut at {cut}");
    }
    let h = whole.histogram().unwrap();
    let mut sorted = values.clone();
    sorted.sort_unstable();
    for p in [50.0, 90.0, 95.0, 99.0] {
        let exact = tcpsight_core::stats::percentile_sorted(&sorted, p).unwrap() as f64;
        let est = whole.percentile(p).unwrap() as f64;
        assert!(
            (est - exact).abs() <= exact * h.relative_error() + 0.5,
            "p{p}: {est} vs {exact} (scale {})",
            h.scale()
        );
    }
}
