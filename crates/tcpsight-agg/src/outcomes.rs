//! Handshake outcome totals of finished connections (`tcpsight analyze`'s summary).

use std::collections::BTreeMap;

use tcpsight_core::{ConnRecord, Outcome};

/// Outcome totals with tcpeek's duplicate counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub by_outcome: BTreeMap<Outcome, u64>,
    /// Established connections that needed more than one SYN / SYN-ACK.
    pub dup_syn: u64,
    pub dup_synack: u64,
    pub connections: u64,
    /// Connections seen through a control-only capture (the record's `control_only`).
    pub control_only: u64,
}

impl Outcomes {
    pub fn add(&mut self, r: &ConnRecord) {
        self.connections += 1;
        self.control_only += r.control_only as u64;
        *self.by_outcome.entry(r.outcome).or_insert(0) += 1;
        // Duplicates as the handshake's event counted them (tcpeek's definition, the
        // one watch uses): SYN/ACKs the server repeated after the handshake completed at
        // the capture point are in `synack_count`, not here.
        if r.outcome == Outcome::Established
            && let Some((syns, synacks)) = r.counts_at_decision
        {
            self.dup_syn += (syns > 1) as u64;
            self.dup_synack += (synacks > 1) as u64;
        }
    }

    /// Adds `other`'s totals.
    pub fn merge(&mut self, other: &Outcomes) {
        self.connections += other.connections;
        self.control_only += other.control_only;
        self.dup_syn += other.dup_syn;
        self.dup_synack += other.dup_synack;
        for (o, n) in &other.by_outcome {
            *self.by_outcome.entry(*o).or_insert(0) += n;
        }
    }

    /// Connections with outcome `o`.
    pub fn get(&self, o: Outcome) -> u64 {
        self.by_outcome.get(&o).copied().unwrap_or(0)
    }
}
