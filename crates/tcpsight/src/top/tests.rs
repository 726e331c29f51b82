//! Screen snapshots on ratatui's test backend, on replayed captures (bandwhich's way:
//! the input is faked, the terminal is a buffer, the screen text is compared with a golden
//! file). Golden files are testdata/top/*.txt; `TCPSIGHT_BLESS=1 cargo test` rewrites
//! them after a deliberate change.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use tcpsight_core::{Config, Engine};
use tcpsight_io::{CaptureReader, MergedReader};

use super::keys::Ui;
use super::model::{Group, Model, RowFilter};
use super::resolve::{Lookup, Resolver};
use super::view::Thresholds;
use super::{App, seconds_ns};
use crate::output::table::SortBy;
use crate::watchfilter::{Filter, FilterSet, Net};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const NETNS: &str = "testdata/captures/generated/netns-25s-client.pcap.gz";

/// A capture replayed into an engine and a model, frame by frame, so tests can stop at
/// any capture time.
struct Replay {
    merged: MergedReader,
    engine: Engine,
}

impl Replay {
    fn open(rel: &str) -> Replay {
        let r = CaptureReader::open(root().join(rel).to_str().unwrap()).unwrap();
        Replay {
            merged: MergedReader::new(vec![r]),
            engine: Engine::new(Config::default()),
        }
    }

    /// Feeds frames up to `until_s` seconds after the first one (all with None), then
    /// finishes the engine at the end of the capture.
    fn feed(&mut self, model: &mut Model, until_s: Option<f64>) {
        loop {
            let Some(f) = self.merged.next_frame() else {
                self.engine.finish(model);
                return;
            };
            model.on_frame(f.ts_ns);
            self.engine
                .process(f.ts_ns, f.link, f.data, f.orig_len, model);
            if let (Some(u), Some(s)) = (until_s, model.start_ns)
                && f.ts_ns >= s + (u * 1e9) as u64
            {
                return;
            }
        }
    }
}

fn app(model: Model, window_s: f64) -> App {
    App::new(
        model,
        Ui::new(SortBy::Syn, false, false),
        seconds_ns(window_s),
        Thresholds::default(),
        "test.pcap (replay max)".into(),
        false,
    )
}

fn host_model() -> Model {
    Model::new(Group::Host, None, Vec::new(), 1_000_000)
}

/// The whole netns capture in a host-grouped app.
fn netns_app() -> App {
    let mut m = host_model();
    Replay::open(NETNS).feed(&mut m, None);
    let mut a = app(m, 60.0);
    a.refresh();
    a
}

fn term(w: u16, h: u16) -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(w, h)).unwrap()
}

/// The screen as text: one line per row, trailing blanks trimmed.
fn screen(t: &mut Terminal<TestBackend>, a: &mut App) -> String {
    t.draw(|f| a.draw(f)).unwrap();
    text(t)
}

