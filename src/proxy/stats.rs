//! Counters of what the proxy did, for the fault timeline.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every connection of a link.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) cut: AtomicU64,
    pub(crate) bytes_forwarded: AtomicU64,
    pub(crate) bytes_delayed: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct StatsSnapshot {
    /// Connections accepted and forwarded.
    pub accepted: u64,
    /// Connections refused while the link was down.
    pub refused: u64,
    /// Connections cut (a `cut` fault, `limit_data`, `confirm-lost`).
    pub cut: u64,
    /// Bytes forwarded in both directions.
    pub bytes_forwarded: u64,
    /// Bytes held back by latency or bandwidth faults.
    pub bytes_delayed: u64,
    /// Protocol frames that never reached their destination (lost confirms).
    pub frames_dropped: u64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            cut: get(&self.cut),
            bytes_forwarded: get(&self.bytes_forwarded),
            bytes_delayed: get(&self.bytes_delayed),
            frames_dropped: get(&self.frames_dropped),
        }
    }
}

impl StatsSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted - earlier.accepted,
            refused: self.refused - earlier.refused,
            cut: self.cut - earlier.cut,
            bytes_forwarded: self.bytes_forwarded - earlier.bytes_forwarded,
            bytes_delayed: self.bytes_delayed - earlier.bytes_delayed,
            frames_dropped: self.frames_dropped - earlier.frames_dropped,
        }
    }
}
