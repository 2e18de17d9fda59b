//! The finished, serializable result of a run: what every renderer reads.
//!
//! Field names are a contract (`--json`): add fields, do not rename them.

use super::FaultRecord;
use super::Series;
use crate::ledger::{Counts, Verdicts};
use crate::metrics::LatencySummary;
use crate::policy::Guarantee;
use crate::scenario::Transport;
use crate::scenario::{Fault, Plan};
use serde::{Deserialize, Serialize};

/// One scenario run, reconciled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// What it teaches.
    pub description: String,
    /// `amqp` or `smtp`.
    pub transport: Transport,
    /// The preset the policies form, if any.
    pub guarantee: Option<String>,
    /// Producer policy.
    pub producer: String,
    /// Consumer policy.
    pub consumer: String,
    /// The seed (printed so a run can be replayed).
    pub seed: u64,
    /// The run's ID (prefix of every message ID).
    pub run_id: String,
    /// The broker, password masked.
    pub broker: String,
    /// The queue used.
    pub queue: String,
    /// Workload settings.
    pub settings: Settings,
    /// The faults injected, one line each.
    pub faults: Vec<String>,
    /// What the ledger counted.
    pub counts: Counts,
    /// Whether each guarantee's promise held.
    pub verdicts: Verdicts,
    /// The promise of the preset this run used, and whether it held.
    pub promise: Option<Promise>,
    /// Each `[expect]` bound and whether it held.
    pub expectations: Vec<ExpectationResult>,
    /// Whether every bound held (exit code 0 versus 1).
    pub expectations_held: bool,
    /// How the drain phase ended.
    pub drain: Drain,
    /// An independent count straight from the effect store with SQL.
    pub recount: Recount,
    /// What happened when, in milliseconds since the run started.
    pub timeline: Vec<TimelineEntry>,
    /// Every occurrence of a scheduled fault: trigger, whether the seed let it
    /// fire, start, end, what it did and the counts during and after it.
    pub fault_timeline: Vec<FaultRecord>,
    /// Seconds from the first publish to the last delivery handled.
    pub duration_s: f64,
    /// Effects per second over `duration_s`.
    pub throughput_per_s: f64,
    /// Effects per second over the steady part of the run (see `Series::steady_rate`).
    pub steady_throughput_per_s: f64,
    /// Sent, confirmed, effects and duplicates per 100 ms bucket.
    pub series: Series,
    /// The wall clock at the run's start, µs since the Unix epoch: the
    /// series' time zero (the effect store's `applied_at_us` minus this,
    /// divided by 1000, is an effect's millisecond in the series).
    #[serde(default)]
    pub started_unix_us: i64,
    /// Latency percentiles.
    pub latency: Latency,
    /// The SQLite file holding every effect, so anyone can recount.
    pub effect_store: String,
    /// Notes the workers sent (lost connections, retries), first ones only.
    pub notes: Vec<String>,
    /// Every worker abort, as the worker itself reported it: where, at which
    /// of its deliveries or publishes, and which message that was.
    #[serde(default)]
    pub crashes: Vec<CrashRecord>,
    /// AMQP runs: the broker's own totals for the run's queue, beside the
    /// ledger's counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_count: Option<super::BrokerCount>,
    /// AMQP runs whose broker could not be asked for its counts: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_count_missing: Option<String>,
    /// The run's history: every event a worker reported, one per line
    /// (µs since the start, worker, pid, the event in the worker protocol, or `exit CODE` / `signal N` when the process ended), in the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// SMTP runs: the relay, ESMTP, the relay's queue over time, the relay
    /// log's own count, whether the text arrived intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<super::SmtpReport>,
    /// AMQP runs on a cluster dlab started: members, leaders and partitions
    /// over time, which member each client was on, the cluster's own count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::ClusterReport>,
    /// AMQP runs with `effect = "push"`: the consumers' calls, the gateway's
    /// own count and its access log recounted beside the effect store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<super::PushReport>,
    /// AMQP runs with `tls`: the broker's own account of the workers'
    /// connections while they were open (TLS version, client certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_tls: Vec<super::eavesdrop::TlsConnection>,
    /// Runs with `eavesdropper = true`: per proxied link, what a passive
    /// sniffer read in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eavesdropper: Option<super::eavesdrop::EavesdropReport>,
    /// The run was stopped by a signal before it finished: its counts are
    /// what it saw until then (messages in flight count as lost).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Every intended message with no effect, by ID, in message order
    /// (`counts.lost` of them); `dlab explain` tells one's story.
    #[serde(default)]
    pub lost_ids: Vec<String>,
    /// Every message with more than one effect, by ID, in message order
    /// (`counts.duplicated_messages` of them).
    #[serde(default)]
    pub duplicated_ids: Vec<String>,
}

