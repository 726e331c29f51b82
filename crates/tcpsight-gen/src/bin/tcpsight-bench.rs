//! tcpsight-bench: the engine alone, without the CLI's outputs, for the benchmark's cost
//! breakdown and its exact concurrency figure.
//!
//! `tcpsight-bench [--stage read|decode|engine] FILE` reads FILE with tcpsight-io and
//! * `read`: only reads the frames (capture reader cost);
//! * `decode`: also decodes every frame (`tcpsight_core::decode::decode`);
//! * `engine` (default): feeds every frame to `Engine::process` with an observer that only
//!   counts, then `Engine::finish`.
//!
//! Prints one line of `key=value` pairs: frames, captured bytes, seconds spent in the loop,
//! frames per second, and (engine stage) connections reported and the peak number of
//! connections the engine held at once (`Engine::active`, sampled after every frame).

use std::process::ExitCode;
use std::time::Instant;

use tcpsight_core::{Config, ConnRecord, Engine, Observer};
use tcpsight_io::CaptureReader;

#[derive(Default)]
struct Count {
    connections: u64,
}

impl Observer for Count {
    fn on_connection(&mut self, r: &ConnRecord) {
        self.connections += 1;
        std::hint::black_box(r);
    }
}

fn main() -> ExitCode {
    let mut stage = "engine".to_string();
    let mut file = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--stage" => stage = it.next().unwrap_or_default(),
            s if s.starts_with("--stage=") => stage = s["--stage=".len()..].to_string(),
            "-h" | "--help" => {
                println!("usage: tcpsight-bench [--stage read|decode|engine] FILE");
                return ExitCode::SUCCESS;
            }
            _ => file = Some(a),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: tcpsight-bench [--stage read|decode|engine] FILE");
        return ExitCode::from(2);
    };
    if !matches!(stage.as_str(), "read" | "decode" | "engine") {
        eprintln!("tcpsight-bench: --stage must be read, decode or engine");
        return ExitCode::from(2);
    }
    let mut r = match CaptureReader::open(&file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tcpsight-bench: {e}");
            return ExitCode::from(1);
        }
    };

    let start = Instant::now();
    let (mut frames, mut bytes, mut tcp, mut peak) = (0u64, 0u64, 0u64, 0usize);
    let mut count = Count::default();
    let mut engine = Engine::new(Config::default());
    let mut result = Ok(true);
    match stage.as_str() {
        "read" => {
            while let Some(f) = r.current() {
                frames += 1;
                bytes += f.data.len() as u64;
                std::hint::black_box(f.data);
                result = r.advance();
                if !matches!(result, Ok(true)) {
                    break;
                }
            }
        }
        "decode" => {
            while let Some(f) = r.current() {
                frames += 1;
                bytes += f.data.len() as u64;
                if let Ok(tcpsight_core::decode::Decoded::Tcp(seg)) =
                    tcpsight_core::decode::decode(f.link, f.data, f.orig_len)
                {
                    tcp += 1;
                    std::hint::black_box(&seg);
                }
                result = r.advance();
                if !matches!(result, Ok(true)) {
                    break;
                }
            }
        }
        _ => {
            while let Some(f) = r.current() {
                frames += 1;
                bytes += f.data.len() as u64;
                engine.process(f.ts_ns, f.link, f.data, f.orig_len, &mut count);
                peak = peak.max(engine.active());
                result = r.advance();
                if !matches!(result, Ok(true)) {
                    break;
                }
            }
            tcp = engine.stats().tcp_packets;
            engine.finish(&mut count);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Err(e) = result {
        eprintln!("tcpsight-bench: {e}");
        return ExitCode::from(1);
    }
    println!(
        "stage={stage} frames={frames} bytes={bytes} tcp={tcp} seconds={secs:.4} fps={:.0} connections={} peak_active={peak}",
        frames as f64 / secs.max(1e-9),
        count.connections
    );
    ExitCode::SUCCESS
}
