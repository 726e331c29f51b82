//! The network exports (IPFIX, ClickHouse) analyze and monitor share, one flattened
//! argument group so they cannot drift apart.

use clap::Args;
use tcpsight_export::RecordSink;

#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// Send every record as IPFIX (RFC 7011 biflows, UDP) to a collector at HOST:PORT
    /// (nfcapd, GoFlow2, ...): docs/export.md
    #[arg(long, value_name = "HOST:PORT", help_heading = "Export")]
    pub ipfix: Option<String>,
    /// Insert every record into ClickHouse over HTTP, in batches, e.g.
    /// http://host:8123/?table=tcpsight.connections (user and password from
    /// TCPSIGHT_CLICKHOUSE_USER / TCPSIGHT_CLICKHOUSE_PASSWORD): docs/export.md
    #[arg(long, value_name = "URL", help_heading = "Export")]
    pub clickhouse: Option<String>,
    /// Create the ClickHouse database and table first if they do not exist
    #[arg(long, requires = "clickhouse", help_heading = "Export")]
    pub clickhouse_create: bool,
    /// Records that wait for ClickHouse during an outage; beyond, they are dropped and
    /// counted
    #[arg(long, value_name = "N", default_value_t = tcpsight_export::clickhouse::DEFAULT_QUEUE, requires = "clickhouse", help_heading = "Export")]
    pub clickhouse_queue: usize,
    /// At the end, how long to wait for the network exports to deliver what is queued
    /// before counting it as lost
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        help_heading = "Export"
    )]
    pub export_wait: f64,
}

impl ExportArgs {
    /// The network exports the options ask for. `live`: a full queue drops and counts
    /// records rather than wait (a live capture must not stall on a slow database; a
    /// file loses nothing by waiting).
    pub fn open(&self, live: bool) -> Result<Vec<Box<dyn RecordSink + Send>>, String> {
        let wait = std::time::Duration::from_secs_f64(self.export_wait.clamp(0.0, 3600.0));
        let mut v: Vec<Box<dyn RecordSink + Send>> = Vec::new();
        if let Some(target) = &self.ipfix {
            let x = tcpsight_export::ipfix::IpfixExporter::udp(target, Default::default())
                .map_err(|e| format!("--ipfix {target}: {e}"))?
                .with_wait(wait);
            v.push(Box::new(x));
        }
        if let Some(url) = &self.clickhouse {
            let opts = tcpsight_export::clickhouse::ClickHouseOptions {
                queue: self.clickhouse_queue,
                create: self.clickhouse_create,
                wait_when_full: !live,
                ..Default::default()
            };
            let x = tcpsight_export::clickhouse::ClickHouseSink::new(url, opts)
                .map_err(|e| format!("--clickhouse {e}"))?
                .with_wait(wait);
            v.push(Box::new(x));
        }
        Ok(v)
    }
}
