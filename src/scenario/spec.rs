//! The scenario file as written: a serde mirror of the TOML, nothing checked
//! beyond types and key names.
//!
//! Invariant: unknown keys are rejected here (`deny_unknown_fields`) so that a
//! typo never silently falls back to a default. Ranges, cross-field rules and
//! defaults belong to [`crate::scenario::plan`].

use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use serde::{Deserialize, Serialize};

/// One scenario file, key for key (`dlab schema --scenario` prints its JSON
/// Schema; ranges and cross-field rules are checked by `dlab validate`).
/// Keys marked AMQP belong to that transport only: `dlab validate` rejects
/// them in a scenario of another transport.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Short name shown in reports; defaults to the file stem.
    pub name: Option<String>,
    /// One or two sentences on what the scenario teaches.
    pub description: Option<String>,
    /// `amqp` (RabbitMQ) or `smtp` (sender, Postfix relay, inbox).
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
    /// AMQP: size of each message body in bytes.
    pub payload_bytes: Option<u64>,
    /// Producer worker processes (SMTP: sender sessions).
    pub producers: Option<u64>,
    /// AMQP: consumer worker processes.
    pub consumers: Option<u64>,
    /// AMQP: unacknowledged deliveries a consumer may hold (basic.qos).
    pub prefetch: Option<u64>,
    /// AMQP: publishes a producer may have awaiting their confirm.
    pub confirm_window: Option<u64>,
    /// AMQP: how long a producer waits for a confirm before it is in doubt, e.g. "5s".
    pub confirm_timeout: Option<String>,
    /// AMQP: whether the queue survives a broker restart.
    pub durable: Option<bool>,
    /// AMQP: whether messages are written to disk (delivery mode 2).
    pub persistent: Option<bool>,
    /// AMQP: `classic` or `quorum`.
    pub queue_type: Option<QueueType>,
    /// TLS on every hop: `off`, `on` (the client verifies the server's
    /// certificate from the lab CA: amqps to a node dlab starts; STARTTLS
    /// from the sender to the relay and from the relay to the inbox) or
    /// `mutual` (each client also presents its role's certificate).
    pub tls: Option<TlsMode>,
    /// AMQP: RabbitMQ nodes in the run's cluster (1: one node; 3: a
    /// cluster dlab starts, or the one `dlab up --nodes 3` keeps).
    pub nodes: Option<u64>,
    /// AMQP: what the cluster's nodes do about a partition: ignore,
    /// pause-minority or autoheal (`cluster_partition_handling`).
    pub partition_handling: Option<PartitionHandling>,
    /// AMQP: how long showing one notification takes the consumer, e.g. "2ms"
    /// (default 0): a slow consumer keeps a backlog in the queue.
    pub effect_time: Option<String>,
    /// AMQP: what the consumer's effect is: `local` (a row in its own store,
    /// in the same transaction as its seen-table) or `push` (an HTTP call to
    /// the push gateway, the phone's push service, through a fault proxy).
    pub effect: Option<EffectKind>,
    /// AMQP: with `effect = "push"`, the call's timeout, retries and the
    /// gateway's memory of idempotency keys.
    pub push: Option<PushSpec>,
    /// SMTP: what each hop speaks: the extensions the inbox announces (or
    /// HELO only) and what the sender sends (8-bit text, `BODY=8BITMIME`,
    /// an internationalised recipient).
    pub esmtp: Option<EsmtpSpec>,
    /// SMTP, with `tls`: whether the sender and the relay require STARTTLS
    /// (`required`, the default: without the offer a message waits) or use
    /// it when offered (`opportunistic`: without the offer they send in clear).
    pub starttls: Option<StartTls>,
    /// SMTP, with `tls`: whether the sender and the relay verify the next
    /// hop's certificate against the lab CA (default `true`; `false`: the
    /// sender accepts any certificate and the relay's level is `encrypt`,
    /// not `verify`).
    pub tls_verify: Option<bool>,
    /// How long the drain phase may wait for the queue to empty, e.g. "30s".
    pub drain_timeout: Option<String>,
    /// Put the eavesdropper's tap on every proxied link: the report counts
    /// the message IDs, bodies and credentials it could read in clear.
    pub eavesdropper: Option<bool>,
    /// Seed for everything random in the run.
    pub seed: Option<u64>,
    /// Faults to inject.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Bounds the counted outcome must stay within.
    pub expect: Option<ExpectSpec>,
}

/// Where a consumer's effect happens.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EffectKind {
    /// A row in the effect store, written by the consumer itself.
    #[default]
    Local,
    /// A call to the push gateway over HTTP, which writes the row.
    Push,
}