fn text(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let w = buf.area.width as usize;
    let mut out = String::new();
    for row in buf.content.chunks(w) {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Compares with testdata/top/NAME.txt (TCPSIGHT_BLESS=1 rewrites it).
fn golden(name: &str, got: &str) {
    let path = root().join("testdata/top").join(format!("{name}.txt"));
    if std::env::var_os("TCPSIGHT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TCPSIGHT_BLESS=1 writes it)", path.display()));
    assert_eq!(
        got, want,
        "screen {name} differs from testdata/top/{name}.txt (TCPSIGHT_BLESS=1 rewrites it)"
    );
}

fn key(a: &mut App, c: KeyCode) -> bool {
    a.key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn typed(a: &mut App, s: &str) {
    for c in s.chars() {
        key(a, KeyCode::Char(c));
    }
}

#[test]
fn table() {
    let mut a = netns_app();
    let s = screen(&mut term(150, 16), &mut a);
    golden("table", &s);
    // Figures: the same as `tcpsight analyze` on this capture (its table is checked in
    // tests/top.rs against analyze's JSON).
    assert!(s.contains("10.77.0.2   9,012  306.78     99.8   99.7   0.7"));
    assert!(s.contains("GAPS 17"), "capture gaps shown prominently");
    assert!(s.contains("| 56 rows"));
}

#[test]
fn highlights_follow_thresholds() {
    let mut a = netns_app();
    let mut t = term(210, 16);
    t.draw(|f| a.draw(f)).unwrap();
    let buf = t.backend().buffer();
    let line = |y: u16| -> String { (0..210).map(|x| buf[(x, y)].symbol()).collect() };
    // Row 10.77.0.2 is the first table row (screen line 3): Err 17 is over 0, Lat p95
    // 25.6 ms over 20 ms; SynAck% 99.8 is fine.
    let y = 3;
    let l = line(y);
    let col = |text: &str| l.find(text).unwrap() as u16;
    let err_x = l.trim_end().len() as u16 - 1;
    assert_eq!(buf[(err_x, y)].fg, Color::Red, "Err 17 highlighted");
    assert_eq!(buf[(col("25.6ms"), y)].fg, Color::Red, "Lat p95 over 20 ms");
    assert_ne!(buf[(col("99.8"), y)].fg, Color::Red, "SynAck% 99.8 is fine");
    // A host whose only SYN got no answer: SynAck% and Est% 0 are highlighted.
    let y = 5;
    let l = line(y);
    assert!(l.starts_with("10.77.8.2"), "{l}");
    // Cells are right-aligned under their titles: the title's last column is the cell's.
    let x = (line(2).find("SynAck%").unwrap() + "SynAck%".len() - 1) as u16;
    assert_eq!(buf[(x, y)].symbol(), "0");
    assert_eq!(buf[(x, y)].fg, Color::Red);
    // Raising the threshold turns it off.
    a.thresholds.lat_ms = 1000.0;
    t.draw(|f| a.draw(f)).unwrap();
    let buf = t.backend().buffer();
    let l: String = (0..210).map(|x| buf[(x, 3)].symbol()).collect();
    let x = l.find("25.6ms").unwrap() as u16;
    assert_ne!(buf[(x, 3)].fg, Color::Red);
}

#[test]
fn sort_and_reverse() {
    let mut a = netns_app();
    let mut t = term(150, 12);
    // Syn -> SynAck% -> Est% -> Rst%
    for _ in 0..3 {
        key(&mut a, KeyCode::Char('>'));
    }
    let s = screen(&mut t, &mut a);
    assert!(s.contains("sort Rst% desc"));
    golden("sort-rst", &s);
    key(&mut a, KeyCode::Char('i'));
    let s = screen(&mut t, &mut a);
    assert!(s.contains("sort Rst% asc"));
    golden("sort-rst-reversed", &s);
    // Back to the host column, ascending by address.
    for _ in 0..4 {
        key(&mut a, KeyCode::Left);
    }
    key(&mut a, KeyCode::Char('i'));
    let s = screen(&mut t, &mut a);
    assert!(s.contains("sort Host asc"), "{s}");
    let hosts: Vec<&str> = a.rows.iter().take(3).map(|r| r.row.host.as_str()).collect();
    assert_eq!(hosts, ["10.77.0.2", "10.77.8.2", "10.77.8.3"]);
}

#[test]
fn pause_freezes_but_scrolls() {
    let mut m = host_model();
    let mut r = Replay::open(NETNS);
    r.feed(&mut m, Some(10.0));
    let mut a = app(m, 60.0);
    a.refresh();
    let mut t = term(150, 12);
    let before = screen(&mut t, &mut a);
    key(&mut a, KeyCode::Char(' '));
    // The capture goes on underneath.
    r.feed(&mut a.model, Some(20.0));
    a.refresh();
    let paused = screen(&mut t, &mut a);
    assert!(paused.contains("PAUSED"));
    golden("paused", &paused);
    // The same figures as before the pause (only the status line differs).
    let body = |s: &str| s.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&before), body(&paused));
    assert_eq!(before.lines().next(), paused.lines().next());
    // Still scrollable: the selection moves.
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    assert_eq!(a.ui.selected, 2);
    let _ = screen(&mut t, &mut a);
    // Unpaused, the newer figures show.
    key(&mut a, KeyCode::Char('p'));
    let live = screen(&mut t, &mut a);
    assert!(!live.contains("PAUSED"));
    assert_ne!(body(&before), body(&live));
}

