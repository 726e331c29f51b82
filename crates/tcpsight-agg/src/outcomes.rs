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
}

impl Outcomes {
    pub fn add(&mut self, r: &ConnRecord) {
        self.connections += 1;
        *self.by_outcome.entry(r.outcome).or_insert(0) += 1;
        if r.outcome == Outcome::Established {
            if r.syn_count > 1 {
                self.dup_syn += 1;
            }
            if r.synack_count > 1 {
                self.dup_synack += 1;
            }
        }
    }

    /// Adds `other`'s totals.
    pub fn merge(&mut self, other: &Outcomes) {
        self.connections += other.connections;
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
