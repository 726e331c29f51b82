//! Per-connection plots: snd_cwnd and ssthresh, srtt, snd_wnd and rcv_wnd over time,
//! with retransmission and reset markers. PNG or SVG; the font (DejaVu Sans) is compiled
//! in, so no system font or font library is needed and every machine draws the same
//! pixels.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::event::Event;
use crate::summary::{INFINITE_SSTHRESH, Key};

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
        let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, FONT);
    });
}

/// The time series of one connection (time in seconds, already shifted).
#[derive(Clone, Debug, Default)]
pub struct ConnSeries {
    pub cwnd: Vec<(f64, f64)>,
    pub ssthresh: Vec<(f64, f64)>,
    /// Milliseconds.
    pub srtt_ms: Vec<(f64, f64)>,
    pub snd_wnd: Vec<(f64, f64)>,
    pub rcv_wnd: Vec<(f64, f64)>,
    pub retransmits: Vec<f64>,
    pub resets_sent: Vec<f64>,
    pub resets_received: Vec<f64>,
}

/// Series names as they appear in the legends (and so in an SVG's text).
pub const SERIES: [&str; 8] = [
    "snd_cwnd",
    "ssthresh",
    "srtt",
    "snd_wnd",
    "rcv_wnd",
    "retransmit",
    "reset sent",
    "reset received",
];

/// Series per connection; `t0` is subtracted from every timestamp.
pub fn series<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    t0: f64,
) -> BTreeMap<Key, ConnSeries> {
    let mut out: BTreeMap<Key, ConnSeries> = BTreeMap::new();
    for e in events {
        if !matches!(
            e.name.as_str(),
            "tcp_probe"
                | "tcp_retransmit_skb"
                | "tcp_retransmit_synack"
                | "tcp_send_reset"
                | "tcp_receive_reset"
        ) {
            continue;
        }
        let Some(key) = e.endpoints() else { continue };
        let t = e.ts - t0;
        let s = out.entry(key).or_default();
        let push = |v: &mut Vec<(f64, f64)>, key: &str, scale: f64| {
            if let Some(x) = e.uint(key) {
                v.push((t, x as f64 * scale));
            }
        };
        match e.name.as_str() {
            "tcp_probe" => {
                push(&mut s.cwnd, "snd_cwnd", 1.0);
                if e.uint("ssthresh").is_some_and(|x| x < INFINITE_SSTHRESH) {
                    push(&mut s.ssthresh, "ssthresh", 1.0);
                }
                if e.uint("srtt").is_some_and(|x| x > 0) {
                    push(&mut s.srtt_ms, "srtt", 1e-3);
                }
                push(&mut s.snd_wnd, "snd_wnd", 1.0);
                push(&mut s.rcv_wnd, "rcv_wnd", 1.0);
            }
            "tcp_retransmit_skb" | "tcp_retransmit_synack" => s.retransmits.push(t),
            "tcp_send_reset" => s.resets_sent.push(t),
            "tcp_receive_reset" => s.resets_received.push(t),
            _ => {}
        }
    }
    out
}

#[derive(Clone, Debug)]
pub struct PlotOptions {
    pub out_dir: PathBuf,
    pub svg: bool,
    pub width: u32,
    pub height: u32,
    /// Seconds since the first event of the trace, or the trace clock.
    pub normalize: bool,
    /// Keep connections on port 22 (left out by default, as tcp_probe does).
    pub include_ssh: bool,
    /// Only connections whose `LOCAL -> REMOTE` text contains this, or with this port.
    pub conn: Option<String>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            out_dir: PathBuf::from("."),
            svg: false,
            width: 1200,
            height: 900,
            normalize: true,
            include_ssh: false,
            conn: None,
        }
    }
}

/// What `plot` did.
#[derive(Clone, Debug, Default)]
pub struct PlotReport {
    pub files: Vec<PathBuf>,
    /// Connections without tcp_probe events (nothing to draw).
    pub without_probes: usize,
    /// Connections on port 22 left out.
    pub ssh_skipped: usize,
    /// Connections not matching --conn.
    pub not_selected: usize,
}

fn conn_matches(key: &Key, sel: &str) -> bool {
    if let Ok(p) = sel.parse::<u16>() {
        return key.0.port() == p || key.1.port() == p;
    }
    format!("{} -> {}", key.0, key.1).contains(sel)
}

/// A file name for a connection: `LOCALIP_PORT-REMOTEIP_PORT`.
pub fn file_stem(key: &Key) -> String {
    let clean = |s: String| {
        s.chars()
            .map(|c| match c {
                ':' => '_',
                '[' | ']' => '\0',
                c => c,
            })
            .filter(|c| *c != '\0')
            .collect::<String>()
    };
    format!(
        "{}-{}",
        clean(format!("{}:{}", key.0.ip(), key.0.port())),
        clean(format!("{}:{}", key.1.ip(), key.1.port()))
    )
}

fn err(e: impl Display) -> String {
    e.to_string()
}