#[test]
fn filter_prompt_and_result() {
    let mut a = netns_app();
    let mut t = term(150, 12);
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "host:^fd77::2$ port:80");
    let s = screen(&mut t, &mut a);
    assert!(s.contains("filter> host:^fd77::2$ port:80_"));
    golden("filter-prompt", &s);
    key(&mut a, KeyCode::Enter);
    let s = screen(&mut t, &mut a);
    golden("filter-applied", &s);
    assert!(s.contains("| 1 row"), "{s}");
    assert!(s.contains("fd77::2"));
    // outcome: terms count connections, not rows.
    key(&mut a, KeyCode::Char('/'));
    key(&mut a, KeyCode::Char('u')); // appended: "port:80u" is a bad port
    key(&mut a, KeyCode::Enter);
    let s = screen(&mut t, &mut a);
    assert!(s.contains("port:80u: not a port"), "{s}");
    a.ui.filter = RowFilter::parse("outcome:unreachable").unwrap();
    a.refresh();
    let s = screen(&mut t, &mut a);
    assert!(s.contains("| 28 rows"), "{s}");
    assert!(!s.contains("10.77.0.2 "));
    key(&mut a, KeyCode::Esc);
    let s = screen(&mut t, &mut a);
    assert!(s.contains("| 56 rows"), "Esc clears the filter");
}

#[test]
fn drill_down_and_back() {
    let mut a = netns_app();
    let mut t = term(130, 14);
    let table = screen(&mut t, &mut a);
    key(&mut a, KeyCode::Down); // fd77::2
    key(&mut a, KeyCode::Enter);
    let s = screen(&mut t, &mut a);
    golden("drill-down", &s);
    assert!(s.contains("fd77::2: 26 recent connections"), "{s}");
    assert!(s.contains("[fd77::2]:80"));
    // Sort keys do nothing here; Esc goes back to the same row.
    key(&mut a, KeyCode::Char('>'));
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.ui.selected, 1);
    key(&mut a, KeyCode::Up);
    assert_eq!(screen(&mut t, &mut a), table);
}

/// Issue 15 (friction): at 80 columns Lat, Rtt, Retx and Err could not be reached. `]`
/// and `[` scroll the columns (Host stays), and sorting by a column scrolls it into view.
#[test]
fn narrow_terminal_scrolls_columns() {
    let mut a = netns_app();
    let mut t = term(80, 8);
    let s = screen(&mut t, &mut a);
    assert!(s.contains("columns off screen ]"), "{s}");
    assert!(!s.contains("Err"));
    // Sorting backwards from Syn wraps to Host, then Err: scrolled into view.
    key(&mut a, KeyCode::Char('<'));
    key(&mut a, KeyCode::Char('<'));
    let s = screen(&mut t, &mut a);
    assert!(s.contains("sort Err desc"), "{s}");
    let header = s.lines().nth(2).unwrap();
    assert!(header.starts_with("Host"), "{header}");
    assert!(header.trim_end().ends_with("Err"), "{header}");
    assert!(
        header.contains("Retx%") && header.contains("Fail"),
        "{header}"
    );
    assert!(s.contains("[ "), "columns off to the left are said: {s}");
    assert!(s.lines().all(|l| l.chars().count() <= 80));
    golden("narrow-sorted-err", &s);
    // [ scrolls back one column at a time, down to the first.
    for _ in 0..30 {
        key(&mut a, KeyCode::Char('['));
    }
    let s = screen(&mut t, &mut a);
    assert!(
        s.lines()
            .nth(2)
            .unwrap()
            .starts_with("Host          Syn   Syn/s"),
        "{s}"
    );
    // ] scrolls right: Syn goes off to the left, Host stays.
    key(&mut a, KeyCode::Char(']'));
    let s = screen(&mut t, &mut a);
    let header = s.lines().nth(2).unwrap();
    assert!(
        header.starts_with("Host") && header.contains("Syn/s"),
        "{header}"
    );
    assert!(!header.contains(" Syn "), "{header}");
    assert!(s.contains("[ 1+"), "{s}");
}

/// Issue 15 (friction): the drill-down lists the connections the row counted, so an
/// active filter applies to it too.
#[test]
fn drill_down_honours_the_filter() {
    let mut a = netns_app();
    a.ui.filter = RowFilter::parse("outcome:rejected").unwrap();
    a.refresh();
    assert_eq!(a.rows[0].row.host, "10.77.0.2");
    let rejected = a.rows[0].row.conns;
    assert!(rejected > 0);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.detail.len() as u64, rejected);
    assert!(a.detail.iter().all(|c| c.state.name() == "rejected"));
    // Without the filter the same row lists its established connections too.
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Esc);
    assert!(a.ui.filter.is_empty());
    key(&mut a, KeyCode::Enter);
    assert!(a.detail.len() as u64 > rejected);
}

