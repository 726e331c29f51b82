//! `tcpsight analyze`: capture files in, summary + per-destination table (+ flows) out.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tcpsight_core::{Config, ConnRecord, Engine, ExchangeEvent, Observer};
use tcpsight_io::{CaptureReader, FileFormat, MergedReader, ReadError};

use crate::output::flows::{FlowFormat, FlowWriter};
use crate::output::summary::{self, InputInfo, Outcomes};
use crate::output::table::{self, DestinationTable, GroupBy, SortBy};

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, optionally gzip/zstd); several are merged in time order
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Write one record per connection to FILE (- for stdout)
    #[arg(long, value_name = "FILE")]
    flows: Option<String>,
    /// Format of --flows
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FlowFormat,
    /// Print the summary and table as one JSON document
    #[arg(long)]
    json: bool,
    /// Table rows: per server address, or per address and port
    #[arg(long, value_enum, default_value = "host")]
    group_by: GroupBy,
    /// Sort the table by this column (descending; --reverse for ascending)
    #[arg(long, value_enum, default_value = "syn")]
    sort: SortBy,
    /// Reverse the sort order
    #[arg(long)]
    reverse: bool,
    /// Rows in the table (0 = all)
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Seconds (capture time) after the first SYN before an unanswered handshake times out
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    handshake_timeout: f64,
    /// Seconds (capture time) of silence after which an open connection is reported and forgotten
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    idle_timeout: f64,
    /// Never show a progress bar
    #[arg(long)]
    no_progress: bool,
}

struct Sinks<W: Write> {
    flows: Option<FlowWriter<W>>,
    flow_error: Option<io::Error>,
    table: DestinationTable,
    outcomes: Outcomes,
}

impl<W: Write> Observer for Sinks<W> {
    fn on_exchange(&mut self, e: &ExchangeEvent) {
        self.table.on_exchange(e);
    }

    fn on_connection(&mut self, r: &ConnRecord) {
        self.outcomes.add(r);
        self.table.on_connection(r);
        if let Some(w) = self.flows.as_mut()
            && self.flow_error.is_none()
            && let Err(e) = w.write(r)
        {
            self.flow_error = Some(e);
        }
    }
}

fn seconds(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

pub fn run(args: AnalyzeArgs) -> ExitCode {
    let mut errors: Vec<ReadError> = Vec::new();
    let mut readers = Vec::new();
    for f in &args.files {
        match CaptureReader::open(f) {
            Ok(r)
                if !r.link_types().is_empty()
                    && r.link_types().iter().all(|l| !l.is_supported()) =>
            {
                let names: Vec<String> = r.link_types().iter().map(|l| l.name()).collect();
                let e = ReadError::new(
                    f,
                    None,
                    format!(
                        "link type {} not supported (supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, IPV4, IPV6, NULL, LOOP)",
                        names.join(", ")
                    ),
                );
                eprintln!("tcpsight: {e}");
                errors.push(e);
            }
            Ok(r) => readers.push(r),
            Err(e) => {
                eprintln!("tcpsight: {e}");
                errors.push(e);
            }
        }
    }
    if readers.is_empty() {
        return ExitCode::from(2);
    }
    let ts_digits = readers.iter().map(|r| r.ts_digits()).max().unwrap_or(6);
    let formats: Vec<String> = readers
        .iter()
        .map(|r| {
            let f = match r.format() {
                FileFormat::Pcap => "pcap",
                FileFormat::PcapNg => "pcapng",
            };
            match r.compression() {
                "none" => f.to_string(),
                c => format!("{f}+{c}"),
            }
        })
        .collect();
    let total_size: u64 = readers.iter().filter_map(|r| r.size()).sum();

    let flow_out: Option<Box<dyn Write>> = match args.flows.as_deref() {
        None => None,
        Some("-") => Some(Box::new(io::stdout().lock())),
        Some(path) => match File::create(path) {
            Ok(f) => Some(Box::new(f)),
            Err(e) => {
                eprintln!("tcpsight: {path}: cannot create flows file: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let flows_to_stdout = args.flows.as_deref() == Some("-");
    let mut sinks = Sinks {
        flows: flow_out
            .map(|w| FlowWriter::new(BufWriter::with_capacity(1 << 16, w), args.format, ts_digits)),
        flow_error: None,
        table: DestinationTable::new(args.group_by),
        outcomes: Outcomes::default(),
    };
    let cfg = Config {
        handshake_timeout_ns: seconds(args.handshake_timeout),
        idle_timeout_ns: seconds(args.idle_timeout),
        ..Config::default()
    };
    let mut engine = Engine::new(cfg);

    let progress =
        (!args.no_progress && io::stderr().is_terminal() && total_size > 32 << 20).then(|| {
            let pb = ProgressBar::new(total_size);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bar:40} {percent}% {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        });

    let mut merged = MergedReader::new(readers);
    let mut n: u64 = 0;
    while let Some(f) = merged.next_frame() {
        engine.process(f.ts_ns, f.link, f.data, f.orig_len, &mut sinks);
        n += 1;
        if n & 0xffff == 0
            && let Some(pb) = &progress
        {
            pb.set_position(merged.readers().iter().map(|r| r.raw_bytes_read()).sum());
        }
    }
    engine.finish(&mut sinks);
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    for e in &merged.errors {
        eprintln!("tcpsight: {e} (everything before it was analysed)");
    }
    errors.extend(merged.errors.iter().cloned());

    if let Some(w) = sinks.flows.as_mut()
        && sinks.flow_error.is_none()
        && let Err(e) = w.flush()
    {
        sinks.flow_error = Some(e);
    }
    if let Some(e) = &sinks.flow_error {
        eprintln!("tcpsight: writing flows: {e}");
        return ExitCode::from(2);
    }

    let input = InputInfo {
        files: args.files.clone(),
        formats,
        ts_digits,
    };
    let st = engine.stats();
    let span_s = match (st.first_ns, st.last_ns) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let rows = sinks.table.rows(span_s, args.sort, args.reverse);
    // With flows on stdout, the report goes to stderr so the two never mix.
    let mut report: Box<dyn Write> = if flows_to_stdout {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let text = if args.json {
        let mut doc = summary::to_json(&input, &st, &sinks.outcomes);
        doc["destinations"] = table::to_json(&rows, args.limit);
        doc["errors"] =
            serde_json::Value::from(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else {
        let mut t = summary::render(&input, &st, &sinks.outcomes);
        if !rows.is_empty() {
            t.push_str("\nDestinations\n");
            t.push_str(&table::render(&rows, args.limit));
        }
        t
    };
    if report
        .write_all(text.as_bytes())
        .and_then(|_| report.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
