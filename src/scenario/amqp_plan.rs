//! The AMQP part of a plan: the keys only the AMQP transport reads (workers,
//! queue, confirms), their defaults and ranges, and its [`Vocabulary`]:
//! those keys, its policies and its faults.

use super::plan::{duration, ranged, Invalid};
use super::spec::{EffectKind, FaultKind, PartitionHandling, QueueType, Spec, TlsMode, Transport};
use super::transport::{Key, Vocabulary};
use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use crate::push::keys::KeyStore;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What only an AMQP run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmqpPlan {
    /// Bytes per message body.
    pub payload_bytes: usize,
    /// Consumer worker processes.
    pub consumers: u32,
    /// basic.qos prefetch count (0 is unlimited).
    pub prefetch: u16,
    /// Confirms a producer may await at once.
    pub confirm_window: u32,
    /// How long a producer waits for one confirm.
    pub confirm_timeout: Duration,
    /// Whether the queue is durable.
    pub durable: bool,
    /// Whether messages are persistent.
    pub persistent: bool,
    /// Classic or quorum.
    pub queue_type: QueueType,
    /// How long each effect takes the consumer.
    pub effect_time: Duration,
    /// RabbitMQ nodes: 1, or a cluster of this many.
    #[serde(default = "one")]
    pub nodes: u32,
    /// The cluster's `cluster_partition_handling`.
    #[serde(default)]
    pub partition_handling: PartitionHandling,
    /// With `effect = "push"`: the consumer's effect is a call to the push
    /// gateway, with these settings; `None`: a local row.
    #[serde(default)]
    pub push: Option<PushPlan>,
}

/// The push hop's settings (`effect = "push"` and the `[push]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PushPlan {
    /// How long a consumer waits for one response.
    pub timeout: Duration,
    /// The first retry's delay, doubled per retry.
    pub backoff: Duration,
    /// The longest delay between two attempts (a `Retry-After` may be longer).
    pub max_backoff: Duration,
    /// Attempts per message at most for the policies that retry (0: until a 2xx).
    pub attempts: u32,
    /// How long the gateway remembers a key.
    pub key_ttl: Duration,
    /// Where the gateway keeps its keys.
    pub key_store: KeyStore,
}

impl Default for PushPlan {
    fn default() -> Self {
        PushPlan {
            timeout: Duration::from_secs(1),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            attempts: 0,
            key_ttl: Duration::from_secs(600),
            key_store: KeyStore::Memory,
        }
    }
}

impl PushPlan {
    fn from_spec(spec: &Spec) -> Result<Option<PushPlan>, Invalid> {
        let push = spec.push.clone().unwrap_or_default();
        if spec.effect != Some(EffectKind::Push) {
            if spec.push.is_some() {
                return Err(Invalid::at(
                    &["push"],
                    "the push settings need the push effect; expected `effect = \"push\"`",
                ));
            }
            return Ok(None);
        }
        let d = PushPlan::default();
        let timeout = duration(&push.timeout, d.timeout, &["push", "timeout"])?;
        if timeout.is_zero() {
            return Err(Invalid::at(
                &["push", "timeout"],
                "a call needs time to answer; expected a timeout above zero, e.g. \"1s\"",
            ));
        }
        Ok(Some(PushPlan {
            timeout,
            backoff: duration(&push.backoff, d.backoff, &["push", "backoff"])?,
            max_backoff: duration(&push.max_backoff, d.max_backoff, &["push", "max_backoff"])?,
            attempts: match push.attempts.unwrap_or(0) {
                n @ 0..=1_000_000 => n as u32,
                n => {
                    return Err(Invalid::at(
                        &["push", "attempts"],
                        format!("{n} is out of range; expected 0 (until a 2xx) to 1000000"),
                    ))
                }
            },
            key_ttl: duration(&push.key_ttl, d.key_ttl, &["push", "key_ttl"])?,
            key_store: push.key_store.unwrap_or(d.key_store),
        }))
    }
}

fn one() -> u32 {
    1
}

impl Default for AmqpPlan {
    /// What a scenario that sets none of these keys gets.
    fn default() -> Self {
        AmqpPlan {
            payload_bytes: 128,
            consumers: 1,
            prefetch: 100,
            confirm_window: 256,
            confirm_timeout: Duration::from_secs(5),
            durable: true,
            persistent: true,
            queue_type: QueueType::Classic,
            effect_time: Duration::ZERO,
            nodes: 1,
            partition_handling: PartitionHandling::PauseMinority,
            push: None,
        }
    }
}

