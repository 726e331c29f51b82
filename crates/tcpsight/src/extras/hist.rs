//! `analyze --histograms FILE` (and `--histogram-plots DIR`): the record's main
//! quantities over the whole run as exponential histograms (tcpsight-agg's
//! `RecordHistograms`), one JSON document, optionally one plot per quantity.

use std::path::PathBuf;

use tcpsight_agg::RecordHistograms;
use tcpsight_core::{ConnRecord, ExchangeEvent};

pub struct Histograms {
    hists: RecordHistograms,
    path: Option<String>,
    plots: Option<(PathBuf, bool)>,
}

impl Histograms {
    pub fn new(path: Option<String>, plots: Option<(PathBuf, bool)>) -> Histograms {
        Histograms {
            hists: RecordHistograms::default(),
            path,
            plots,
        }
    }

    pub fn on_connection(&mut self, r: &ConnRecord) {
        self.hists.on_connection(r);
    }

    pub fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.hists.on_exchange(e);
    }

    /// Writes the document and the plots.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(path) = &self.path {
            let doc = serde_json::json!({
                "bucket_layout": "exponential (OpenTelemetry / Prometheus native): bucket offset+i holds values in (base^(offset+i), base^(offset+i+1)], base = 2^(2^-scale); zero counts zeros",
                "histograms": self.hists.to_json(),
            });
            let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            text.push('\n');
            let r = if path == "-" {
                use std::io::Write;
                std::io::stdout().write_all(text.as_bytes())
            } else {
                std::fs::write(path, text)
            };
            if let Err(e) = r
                && !crate::pipe::is_broken(&e)
            {
                return Err(format!("--histograms {path}: {e}"));
            }
        }
        if let Some((dir, svg)) = &self.plots {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--histogram-plots {}: {e}", dir.display()))?;
            for (q, h) in self.hists.iter() {
                super::histplot::plot(dir, q, h, *svg)?;
            }
        }
        Ok(())
    }
}
