//! `--format` for `--flows`: the CLI's names for tcpsight-export's line formats.

pub use tcpsight_export::lines::FlowWriter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowFormat {
    Jsonl,
    Csv,
}

impl FlowFormat {
    pub fn name(self) -> &'static str {
        match self {
            FlowFormat::Jsonl => "jsonl",
            FlowFormat::Csv => "csv",
        }
    }
}

impl From<FlowFormat> for tcpsight_export::lines::FlowFormat {
    fn from(f: FlowFormat) -> Self {
        match f {
            FlowFormat::Jsonl => tcpsight_export::lines::FlowFormat::Jsonl,
            FlowFormat::Csv => tcpsight_export::lines::FlowFormat::Csv,
        }
    }
}
