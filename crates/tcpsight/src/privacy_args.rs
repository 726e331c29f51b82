//! The anonymization options every face that shows addresses shares (analyze, watch,
//! top, monitor), one flattened argument group so they cannot drift apart.

use clap::Args;
use tcpsight_anon::{Anonymizer, Net};

#[derive(Args, Clone, Debug, Default)]
pub struct PrivacyArgs {
    /// Anonymize every address in every output (records, logs, tables, bins, metrics
    /// labels, exports) with CryptoPAn under the 32-byte key in KEYFILE (raw, 64 hex
    /// digits or base64): prefix-preserving, the same mapping in every run with the same
    /// key (docs/export.md). Filters and --local still name real addresses
    #[arg(long, value_name = "KEYFILE", help_heading = "Privacy")]
    pub anonymize: Option<String>,
    /// Anonymize only addresses in these blocks (comma-separated, 10.0.0.0/8,2001:db8::/32)
    #[arg(
        long,
        value_name = "NETS",
        requires = "anonymize",
        help_heading = "Privacy"
    )]
    pub anonymize_only: Option<String>,
    /// Never anonymize addresses in these blocks
    #[arg(
        long,
        value_name = "NETS",
        requires = "anonymize",
        help_heading = "Privacy"
    )]
    pub keep_clear: Option<String>,
    /// Also replace host names (SNI, HTTP Host, DNS names) by a keyed hash
    #[arg(long, requires = "anonymize", help_heading = "Privacy")]
    pub anonymize_names: bool,
}

impl PrivacyArgs {
    /// The anonymizer the options ask for.
    pub fn anonymizer(&self) -> Result<Option<Anonymizer>, String> {
        let Some(path) = &self.anonymize else {
            return Ok(None);
        };
        let key = tcpsight_anon::load_key(path)?;
        let nets = |s: &Option<String>| s.as_deref().map(Net::parse_list).unwrap_or(Ok(Vec::new()));
        Ok(Some(
            Anonymizer::new(&key)
                .only(nets(&self.anonymize_only)?)
                .keep_clear(nets(&self.keep_clear)?)
                .with_names(self.anonymize_names),
        ))
    }
}
