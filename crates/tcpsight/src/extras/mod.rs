//! `analyze`'s outputs beyond the connection records and the table (issue 16): UDP
//! flows, histograms of the record's quantities. Each is an observer of its own, composed here, so `analyze.rs` only flattens
//! [`ExtraArgs`] and passes [`Extras`] beside its sinks.

mod hist;
mod histplot;
mod udp;

use clap::Args;
use tcpsight_core::{ConnRecord, Datagram, ExchangeEvent, Observer};
use tcpsight_pipeline::Tap;

#[derive(Args)]
pub struct ExtraArgs {
    /// Write one record per UDP flow to FILE (JSON Lines, or CSV / Parquet by name; -
    /// for stdout): 5-tuple, packets, bytes and times per direction, protocol guess
    /// (docs/fields.md, "UDP flows"). Implies --udp
    #[arg(long, value_name = "FILE", help_heading = "UDP flows")]
    udp_flows: Option<String>,
    /// Track UDP flows and count them (QUIC among them) in the summary
    #[arg(long, help_heading = "UDP flows")]
    udp: bool,
    /// Seconds (capture time) without a datagram either way after which a UDP flow ends
    #[arg(
        long,
        default_value_t = 200.0,
        value_name = "SECONDS",
        help_heading = "UDP flows"
    )]
    udp_idle_timeout: f64,
    /// Most UDP flows tracked at once (about 100 bytes each); past it the one closest
    /// to expiring ends early and is counted as evicted
    #[arg(
        long,
        default_value_t = 1_000_000,
        value_name = "N",
        help_heading = "UDP flows"
    )]
    udp_max_flows: usize,

    /// Write histograms of connect time, response time, RTT, duration, client and
    /// server bytes and retransmission rate over every connection to FILE (JSON:
    /// exponential buckets with their bounds and counts; - for stdout)
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Histograms and periodic output"
    )]
    histograms: Option<String>,
    /// Also draw each histogram into DIR (one file per quantity)
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Histograms and periodic output"
    )]
    histogram_plots: Option<std::path::PathBuf>,
    /// Format of --histogram-plots
    #[arg(
        long,
        value_enum,
        default_value = "svg",
        requires = "histogram_plots",
        help_heading = "Histograms and periodic output"
    )]
    plot_format: PlotFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlotFormat {
    Svg,
    Png,
}

impl ExtraArgs {
    fn to_stdout(&self) -> bool {
        [&self.udp_flows, &self.histograms]
            .iter()
            .any(|p| p.as_deref() == Some("-"))
    }
}

/// The extra outputs a run asked for.
pub struct Extras {
    udp: Option<udp::UdpFlows>,
    hist: Option<hist::Histograms>,
    to_stdout: bool,
}

impl Extras {
    pub fn open(args: &ExtraArgs) -> Result<Extras, String> {
        let udp = if args.udp || args.udp_flows.is_some() {
            let cfg = tcpsight_udp::UdpConfig {
                idle_timeout_ns: (args.udp_idle_timeout.max(0.0) * 1e9) as u64,
                max_flows: args.udp_max_flows,
            };
            Some(udp::UdpFlows::open(args.udp_flows.as_deref(), cfg)?)
        } else {
            None
        };
        let hist = (args.histograms.is_some() || args.histogram_plots.is_some()).then(|| {
            hist::Histograms::new(
                args.histograms.clone(),
                args.histogram_plots
                    .clone()
                    .map(|d| (d, args.plot_format == PlotFormat::Svg)),
            )
        });
        Ok(Extras {
            udp,
            hist,
            to_stdout: args.to_stdout(),
        })
    }

    /// Whether the engine must deliver UDP datagrams (`Config::datagrams`).
    pub fn wants_datagrams(&self) -> bool {
        self.udp.is_some()
    }

    /// Whether an extra output goes to stdout (the report then goes to stderr).
    pub fn to_stdout(&self) -> bool {
        self.to_stdout
    }

    /// End of input: what is still open is written, files completed.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(u) = self.udp.as_mut() {
            u.finish()?;
        }
        if let Some(h) = self.hist.as_mut() {
            h.finish()?;
        }
        Ok(())
    }

    /// The text report's extra sections.
    pub fn render(&self) -> String {
        let mut t = String::new();
        if let Some(u) = &self.udp {
            t.push_str(&u.render());
        }
        t
    }

    /// The `--json` document's extra members.
    pub fn json(&self, doc: &mut serde_json::Value) {
        if let Some(u) = &self.udp {
            doc["udp"] = u.json();
        }
    }
}

impl Observer for Extras {
    fn on_connection(&mut self, r: &ConnRecord) {
        if let Some(h) = self.hist.as_mut() {
            h.on_connection(r);
        }
    }

    fn on_exchange(&mut self, e: &ExchangeEvent) {
        if let Some(h) = self.hist.as_mut() {
            h.on_exchange(e);
        }
    }

    fn on_datagram(&mut self, d: &Datagram) {
        if let Some(u) = self.udp.as_mut() {
            u.on_datagram(d);
        }
    }
}

impl Tap for Extras {}
