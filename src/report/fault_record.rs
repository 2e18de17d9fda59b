//! What the report keeps of faults: the running [`Tally`] of ledger events
//! (to show what a fault changed) and one [`FaultRecord`] per occurrence.
//! The fault driver (`src/runner/faults.rs`) fills them; renderers read them.

use crate::proxy::StatsSnapshot;
use serde::{Deserialize, Serialize};

/// Running totals of what workers reported, to show what a fault changed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Tally {
    /// Publish attempts.
    pub published: u64,
    /// Confirms.
    pub confirmed: u64,
    /// Nacks.
    pub nacked: u64,
    /// Attempts in doubt.
    pub in_doubt: u64,
    /// Deliveries.
    pub delivered: u64,
    /// Redeliveries.
    pub redelivered: u64,
    /// Acks.
    pub acked: u64,
}

impl Tally {
    /// What was added between `e` and `self`.
    pub fn since(&self, e: &Tally) -> Tally {
        Tally {
            published: self.published - e.published,
            confirmed: self.confirmed - e.confirmed,
            nacked: self.nacked - e.nacked,
            in_doubt: self.in_doubt - e.in_doubt,
            delivered: self.delivered - e.delivered,
            redelivered: self.redelivered - e.redelivered,
            acked: self.acked - e.acked,
        }
    }
}

/// One occurrence of a fault in the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultRecord {
    /// Index of the fault in the scenario.
    pub fault: usize,
    /// The fault, in words.
    pub description: String,
    /// Which occurrence (0 is the first).
    pub occurrence: u64,
    /// The trigger that was reached.
    pub trigger: String,
    /// Whether the seed let it fire.
    pub fired: bool,
    /// When it started, ms after the run started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// What the proxy did meanwhile (network faults).
    pub effect: Option<StatsSnapshot>,
    /// What the workers reported while it was active.
    pub during: Option<Tally>,
    /// What they reported from its end to the end of the run.
    pub after: Option<Tally>,
    /// A problem applying or ending it.
    pub note: Option<String>,
    /// Broker process faults: messages ready in the run's queue just before
    /// it fired (the backlog the fault put at risk), as the broker said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// The cluster member the occurrence aimed at, as resolved when it
    /// fired (`node 2 (dlab-5001@h3), the leader`); for a partition, the
    /// links it cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aimed_at: Option<String>,
}