#[test]
fn resize_redraws_to_the_new_size() {
    let mut a = netns_app();
    let mut t = term(150, 16);
    let _ = screen(&mut t, &mut a);
    t.backend_mut().resize(72, 9);
    let s = screen(&mut t, &mut a);
    assert_eq!(s.lines().count(), 9);
    assert!(s.lines().all(|l| l.chars().count() <= 72));
    golden("resized", &s);
}

#[test]
fn help_box() {
    let mut a = netns_app();
    let mut t = term(100, 20);
    key(&mut a, KeyCode::Char('?'));
    let s = screen(&mut t, &mut a);
    golden("help", &s);
    assert!(!key(&mut a, KeyCode::Char('x')));
    assert!(!a.ui.help);
    assert!(key(&mut a, KeyCode::Char('q')), "q quits");
}

#[test]
fn window_slides_in_capture_time_and_w_toggles() {
    let mut m = host_model();
    let mut r = Replay::open(NETNS);
    r.feed(&mut m, Some(25.0));
    let mut a = app(m, 5.0);
    a.refresh();
    let mut t = term(150, 8);
    let s = screen(&mut t, &mut a);
    golden("window-5s", &s);
    let win_syn = a.rows[0].row.syn;
    key(&mut a, KeyCode::Char('w'));
    let s = screen(&mut t, &mut a);
    assert!(s.contains("cumulative"));
    let cum_syn = a.rows[0].row.syn;
    assert!(
        win_syn * 3 < cum_syn,
        "5 s of 25 s: window {win_syn}, cumulative {cum_syn}"
    );
    // Reset: everything counts again from now.
    key(&mut a, KeyCode::Char('r'));
    assert!(a.rows.is_empty());
    let s = screen(&mut t, &mut a);
    assert!(s.contains("(no connections yet in this view)"));
}

#[test]
fn open_connections_count_before_they_finish() {
    // Halfway through, connections still open already show their SYN and connect time;
    // at the end their records replace them, and the totals are analyze's.
    let mut m = host_model();
    let mut r = Replay::open(NETNS);
    r.feed(&mut m, Some(12.0));
    let rows = m.rows(None, &RowFilter::default(), &|_| None, SortBy::Syn, false);
    let first = &rows[0].row;
    assert_eq!(first.host, "10.77.0.2");
    assert!(first.syn > 3000, "{}", first.syn);
    r.feed(&mut m, None);
    let rows = m.rows(None, &RowFilter::default(), &|_| None, SortBy::Syn, false);
    assert_eq!(rows[0].row.syn, 9_012);
    assert_eq!(rows[0].row.conns, 9_012);
    assert_eq!(rows.len(), 56);
}

#[test]
fn only_and_group_by() {
    let only = vec![Net::parse("fd77::/16").unwrap()];
    let mut m = Model::new(Group::HostPort, None, only, 1_000_000);
    Replay::open(NETNS).feed(&mut m, None);
    let rows = m.rows(None, &RowFilter::default(), &|_| None, SortBy::Syn, false);
    assert!(
        rows.iter().all(|r| r.row.host.starts_with("[fd77:")),
        "--only"
    );
    assert_eq!(rows[0].row.host, "[fd77::2]:80");
    assert_eq!(rows[0].row.syn, 26);

    let mut m = Model::new(Group::Client, None, Vec::new(), 1_000_000);
    Replay::open(NETNS).feed(&mut m, None);
    let rows = m.rows(None, &RowFilter::default(), &|_| None, SortBy::Syn, false);
    let hosts: Vec<&str> = rows.iter().map(|r| r.row.host.as_str()).collect();
    assert_eq!(hosts, ["10.77.0.1", "fd77::1"]);

    let fs = FilterSet::new(
        vec![
            Filter::parse("web:TX@*:80").unwrap(),
            Filter::parse("v6:TX@[fd77::/16]:*").unwrap(),
        ],
        vec![
            Net::parse("10.77.0.1").unwrap(),
            Net::parse("fd77::1").unwrap(),
        ],
    )
    .unwrap();
    let mut m = Model::new(Group::Filter, Some(fs), Vec::new(), 1_000_000);
    Replay::open(NETNS).feed(&mut m, None);
    let rows = m.rows(None, &RowFilter::default(), &|_| None, SortBy::Host, false);
    let hosts: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r.row.host.as_str(), r.row.syn))
        .collect();
    // tcpeek's TX total comes first, beside the named filters (issue 15, 1.12); RX has
    // no connection on a client's capture, so no row.
    assert_eq!(hosts, [("TX", 9_092), ("web", 8_741), ("v6", 53)]);
}