/// The `[push]` table as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSpec {
    /// How long the consumer waits for the gateway's response, e.g. "1s".
    pub timeout: Option<String>,
    /// The first retry's delay, doubled per retry, e.g. "50ms".
    pub backoff: Option<String>,
    /// The longest delay between two attempts, e.g. "1s".
    pub max_backoff: Option<String>,
    /// Attempts per message at most (policies that retry); 0: until a 2xx.
    pub attempts: Option<u64>,
    /// How long the gateway remembers an idempotency key, e.g. "10m".
    pub key_ttl: Option<String>,
    /// Where the gateway keeps its keys: `memory` (lost with a restart) or
    /// `disk` (committed with the effect).
    pub key_store: Option<crate::push::keys::KeyStore>,
}

/// The `[esmtp]` table as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EsmtpSpec {
    /// The extensions the inbox announces after EHLO, any of "PIPELINING",
    /// "8BITMIME", "SMTPUTF8", "SIZE" (default: all four).
    pub inbox: Option<Vec<crate::smtp::esmtp::Extension>>,
    /// `true`: the inbox answers EHLO with 502 and speaks only HELO, as a
    /// server older than ESMTP does (no extensions at all).
    pub helo_only: Option<bool>,
    /// The sender's messages: `mime` (default: the mail library's 7-bit
    /// encoding), `8bitmime` (8-bit text declared with `BODY=8BITMIME`),
    /// `8bit-undeclared` (the same without it) or `8bit-no-mime` (8-bit text
    /// without MIME headers).
    pub body: Option<crate::smtp::esmtp::Body>,
    /// The phone's address: `ascii` (default) or `utf8`
    /// (`téléphone@dlab.invalid`, sent with `SMTPUTF8`).
    pub recipient: Option<crate::smtp::esmtp::Recipient>,
}

/// Which way notifications travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// AMQP 0-9-1 through RabbitMQ.
    Amqp,
    /// SMTP: dlab's sender, a Postfix relay (store-and-forward), dlab's inbox.
    Smtp,
}

impl Transport {
    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Amqp => "amqp",
            Transport::Smtp => "smtp",
        }
    }
}

/// TLS on a link.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS; the client verifies the server's certificate against the lab CA.
    On,
    /// TLS; the client also presents its role's certificate, which the
    /// server verifies.
    Mutual,
}

/// What an SMTP client does when the server does not offer STARTTLS.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StartTls {
    /// No STARTTLS, no message: it waits (Postfix `encrypt` or `verify`).
    #[default]
    Required,
    /// STARTTLS when offered, else in clear (Postfix `may`).
    Opportunistic,
}

/// RabbitMQ queue type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QueueType {
    /// The classic queue.
    Classic,
    /// A Raft-replicated quorum queue (always durable).
    Quorum,
    /// A classic queue mirrored to every member (policy `ha-mode: all`,
    /// automatic sync): the configuration Jepsen tested in 2014; deprecated,
    /// still in RabbitMQ 3.10.
    Mirrored,
}

impl QueueType {
    /// The name in scenario files and reports (`x-queue-type` is `quorum`
    /// for a quorum queue, `classic` for the two others).
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Mirrored => "mirrored",
        }
    }
}

