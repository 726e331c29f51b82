//! `tcpsight probe`: the kernel's view of TCP (tcp:tcp_probe and friends) from a private
//! tracefs instance, parsed, summarised, plotted, and joined to the wire view of the
//! same connections (`trace --with-capture IFACE`).

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tcpsight_core::{Collect, Config, ConnRecord, Engine};
use tcpsight_live::{LiveCapture, LiveOptions};
use tcpsight_probe::filter::{self, Selector};
use tcpsight_probe::plot::{self, PlotOptions};
use tcpsight_probe::read::{self, ReadStats};
use tcpsight_probe::summary::{self, ConnSummary, Summary};
use tcpsight_probe::tracefs::{self, Instance, Tracefs};
use tcpsight_probe::{EVENTS, Event, Format, Formats, Line, parse_line};

#[derive(Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    cmd: ProbeCmd,
}

#[derive(Subcommand)]
enum ProbeCmd {
    /// Record the kernel's TCP events in a private tracefs instance (root)
    Trace(TraceArgs),
    /// Trace file (ours, tcp_probe's, trace_pipe's; plain or gzip) to JSON lines or CSV
    Parse(ParseArgs),
    /// Per-connection plots: snd_cwnd/ssthresh, srtt, snd_wnd/rcv_wnd, with retransmissions and resets
    Plot(PlotArgs),
    /// Per-connection summary: events, cwnd min/max, srtt p50/p99, retransmissions, resets, states
    Summary(SummaryArgs),
}

#[derive(Args)]
struct TraceArgs {
    /// ftrace filter (e.g. "sport == 80 || dport == 80"), applied in the kernel to each
    /// recorded event that has every field it names
    #[arg(value_name = "FILTER")]
    filter: Option<String>,
    /// Write the trace here instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Stop after this many seconds; default: until Ctrl-C or SIGTERM
    #[arg(short = 't', long = "duration", value_name = "SECONDS")]
    duration: Option<f64>,
    /// Only connections with this port at either end (repeatable)
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,
    /// Only connections with this address at either end (repeatable)
    #[arg(long, value_name = "ADDR")]
    host: Vec<IpAddr>,
    /// Ring buffer of the private instance, KB per CPU
    #[arg(long = "buffer", default_value_t = 4096, value_name = "KB")]
    buffer_kb: u64,
    /// JSON lines instead of the kernel's text lines
    #[arg(long)]
    json: bool,
    /// Also capture packets on this interface and report kernel and wire views side by side
    #[arg(long = "with-capture", value_name = "IFACE")]
    with_capture: Option<String>,
    /// Kernel ring size of the packet capture, MB (with --with-capture)
    #[arg(long = "capture-buffer", default_value_t = 64, value_name = "MB")]
    capture_buffer_mb: u32,
    /// Where the joined report goes (with --with-capture); default: stdout when the trace
    /// goes to a file (-o), else stderr
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// tracefs mount point; default: the mounted tracefs, else mounts one at /sys/kernel/tracing
    #[arg(long, value_name = "DIR")]
    tracefs: Option<PathBuf>,
}

#[derive(Args)]
struct ParseArgs {
    /// Trace file (plain or gzip; - for stdin)
    #[arg(value_name = "FILE")]
    file: String,
    /// CSV (one column per field seen) instead of JSON lines
    #[arg(long)]
    csv: bool,
    /// Write here instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct PlotArgs {
    /// Trace file (plain or gzip; - for stdin)
    #[arg(value_name = "FILE")]
    file: String,
    /// Output directory; default: FILE.plots next to the trace
    #[arg(long = "out", value_name = "DIR")]
    out: Option<PathBuf>,
    /// SVG instead of PNG
    #[arg(long)]
    svg: bool,
    /// Only connections whose "LOCAL -> REMOTE" contains this text, or with this port
    #[arg(long, value_name = "FILTER")]
    conn: Option<String>,
    /// Trace-clock time instead of seconds since the first event
    #[arg(long = "raw-time")]
    raw_time: bool,
    /// Keep port-22 connections (left out by default, as tcp_probe does)
    #[arg(long = "include-ssh")]
    include_ssh: bool,
    /// Image width in pixels (300 to 16384)
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(300..=16384))]
    width: u32,
    /// Image height in pixels (300 to 16384)
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u32).range(300..=16384))]
    height: u32,
}

