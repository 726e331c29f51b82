//! The pipeline on real captures: a sharded run reports exactly what one engine
//! reports, in the same order, with any number of shards; limits stop a run; a paced
//! replay follows its speed factor.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tcpsight_core::{
    Config, ConnRecord, Engine, ExchangeEvent, HandshakeEvent, LinkType, Observer,
};
use tcpsight_io::{CaptureReader, MergedReader};
use tcpsight_pipeline::source::MemorySource;
use tcpsight_pipeline::{
    FileSource, FrameSource, Limits, Next, Paced, Runner, Speed, Stopped, Tap, run_sharded,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn captures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![
        root().join("testdata/captures"),
        root().join("testdata/derived"),
    ];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().contains(".pcap") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 30, "testdata captures missing: {}", out.len());
    out
}

fn source(p: &Path) -> FileSource {
    let r = CaptureReader::open(p.to_str().unwrap()).unwrap();
    FileSource::new(MergedReader::new(vec![r]))
}

/// Every report, as text, in the order it came (connection ids left out: they name
/// slots, which differ between shards).
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    ticks: u64,
}

fn strip_id(mut s: String) -> String {
    if let Some(a) = s.find("id: ConnId") {
        let b = a + s[a..].find('}').unwrap() + 1;
        s.replace_range(a..b, "");
    }
    s
}

impl Observer for Log {
    fn on_handshake(&mut self, e: &HandshakeEvent) {
        self.lines.push(strip_id(format!("H {e:?}")));
    }
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.lines.push(strip_id(format!("X {e:?}")));
    }
    fn on_connection(&mut self, r: &ConnRecord) {
        self.lines.push(strip_id(format!("C {r:?}")));
    }
    fn on_interim(&mut self, r: &ConnRecord) {
        self.lines.push(strip_id(format!("I {r:?}")));
    }
    fn on_tick(&mut self, ts: u64) {
        self.ticks += 1;
        self.lines.push(format!("T {ts}"));
    }
}

impl Tap for Log {}

fn config() -> Config {
    Config {
        tick_ns: 1_000_000_000,
        active_timeout_ns: 5_000_000_000,
        ..Config::default()
    }
}

fn single(p: &Path, cfg: Config) -> (Log, tcpsight_core::CaptureStats) {
    let mut log = Log::default();
    let mut engine = Engine::new(cfg);
    let mut runner = Runner::new(Limits::default(), None);
    let s = runner.run(&mut source(p), &mut engine, &mut log).unwrap();
    assert_eq!(s, Stopped::End);
    (log, engine.stats())
}

#[test]
fn sharded_runs_report_what_one_engine_reports_in_its_order() {
    let mut reports = 0;
    for p in captures() {
        let (one, st) = single(&p, config());
        reports += one.lines.len();
        for shards in [2, 3, 8] {
            let mut log = Log::default();
            let mut runner = Runner::new(Limits::default(), None);
            let r = run_sharded(&mut runner, &mut source(&p), config(), shards, &mut log).unwrap();
            assert_eq!(r.stopped, Stopped::End);
            assert_eq!(r.frames_per_shard.len(), shards);
            assert_eq!(r.frames_per_shard.iter().sum::<u64>(), st.frames, "{p:?}");
            let mut merged = r.stats.clone();
            merged.link_types = st.link_types.clone();
            assert_eq!(merged, st, "{p:?} with {shards} shards: statistics");
            if let Some(i) = (0..one.lines.len().max(log.lines.len()))
                .find(|&i| one.lines.get(i) != log.lines.get(i))
            {
                panic!(
                    "{p:?} with {shards} shards: report {i} differs\n one engine: {:?}\n sharded:    {:?}",
                    one.lines.get(i),
                    log.lines.get(i)
                );
            }
        }
    }
    assert!(reports > 20_000, "only {reports} reports over the corpus");
}

#[test]
fn the_big_capture_really_spreads_over_shards() {
    let p = root().join("testdata/captures/generated/netns-25s-client.pcap.gz");
    let mut log = Log::default();
    let mut runner = Runner::new(Limits::default(), None);
    let r = run_sharded(&mut runner, &mut source(&p), config(), 4, &mut log).unwrap();
    let total: u64 = r.frames_per_shard.iter().sum();
    for (i, n) in r.frames_per_shard.iter().enumerate() {
        assert!(*n > total / 8, "shard {i} got {n} of {total} frames");
    }
    // A tick per second boundary crossed after the first frame (the capture's first
    // frame is not its earliest: one boundary may be crossed before it).
    let (first, last) = (r.stats.first_ns.unwrap(), r.stats.last_ns.unwrap());
    let boundaries = last / 1_000_000_000 - first / 1_000_000_000;
    assert!(boundaries >= 25, "{boundaries}");
    assert!(
        (boundaries - 1..=boundaries).contains(&log.ticks),
        "{} ticks, {boundaries} boundaries",
        log.ticks
    );
    assert!(
        log.lines.iter().any(|l| l.starts_with("I ")),
        "no interim record"
    );
}