/// The kinds of fault a scenario can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A consumer worker process aborts at a crash point.
    ConsumerCrash,
    /// A producer worker process aborts with unconfirmed messages in flight.
    ProducerCrash,
    /// The proxy holds bytes back (`latency`, `jitter`).
    Latency,
    /// The proxy limits bytes per second (`bytes_per_second`).
    Bandwidth,
    /// The proxy splits writes into small pieces (`bytes`).
    Slicer,
    /// The proxy cuts every open connection (`mode` fin or rst).
    Cut,
    /// The proxy refuses new connections.
    Down,
    /// The proxy forwards nothing: a partition (clients see timeouts).
    Blackhole,
    /// The proxy closes a connection after `bytes` more bytes.
    LimitData,
    /// The proxy cuts a producer's connection just before a broker confirm reaches it.
    ConfirmLost,
    /// The broker's VM is killed with SIGKILL and restarted after `restart_after`.
    BrokerKill,
    /// The broker is stopped gracefully and started again.
    BrokerRestart,
    /// The broker's VM is stopped with SIGSTOP for `duration`, then continued.
    BrokerPause,
    /// RabbitMQ's memory alarm blocks publishers for `duration`.
    MemoryAlarm,
    /// SMTP: the inbox stops listening for `duration` (connections refused).
    InboxDown,
    /// SMTP: the inbox answers 451 (try again later) for `duration`.
    InboxTempfail,
    /// SMTP: for `duration`, the inbox applies the effect and then replies to
    /// the final "." later than the relay waits.
    InboxSlow,
    /// SMTP: for `duration`, the inbox applies the effect and hangs up after
    /// the final "." without replying.
    InboxHangup,
    /// SMTP: the relay's processes are killed with SIGKILL and the relay is
    /// started again after `restart_after` (its disk queue survives).
    RelayKill,
    /// SMTP: the proxy between sender and relay lets a message's final "."
    /// through and cuts the connection instead of passing the reply (RFC 1047).
    ReplyLostAfterDot,
    /// SIGKILL to one cluster member (`node`), restarted after `restart_after`.
    NodeKill,
    /// SIGSTOP to one cluster member (`node`) for `duration`.
    NodePause,
    /// A graceful stop and start of one cluster member (`node`).
    NodeRestart,
    /// The links between cluster members cut (`partition`, `node`) for
    /// `duration`, then healed.
    Partition,
    /// Push: the proxy lets a request reach the gateway (which applies it)
    /// and cuts the connection before the status line reaches the consumer.
    ResponseLost,
    /// Push: the gateway answers 503 with `Retry-After` for `duration`.
    GatewayUnavailable,
    /// Push: the gateway answers 429 with `Retry-After` for `duration`.
    GatewayThrottled,
    /// Push: for `duration`, the gateway applies the effect and answers
    /// `delay` later (after the consumer's timeout: the phone rang).
    GatewaySlow,
    /// Push: the gateway stops listening for `duration` (connections refused).
    GatewayDown,
    /// Push: the gateway is restarted; keys kept in memory are forgotten.
    GatewayRestart,
    /// SMTP, with `tls`: for `duration`, a middlebox removes STARTTLS from
    /// the server's EHLO reply on new sessions (open ones are closed when it
    /// starts).
    StarttlsStrip,
    /// With `tls`: for `duration`, a man in the middle terminates new TLS
    /// sessions with a certificate a foreign CA signed (open ones are closed
    /// when it starts).
    MitmCertificate,
    /// With `tls`: for `duration`, new TLS sessions meet the lab's own server
    /// certificate with its validity over (open ones are closed when it starts).
    CertificateExpired,
}

impl FaultKind {
    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ConsumerCrash => "consumer-crash",
            FaultKind::ProducerCrash => "producer-crash",
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Slicer => "slicer",
            FaultKind::Cut => "cut",
            FaultKind::Down => "down",
            FaultKind::Blackhole => "blackhole",
            FaultKind::LimitData => "limit-data",
            FaultKind::ConfirmLost => "confirm-lost",
            FaultKind::BrokerKill => "broker-kill",
            FaultKind::BrokerRestart => "broker-restart",
            FaultKind::BrokerPause => "broker-pause",
            FaultKind::MemoryAlarm => "memory-alarm",
            FaultKind::InboxDown => "inbox-down",
            FaultKind::InboxTempfail => "inbox-tempfail",
            FaultKind::InboxSlow => "inbox-slow",
            FaultKind::InboxHangup => "inbox-hangup",
            FaultKind::RelayKill => "relay-kill",
            FaultKind::ReplyLostAfterDot => "reply-lost-after-dot",
            FaultKind::NodeKill => "node-kill",
            FaultKind::NodePause => "node-pause",
            FaultKind::NodeRestart => "node-restart",
            FaultKind::Partition => "partition",
            FaultKind::ResponseLost => "response-lost",
            FaultKind::GatewayUnavailable => "gateway-unavailable",
            FaultKind::GatewayThrottled => "gateway-throttled",
            FaultKind::GatewaySlow => "gateway-slow",
            FaultKind::GatewayDown => "gateway-down",
            FaultKind::GatewayRestart => "gateway-restart",
            FaultKind::StarttlsStrip => "starttls-strip",
            FaultKind::MitmCertificate => "mitm-certificate",
            FaultKind::CertificateExpired => "certificate-expired",
        }
    }
}

/// Where in its handling of a delivery a consumer aborts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// Which connections a network fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LinkSpec {
    /// Producers to the broker.
    Producers,
    /// Consumers to the broker.
    Consumers,
    /// Both.
    Both,
    /// Consumers to the push gateway (`effect = "push"`).
    Push,
}

/// Which way a network fault acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionSpec {
    /// Client to server.
    ToServer,
    /// Server to client.
    ToClient,
    /// Both ways.
    Both,
}

/// How a `cut` closes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CutMode {
    /// A normal close.
    Fin,
    /// A reset.
    Rst,
}

/// `every`: a message count (with `after`) or a duration (with `at`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum EverySpec {
    /// Every N messages.
    Messages(u64),
    /// Every duration, e.g. "2s".
    Time(String),
}