#[derive(Args)]
struct SummaryArgs {
    /// Trace file (plain or gzip; - for stdin)
    #[arg(value_name = "FILE")]
    file: String,
    /// One JSON object per connection instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: ProbeArgs) -> ExitCode {
    let r = match args.cmd {
        ProbeCmd::Trace(a) => trace(a),
        ProbeCmd::Parse(a) => parse(a),
        ProbeCmd::Plot(a) => plot_cmd(a),
        ProbeCmd::Summary(a) => summary_cmd(a),
    };
    match r {
        Ok(()) if DAMAGED.load(std::sync::atomic::Ordering::Relaxed) => ExitCode::from(2),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e == crate::pipe::BROKEN => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpsight: {e}");
            ExitCode::from(2)
        }
    }
}

fn output(path: Option<&PathBuf>) -> Result<Box<dyn Write>, String> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout())),
    })
}

/// Names the writer's target in errors.
fn wr(target: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| {
        if crate::pipe::is_broken(&e) {
            crate::pipe::BROKEN.to_string()
        } else {
            format!("writing {target}: {e}")
        }
    }
}

/// Formats from the running kernel's tracefs when readable, else the bundled ones.
fn formats_here() -> Formats {
    let root = std::path::Path::new(tracefs::DEFAULT_ROOT);
    if root.join("events").is_dir() {
        Formats::live(root)
    } else {
        Formats::bundled()
    }
}

const RESERVED: [&str; 8] = [
    "ts", "cpu", "task", "pid", "flags", "event", "local", "remote",
];