/// The AMQP transport's keys, policies and faults.
pub const AMQP: Vocabulary = Vocabulary {
    transport: Transport::Amqp,
    keys: &[
        Key {
            name: "payload_bytes",
            set: |s| s.payload_bytes.is_some(),
        },
        Key {
            name: "consumers",
            set: |s| s.consumers.is_some(),
        },
        Key {
            name: "prefetch",
            set: |s| s.prefetch.is_some(),
        },
        Key {
            name: "confirm_window",
            set: |s| s.confirm_window.is_some(),
        },
        Key {
            name: "confirm_timeout",
            set: |s| s.confirm_timeout.is_some(),
        },
        Key {
            name: "durable",
            set: |s| s.durable.is_some(),
        },
        Key {
            name: "persistent",
            set: |s| s.persistent.is_some(),
        },
        Key {
            name: "queue_type",
            set: |s| s.queue_type.is_some(),
        },
        Key {
            name: "effect_time",
            set: |s| s.effect_time.is_some(),
        },
        Key {
            name: "nodes",
            set: |s| s.nodes.is_some(),
        },
        Key {
            name: "partition_handling",
            set: |s| s.partition_handling.is_some(),
        },
        Key {
            name: "effect",
            set: |s| s.effect.is_some(),
        },
        Key {
            name: "push",
            set: |s| s.push.is_some(),
        },
    ],
    producers: &[ProducerPolicy::FireAndForget, ProducerPolicy::ConfirmRetry],
    consumers: &[
        ConsumerPolicy::AutoAck,
        ConsumerPolicy::AckBeforeEffect,
        ConsumerPolicy::AckAfterEffect,
        ConsumerPolicy::Idempotent,
        ConsumerPolicy::SeenTable,
        ConsumerPolicy::IdempotencyKey,
    ],
    faults: &[
        FaultKind::ConsumerCrash,
        FaultKind::ProducerCrash,
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::Slicer,
        FaultKind::Cut,
        FaultKind::Down,
        FaultKind::Blackhole,
        FaultKind::LimitData,
        FaultKind::ConfirmLost,
        FaultKind::BrokerKill,
        FaultKind::BrokerRestart,
        FaultKind::BrokerPause,
        FaultKind::MemoryAlarm,
        FaultKind::NodeKill,
        FaultKind::NodePause,
        FaultKind::NodeRestart,
        FaultKind::Partition,
        FaultKind::ResponseLost,
        FaultKind::MitmCertificate,
        FaultKind::CertificateExpired,
        FaultKind::GatewayUnavailable,
        FaultKind::GatewayThrottled,
        FaultKind::GatewaySlow,
        FaultKind::GatewayDown,
        FaultKind::GatewayRestart,
    ],
    preset: Guarantee::amqp_policies,
};

impl AmqpPlan {
    /// The AMQP keys of `spec`, defaults filled in and ranges checked.
    pub fn from_spec(spec: &Spec) -> Result<AmqpPlan, Invalid> {
        let d = AmqpPlan::default();
        let durable = spec.durable.unwrap_or(d.durable);
        let queue_type = spec.queue_type.unwrap_or(d.queue_type);
        let nodes: u32 = ranged(spec.nodes, d.nodes.into(), "nodes", 1, 7)?;
        if queue_type == QueueType::Mirrored && nodes < 2 {
            return Err(Invalid::at(
                &["queue_type"],
                "a mirrored queue needs a cluster to mirror to; expected `nodes = 3` (or 2 and more)",
            ));
        }
        if spec.partition_handling.is_some() && nodes < 2 {
            return Err(Invalid::at(
                &["partition_handling"],
                "a single node has no partitions to handle; expected `nodes = 3` (or 2 and more)",
            ));
        }
        if spec.effect == Some(EffectKind::Push) && nodes > 1 {
            return Err(Invalid::at(
                &["effect"],
                "the push effect runs against one broker node (its fault proxy is for one node); expected `nodes = 1` with `effect = \"push\"`",
            ));
        }
        if spec.tls.is_some_and(|t| t != TlsMode::Off) && nodes > 1 {
            return Err(Invalid::at(
                &["tls"],
                "TLS to the broker is for one node dlab starts for now; expected `nodes = 1` with `tls`",
            ));
        }
        if queue_type == QueueType::Quorum && !durable {
            return Err(Invalid::at(
                &["durable"],
                "quorum queues are always durable; expected `durable = true` with `queue_type = \"quorum\"`",
            ));
        }
        Ok(AmqpPlan {
            payload_bytes: ranged(
                spec.payload_bytes,
                d.payload_bytes as u64,
                "payload_bytes",
                0,
                16 * 1024 * 1024,
            )?,
            consumers: ranged(spec.consumers, d.consumers.into(), "consumers", 1, 64)?,
            prefetch: ranged(spec.prefetch, d.prefetch.into(), "prefetch", 0, 65_535)?,
            confirm_window: ranged(
                spec.confirm_window,
                d.confirm_window.into(),
                "confirm_window",
                1,
                100_000,
            )?,
            confirm_timeout: duration(
                &spec.confirm_timeout,
                d.confirm_timeout,
                &["confirm_timeout"],
            )?,
            durable,
            persistent: spec.persistent.unwrap_or(d.persistent),
            queue_type,
            effect_time: duration(&spec.effect_time, d.effect_time, &["effect_time"])?,
            nodes,
            partition_handling: spec.partition_handling.unwrap_or(d.partition_handling),
            push: PushPlan::from_spec(spec)?,
        })
    }
}