/// The workload, as run. `payload_bytes`, `consumers`, `prefetch`,
/// `confirm_window`, `durable`, `persistent` and `queue_type` are AMQP
/// settings; an SMTP run, which has none, shows their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// Intended messages.
    pub messages: u64,
    /// Messages per second (0 = unthrottled).
    pub rate: u64,
    /// Bytes per message.
    pub payload_bytes: usize,
    /// Producer processes.
    pub producers: u32,
    /// Consumer processes.
    pub consumers: u32,
    /// Prefetch count.
    pub prefetch: u16,
    /// Confirms in flight per producer.
    pub confirm_window: u32,
    /// Durable queue.
    pub durable: bool,
    /// Persistent messages.
    pub persistent: bool,
    /// Classic or quorum.
    pub queue_type: String,
}

impl Settings {
    /// The settings of a plan. A run of another transport, which has no
    /// AMQP settings, shows their defaults.
    pub fn of(plan: &Plan) -> Settings {
        let amqp = plan.amqp().cloned().unwrap_or_default();
        Settings {
            messages: plan.messages,
            rate: plan.rate,
            payload_bytes: amqp.payload_bytes,
            producers: plan.producers,
            consumers: amqp.consumers,
            prefetch: amqp.prefetch,
            confirm_window: amqp.confirm_window,
            durable: amqp.durable,
            persistent: amqp.persistent,
            queue_type: amqp.queue_type.name().to_string(),
        }
    }
}

/// A fault in one line, for reports.
pub fn describe_fault(f: &Fault) -> String {
    f.describe()
}

/// A preset's promise and whether it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Promise {
    /// The preset.
    pub guarantee: String,
    /// What it promises.
    pub promise: String,
    /// Whether it held.
    pub held: bool,
}

impl Promise {
    /// The promise of `g`, judged by `v`.
    pub fn of(g: Guarantee, v: &Verdicts) -> Promise {
        let (promise, held) = match g {
            Guarantee::AtMostOnce => ("no message has two effects", v.at_most_once),
            Guarantee::AtLeastOnce => ("every message has an effect", v.at_least_once),
            Guarantee::ExactlyOnce => ("every message has exactly one effect", v.exactly_once),
        };
        Promise {
            guarantee: g.name().to_string(),
            promise: promise.to_string(),
            held,
        }
    }
}

/// One bound from `[expect]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExpectationResult {
    /// The key, e.g. `max_lost`.
    pub name: String,
    /// The bound.
    pub bound: u64,
    /// The counted value.
    pub actual: u64,
    /// Whether the bound held.
    pub held: bool,
}

/// How the drain phase ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Drain {
    /// Whether the queue emptied and the consumers went idle before the timeout.
    pub completed: bool,
    /// How long the drain phase took.
    pub seconds: f64,
    /// Messages still in the queue when the run ended.
    pub remaining_in_queue: u64,
}

/// Counts taken from the effect store with SQL, independently of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recount {
    /// `SELECT count(*) FROM effects`.
    pub effect_rows: u64,
    /// `SELECT count(DISTINCT message_id) FROM effects`.
    pub distinct_message_ids: u64,
}

/// One moment of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimelineEntry {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// What kind of moment it is (renderers and tests read this, never the text).
    #[serde(default)]
    pub kind: TimelineKind,
    /// What happened.
    pub event: String,
}

/// What kind of moment a timeline entry marks.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TimelineKind {
    /// A phase of the run: started, ready, producers finished, drained.
    #[default]
    Phase,
    /// A worker aborted (the crash the worker reported).
    Crash,
    /// A worker started again after a crash or a lost connection.
    Restart,
    /// A worker lost its connection, or connected again.
    Connection,
    /// A worker ended in a way the run did not ask for.
    Exit,
    /// A scheduled fault began.
    FaultStart,
    /// A scheduled fault ended.
    FaultEnd,
    /// The drain ended by its timeout.
    DrainTimeout,
    /// The run was stopped by a signal.
    Interrupted,
    /// A cluster changed, as it said of itself: a member stopped or came
    /// back, a partition was seen or healed, the queue's leader moved.
    Cluster,
    /// Anything else worth a line.
    Note,
}

/// A worker abort as the worker reported it just before it aborted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CrashRecord {
    /// Milliseconds since the run started (when the runner heard of it).
    pub at_ms: u64,
    /// Which worker, e.g. `consumer 0`.
    pub worker: String,
    /// Its OS process ID (the effect store's `pid` column for consumers).
    pub pid: u32,
    /// The crash point (`before-effect`, `after-effect-before-ack`,
    /// `after-ack`, or `after-publish` for a producer).
    pub point: String,
    /// The worker's own delivery (or publish) number at the abort, 1-based.
    pub count: u64,
    /// The message number that delivery or publish carried.
    pub seq: Option<u64>,
}

/// Latency percentiles of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Latency {
    /// Publish to broker confirm.
    pub publish_to_confirm: LatencySummary,
    /// Due time to effect committed.
    pub end_to_end: LatencySummary,
}