/// One event as a flat JSON object, keys in a fixed order: the line's columns, the
/// socket's two ends, then every field in printed order, typed by its event's format (a
/// field named like a column gets a `field_` prefix; a repeated field keeps its first value).
pub fn event_json(e: &Event, f: &Formats) -> String {
    let mut s = String::with_capacity(512);
    let mut seen: Vec<&str> = Vec::with_capacity(e.fields.len() + 8);
    let put = |s: &mut String, k: &str, v: Value| {
        s.push(if s.is_empty() { '{' } else { ',' });
        s.push_str(&Value::from(k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    };
    put(&mut s, "ts", json!(e.ts));
    put(&mut s, "event", json!(e.name));
    put(&mut s, "task", json!(e.task));
    put(&mut s, "pid", json!(e.pid));
    put(&mut s, "cpu", json!(e.cpu));
    if let Some((l, r)) = e.endpoints() {
        put(&mut s, "local", json!(l.to_string()));
        put(&mut s, "remote", json!(r.to_string()));
    }
    for (k, v) in &e.fields {
        if seen.contains(&k.as_str()) {
            continue;
        }
        seen.push(k);
        let typed = f.typed(&e.name, k, v);
        if RESERVED.contains(&k.as_str()) {
            put(&mut s, &format!("field_{k}"), typed);
        } else {
            put(&mut s, k, typed);
        }
    }
    s.push('}');
    s
}

fn note_garbage(what: &str, st: &ReadStats) {
    if let Some(n) = st.garbage_note(what) {
        eprintln!("tcpsight: {n}");
    }
    if st.lost > 0 {
        eprintln!(
            "tcpsight: {what}: the kernel reported {} events lost (ring overrun)",
            st.lost
        );
    }
}

fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn parse(a: ParseArgs) -> Result<(), String> {
    let f = formats_here();
    let target = a
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    let mut out = output(a.output.as_ref())?;
    let mut r = read::open(&a.file)?;
    let mut st = ReadStats::default();
    let res = if a.csv {
        let mut events = Vec::new();
        let res = read::for_each_event(&mut *r, &mut st, |e| events.push(e));
        let mut cols: Vec<&str> = Vec::new();
        for e in &events {
            for (k, _) in &e.fields {
                if !cols.contains(&k.as_str()) {
                    cols.push(k);
                }
            }
        }
        let mut line = String::from("ts,event,task,pid,cpu,local,remote");
        for c in &cols {
            line.push(',');
            csv_field(c, &mut line);
        }
        writeln!(out, "{line}").map_err(wr(&target))?;
        for e in &events {
            line.clear();
            let (l, rm) = e
                .endpoints()
                .map_or((String::new(), String::new()), |(l, r)| {
                    (l.to_string(), r.to_string())
                });
            line.push_str(&format!("{}", e.ts));
            for v in [
                e.name.as_str(),
                e.task.as_str(),
                &e.pid.map_or(String::new(), |p| p.to_string()),
                &e.cpu.map_or(String::new(), |p| p.to_string()),
                &l,
                &rm,
            ] {
                line.push(',');
                csv_field(v, &mut line);
            }
            for c in &cols {
                line.push(',');
                if let Some(v) = e.get(c) {
                    csv_field(v, &mut line);
                }
            }
            writeln!(out, "{line}").map_err(wr(&target))?;
        }
        res
    } else {
        let mut werr = None;
        let res = read::for_each_event(&mut *r, &mut st, |e| {
            if werr.is_none()
                && let Err(x) = writeln!(out, "{}", event_json(&e, &f))
            {
                werr = Some(x);
            }
        });
        if let Some(x) = werr {
            return Err(wr(&target)(x));
        }
        res
    };
    out.flush().map_err(wr(&target))?;
    note_garbage(&a.file, &st);
    res.map_err(|e| format!("{}: {e} (everything before it was converted)", a.file))
}

/// Set when an input broke off: what was read before is used, and the exit status is 2.
static DAMAGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn read_all(file: &str) -> Result<(Vec<Event>, ReadStats), String> {
    let r = read::read_file(file);
    if let Ok((_, st)) = &r {
        note_garbage(file, st);
        if let Some(e) = &st.read_error {
            eprintln!("tcpsight: {e} (everything before it is used)");
            DAMAGED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    r
}

fn summary_cmd(a: SummaryArgs) -> Result<(), String> {
    let (events, _) = read_all(&a.file)?;
    let s = Summary::from_events(&events);
    let mut out = io::stdout().lock();
    let res = if a.json {
        s.conns
            .iter()
            .try_for_each(|(k, c)| writeln!(out, "{}", summary::conn_json(k, c)))
    } else {
        out.write_all(summary::table(&s).as_bytes())
    };
    res.and_then(|_| out.flush()).map_err(wr("stdout"))
}

fn plot_cmd(a: PlotArgs) -> Result<(), String> {
    let (events, _) = read_all(&a.file)?;
    if events.is_empty() {
        // No directory of nothing beside the input.
        return Err(format!("{}: no trace events to plot", a.file));
    }
    let out_dir = a.out.clone().unwrap_or_else(|| {
        if a.file == "-" {
            PathBuf::from("probe.plots")
        } else {
            PathBuf::from(format!("{}.plots", a.file))
        }
    });
    let opts = PlotOptions {
        out_dir,
        svg: a.svg,
        width: a.width,
        height: a.height,
        normalize: !a.raw_time,
        include_ssh: a.include_ssh,
        conn: a.conn.clone(),
    };
    let rep = plot::plot(&events, &opts)?;
    for f in &rep.files {
        println!("{}", f.display());
    }
    let mut notes = Vec::new();
    if rep.ssh_skipped > 0 {
        notes.push(format!(
            "{} on port 22 left out (--include-ssh)",
            rep.ssh_skipped
        ));
    }
    if rep.not_selected > 0 {
        notes.push(format!("{} not matching --conn", rep.not_selected));
    }
    if rep.without_probes > 0 {
        notes.push(format!(
            "{} without tcp_probe events (see probe summary)",
            rep.without_probes
        ));
    }
    eprintln!(
        "tcpsight: {} plot{} in {}{}",
        rep.files.len(),
        if rep.files.len() == 1 { "" } else { "s" },
        opts.out_dir.display(),
        if notes.is_empty() {
            String::new()
        } else {
            format!("; connections: {}", notes.join(", "))
        }
    );
    Ok(())
}

/// Sets up the instance: filters, buffer, events. Returns which events got a filter.
fn setup(
    inst: &mut Instance,
    formats: &[(String, Format)],
    a: &TraceArgs,
) -> Result<Vec<String>, String> {
    inst.set_tracing_on(false)?;
    inst.set_buffer_kb(a.buffer_kb.max(1))?;
    let mut filtered = Vec::new();
    for (ev, fmt) in formats {
        if let Some(fl) = filter::event_filter(a.filter.as_deref(), &a.port, fmt) {
            inst.set_filter(ev, &fl).map_err(|e| {
                if fl.contains("saddr") || fl.contains("daddr") {
                    format!("{e} (the kernel does not filter address arrays: use --host)")
                } else {
                    e
                }
            })?;
            filtered.push(ev.replace('/', ":"));
        }
    }
    for (ev, _) in formats {
        inst.enable(ev)?;
    }
    inst.open_pipe()?;
    inst.set_tracing_on(true)?;
    Ok(filtered)
}

/// What the capture thread hands back.
struct Wire {
    records: Vec<ConnRecord>,
    frames: u64,
    drops: u64,
}

/// Starts capturing on `iface` in a thread; returns once the ring is open.
fn start_capture(
    iface: &str,
    buffer_mb: u32,
    done: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<Wire, String>>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = iface.to_string();
    let h = std::thread::spawn(move || {
        let iface = name;
        let opts = LiveOptions {
            buffer_mb,
            ..LiveOptions::default()
        };
        let cap = match LiveCapture::open(&iface, opts) {
            Ok(c) => {
                let _ = tx.send(Ok(()));
                c
            }
            Err(e) => {
                let _ = tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let mut engine = Engine::new(Config::default());
        let mut col = Collect::default();
        let limits = tcpsight_pipeline::Limits {
            stop: Some(tcpsight_pipeline::StopFlag::Shared(done)),
            ..Default::default()
        };
        let mut src = tcpsight_pipeline::LiveSource::new(cap, 100);
        let mut runner = tcpsight_pipeline::Runner::new(limits, None);
        runner.run(&mut src, &mut engine, &mut col)?;
        let frames = runner.frames;
        let cap = src.capture();
        let (_, drops) = cap.stats();
        Ok(Wire {
            records: col.records,
            frames,
            drops,
        })
    });
    match rx.recv() {
        Ok(Ok(())) => Ok(h),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(format!("--with-capture {iface}: {e}"))
        }
        Err(_) => Err("--with-capture: the capture thread ended".to_string()),
    }
}

fn trace(a: TraceArgs) -> Result<(), String> {
    if a.duration
        .is_some_and(|d| d.is_nan() || d < 0.0 || d.is_infinite())
    {
        return Err("-t: SECONDS must be a number >= 0".into());
    }
    let tfs = Tracefs::open(a.tracefs.as_deref())?;
    if tfs.mounted_here() {
        eprintln!(
            "tcpsight: mounted tracefs at {} (unmounted on exit)",
            tfs.root.display()
        );
    }
    let mut formats = Vec::new();
    for ev in EVENTS {
        formats.push((ev.to_string(), tfs.format(ev)?));
    }
    if let Some(fl) = &a.filter {
        for w in filter::identifiers(fl) {
            if !formats.iter().any(|(_, f)| f.has_field(&w)) {
                return Err(format!(
                    "filter {fl:?}: field {w:?} is in none of the recorded events ({})",
                    EVENTS.join(", ").replace('/', ":")
                ));
            }
        }
    }
    let live_formats = Formats::live(&tfs.root);
    let selector = Selector {
        ports: a.port.clone(),
        hosts: a.host.clone(),
    };
    tracefs::install_signal_handlers();
    let mut inst = Instance::create(&tfs, "tcpsight")?;
    let filtered = setup(&mut inst, &formats, &a)?;
    let target = a
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    let mut out = output(a.output.as_ref())?;
    let done = Arc::new(AtomicBool::new(false));
    let capture = match &a.with_capture {
        Some(iface) => Some(start_capture(iface, a.capture_buffer_mb, done.clone())?),
        None => None,
    };
    eprintln!(
        "tcpsight: tracing {} events in {} ({} KB per CPU{}{}); Ctrl-C to stop",
        formats.len(),
        inst.path.display(),
        a.buffer_kb.max(1),
        if filtered.is_empty() {
            String::new()
        } else {
            format!("; filter on {}", filtered.join(", "))
        },
        a.with_capture
            .as_ref()
            .map_or(String::new(), |i| format!("; capturing on {i}"))
    );
    let start = Instant::now();
    let limit = a
        .duration
        .map(|d| Duration::try_from_secs_f64(d).unwrap_or(Duration::MAX));
    let mut buf = Vec::with_capacity(1 << 20);
    let mut pending: Vec<u8> = Vec::new();
    let mut st = ReadStats::default();
    let mut sum = Summary::default();
    let mut written = 0u64;
    let mut werr: Option<String> = None;
    let mut handle = |bytes: &[u8], out: &mut Box<dyn Write>, werr: &mut Option<String>| {
        if werr.is_some() {
            return;
        }
        st.lines += 1;
        let line = String::from_utf8_lossy(bytes);
        let ev = match parse_line(&line) {
            Ok(Line::Event(e)) => {
                st.events += 1;
                Some(e)
            }
            Ok(Line::Lost(n)) => {
                st.lost += n;
                None
            }
            Ok(Line::Comment) => return,
            Err(_) => {
                st.garbage += 1;
                None
            }
        };
        if let Some(e) = &ev {
            if !selector.matches(e) {
                return;
            }
            sum.add(e);
        }
        let r = match (&ev, a.json) {
            (Some(e), true) => writeln!(out, "{}", event_json(e, &live_formats)),
            (None, true) => Ok(()),
            (_, false) => out.write_all(bytes).and_then(|_| out.write_all(b"\n")),
        };
        match r {
            Ok(()) => written += ev.is_some() as u64,
            Err(e) => *werr = Some(wr(&target)(e)),
        }
    };
    let mut read_err = None;
    let mut stopping = false;
    loop {
        if !stopping && (tracefs::stop_requested() || limit.is_some_and(|l| start.elapsed() >= l)) {
            // Stop recording, then drain what the ring still holds.
            stopping = true;
            let _ = inst.set_tracing_on(false);
        }
        buf.clear();
        let n = match inst.read_pipe(&mut buf, if stopping { 0 } else { 100 }) {
            Ok(n) => n,
            Err(e) => {
                read_err = Some(format!("reading {}/trace_pipe: {e}", inst.path.display()));
                break;
            }
        };
        pending.extend_from_slice(&buf);
        let mut used = 0;
        while let Some(nl) = pending[used..].iter().position(|b| *b == b'\n') {
            handle(&pending[used..used + nl], &mut out, &mut werr);
            used += nl + 1;
        }
        pending.drain(..used);
        if n > 0 && werr.is_none() {
            let _ = out.flush();
        }
        if werr.is_some() || (stopping && n == 0) {
            break;
        }
    }
    if !pending.is_empty() {
        let rest = std::mem::take(&mut pending);
        handle(&rest, &mut out, &mut werr);
    }
    let overruns = inst.overruns();
    let inst_path = inst.path.clone();
    drop(inst);
    done.store(true, Ordering::Relaxed);
    let wire = capture.map(|h| {
        h.join()
            .map_err(|_| "the capture thread panicked".to_string())
    });
    if let Err(e) = out.flush() {
        werr.get_or_insert(wr(&target)(e));
    }
    let by: Vec<String> = sum
        .by_event
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    eprintln!(
        "tcpsight: {written} events written in {:.1} s ({}); {} connections; ring overruns: {overruns}; instance {} removed",
        start.elapsed().as_secs_f64(),
        if by.is_empty() {
            "none".to_string()
        } else {
            by.join(", ")
        },
        sum.conns.len(),
        inst_path.display()
    );
    if st.garbage > 0 {
        eprintln!(
            "tcpsight: {} lines from trace_pipe were not trace lines",
            st.garbage
        );
    }
    if let Some(w) = wire {
        let w = w??;
        let report = join_report(&sum, &w, a.json);
        let res = match &a.report {
            Some(p) => std::fs::write(p, report).map_err(|e| format!("{}: {e}", p.display())),
            None if a.output.is_some() => {
                let mut o = io::stdout().lock();
                o.write_all(report.as_bytes())
                    .and_then(|_| o.flush())
                    .map_err(wr("stdout"))
            }
            None => io::stderr()
                .write_all(report.as_bytes())
                .map_err(wr("stderr")),
        };
        res?;
    }
    if let Some(e) = read_err.or(werr) {
        return Err(e);
    }
    Ok(())
}

fn sockaddr(a: tcpsight_core::Addr, port: u16) -> SocketAddr {
    SocketAddr::new(tcpsight_probe::event::canonical(a.ip()), port)
}

/// The wire's figures for the direction `local` sends, from the records of its 4-tuple.
#[derive(Default)]
struct WireSide {
    records: usize,
    rtt_samples: u64,
    rtt_sum_ns: f64,
    rtt_min_ns: Option<u64>,
    rtt_max_ns: Option<u64>,
    handshake_rtt_ns: Option<u64>,
    retx_pkts: u64,
    pkts: u64,
    rst_pkts: u64,
}

fn wire_side(local: SocketAddr, remote: SocketAddr, recs: &[&ConnRecord]) -> WireSide {
    let mut w = WireSide::default();
    for r in recs {
        let client = sockaddr(r.client, r.client_port);
        let server = sockaddr(r.server, r.server_port);
        let (sent, hs) = if client == local && server == remote {
            // The client's data, ACKed by the server; the handshake's round trip on the
            // client's side is SYN to SYN/ACK.
            (&r.c2s, r.server_rtt_ns)
        } else if server == local && client == remote {
            (&r.s2c, r.client_rtt_ns)
        } else {
            continue;
        };
        w.records += 1;
        w.pkts += sent.pkts;
        w.retx_pkts += sent.retx_pkts as u64;
        w.rst_pkts += sent.rst_pkts as u64;
        w.rtt_samples += sent.rtt_samples as u64;
        if let Some(avg) = sent.rtt_avg_ns {
            w.rtt_sum_ns += avg * sent.rtt_samples as f64;
        }
        if let Some(m) = sent.rtt_min_ns {
            w.rtt_min_ns = Some(w.rtt_min_ns.map_or(m, |x| x.min(m)));
        }
        if let Some(m) = sent.rtt_max_ns {
            w.rtt_max_ns = Some(w.rtt_max_ns.map_or(m, |x| x.max(m)));
        }
        if hs.is_some() {
            w.handshake_rtt_ns = hs;
        }
    }
    w
}

fn us(ns: Option<u64>) -> Option<f64> {
    ns.map(|n| (n as f64 / 1000.0 * 10.0).round() / 10.0)
}

/// One report per kernel connection: kernel srtt next to wire RTT, kernel retransmissions
/// next to those seen on the wire.
fn join_report(sum: &Summary, w: &Wire, json: bool) -> String {
    let mut by_tuple: BTreeMap<(SocketAddr, SocketAddr), Vec<&ConnRecord>> = BTreeMap::new();
    for r in &w.records {
        let c = sockaddr(r.client, r.client_port);
        let s = sockaddr(r.server, r.server_port);
        let k = if c <= s { (c, s) } else { (s, c) };
        by_tuple.entry(k).or_default().push(r);
    }
    let mut out = String::new();
    let mut matched = 0usize;
    let rows: Vec<(&(SocketAddr, SocketAddr), &ConnSummary, WireSide)> = sum
        .conns
        .iter()
        .map(|(k, c)| {
            let t = if k.0 <= k.1 { (k.0, k.1) } else { (k.1, k.0) };
            let recs = by_tuple.get(&t).map_or(&[][..], |v| &v[..]);
            let ws = wire_side(k.0, k.1, recs);
            matched += (ws.records > 0) as usize;
            (k, c, ws)
        })
        .collect();
    if json {
        for (k, c, ws) in &rows {
            let wire = (ws.records > 0).then(|| {
                json!({
                    "records": ws.records,
                    "pkts": ws.pkts,
                    "retx_pkts": ws.retx_pkts,
                    "rst_pkts": ws.rst_pkts,
                    "rtt_samples": ws.rtt_samples,
                    "rtt_avg_us": (ws.rtt_samples > 0).then(|| (ws.rtt_sum_ns / ws.rtt_samples as f64 / 100.0).round() / 10.0),
                    "rtt_min_us": us(ws.rtt_min_ns),
                    "rtt_max_us": us(ws.rtt_max_ns),
                    "handshake_rtt_us": us(ws.handshake_rtt_ns),
                })
            });
            let v = json!({"local": k.0.to_string(), "remote": k.1.to_string(), "kernel": summary::conn_json(k, c), "wire": wire});
            out.push_str(&format!("{v}\n"));
        }
        out.push_str(&format!(
            "{}\n",
            json!({"join": {"kernel_connections": rows.len(), "matched": matched, "wire_connections": w.records.len(), "frames": w.frames, "kernel_drops": w.drops}})
        ));
        return out;
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    out.push_str(
        "========== KERNEL vs WIRE (per socket; wire = packets this socket sent) ==========\n",
    );
    out.push_str(&format!(
        "{:<46} | {:>9} {:>9} {:>5} | {:>9} {:>9} {:>9} {:>7} {:>5} | {:>5} {:>5}\n",
        "LOCAL -> REMOTE",
        "SRTT50us",
        "SRTT99us",
        "RETX",
        "RTTavgus",
        "RTTmaxus",
        "HSRTTus",
        "SAMPLES",
        "RETX",
        "RST>",
        "RST>w"
    ));
    out.push_str(&format!(
        "{:<46} | {:^25} | {:^45} | {:^11}\n",
        "", "kernel (tcp_probe)", "wire (capture)", "resets"
    ));
    for (k, c, ws) in &rows {
        let name = format!("{} -> {}", k.0, k.1);
        let avg = (ws.rtt_samples > 0)
            .then(|| format!("{:.1}", ws.rtt_sum_ns / ws.rtt_samples as f64 / 1000.0));
        let has = ws.records > 0;
        out.push_str(&format!(
            "{:<46} | {:>9} {:>9} {:>5} | {:>9} {:>9} {:>9} {:>7} {:>5} | {:>5} {:>5}\n",
            name,
            dash(c.srtt_p50().map(|v| v.to_string())),
            dash(c.srtt_p99().map(|v| v.to_string())),
            c.retransmits + c.synack_retransmits,
            dash(avg),
            dash(us(ws.rtt_max_ns).map(|v| format!("{v:.1}"))),
            dash(us(ws.handshake_rtt_ns).map(|v| format!("{v:.1}"))),
            if has {
                ws.rtt_samples.to_string()
            } else {
                "-".into()
            },
            if has {
                ws.retx_pkts.to_string()
            } else {
                "-".into()
            },
            c.resets_sent,
            if has {
                ws.rst_pkts.to_string()
            } else {
                "-".into()
            },
        ));
    }
    out.push_str(&format!(
        " {} kernel connections, {matched} matched on the wire; wire: {} connections, {} frames, kernel drops {}\n",
        rows.len(),
        w.records.len(),
        w.frames,
        w.drops
    ));
    out
}