/// Writes one plot per connection into `opts.out_dir`.
pub fn plot(events: &[Event], opts: &PlotOptions) -> Result<PlotReport, String> {
    register_font();
    let t0 = if opts.normalize {
        events
            .iter()
            .map(|e| e.ts)
            .fold(f64::INFINITY, f64::min)
            .min(f64::MAX)
    } else {
        0.0
    };
    let t0 = if t0.is_finite() { t0 } else { 0.0 };
    let all = series(events, t0);
    let mut rep = PlotReport::default();
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| format!("{}: {e}", opts.out_dir.display()))?;
    for (key, s) in &all {
        if !opts.include_ssh && (key.0.port() == 22 || key.1.port() == 22) {
            rep.ssh_skipped += 1;
            continue;
        }
        if let Some(sel) = &opts.conn
            && !conn_matches(key, sel)
        {
            rep.not_selected += 1;
            continue;
        }
        if s.cwnd.is_empty() && s.srtt_ms.is_empty() && s.snd_wnd.is_empty() {
            rep.without_probes += 1;
            continue;
        }
        let ext = if opts.svg { "svg" } else { "png" };
        let path = opts.out_dir.join(format!("{}.{ext}", file_stem(key)));
        let title = format!("{} -> {}", key.0, key.1);
        let xlabel = if opts.normalize {
            "time (s since the first event)"
        } else {
            "time (s, trace clock)"
        };
        let size = (opts.width.max(300), opts.height.max(300));
        let res = if opts.svg {
            draw(
                SVGBackend::new(&path, size).into_drawing_area(),
                s,
                &title,
                xlabel,
            )
        } else {
            draw(
                BitMapBackend::new(&path, size).into_drawing_area(),
                s,
                &title,
                xlabel,
            )
        };
        res.map_err(|e| format!("{}: {e}", path.display()))?;
        rep.files.push(path);
    }
    Ok(rep)
}

/// A value holds until the next event changes it: draw steps, not slopes.
fn steps(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(pts.len() * 2);
    for (i, p) in pts.iter().enumerate() {
        if i > 0 {
            out.push((p.0, pts[i - 1].1));
        }
        out.push(*p);
    }
    out
}

fn x_range(s: &ConnSeries) -> Range<f64> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let pts = [&s.cwnd, &s.ssthresh, &s.srtt_ms, &s.snd_wnd, &s.rcv_wnd];
    for v in pts {
        for (t, _) in v.iter() {
            lo = lo.min(*t);
            hi = hi.max(*t);
        }
    }
    for v in [&s.retransmits, &s.resets_sent, &s.resets_received] {
        for t in v.iter() {
            lo = lo.min(*t);
            hi = hi.max(*t);
        }
    }
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    if hi - lo < 1e-6 {
        return lo - 0.001..hi + 0.001;
    }
    let pad = (hi - lo) * 0.01;
    lo - pad..hi + pad
}

type Lines<'a> = [(&'a str, &'a [(f64, f64)], RGBColor)];
type Marks<'a> = [(&'a str, &'a [f64], RGBColor)];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    s: &ConnSeries,
    title: &str,
    xlabel: &str,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(title, (FAMILY, 22)).map_err(err)?;
    let panels = body.split_evenly((3, 1));
    let xr = x_range(s);
    let orange = RGBColor(230, 120, 0);
    let marks: &Marks = &[
        ("retransmit", &s.retransmits, RED),
        ("reset sent", &s.resets_sent, BLACK),
        ("reset received", &s.resets_received, MAGENTA),
    ];
    panel(
        &panels[0],
        xr.clone(),
        "segments",
        xlabel,
        0,
        &[
            ("snd_cwnd", &s.cwnd, BLUE),
            ("ssthresh", &s.ssthresh, orange),
        ],
        marks,
    )?;
    panel(
        &panels[1],
        xr.clone(),
        "srtt (ms)",
        xlabel,
        3,
        &[("srtt", &s.srtt_ms, RGBColor(0, 140, 0))],
        marks,
    )?;
    panel(
        &panels[2],
        xr,
        "window (bytes)",
        xlabel,
        0,
        &[
            ("snd_wnd", &s.snd_wnd, BLUE),
            ("rcv_wnd", &s.rcv_wnd, orange),
        ],
        marks,
    )?;
    root.present().map_err(err)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    xr: Range<f64>,
    ydesc: &str,
    xlabel: &str,
    ydigits: usize,
    lines: &Lines,
    marks: &Marks,
) -> Result<(), String> {
    let ymax = lines
        .iter()
        .flat_map(|(_, v, _)| v.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(xr, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc(ydesc)
        .y_label_formatter(&|v| format!("{v:.ydigits$}"))
        .x_label_formatter(&|v| {
            // Padding puts the first tick just below 0: no "-0".
            let t = format!("{v}");
            if *v <= 0.0 && *v > -1e-9 {
                "0".into()
            } else {
                t
            }
        })
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    let mut labelled = false;
    for (name, pts, color) in lines {
        if pts.is_empty() {
            continue;
        }
        let color = *color;
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(steps(pts), style))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        labelled = true;
    }
    for (name, ts, color) in marks {
        if ts.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(
                ts.iter()
                    .map(|t| PathElement::new(vec![(*t, 0.0), (*t, ymax)], color.stroke_width(1))),
            )
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x + 10, y - 6), (x + 10, y + 6)], color));
        labelled = true;
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// The text of every `<text>` element of an SVG, trimmed, for checks.
pub fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

