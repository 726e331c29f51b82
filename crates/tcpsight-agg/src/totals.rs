//! tcpeek's per-filter handshake totals (`tcpsight watch` and its stats socket).

use serde_json::{Value, json};
use tcpsight_core::{HandshakeEvent, Outcome};

/// Handshake totals of one filter.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub success: u64,
    pub dup_syn: u64,
    pub dup_synack: u64,
    pub timeout: u64,
    pub reject: u64,
    pub unreach: u64,
    pub pending: u64,
}

impl Totals {
    /// Counts a decided handshake as tcpeek does: a success (with its duplicate SYNs and
    /// SYN/ACKs), a timeout, a rejection or an ICMP unreachable.
    pub fn count(&mut self, e: &HandshakeEvent) {
        match e.outcome {
            Outcome::Established => {
                self.success += 1;
                self.dup_syn += (e.syn_count > 1) as u64;
                self.dup_synack += (e.synack_count > 1) as u64;
            }
            Outcome::Timeout => self.timeout += 1,
            Outcome::Rejected => self.reject += 1,
            Outcome::Unreachable => self.unreach += 1,
            _ => {}
        }
    }

    /// Adds `o`'s totals.
    pub fn merge(&mut self, o: &Totals) {
        self.success += o.success;
        self.dup_syn += o.dup_syn;
        self.dup_synack += o.dup_synack;
        self.timeout += o.timeout;
        self.reject += o.reject;
        self.unreach += o.unreach;
        self.pending += o.pending;
    }

    /// What was counted since `o` (an earlier snapshot of the same totals), each figure
    /// at least 0.
    pub fn minus(&self, o: &Totals) -> Totals {
        Totals {
            success: self.success.saturating_sub(o.success),
            dup_syn: self.dup_syn.saturating_sub(o.dup_syn),
            dup_synack: self.dup_synack.saturating_sub(o.dup_synack),
            timeout: self.timeout.saturating_sub(o.timeout),
            reject: self.reject.saturating_sub(o.reject),
            unreach: self.unreach.saturating_sub(o.unreach),
            pending: self.pending.saturating_sub(o.pending),
        }
    }

    /// The stats socket's (tcpeek's) JSON for filter `name`. It lives here, not with the
    /// CLI's other rendering, only because callers use it as a method.
    pub fn to_json(self, name: &str) -> Value {
        json!({
            "filter": name,
            "success": {"total": self.success, "dupsyn": self.dup_syn, "dupsynack": self.dup_synack},
            "failure": {"total": self.timeout + self.reject + self.unreach, "timeout": self.timeout, "reject": self.reject, "unreach": self.unreach},
            "pending": self.pending,
        })
    }
}
