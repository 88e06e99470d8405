//! Pure promotion decisions: given registry, Git and forge state as plain values, which
//! gates hold a promotion PR back. No I/O in this module; it is tested with plain values.

pub mod base_rules;
pub mod gates;
pub mod group;
pub mod plan;
pub mod policy;
pub mod state;

pub use base_rules::BaseRules;
pub use gates::{Context, Evaluation, Gate, GateResult, Verdict, evaluate};