/// One `[[faults]]` entry as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What happens.
    pub kind: Option<FaultKind>,
    /// `consumer-crash`: where the worker aborts.
    pub point: Option<CrashPoint>,
    /// Crashes: the worker's own count (deliveries, publishes); other faults:
    /// messages published run-wide before the fault starts.
    pub after: Option<u64>,
    /// Time after the producers started, e.g. "2s".
    pub at: Option<String>,
    /// How long the fault lasts, e.g. "3s".
    pub duration: Option<String>,
    /// Repeat: every N messages (with `after`) or every duration (with `at`).
    pub every: Option<EverySpec>,
    /// Chance that an occurrence fires, drawn from the scenario seed.
    pub probability: Option<f64>,
    /// Crashes: which worker (0-based); default 0.
    pub worker: Option<u64>,
    /// Crashes, broker-kill and relay-kill: delay before the restart, e.g. "500ms".
    pub restart_after: Option<String>,
    /// Network faults: which connections (producers, consumers, both).
    pub link: Option<LinkSpec>,
    /// Network faults: which way (to-server, to-client, both).
    pub direction: Option<DirectionSpec>,
    /// `latency`: the delay, e.g. "100ms".
    pub latency: Option<String>,
    /// `latency`: up to this much more, e.g. "20ms".
    pub jitter: Option<String>,
    /// `bandwidth`: bytes per second.
    pub bytes_per_second: Option<u64>,
    /// `slicer`: piece size; `limit-data`: bytes before the close.
    pub bytes: Option<u64>,
    /// `cut`: fin or rst.
    pub mode: Option<CutMode>,
    /// `gateway-unavailable`, `gateway-throttled`: the `Retry-After` the
    /// gateway sends, e.g. "1s" (whole seconds).
    pub retry_after: Option<String>,
    /// `gateway-slow`: how late the gateway answers after it applied the
    /// effect, e.g. "2s" (longer than the consumer's `push.timeout`).
    pub delay: Option<String>,
    /// `node-*`, `partition = "isolate"`: which cluster member, by number
    /// (from 0), or "leader" / "follower" of the run's queue (asked of the
    /// cluster when the fault fires).
    pub node: Option<NodeSpec>,
    /// `partition`: isolate (one member), halves or bridge.
    pub partition: Option<PartitionShape>,
}

/// A cluster member a fault aims at.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum NodeSpec {
    /// A member by number, from 0.
    Index(u64),
    /// `leader` or `follower` of the run's queue.
    Role(NodeRole),
}

/// A member named by its part in the run's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// The queue's leader (quorum) or master (classic, mirrored).
    Leader,
    /// A member that is not the leader (the first one after it).
    Follower,
}

/// How a partition splits the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    /// One member (the fault's `node`) cut off from all others.
    Isolate,
    /// The first half of the members (rounded down) against the rest.
    Halves,
    /// Jepsen's bridge, the majorities ring of three nodes: the link between
    /// two members is cut and the fault's `node` still sees both, so every
    /// member sees a majority, and no two the same one.
    Bridge,
    /// The clients of one member (the fault's `node`) cut off from it: every
    /// packet to and from its AMQP port is dropped; the members still see
    /// each other.
    Clients,
}

impl PartitionShape {
    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::Isolate => "isolate",
            PartitionShape::Halves => "halves",
            PartitionShape::Bridge => "bridge",
            PartitionShape::Clients => "clients",
        }
    }
}

/// `cluster_partition_handling`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionHandling {
    /// Both sides go on (and may disagree until an operator restarts one).
    Ignore,
    /// A node that sees no majority pauses itself until it does.
    #[default]
    PauseMinority,
    /// When the partition heals, the side with fewer clients restarts.
    Autoheal,
}

impl PartitionHandling {
    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PartitionHandling::Ignore => "ignore",
            PartitionHandling::PauseMinority => "pause-minority",
            PartitionHandling::Autoheal => "autoheal",
        }
    }

    /// The value in `rabbitmq.conf`.
    pub fn conf_value(self) -> &'static str {
        match self {
            PartitionHandling::Ignore => "ignore",
            PartitionHandling::PauseMinority => "pause_minority",
            PartitionHandling::Autoheal => "autoheal",
        }
    }
}

/// The `[expect]` table as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
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
    /// At most this many lost messages the broker had confirmed.
    pub max_lost_after_confirm: Option<u64>,
    /// At least this many lost messages the broker had confirmed (a
    /// scenario that shows the broker breaking its own promise).
    pub min_lost_after_confirm: Option<u64>,
    /// At most this many message IDs read by the eavesdropper on any one
    /// link (needs `eavesdropper = true`).
    pub max_ids_read: Option<u64>,
    /// At least this many message IDs read by the eavesdropper on one link.
    pub min_ids_read: Option<u64>,
}