#[test]
fn keep_bounds_memory_and_says_so() {
    let mut m = Model::new(Group::Host, None, Vec::new(), 1000);
    Replay::open(NETNS).feed(&mut m, None);
    let rows = m.rows(None, &RowFilter::default(), &|_| None, SortBy::Syn, false);
    let total: u64 = rows.iter().map(|r| r.row.conns).sum();
    assert_eq!(total, 1000);
    assert!(m.evicted > 8000);
    let mut a = app(m, 60.0);
    a.refresh();
    let s = screen(&mut term(150, 6), &mut a);
    assert!(s.contains("forgotten"), "{s}");
}

struct FakeDns;
impl Lookup for FakeDns {
    fn lookup(&mut self, ip: IpAddr) -> Option<String> {
        (ip.to_string() == "10.77.0.2").then(|| "web.example.test".to_string())
    }
}

#[test]
fn resolved_names_arrive_without_blocking() {
    let mut a = netns_app();
    a.resolver = Some(Resolver::start(FakeDns));
    a.refresh(); // queues the lookups; the first screen shows addresses
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !a.rows.iter().any(|r| r.row.host == "web.example.test")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        a.refresh();
    }
    let s = screen(&mut term(150, 8), &mut a);
    golden("resolved", &s);
    // The host: filter matches names too.
    a.ui.filter = RowFilter::parse("host:example").unwrap();
    a.refresh();
    assert_eq!(a.rows.len(), 1);
}

#[test]
fn text_and_json_of_the_final_table() {
    let a = netns_app();
    let t = a.text();
    assert!(t.starts_with("tcpsight top: test.pcap (replay max); window 60 s;"));
    assert!(t.contains("\nHost "));
    let j = a.json();
    assert_eq!(j["destinations"].as_array().unwrap().len(), 56);
    assert_eq!(j["capture"]["gap_connections"], 17);
    assert_eq!(j["capture"]["frames"], 239_962);
}

#[test]
fn bad_filters_are_errors_not_panics() {
    for bad in [
        "host:(",
        "port:70000",
        "net:10.0.0.0/33",
        "outcome:nope",
        "port:",
    ] {
        assert!(RowFilter::parse(bad).is_err(), "{bad}");
    }
    let f = RowFilter::parse("10.77 outcome:rej port:80 port:443").unwrap();
    assert!(!f.is_empty());
    assert!(f.name_matches("10.77.0.2"));
    assert!(!f.name_matches("fd77::2"));
}

#[test]
fn tiny_terminals_never_panic() {
    let mut a = netns_app();
    for (w, h) in [(1, 1), (2, 1), (5, 2), (20, 4), (40, 6), (300, 3)] {
        let mut t = term(w, h);
        let _ = screen(&mut t, &mut a);
        key(&mut a, KeyCode::Char('?'));
        let _ = screen(&mut t, &mut a);
        key(&mut a, KeyCode::Char('x'));
        key(&mut a, KeyCode::Enter);
        let _ = screen(&mut t, &mut a);
        key(&mut a, KeyCode::PageDown);
        let _ = screen(&mut t, &mut a);
        key(&mut a, KeyCode::Esc);
        key(&mut a, KeyCode::Char('/'));
        typed(&mut a, "outcome:timeout");
        let _ = screen(&mut t, &mut a);
        key(&mut a, KeyCode::Enter);
        let _ = screen(&mut t, &mut a);
        key(&mut a, KeyCode::Esc);
    }
}

#[test]
fn speeds_and_durations_parse_without_panics() {
    use super::{Speed, parse_speed, secs};
    use std::time::Duration;
    assert_eq!(parse_speed("max"), Ok(Speed::Max));
    assert_eq!(parse_speed("2.5"), Ok(Speed::Factor(2.5)));
    for bad in ["0", "-1", "nan", "inf", "fast", ""] {
        assert!(parse_speed(bad).is_err(), "{bad}");
    }
    assert_eq!(secs(f64::NAN), Duration::ZERO);
    assert_eq!(secs(-3.0), Duration::ZERO);
    assert_eq!(secs(1.5), Duration::from_millis(1500));
    assert_eq!(secs(f64::INFINITY), Duration::from_secs(365 * 86_400));
    assert_eq!(secs(1e300), Duration::from_secs(365 * 86_400));
}

