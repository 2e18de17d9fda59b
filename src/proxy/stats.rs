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
    pub(crate) bytes_zero_copy: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) starttls_stripped: AtomicU64,
    pub(crate) intercepted: AtomicU64,
    pub(crate) impostor_refused: AtomicU64,
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
    /// Of `bytes_forwarded`, those that went socket to socket without being
    /// copied through the proxy (nothing needed to see them).
    #[serde(default)]
    pub bytes_zero_copy: u64,
    /// Protocol frames that never reached their destination (lost confirms).
    pub frames_dropped: u64,
    /// EHLO replies whose STARTTLS offer was removed (`starttls-strip`).
    #[serde(default)]
    pub starttls_stripped: u64,
    /// Handshakes the man in the middle completed with a client
    /// (`mitm-certificate`, `certificate-expired`); a client that checks the
    /// certificate after the handshake, as Postfix does, may still hang up.
    #[serde(default)]
    pub intercepted: u64,
    /// Handshakes in which the client refused the man in the middle's certificate.
    #[serde(default)]
    pub impostor_refused: u64,
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
            bytes_zero_copy: get(&self.bytes_zero_copy),
            frames_dropped: get(&self.frames_dropped),
            starttls_stripped: get(&self.starttls_stripped),
            intercepted: get(&self.intercepted),
            impostor_refused: get(&self.impostor_refused),
        }
    }
}

impl StatsSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        self.zip(earlier, |a, b| a - b)
    }

    /// Both counts added up (two links).
    pub fn plus(&self, other: &StatsSnapshot) -> StatsSnapshot {
        self.zip(other, |a, b| a + b)
    }

    fn zip(&self, o: &StatsSnapshot, f: impl Fn(u64, u64) -> u64) -> StatsSnapshot {
        StatsSnapshot {
            accepted: f(self.accepted, o.accepted),
            refused: f(self.refused, o.refused),
            cut: f(self.cut, o.cut),
            bytes_forwarded: f(self.bytes_forwarded, o.bytes_forwarded),
            bytes_delayed: f(self.bytes_delayed, o.bytes_delayed),
            bytes_zero_copy: f(self.bytes_zero_copy, o.bytes_zero_copy),
            frames_dropped: f(self.frames_dropped, o.frames_dropped),
            starttls_stripped: f(self.starttls_stripped, o.starttls_stripped),
            intercepted: f(self.intercepted, o.intercepted),
            impostor_refused: f(self.impostor_refused, o.impostor_refused),
        }
    }
}
