//! The push part of a result: what the consumers' calls to the gateway came
//! to, what the gateway counted itself, and its access log recounted beside
//! the effect store (the independent count of the push hop).

use crate::push::access_log::{Outcome, Recount};
use crate::push::client::CallEvent;
use crate::push::gateway::GatewayStats;
use crate::push::keys::KeyStore;
use crate::scenario::PushPlan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the consumers saw of their calls, from their `P` events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PushCalls {
    /// Requests sent (every attempt).
    pub attempts: u64,
    /// 2xx for a first request: a notification shown.
    pub shown: u64,
    /// 2xx replaying an earlier response to the same key.
    pub replayed: u64,
    /// 409: the key's first request still running.
    pub status_409: u64,
    /// 429 Too Many Requests.
    pub status_429: u64,
    /// 503 Service Unavailable.
    pub status_503: u64,
    /// Any other non-2xx status.
    pub status_other: u64,
    /// No response within the timeout.
    pub timeouts: u64,
    /// Connection refused, reset or closed before a whole response.
    pub failed: u64,
    /// Waits of the client's own backoff before a retry.
    pub backoff_waits: u64,
    /// Their total, ms.
    pub backoff_ms: u64,
    /// Waits the gateway asked for with `Retry-After`.
    pub retry_after_waits: u64,
    /// Their total, ms.
    pub retry_after_ms: u64,
    /// Messages whose calls the consumer gave up (its policy calls once, or
    /// the attempts ran out).
    pub gave_up: u64,
}

impl PushCalls {
    /// Counts one event.
    pub fn count(&mut self, e: CallEvent) {
        match e {
            CallEvent::Shown => self.shown += 1,
            CallEvent::Replayed => self.replayed += 1,
            CallEvent::Status(409) => self.status_409 += 1,
            CallEvent::Status(429) => self.status_429 += 1,
            CallEvent::Status(503) => self.status_503 += 1,
            CallEvent::Status(_) => self.status_other += 1,
            CallEvent::Timeout => self.timeouts += 1,
            CallEvent::Failed => self.failed += 1,
            CallEvent::RetryAfter(ms) => {
                self.retry_after_waits += 1;
                self.retry_after_ms += ms;
            }
            CallEvent::Backoff(ms) => {
                self.backoff_waits += 1;
                self.backoff_ms += ms;
            }
            CallEvent::GaveUp => self.gave_up += 1,
        }
        if matches!(
            e,
            CallEvent::Shown
                | CallEvent::Replayed
                | CallEvent::Status(_)
                | CallEvent::Timeout
                | CallEvent::Failed
        ) {
            self.attempts += 1;
        }
    }

    /// Attempts after a first one: every wait precedes one.
    pub fn retries(&self) -> u64 {
        self.backoff_waits + self.retry_after_waits
    }
}

/// The gateway's access log, read back line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccessLogCount {
    /// Lines (requests).
    pub requests: u64,
    /// Requests that committed an effect.
    pub applied: u64,
    /// Requests answered with an earlier response to their key.
    pub replayed: u64,
    /// Requests refused with 409 (the key's first request still running).
    pub in_flight: u64,
    /// Requests refused with 503 by a fault.
    pub unavailable: u64,
    /// Requests refused with 429 by a fault.
    pub throttled: u64,
    /// Requests that were not push requests.
    pub bad_request: u64,
    /// Requests whose effect could not be stored (500).
    pub error: u64,
    /// Distinct message IDs with an applied line.
    pub distinct_applied: u64,
    /// Applied lines beyond the first per message ID: phones that buzzed twice.
    pub duplicates: u64,
    /// Lines per status code.
    pub by_status: BTreeMap<String, u64>,
    /// Lines that could not be read.
    pub malformed: u64,
}

impl From<&Recount> for AccessLogCount {
    fn from(r: &Recount) -> Self {
        AccessLogCount {
            requests: r.requests,
            applied: r.count(Outcome::Applied),
            replayed: r.count(Outcome::Replayed),
            in_flight: r.count(Outcome::InFlight),
            unavailable: r.count(Outcome::Unavailable),
            throttled: r.count(Outcome::Throttled),
            bad_request: r.count(Outcome::BadRequest),
            error: r.count(Outcome::Error),
            distinct_applied: r.distinct_applied(),
            duplicates: r.duplicates(),
            by_status: r
                .by_status
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            malformed: r.malformed,
        }
    }
}

/// The push hop of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PushReport {
    /// How long a consumer waited for one response, ms.
    pub timeout_ms: u64,
    /// How long the gateway remembered a key, ms.
    pub key_ttl_ms: u64,
    /// Where it kept them: memory or disk.
    pub key_store: String,
    /// What the consumers saw.
    pub calls: PushCalls,
    /// What the gateway counted itself.
    pub gateway: GatewayStats,
    /// The gateway's access log, recounted.
    pub access_log: Option<AccessLogCount>,
    /// Why the access log could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_missing: Option<String>,
    /// The access log's file.
    pub access_log_path: String,
    /// Effect rows in the effect store (the SQL recount), for comparison.
    pub effect_rows: u64,
}

impl PushReport {
    /// Puts the three accounts side by side.
    pub fn new(
        plan: &PushPlan,
        calls: PushCalls,
        gateway: GatewayStats,
        log: Result<Recount, String>,
        access_log_path: String,
        effect_rows: u64,
    ) -> PushReport {
        let (access_log, access_log_missing) = match log {
            Ok(r) => (Some(AccessLogCount::from(&r)), None),
            Err(e) => (None, Some(e)),
        };
        PushReport {
            timeout_ms: plan.timeout.as_millis() as u64,
            key_ttl_ms: plan.key_ttl.as_millis() as u64,
            key_store: match plan.key_store {
                KeyStore::Memory => "memory",
                KeyStore::Disk => "disk",
            }
            .to_string(),
            calls,
            gateway,
            access_log,
            access_log_missing,
            access_log_path,
            effect_rows,
        }
    }

    /// Whether the access log's applied lines equal the effect store's rows
    /// (None when the log could not be read).
    pub fn log_agrees(&self) -> Option<bool> {
        self.access_log
            .as_ref()
            .map(|l| l.applied == self.effect_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attempt_counts_once_and_every_wait_is_a_retry() {
        let mut c = PushCalls::default();
        for e in [
            CallEvent::Timeout,
            CallEvent::Backoff(50),
            CallEvent::Status(503),
            CallEvent::RetryAfter(1000),
            CallEvent::Replayed,
        ] {
            c.count(e);
        }
        assert_eq!((c.attempts, c.retries()), (3, 2));
        assert_eq!((c.timeouts, c.status_503, c.replayed), (1, 1, 1));
        assert_eq!((c.backoff_ms, c.retry_after_ms), (50, 1000));
    }
}
