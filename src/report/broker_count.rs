//! The broker's own count of an AMQP run's queue, set beside the ledger's as
//! Postfix's log is for SMTP runs: a second source for every AMQP count.
//!
//! Pure: the runner reads the broker ([`crate::broker::Management`]) and
//! passes the numbers in; this module pairs them with the ledger and says,
//! for each difference, by how many and why it may differ.

use crate::broker::{Counters, QueueInfo};
use crate::ledger::Counts;
use serde::{Deserialize, Serialize};

/// What the broker counted for the run's queue, beside the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BrokerCount {
    /// Where the numbers come from (the endpoint's address; no password).
    pub source: String,
    /// The queue's type as the broker reports it (`classic` or `quorum`).
    pub queue_type: String,
    /// Whether the broker's counters cover the whole run. A broker that was
    /// killed or restarted starts its counters again at zero.
    pub whole_run: bool,
    /// Each count, the broker's beside the ledger's.
    pub pairs: Vec<CountPair>,
}

/// One count from both sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CountPair {
    /// `received`, `delivered`, `redelivered` or `acknowledged` (the broker's
    /// counter names).
    pub name: String,
    /// The ledger's field it is compared with.
    pub ledger_field: String,
    /// The broker's total.
    pub broker: u64,
    /// The ledger's total.
    pub ledger: u64,
    /// Why the two may differ by this much; `None` when they agree.
    pub why: Option<String>,
}

impl CountPair {
    /// Whether both sources counted the same.
    pub fn agree(&self) -> bool {
        self.broker == self.ledger
    }
}

impl BrokerCount {
    /// Pairs the broker's counts of the run (`counted`: its counters' growth
    /// over the run, or since its restart when not `whole_run`) with the
    /// ledger's counts.
    pub fn compare(
        source: String,
        queue: &QueueInfo,
        counted: &Counters,
        counts: &Counts,
        whole_run: bool,
    ) -> Self {
        let pair = |name: &str, field: &str, broker: u64, ledger: u64| {
            let why = (broker != ledger).then(|| explain(name, broker, ledger, whole_run));
            CountPair {
                name: name.into(),
                ledger_field: field.into(),
                broker,
                ledger,
                why,
            }
        };
        BrokerCount {
            source,
            queue_type: queue.kind.clone(),
            whole_run,
            pairs: vec![
                pair("received", "attempts", counted.received, counts.attempts),
                pair(
                    "delivered",
                    "deliveries",
                    counted.delivered,
                    counts.deliveries,
                ),
                pair(
                    "redelivered",
                    "redelivered",
                    counted.redelivered,
                    counts.redelivered,
                ),
                pair("acknowledged", "acks", counted.acknowledged, counts.acks),
            ],
        }
    }

    /// The pair named `name`.
    pub fn pair(&self, name: &str) -> Option<&CountPair> {
        self.pairs.iter().find(|p| p.name == name)
    }
}

/// Why the broker and the ledger may count `name` differently.
fn explain(name: &str, broker: u64, ledger: u64, whole_run: bool) -> String {
    let n = broker.abs_diff(ledger);
    if !whole_run {
        return format!(
            "differ by {n}: the broker (or a cluster member) was killed, restarted or paused by a partition during the run, and its counters began again at zero"
        );
    }
    let why = match (name, broker > ledger) {
        ("received", false) => "publishes a producer sent whose connection was lost (a cut, a partition, a killed broker) before the broker routed them",
        ("received", true) => "publishes the broker routed that no producer reported (a producer aborted before its report left)",
        ("delivered" | "redelivered", true) => "deliveries in flight to a consumer that aborted or lost its connection: sent by the broker, never received by the worker (at most the prefetch each time)",
        ("delivered" | "redelivered", false) => "deliveries a consumer reported that the broker did not count",
        ("acknowledged", false) => "acks a consumer sent whose connection was lost before the broker processed them",
        _ => "acks the broker processed that no consumer reported (it aborted before its report left)",
    };
    let side = if broker > ledger { "more" } else { "fewer" };
    format!("the broker counts {n} {side}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(attempts: u64, deliveries: u64, redelivered: u64, acks: u64) -> Counts {
        Counts {
            attempts,
            deliveries,
            redelivered,
            acks,
            ..Counts::default()
        }
    }

    fn queue(kind: &str) -> QueueInfo {
        QueueInfo { kind: kind.into() }
    }

    #[test]
    fn equal_counts_agree_and_need_no_reason() {
        let c = Counters {
            received: 10,
            delivered: 10,
            redelivered: 0,
            acknowledged: 10,
        };
        let b = BrokerCount::compare(
            "api".into(),
            &queue("classic"),
            &c,
            &counts(10, 10, 0, 10),
            true,
        );
        assert!(b.pairs.iter().all(CountPair::agree), "{b:?}");
        assert!(b.pairs.iter().all(|p| p.why.is_none()));
        assert_eq!(b.queue_type, "classic");
        assert_eq!(b.pair("acknowledged").unwrap().ledger_field, "acks");
    }

    #[test]
    fn a_difference_says_by_how_many_and_why() {
        let c = Counters {
            received: 10,
            delivered: 19,
            redelivered: 9,
            acknowledged: 10,
        };
        let b = BrokerCount::compare(
            "api".into(),
            &queue("quorum"),
            &c,
            &counts(10, 10, 1, 10),
            true,
        );
        let d = b.pair("delivered").unwrap();
        assert!(!d.agree());
        let why = d.why.as_deref().unwrap();
        assert!(why.contains("9 more") && why.contains("in flight"), "{why}");
        assert!(b.pair("received").unwrap().agree());
        assert_eq!(b.queue_type, "quorum");
        let fewer = BrokerCount::compare(
            "api".into(),
            &queue("classic"),
            &c,
            &counts(12, 19, 9, 10),
            true,
        );
        let why = fewer.pair("received").unwrap().why.clone().unwrap();
        assert!(
            why.contains("2 fewer") && why.contains("connection was lost"),
            "{why}"
        );
        let restarted = BrokerCount::compare(
            "api".into(),
            &queue("classic"),
            &c,
            &counts(10, 10, 1, 10),
            false,
        );
        assert!(restarted
            .pair("delivered")
            .unwrap()
            .why
            .as_deref()
            .unwrap()
            .contains("restarted"));
    }
}
