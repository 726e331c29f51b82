//! One plot per histogram of `--histograms` (`--histogram-plots DIR`): the buckets as
//! bars over a logarithmic axis, so the exponential buckets are of equal width. SVG or
//! PNG, drawn with plotters; the font is probe's vendored DejaVu Sans, compiled in, so
//! every machine draws the same thing.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use tcpsight_agg::ExpHistogram;
use tcpsight_agg::recordhist::Quantity;

static FONT: &[u8] = include_bytes!("../../../tcpsight-probe/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// How the axis shows a unit: times in ms, the rest as they are.
fn scale(unit: &str) -> (f64, &'static str) {
    match unit {
        "ns" => (1e-6, "ms"),
        "bytes" => (1.0, "bytes"),
        _ => (1.0, "ppm"),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws `h` into `dir/NAME.svg` (or `.png`); returns the path.
pub fn plot(dir: &Path, q: &Quantity, h: &ExpHistogram, svg: bool) -> Result<PathBuf, String> {
    register_font();
    let path = dir.join(format!("{}.{}", q.name, if svg { "svg" } else { "png" }));
    let size = (900, 500);
    let res = if svg {
        draw(SVGBackend::new(&path, size).into_drawing_area(), q, h)
    } else {
        draw(BitMapBackend::new(&path, size).into_drawing_area(), q, h)
    };
    res.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    q: &Quantity,
    h: &ExpHistogram,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let (k, unit) = scale(q.unit);
    let bars: Vec<(f64, f64, u64)> = h
        .nonempty_buckets()
        .map(|(lo, hi, c)| (lo * k, hi * k, c))
        .collect();
    let pct = |p: f64| {
        h.quantile(p)
            .map_or("-".to_string(), |v| format!("{:.3}", v * k))
    };
    let title = format!(
        "{} ({unit}): {} values, {} zero; p50 {} p95 {} p99 {}",
        q.name,
        h.count(),
        h.zero_count(),
        pct(0.5),
        pct(0.95),
        pct(0.99)
    );
    let (xlo, xhi) = match (bars.first(), bars.last()) {
        (Some(a), Some(b)) => (a.0, b.1),
        _ => (k, 10.0 * k),
    };
    let ymax = bars.iter().map(|b| b.2).max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xlo..xhi).log_scale(), 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} ({unit}, logarithmic)", q.name))
        .x_labels(12)
        .x_label_formatter(&|v| {
            let t = format!("{v:.3}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .light_line_style(WHITE)
        .y_desc("count")
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().map(|(lo, hi, c)| {
            Rectangle::new([(*lo, 0.0), (*hi, *c as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(err)?;
    root.present().map_err(err)
}
