//! Results and their renderers. Measuring and rendering are separate: the
//! runner produces a [`RunResult`], renderers only read it.

mod broker_count;
mod cluster;
mod cluster_text;
pub mod eavesdrop;
mod eavesdrop_text;
mod fault_record;
pub mod html;
mod html_cluster;
mod html_push;
mod html_smtp;
pub mod progress;
mod push;
mod push_text;
mod result;
mod series;
mod smtp;
mod smtp_text;
mod smtp_tls;
pub mod table;

pub use broker_count::{BrokerCount, CountPair};
pub use cluster::{
    ClientConnection, ClusterAfter, ClusterReport, ClusterSample, MemberState, RaftMember,
};
pub use fault_record::{FaultRecord, Tally};
pub use push::{AccessLogCount, PushCalls, PushReport};
pub use result::{
    describe_fault, CrashRecord, Drain, ExpectationResult, Latency, Promise, Recount, RunResult,
    Settings, TimelineEntry, TimelineKind,
};
pub use series::Series;
pub use smtp::{EsmtpReport, QueueSample, ReasonCount, RelayLogCount, SmtpReport, TextCheck};
pub use smtp_tls::SmtpTlsReport;

use crate::ledger::{Counts, Reconciliation};
use crate::metrics::LatencySummary;
use crate::scenario::{Expectations, Plan};
use hdrhistogram::Histogram;
use std::path::Path;
use std::time::Duration;

/// Everything [`build`] puts together.
pub struct Inputs<'a> {
    /// The plan that ran.
    pub plan: &'a Plan,
    /// The run's ID.
    pub run_id: &'a str,
    /// The broker, password masked.
    pub broker: &'a str,
    /// The queue.
    pub queue: &'a str,
    /// The ledger's reconciliation.
    pub reconciliation: Reconciliation,
    /// The SQL recount of the effect store.
    pub recount: Recount,
    /// How the drain ended.
    pub drain: Drain,
    /// The timeline.
    pub timeline: Vec<TimelineEntry>,
    /// From the first publish to the last delivery handled.
    pub active: Duration,
    /// Merged publish-to-confirm latencies.
    pub publish_to_confirm: &'a Histogram<u64>,
    /// Merged end-to-end latencies.
    pub end_to_end: &'a Histogram<u64>,
    /// The effect store file.
    pub effect_store: &'a Path,
    /// Worker notes.
    pub notes: Vec<String>,
    /// The fault occurrences.
    pub faults: Vec<FaultRecord>,
    /// Throughput over time.
    pub series: Series,
    /// Worker aborts as the workers reported them.
    pub crashes: Vec<CrashRecord>,
    /// The history file, if the run kept one.
    pub history: Option<&'a Path>,
    /// The wall clock at the run's start, µs since the Unix epoch.
    pub started_unix_us: i64,
}

/// Each bound of `e` judged against the counts `c`, in the order max_lost,
/// min_lost, max_duplicates, min_duplicates, max_lost_after_confirm,
/// min_lost_after_confirm (absent bounds left out).
pub fn judge(e: &Expectations, c: &Counts) -> Vec<ExpectationResult> {
    [
        ("max_lost", e.max_lost, c.lost, true),
        ("min_lost", e.min_lost, c.lost, false),
        ("max_duplicates", e.max_duplicates, c.duplicates, true),
        ("min_duplicates", e.min_duplicates, c.duplicates, false),
        (
            "max_lost_after_confirm",
            e.max_lost_after_confirm,
            c.lost_after_confirm,
            true,
        ),
        (
            "min_lost_after_confirm",
            e.min_lost_after_confirm,
            c.lost_after_confirm,
            false,
        ),
    ]
    .into_iter()
    .filter_map(|(name, bound, actual, is_max)| {
        bound.map(|bound| ExpectationResult {
            name: name.to_string(),
            bound,
            actual,
            held: if is_max {
                actual <= bound
            } else {
                actual >= bound
            },
        })
    })
    .collect()
}