/// Width and height from a PNG's IHDR, for checks.
pub fn png_size(path: &Path) -> Option<(u32, u32)> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 24 || &b[..8] != b"\x89PNG\r\n\x1a\n" || &b[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(b[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(b[20..24].try_into().ok()?);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Line, parse_line};

    fn events() -> Vec<Event> {
        let mut v = Vec::new();
        for i in 0..50 {
            let cwnd = 10 + i % 17;
            let ss = if i < 20 { 2147483647 } else { 12 };
            let l = format!(
                "x-1 [000] .... {}.{:03}: tcp_probe: family=AF_INET src=127.0.0.1:5000 dest=127.0.0.1:6000 mark=0x0 data_len=100 snd_nxt=0x1 snd_una=0x1 snd_cwnd={cwnd} ssthresh={ss} snd_wnd=65536 srtt={} rcv_wnd=65483",
                100 + i / 10,
                (i % 10) * 100,
                200 + i * 10
            );
            if let Ok(Line::Event(e)) = parse_line(&l) {
                v.push(e);
            }
        }
        for l in [
            "x-1 [000] .... 102.05: tcp_retransmit_skb: family=AF_INET sport=5000 dport=6000 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 state=TCP_ESTABLISHED err=0",
            "x-1 [000] .... 104.5: tcp_send_reset: src=127.0.0.1:5000 dest=127.0.0.1:6000 state=TCP_ESTABLISHED reason=NOT_SPECIFIED",
            "x-1 [000] .... 101.0: tcp_probe: family=AF_INET src=127.0.0.1:22 dest=127.0.0.1:6001 snd_cwnd=10 srtt=5",
            "x-1 [000] .... 101.0: tcp_receive_reset: family=AF_INET sport=7 dport=8 saddr=127.0.0.1 daddr=127.0.0.1",
        ] {
            if let Ok(Line::Event(e)) = parse_line(l) {
                v.push(e);
            }
        }
        v
    }

    #[test]
    fn step_points() {
        assert_eq!(
            steps(&[(0.0, 1.0), (1.0, 5.0), (2.0, 2.0)]),
            vec![(0.0, 1.0), (1.0, 1.0), (1.0, 5.0), (2.0, 5.0), (2.0, 2.0)]
        );
        assert!(steps(&[]).is_empty());
    }

    #[test]
    fn series_shapes() {
        let ev = events();
        let s = series(&ev, 100.0);
        let c = s.values().find(|c| c.cwnd.len() == 50).unwrap();
        assert_eq!(c.ssthresh.len(), 30);
        assert_eq!(c.srtt_ms.len(), 50);
        assert!((c.srtt_ms[0].1 - 0.2).abs() < 1e-9);
        assert_eq!(c.retransmits.len(), 1);
        assert_eq!(c.resets_sent.len(), 1);
        assert!(c.cwnd[0].0.abs() < 1e-9);
    }

    #[test]
    fn png_and_svg() {
        let d = tempfile::tempdir().unwrap();
        let ev = events();
        let mut o = PlotOptions {
            out_dir: d.path().join("png"),
            width: 800,
            height: 600,
            ..PlotOptions::default()
        };
        let r = plot(&ev, &o).unwrap();
        assert_eq!(r.files.len(), 1, "{r:?}");
        assert_eq!((r.ssh_skipped, r.without_probes), (1, 1));
        assert_eq!(
            r.files[0].file_name().unwrap().to_str().unwrap(),
            "127.0.0.1_5000-127.0.0.1_6000.png"
        );
        assert_eq!(png_size(&r.files[0]), Some((800, 600)));
        o.svg = true;
        o.include_ssh = true;
        o.out_dir = d.path().join("svg");
        let r = plot(&ev, &o).unwrap();
        assert_eq!(r.files.len(), 2);
        let svg = std::fs::read_to_string(&r.files[1]).unwrap();
        assert!(svg.contains("width=\"800\"") && svg.contains("height=\"600\""));
        let texts = svg_texts(&svg);
        for name in [
            "snd_cwnd",
            "ssthresh",
            "srtt",
            "snd_wnd",
            "rcv_wnd",
            "retransmit",
            "reset sent",
        ] {
            assert!(texts.iter().any(|t| t == name), "{name} missing: {texts:?}");
        }
        o.conn = Some("6001".into());
        o.out_dir = d.path().join("sel");
        let r = plot(&ev, &o).unwrap();
        assert_eq!(r.files.len(), 1);
        assert_eq!(r.not_selected, 2);
    }

    #[test]
    fn empty_trace_plots_nothing() {
        let d = tempfile::tempdir().unwrap();
        let r = plot(
            &[],
            &PlotOptions {
                out_dir: d.path().to_path_buf(),
                ..PlotOptions::default()
            },
        )
        .unwrap();
        assert!(r.files.is_empty());
    }
}
