//! Sinks: what the CLI does with the engine's findings.

pub mod dist;
pub mod filter;
pub mod flows;
pub mod summary;
pub mod table;