/// The eavesdropper's bounds of `e` (max_ids_read, min_ids_read) judged
/// against the most message IDs it read on one link.
pub fn judge_eavesdrop(
    e: &Expectations,
    read: &eavesdrop::EavesdropReport,
) -> Vec<ExpectationResult> {
    let most = read.most_ids_read();
    [
        ("max_ids_read", e.max_ids_read, true),
        ("min_ids_read", e.min_ids_read, false),
    ]
    .into_iter()
    .filter_map(|(name, bound, is_max)| {
        bound.map(|bound| ExpectationResult {
            name: name.to_string(),
            bound,
            actual: most,
            held: if is_max { most <= bound } else { most >= bound },
        })
    })
    .collect()
}

/// Assembles a [`RunResult`] and judges the plan's expectations.
pub fn build(i: Inputs<'_>) -> RunResult {
    let c = &i.reconciliation.counts;
    let expectations = judge(&i.plan.expect, c);
    let ids = |seqs: &[u64]| -> Vec<String> {
        seqs.iter()
            .map(|s| crate::message_id::format(i.run_id, *s))
            .collect()
    };
    let (lost_ids, duplicated_ids) = (
        ids(&i.reconciliation.lost),
        ids(&i.reconciliation.duplicated),
    );
    let secs = i.active.as_secs_f64();
    // The timeline tells the whole story: fault windows among the rest.
    let mut timeline = i.timeline;
    for f in i.faults.iter().filter(|f| f.fired) {
        let marks = [
            (f.started_ms, TimelineKind::FaultStart, "started"),
            (f.ended_ms, TimelineKind::FaultEnd, "ended"),
        ];
        for (at, kind, what) in marks {
            if let Some(at_ms) = at {
                timeline.push(TimelineEntry {
                    at_ms,
                    kind,
                    event: format!("fault #{} {what}: {}", f.fault, f.description),
                });
            }
        }
    }
    timeline.sort_by_key(|t| t.at_ms);
    RunResult {
        scenario: i.plan.name.clone(),
        description: i.plan.description.clone(),
        transport: i.plan.transport.kind(),
        guarantee: i.plan.guarantee.map(|g| g.name().to_string()),
        producer: i.plan.producer.name().to_string(),
        consumer: i.plan.consumer.name().to_string(),
        seed: i.plan.seed,
        run_id: i.run_id.to_string(),
        broker: i.broker.to_string(),
        queue: i.queue.to_string(),
        settings: Settings::of(i.plan),
        faults: i.plan.faults.iter().map(describe_fault).collect(),
        promise: i
            .plan
            .guarantee
            .map(|g| Promise::of(g, &i.reconciliation.verdicts)),
        expectations_held: expectations.iter().all(|x| x.held),
        expectations,
        counts: i.reconciliation.counts.clone(),
        verdicts: i.reconciliation.verdicts,
        drain: i.drain,
        recount: i.recount,
        timeline,
        fault_timeline: i.faults,
        duration_s: secs,
        steady_throughput_per_s: i.series.steady_rate(),
        series: i.series,
        throughput_per_s: if secs > 0.0 {
            c.effects as f64 / secs
        } else {
            0.0
        },
        latency: Latency {
            publish_to_confirm: LatencySummary::of(i.publish_to_confirm),
            end_to_end: LatencySummary::of(i.end_to_end),
        },
        effect_store: i.effect_store.display().to_string(),
        notes: i.notes,
        crashes: i.crashes,
        broker_count: None,
        broker_count_missing: None,
        history: i.history.map(|p| p.display().to_string()),
        started_unix_us: i.started_unix_us,
        smtp: None,
        cluster: None,
        push: None,
        eavesdropper: None,
        broker_tls: Vec::new(),
        interrupted: false,
        lost_ids,
        duplicated_ids,
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    std::fs::write(path, bytes)
}

/// The JSON Schema of a `--json` result (one run); `dlab matrix --json` writes
/// a list of them. The committed copy is `schema/run-result.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RunResult);
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}
