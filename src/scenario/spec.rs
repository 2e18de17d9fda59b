//! The scenario file as written: a serde mirror of the TOML, nothing checked
//! beyond types and key names.
//!
//! Invariant: unknown keys are rejected here (`deny_unknown_fields`) so that a
//! typo never silently falls back to a default. Ranges, cross-field rules and
//! defaults belong to [`crate::scenario::plan`].

use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use serde::{Deserialize, Serialize};

/// One scenario file, key for key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Short name shown in reports; defaults to the file stem.
    pub name: Option<String>,
    /// One or two sentences on what the scenario teaches.
    pub description: Option<String>,
    /// `amqp` (the only transport so far).
    pub transport: Option<Transport>,
    /// A preset; `producer` / `consumer` override one side of it.
    pub guarantee: Option<Guarantee>,
    /// The producer policy, when no preset is named or to override it.
    pub producer: Option<ProducerPolicy>,
    /// The consumer policy, when no preset is named or to override it.
    pub consumer: Option<ConsumerPolicy>,
    /// How many notifications are intended.
    pub messages: Option<u64>,
    /// Messages per second across all producers; 0 is as fast as possible.
    pub rate: Option<u64>,
    /// Size of each message body in bytes.
    pub payload_bytes: Option<u64>,
    /// Producer worker processes.
    pub producers: Option<u64>,
    /// Consumer worker processes.
    pub consumers: Option<u64>,
    /// Unacknowledged deliveries a consumer may hold (basic.qos).
    pub prefetch: Option<u64>,
    /// Publishes a producer may have awaiting their confirm.
    pub confirm_window: Option<u64>,
    /// How long a producer waits for a confirm before it is in doubt, e.g. "5s".
    pub confirm_timeout: Option<String>,
    /// Whether the queue survives a broker restart.
    pub durable: Option<bool>,
    /// Whether messages are written to disk (delivery mode 2).
    pub persistent: Option<bool>,
    /// `classic` or `quorum`.
    pub queue_type: Option<QueueType>,
    /// How long the drain phase may wait for the queue to empty, e.g. "30s".
    pub drain_timeout: Option<String>,
    /// Seed for everything random in the run.
    pub seed: Option<u64>,
    /// Faults to inject.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Bounds the counted outcome must stay within.
    pub expect: Option<ExpectSpec>,
}

/// Which way notifications travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// AMQP 0-9-1 through RabbitMQ.
    Amqp,
}

/// RabbitMQ queue type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueType {
    /// The classic queue.
    Classic,
    /// A Raft-replicated quorum queue (always durable).
    Quorum,
}

impl QueueType {
    /// The value of the `x-queue-type` argument.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// The kinds of fault a scenario can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A consumer worker process aborts at a crash point.
    ConsumerCrash,
}

/// Where in its handling of a delivery a consumer aborts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashPoint {
    /// Before the effect of the Nth delivery is applied.
    BeforeEffect,
    /// After the effect of the Nth delivery is committed, before its ack is sent.
    AfterEffectBeforeAck,
    /// After the Nth delivery is fully handled: effect committed and ack received by the broker.
    AfterAck,
}

impl CrashPoint {
    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::BeforeEffect => "before-effect",
            CrashPoint::AfterEffectBeforeAck => "after-effect-before-ack",
            CrashPoint::AfterAck => "after-ack",
        }
    }
}

/// One `[[faults]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// For `consumer-crash`: where the worker aborts.
    pub point: Option<CrashPoint>,
    /// For `consumer-crash`: the delivery count (per worker) at which it aborts.
    pub after: Option<u64>,
    /// For `consumer-crash`: which consumer worker (0-based); default 0.
    pub worker: Option<u64>,
    /// For `consumer-crash`: how long the runner waits before restarting it, e.g. "500ms".
    pub restart_after: Option<String>,
}

/// The `[expect]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// At most this many intended messages with no effect.
    pub max_lost: Option<u64>,
    /// At least this many intended messages with no effect.
    pub min_lost: Option<u64>,
    /// At most this many extra effects.
    pub max_duplicates: Option<u64>,
    /// At least this many extra effects.
    pub min_duplicates: Option<u64>,
}