#[test]
fn a_frame_count_stops_the_run_and_the_engine_reports_what_it_saw() {
    let p = root().join("testdata/captures/zeek/http-pipelined-requests.pcap");
    let limits = Limits {
        max_frames: Some(5),
        ..Limits::default()
    };
    let mut runner = Runner::new(limits, None);
    let mut engine = Engine::new(Config::default());
    let mut log = Log::default();
    let s = runner.run(&mut source(&p), &mut engine, &mut log).unwrap();
    assert_eq!(s, Stopped::Count);
    assert_eq!(engine.stats().frames, 5);
    assert_eq!(runner.frames, 5);
    assert_eq!(
        log.lines.iter().filter(|l| l.starts_with("C ")).count(),
        1,
        "{:?}",
        log.lines
    );

    let limits = Limits {
        max_frames: Some(5),
        ..Limits::default()
    };
    let mut runner = Runner::new(limits, None);
    let mut log = Log::default();
    let r = run_sharded(&mut runner, &mut source(&p), Config::default(), 2, &mut log).unwrap();
    assert_eq!(r.stopped, Stopped::Count);
    assert_eq!(r.stats.frames, 5);
}

#[test]
fn a_stop_flag_ends_a_run_at_once() {
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let p = root().join("testdata/captures/generated/netns-25s-client.pcap.gz");
    let limits = Limits {
        stop: Some(tcpsight_pipeline::StopFlag::Static(&STOP)),
        ..Limits::default()
    };
    let mut runner = Runner::new(limits, None);
    let mut engine = Engine::new(Config::default());
    let s = runner.run(&mut source(&p), &mut engine, &mut ()).unwrap();
    assert_eq!(s, Stopped::Signal);
    assert_eq!(engine.stats().frames, 0);
}

fn frame_at(ts: u64) -> (u64, LinkType, Vec<u8>, u32) {
    (ts, LinkType::ETHERNET, vec![0u8; 60], 60)
}

/// `--speed N`: a frame `d` seconds of capture time after the first is due `d / N`
/// seconds of wall time after the replay started; meanwhile the replay's clock moves
/// (never past the waiting frame); `--speed max` never waits.
#[test]
fn replay_pacing_follows_the_speed_factor() {
    let t0 = 1_700_000_000_000_000_000u64;
    let mem = MemorySource::new(vec![frame_at(t0), frame_at(t0 + 2_000_000_000)]);
    let mut paced = Paced::new(mem, Speed::Factor(10.0));
    let started = Instant::now();
    assert!(matches!(paced.next_frame().unwrap(), Next::Frame(f) if f.ts_ns == t0));
    // 2 s of capture time at 10x: due 200 ms after the first frame.
    match paced.next_frame().unwrap() {
        Next::Idle { clock_ns, wait } => {
            let c = clock_ns.unwrap();
            assert!(c >= t0 && c < t0 + 2_000_000_000, "clock {c}");
            let due = started + wait;
            let expected = started + Duration::from_millis(200);
            let off = if due > expected {
                due - expected
            } else {
                expected - due
            };
            assert!(off < Duration::from_millis(30), "off by {off:?}");
        }
        _ => panic!("the second frame is not due yet"),
    }
    std::thread::sleep(Duration::from_millis(220));
    assert!(matches!(paced.next_frame().unwrap(), Next::Frame(f) if f.ts_ns == t0 + 2_000_000_000));
    assert!(matches!(paced.next_frame().unwrap(), Next::End));

    // At half speed the same frame waits 4 s.
    let mem = MemorySource::new(vec![frame_at(t0), frame_at(t0 + 2_000_000_000)]);
    let mut slow = Paced::new(mem, Speed::Factor(0.5));
    assert!(matches!(slow.next_frame().unwrap(), Next::Frame(_)));
    match slow.next_frame().unwrap() {
        Next::Idle { wait, .. } => assert!(
            wait > Duration::from_millis(3_900) && wait <= Duration::from_secs(4),
            "{wait:?}"
        ),
        _ => panic!("not due at half speed"),
    }
    // --speed max: everything at once.
    let mem = MemorySource::new(vec![frame_at(t0), frame_at(t0 + 9_000_000_000)]);
    let mut max = Paced::new(mem, Speed::Max);
    assert!(matches!(max.next_frame().unwrap(), Next::Frame(_)));
    assert!(matches!(max.next_frame().unwrap(), Next::Frame(_)));
    assert!(matches!(max.next_frame().unwrap(), Next::End));
}