#[test]
fn empty_capture_shows_an_empty_table() {
    let mut m = host_model();
    Replay::open("testdata/captures/zeek/pcapng-multi-interface.pcapng").feed(&mut m, None);
    let mut a = app(m, 60.0);
    a.refresh();
    let s = screen(&mut term(100, 6), &mut a);
    assert!(s.contains("(no connections yet in this view)"), "{s}");
    assert!(s.contains("| 0 rows"));
}

/// A port that refuses every SYN: one SYN and its RST per second for `secs` seconds from
/// capture second 1000, into `model` through `engine`; returns the last frame's time.
fn refused_port(engine: &mut Engine, model: &mut Model, secs: u64) -> u64 {
    use tcpsight_core::LinkType;
    use tcpsight_core::build::{Tcp, tcp_frame};
    use tcpsight_core::decode::TcpFlags;
    let (c, s): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let mut ts = 0;
    for i in 0..secs {
        let t0 = (1_000 + i) * 1_000_000_000;
        let mut syn = Tcp::new(c, 40_000 + i as u16, s, 81);
        syn.flags = TcpFlags::SYN;
        syn.seq = 1_000;
        syn.syn_options = true;
        let mut rst = Tcp::new(s, 81, c, 40_000 + i as u16);
        rst.flags = TcpFlags::RST | TcpFlags::ACK;
        rst.ack = 1_001;
        for (t, seg) in [(t0, syn), (t0 + 50_000, rst)] {
            let f = tcp_frame(&seg);
            model.on_frame(t);
            engine.process(t, LinkType::ETHERNET, &f, f.len() as u32, model);
            ts = t;
        }
    }
    ts
}

#[test]
fn refused_handshakes_show_rst_in_the_window_when_decided() {
    // Issue 15, 1.2: the refused handshake's record leaves the engine 75 s after its RST
    // (SYN retries may still come), outside a 60 s window; its Rst must count when the
    // RST decides it, so the row says Rst% 100 all along, not 0.
    let mut engine = Engine::new(Config::default());
    let mut m = host_model();
    let w = Some(seconds_ns(60.0));
    let all = RowFilter::default();
    let row = |m: &Model| {
        let rows = m.rows(w, &all, &|_| None, SortBy::Syn, false);
        assert_eq!(rows.len(), 1);
        rows[0].row.clone()
    };
    refused_port(&mut engine, &mut m, 10);
    let r = row(&m);
    assert_eq!((r.syn, r.conns), (10, 10));
    assert_eq!(r.rst_pct, 100.0);
    assert_eq!(r.est_pct, Some(0.0));
    assert_eq!(r.synack_pct, Some(0.0));
    // 200 s of it: records of the first connections have left the engine by now and
    // replaced their early entries (outside the window); the window still shows the last
    // 60 s of refusals, every one with its RST.
    let mut engine = Engine::new(Config::default());
    let mut m = host_model();
    refused_port(&mut engine, &mut m, 200);
    let r = row(&m);
    assert!((60..=61).contains(&r.syn), "{}", r.syn);
    assert_eq!(r.rst_pct, 100.0);
    let outcome = RowFilter::parse("outcome:rej").unwrap();
    let rows = m.rows(w, &outcome, &|_| None, SortBy::Syn, false);
    assert_eq!(rows[0].row.syn, r.syn);
    // The screen says it, and the drill-down's close column says rst.
    let mut a = app(m.clone(), 60.0);
    a.refresh();
    let mut t = term(150, 8);
    golden("refused_port_window", &screen(&mut t, &mut a));
    // At the end the records replace the early entries: no connection counts twice.
    engine.finish(&mut m);
    let rows = m.rows(None, &all, &|_| None, SortBy::Syn, false);
    assert_eq!((rows[0].row.syn, rows[0].row.conns), (200, 200));
    assert_eq!(rows[0].row.rst_pct, 100.0);
    let list = m.connections_of(rows[0].key, None, &all, 500);
    assert!(list.iter().all(|c| c.close == tcpsight_core::Close::Rst));
}
