//! The live-capture options watch, top and capture share, one flattened argument group
//! so they cannot drift apart: ring size, promiscuous mode, snap length, and the user to
//! drop privileges to once the ring is open.

use clap::Args;
use tcpsight_bpf::Program;
use tcpsight_live::LiveOptions;

#[derive(Args, Clone, Debug)]
pub struct LiveArgs {
    /// Kernel ring size in MB, whole 4 MB blocks, at most 4096 (live). MB, not
    /// tcpdump's KiB: `-B 4096` is 4 GB here, the largest accepted
    #[arg(
        short = 'B',
        long = "buffer",
        default_value_t = 64,
        value_name = "MB",
        value_parser = clap::value_parser!(u32).range(1..=4096),
        help_heading = "Live capture"
    )]
    pub buffer_mb: u32,
    /// Put the interface in promiscuous mode (live). Off by default, unlike tcpdump
    #[arg(long, help_heading = "Live capture")]
    pub promisc: bool,
    /// Do not put the interface in promiscuous mode: tcpdump's -p, accepted for tcpdump
    /// habits (it is the default here)
    #[arg(
        short = 'p',
        long = "no-promisc",
        conflicts_with = "promisc",
        help_heading = "Live capture"
    )]
    pub no_promisc: bool,
    /// Drop privileges to this user once the ring (and any socket or file) is open (live)
    #[arg(long, value_name = "NAME", help_heading = "Live capture")]
    pub user: Option<String>,
    /// Bytes kept of each frame (live); 96 is plenty for TCP/IP headers
    #[arg(
        short = 's',
        long,
        default_value_t = tcpsight_live::MAX_SNAPLEN,
        value_name = "BYTES",
        help_heading = "Live capture"
    )]
    pub snaplen: u32,
    /// Keep copies of a packet seen on two interfaces (`-i any` on a host with a bridge
    /// and its ports, or a router): by default each is counted once and the copies are
    /// reported as dropped (live)
    #[arg(long, help_heading = "Live capture")]
    pub keep_copies: bool,
}

/// Several `-i` options as one interface name for tcpsight_live (`eth0,eth1`).
pub fn joined(interfaces: &[String]) -> Option<String> {
    (!interfaces.is_empty()).then(|| interfaces.join(","))
}

impl LiveArgs {
    /// The ring's options with `filter` compiled for this snap length.
    pub fn options(&self, filter: Option<Program>) -> LiveOptions {
        LiveOptions {
            snaplen: self.snaplen,
            buffer_mb: self.buffer_mb,
            promisc: self.promisc,
            filter,
            drop_copies: !self.keep_copies,
            ..LiveOptions::default()
        }
    }

    /// Drops privileges if `--user` was given (after the ring is open).
    pub fn drop_privileges(&self) -> Result<(), String> {
        match &self.user {
            Some(u) => tcpsight_live::drop_privileges(u),
            None => Ok(()),
        }
    }
}
