//! Faults as the runner sees them: what happens, when it triggers, how long
//! it lasts, whether it repeats and with what probability.
//!
//! Triggers are a time after the producers started (`at`) or a count of
//! messages published run-wide (`after`); crashes count within their worker.
//! Whether an occurrence fires is drawn from the scenario seed
//! ([`crate::schedule`]), so one seed replays the same faults.

use super::duration::parse_duration;
use super::plan::{Invalid, Segment};
use super::spec::{
    CrashPoint, CutMode, DirectionSpec, EverySpec, FaultKind, FaultSpec, LinkSpec, NodeRole,
    NodeSpec, PartitionShape,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a fault (or its next occurrence) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// This long after the producers started.
    At(Duration),
    /// Once this many messages were published (attempts, run-wide).
    After(u64),
}

/// What a network fault does to a link.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum NetEffect {
    /// Hold bytes back.
    Latency {
        /// Which way.
        ways: DirectionSpec,
        /// The delay.
        latency: Duration,
        /// Up to this much more per chunk.
        jitter: Duration,
    },
    /// Limit the rate.
    Bandwidth {
        /// Which way.
        ways: DirectionSpec,
        /// Bytes per second.
        bytes_per_second: u64,
    },
    /// Split writes.
    Slicer {
        /// Which way.
        ways: DirectionSpec,
        /// Piece size.
        bytes: u64,
    },
    /// Close every open connection.
    Cut {
        /// Reset instead of a normal close.
        rst: bool,
    },
    /// Refuse new connections.
    Down,
    /// Forward nothing (a partition).
    Blackhole {
        /// Which way.
        ways: DirectionSpec,
    },
    /// Close connections after so many bytes.
    LimitData {
        /// Which way.
        ways: DirectionSpec,
        /// Bytes before the close.
        bytes: u64,
    },
    /// Cut a connection just before a broker confirm reaches the producer.
    ConfirmLost,
    /// SMTP: cut a connection after a message's final "." reached the
    /// server, instead of passing the server's reply (RFC 1047).
    ReplyLostAfterDot,
    /// Push: cut a connection after a request reached the gateway, before
    /// the response's status line reaches the consumer.
    ResponseLost,
    /// SMTP: STARTTLS removed from the server's EHLO reply on new sessions.
    StartTlsStrip,
    /// New TLS sessions terminated by a man in the middle presenting a
    /// certificate a foreign CA signed (`expired: false`) or the lab's own
    /// expired one.
    Impostor {
        /// The lab's expired certificate rather than a foreign one.
        expired: bool,
    },
}

impl NetEffect {
    /// Whether the fault reads a protocol point in the stream, which on a
    /// TLS link it cannot see.
    pub fn reads_plaintext(&self) -> bool {
        matches!(
            self,
            NetEffect::ConfirmLost | NetEffect::ReplyLostAfterDot | NetEffect::ResponseLost
        )
    }

    /// Whether the fault acts on TLS (the scenario needs `tls`).
    pub fn needs_tls(&self) -> bool {
        matches!(self, NetEffect::StartTlsStrip | NetEffect::Impostor { .. })
    }
}

/// What the inbox does wrong while an inbox fault is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboxFault {
    /// Not listening: connections are refused.
    Down,
    /// 451 after the final "." and no effect.
    Tempfail,
    /// The effect, then the reply later than the relay waits.
    Slow,
    /// The effect, then the connection closed without a reply.
    Hangup,
}

impl InboxFault {
    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            InboxFault::Down => "inbox-down",
            InboxFault::Tempfail => "inbox-tempfail",
            InboxFault::Slow => "inbox-slow",
            InboxFault::Hangup => "inbox-hangup",
        }
    }
}

/// What the push gateway does wrong while a gateway fault is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum GatewayFault {
    /// 503 with `Retry-After`, no effect.
    Unavailable {
        /// Whole seconds.
        retry_after_s: u32,
    },
    /// 429 with `Retry-After`, no effect.
    Throttled {
        /// Whole seconds.
        retry_after_s: u32,
    },
    /// The effect, then the response this much later.
    Slow {
        /// The delay.
        delay: Duration,
    },
    /// Not listening: connections refused.
    Down,
    /// Stopped and started again: keys in memory are forgotten.
    Restart,
}

impl GatewayFault {
    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            GatewayFault::Unavailable { .. } => "gateway-unavailable",
            GatewayFault::Throttled { .. } => "gateway-throttled",
            GatewayFault::Slow { .. } => "gateway-slow",
            GatewayFault::Down => "gateway-down",
            GatewayFault::Restart => "gateway-restart",
        }
    }
}

/// The cluster member a fault aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Member `n` (from 0).
    Member(u32),
    /// The run queue's leader when the fault fires.
    Leader,
    /// A member that is not the leader when the fault fires.
    Follower,
}

impl Target {
    /// In words, for reports.
    pub fn describe(self) -> String {
        match self {
            Target::Member(n) => format!("node {n}"),
            Target::Leader => "the leader".into(),
            Target::Follower => "a follower".into(),
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// A consumer worker aborts at `point` of its `after`-th delivery.
    ConsumerCrash {
        /// Where.
        point: CrashPoint,
        /// Its delivery count at the abort (1-based).
        after: u64,
        /// Which consumer.
        worker: u32,
        /// Delay before the runner starts a new process.
        restart_after: Duration,
    },
    /// A producer worker aborts right after its `after`-th publish.
    ProducerCrash {
        /// Its publish count at the abort (1-based).
        after: u64,
        /// Which producer.
        worker: u32,
        /// Delay before the runner starts a new process.
        restart_after: Duration,
    },
    /// The proxy does something to a link.
    Net {
        /// Which links.
        link: LinkSpec,
        /// What.
        effect: NetEffect,
    },
    /// SIGKILL to the broker, restart after a delay.
    BrokerKill {
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// Graceful stop and start of the broker.
    BrokerRestart,
    /// SIGSTOP for the duration, then SIGCONT.
    BrokerPause,
    /// The memory alarm for the duration.
    MemoryAlarm,
    /// SMTP: the inbox misbehaves for the duration.
    Inbox {
        /// How.
        fault: InboxFault,
    },
    /// SMTP: SIGKILL to the relay's processes, restart after a delay.
    RelayKill {
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// SIGKILL to one cluster member, restarted after a delay.
    NodeKill {
        /// Which member.
        target: Target,
        /// Delay before the restart.
        restart_after: Duration,
    },
    /// SIGSTOP to one cluster member for the duration, then SIGCONT.
    NodePause {
        /// Which member.
        target: Target,
    },
    /// A graceful stop and start of one cluster member.
    NodeRestart {
        /// Which member.
        target: Target,
    },
    /// The links between cluster members cut for the duration, then healed.
    Partition {
        /// How the cluster is split.
        shape: PartitionShape,
        /// The member an `isolate` cuts off (the bridge of a `bridge`).
        target: Target,
    },
    /// Push: the gateway misbehaves for the duration (or restarts).
    Gateway {
        /// How.
        fault: GatewayFault,
    },
}

impl Action {
    /// Whether the runner must own the broker's process for this fault.
    pub fn needs_node(&self) -> bool {
        matches!(
            self,
            Action::BrokerKill { .. }
                | Action::BrokerRestart
                | Action::BrokerPause
                | Action::MemoryAlarm
        )
    }

    /// Whether this fault stops the broker's VM, so that the broker's own
    /// counters start again at zero.
    pub fn restarts_broker(&self) -> bool {
        matches!(
            self,
            Action::BrokerKill { .. }
                | Action::BrokerRestart
                | Action::NodeKill { .. }
                | Action::NodeRestart { .. }
        )
    }

    /// Whether the fault waits for a producer's next message at a protocol
    /// point (a confirm, the reply after the dot): once the producers have
    /// finished, nothing is left for it to take.
    pub fn waits_for_producers(&self) -> bool {
        matches!(
            self,
            Action::Net {
                link: LinkSpec::Producers,
                effect: NetEffect::ConfirmLost | NetEffect::ReplyLostAfterDot,
            }
        )
    }

    /// Whether the fault aims at a member of a cluster dlab started.
    pub fn needs_cluster(&self) -> bool {
        matches!(
            self,
            Action::NodeKill { .. }
                | Action::NodePause { .. }
                | Action::NodeRestart { .. }
                | Action::Partition { .. }
        )
    }

    /// Whether the runner must own the relay's processes for this fault.
    pub fn needs_relay(&self) -> bool {
        matches!(self, Action::RelayKill { .. })
    }

    /// Whether the fault acts on the push hop (the gateway or its proxy), so
    /// the scenario needs `effect = "push"`.
    pub fn needs_push(&self) -> bool {
        matches!(
            self,
            Action::Gateway { .. }
                | Action::Net {
                    link: LinkSpec::Push,
                    ..
                }
        )
    }

    /// Whether the fault goes through the proxy.
    pub fn needs_proxy(&self) -> bool {
        matches!(self, Action::Net { .. })
    }
}

/// A scheduled fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What happens.
    pub action: Action,
    /// When the first occurrence starts (crashes: unused, they count in the worker).
    pub trigger: Trigger,
    /// The distance between occurrences, in the trigger's unit.
    pub every: Option<Trigger>,
    /// How long each occurrence lasts (zero: instantaneous).
    pub duration: Duration,
    /// Chance that an occurrence fires.
    pub probability: f64,
}

fn bad(i: usize, key: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        path: vec![
            Segment::Key("faults".into()),
            Segment::Index(i),
            Segment::Key(key.into()),
        ],
        message: message.into(),
    }
}

fn dur(i: usize, key: &str, v: &Option<String>) -> Result<Option<Duration>, Invalid> {
    v.as_ref()
        .map(|t| parse_duration(t).map_err(|m| bad(i, key, m)))
        .transpose()
}

impl Fault {
    /// Checks one `[[faults]]` entry; `consumers` and `producers` bound `worker`.
    pub fn from_spec(
        i: usize,
        f: &FaultSpec,
        producers: u32,
        consumers: u32,
        nodes: u32,
    ) -> Result<Fault, Invalid> {
        let kind = f.kind.ok_or_else(|| Invalid {
            path: vec![Segment::Key("faults".into()), Segment::Index(i)],
            message: "a fault needs `kind`".into(),
        })?;
        let restart_after = dur(i, "restart_after", &f.restart_after)?;
        let duration = dur(i, "duration", &f.duration)?;
        let probability = f.probability.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&probability) {
            return Err(bad(
                i,
                "probability",
                format!("{probability} is out of range; expected 0 to 1"),
            ));
        }
        let is_crash = matches!(kind, FaultKind::ConsumerCrash | FaultKind::ProducerCrash);
        let worker = |n: u32, role: &str| -> Result<u32, Invalid> {
            let w = f.worker.unwrap_or(0);
            if w >= u64::from(n) {
                return Err(bad(
                    i,
                    "worker",
                    format!("{w} is out of range; the scenario has {n} {role}(s), numbered from 0"),
                ));
            }
            Ok(w as u32)
        };
        let count = |what: &str| -> Result<u64, Invalid> {
            match f.after {
                None => Err(bad(
                    i,
                    "kind",
                    format!("a {} needs `after` ({what})", kind.name()),
                )),
                Some(0) => Err(bad(i, "after", "0 is out of range; expected at least 1")),
                Some(n) => Ok(n),
            }
        };
        let trigger = if is_crash {
            for (key, set) in [
                ("at", f.at.is_some()),
                ("every", f.every.is_some()),
                ("duration", f.duration.is_some()),
            ] {
                if set {
                    return Err(bad(
                        i,
                        key,
                        format!(
                            "a {} happens once, at its worker's `after` count; expected no `{key}`",
                            kind.name()
                        ),
                    ));
                }
            }
            Trigger::After(count(if kind == FaultKind::ConsumerCrash {
                "the worker's delivery count at the abort"
            } else {
                "the worker's publish count at the abort"
            })?)
        } else {
            match (&f.at, f.after) {
                (Some(_), Some(_)) => return Err(bad(i, "at", "expected `at` or `after`, not both")),
                (Some(t), None) => Trigger::At(parse_duration(t).map_err(|m| bad(i, "at", m))?),
                (None, Some(n)) => Trigger::After(n),
                (None, None) => return Err(bad(i, "kind", format!("a {} needs `at` (a time after the producers started) or `after` (messages published)", kind.name()))),
            }
        };
        let every = match (&f.every, trigger) {
            (None, _) => None,
            (Some(EverySpec::Messages(n)), Trigger::After(_)) if *n > 0 => Some(Trigger::After(*n)),
            (Some(EverySpec::Time(t)), Trigger::At(_)) => {
                let d = parse_duration(t).map_err(|m| bad(i, "every", m))?;
                if d.is_zero() {
                    return Err(bad(i, "every", "expected a duration above zero"));
                }
                Some(Trigger::At(d))
            }
            (Some(_), Trigger::After(_)) => {
                return Err(bad(
                    i,
                    "every",
                    "with `after`, expected a message count above zero",
                ))
            }
            (Some(_), Trigger::At(_)) => {
                return Err(bad(
                    i,
                    "every",
                    "with `at`, expected a duration like \"2s\"",
                ))
            }
        };
        let needs_duration = |d: Option<Duration>| {
            d.filter(|d| !d.is_zero()).ok_or_else(|| {
                bad(
                    i,
                    "kind",
                    format!("a {} needs `duration`, e.g. \"2s\"", kind.name()),
                )
            })
        };
        let target = || -> Result<Target, Invalid> {
            if nodes < 2 {
                return Err(bad(
                    i,
                    "kind",
                    format!(
                        "a {} aims at a member of a cluster; expected `nodes = 3` (or 2 and more) in the scenario",
                        kind.name()
                    ),
                ));
            }
            match &f.node {
                None => Err(bad(
                    i,
                    "kind",
                    format!(
                        "a {} needs `node`: a member's number (0 to {}), \"leader\" or \"follower\"",
                        kind.name(),
                        nodes - 1
                    ),
                )),
                Some(NodeSpec::Index(n)) if *n >= u64::from(nodes) => Err(bad(
                    i,
                    "node",
                    format!(
                        "{n} is out of range; the cluster has {nodes} nodes, numbered from 0"
                    ),
                )),
                Some(NodeSpec::Index(n)) => Ok(Target::Member(*n as u32)),
                Some(NodeSpec::Role(NodeRole::Leader)) => Ok(Target::Leader),
                Some(NodeSpec::Role(NodeRole::Follower)) => Ok(Target::Follower),
            }
        };
        let ways = f.direction.unwrap_or(DirectionSpec::Both);
        let link = f.link.unwrap_or(LinkSpec::Both);
        let net = |effect| Action::Net { link, effect };
        let (action, duration) = match kind {
            FaultKind::ConsumerCrash => (
                Action::ConsumerCrash {
                    point: f.point.ok_or_else(|| bad(i, "kind", "a consumer-crash needs `point` (before-effect, after-effect-before-ack or after-ack)"))?,
                    after: count("")?,
                    worker: worker(consumers, "consumer")?,
                    restart_after: restart_after.unwrap_or(Duration::from_millis(500)),
                },
                Duration::ZERO,
            ),
            FaultKind::ProducerCrash => (
                Action::ProducerCrash { after: count("")?, worker: worker(producers, "producer")?, restart_after: restart_after.unwrap_or(Duration::from_millis(500)) },
                Duration::ZERO,
            ),
            FaultKind::Latency => {
                let latency = dur(i, "latency", &f.latency)?.ok_or_else(|| bad(i, "kind", "a latency fault needs `latency`, e.g. \"100ms\""))?;
                let jitter = dur(i, "jitter", &f.jitter)?.unwrap_or_default();
                (net(NetEffect::Latency { ways, latency, jitter }), needs_duration(duration)?)
            }
            FaultKind::Bandwidth => {
                let bytes_per_second = f.bytes_per_second.filter(|b| *b > 0).ok_or_else(|| bad(i, "kind", "a bandwidth fault needs `bytes_per_second` above zero"))?;
                (net(NetEffect::Bandwidth { ways, bytes_per_second }), needs_duration(duration)?)
            }
            FaultKind::Slicer => {
                let bytes = f.bytes.filter(|b| *b > 0).ok_or_else(|| bad(i, "kind", "a slicer needs `bytes` (the piece size) above zero"))?;
                (net(NetEffect::Slicer { ways, bytes }), needs_duration(duration)?)
            }
            FaultKind::Cut => (net(NetEffect::Cut { rst: f.mode == Some(CutMode::Rst) }), Duration::ZERO),
            FaultKind::Down => (net(NetEffect::Down), needs_duration(duration)?),
            FaultKind::Blackhole => (net(NetEffect::Blackhole { ways }), needs_duration(duration)?),
            FaultKind::LimitData => {
                let bytes = f.bytes.ok_or_else(|| bad(i, "kind", "a limit-data fault needs `bytes`"))?;
                (net(NetEffect::LimitData { ways, bytes }), needs_duration(duration)?)
            }
            FaultKind::ConfirmLost => {
                let link = f.link.unwrap_or(LinkSpec::Producers);
                (Action::Net { link, effect: NetEffect::ConfirmLost }, duration.unwrap_or(Duration::from_secs(10)))
            }
            FaultKind::BrokerKill => (Action::BrokerKill { restart_after: restart_after.unwrap_or(Duration::from_secs(1)) }, Duration::ZERO),
            FaultKind::BrokerRestart => (Action::BrokerRestart, Duration::ZERO),
            FaultKind::BrokerPause => (Action::BrokerPause, needs_duration(duration)?),
            FaultKind::MemoryAlarm => (Action::MemoryAlarm, needs_duration(duration)?),
            FaultKind::InboxDown => (Action::Inbox { fault: InboxFault::Down }, needs_duration(duration)?),
            FaultKind::InboxTempfail => (Action::Inbox { fault: InboxFault::Tempfail }, needs_duration(duration)?),
            FaultKind::InboxSlow => (Action::Inbox { fault: InboxFault::Slow }, needs_duration(duration)?),
            FaultKind::InboxHangup => (Action::Inbox { fault: InboxFault::Hangup }, needs_duration(duration)?),
            FaultKind::RelayKill => (Action::RelayKill { restart_after: restart_after.unwrap_or(Duration::from_secs(1)) }, Duration::ZERO),
            FaultKind::NodeKill => (
                Action::NodeKill {
                    target: target()?,
                    restart_after: restart_after.unwrap_or(Duration::from_secs(1)),
                },
                Duration::ZERO,
            ),
            FaultKind::NodePause => (Action::NodePause { target: target()? }, needs_duration(duration)?),
            FaultKind::NodeRestart => (Action::NodeRestart { target: target()? }, Duration::ZERO),
            FaultKind::Partition => {
                let shape = f.partition.ok_or_else(|| bad(i, "kind", "a partition needs `partition`: isolate, halves or bridge"))?;
                let target = match shape {
                    PartitionShape::Halves if f.node.is_none() => {
                        if nodes < 2 {
                            return Err(bad(i, "kind", "a partition needs a cluster; expected `nodes = 3` (or 2 and more) in the scenario"));
                        }
                        Target::Member(0)
                    }
                    PartitionShape::Bridge if nodes < 3 => {
                        return Err(bad(i, "partition", "a bridge needs three members or more; expected `nodes = 3`"))
                    }
                    _ => target()?,
                };
                (Action::Partition { shape, target }, needs_duration(duration)?)
            }
            FaultKind::ReplyLostAfterDot => {
                let link = f.link.unwrap_or(LinkSpec::Producers);
                (Action::Net { link, effect: NetEffect::ReplyLostAfterDot }, duration.unwrap_or(Duration::from_secs(10)))
            }
            FaultKind::ResponseLost => {
                if f.link.is_some_and(|l| l != LinkSpec::Push) {
                    return Err(bad(i, "link", "a response-lost fault acts on the push link; expected `link = \"push\"` or no link"));
                }
                (Action::Net { link: LinkSpec::Push, effect: NetEffect::ResponseLost }, duration.unwrap_or(Duration::from_secs(10)))
            }
            FaultKind::GatewayUnavailable | FaultKind::GatewayThrottled => {
                let after = dur(i, "retry_after", &f.retry_after)?.unwrap_or(Duration::from_secs(1));
                let retry_after_s = after.as_secs_f64().ceil().clamp(0.0, 3600.0) as u32;
                let fault = if kind == FaultKind::GatewayUnavailable {
                    GatewayFault::Unavailable { retry_after_s }
                } else {
                    GatewayFault::Throttled { retry_after_s }
                };
                (Action::Gateway { fault }, needs_duration(duration)?)
            }
            FaultKind::GatewaySlow => {
                let delay = dur(i, "delay", &f.delay)?.ok_or_else(|| bad(i, "kind", "a gateway-slow fault needs `delay`, longer than the consumer's `push.timeout`, e.g. \"2s\""))?;
                (Action::Gateway { fault: GatewayFault::Slow { delay } }, needs_duration(duration)?)
            }
            FaultKind::GatewayDown => (Action::Gateway { fault: GatewayFault::Down }, needs_duration(duration)?),
            FaultKind::StarttlsStrip => (net(NetEffect::StartTlsStrip), needs_duration(duration)?),
            FaultKind::MitmCertificate => (net(NetEffect::Impostor { expired: false }), needs_duration(duration)?),
            FaultKind::CertificateExpired => (net(NetEffect::Impostor { expired: true }), needs_duration(duration)?),
            FaultKind::GatewayRestart => (Action::Gateway { fault: GatewayFault::Restart }, Duration::ZERO),
        };
        Ok(Fault {
            action,
            trigger,
            every,
            duration,
            probability,
        })
    }

    /// The fault in one line, for reports.
    pub fn describe(&self) -> String {
        let when = match (self.trigger, self.every) {
            (Trigger::At(t), None) => format!("at {}ms", t.as_millis()),
            (Trigger::At(t), Some(Trigger::At(e))) => {
                format!("at {}ms and every {}ms", t.as_millis(), e.as_millis())
            }
            (Trigger::After(n), None) => format!("after {n} messages"),
            (Trigger::After(n), Some(Trigger::After(e))) => {
                format!("after {n} messages and every {e}")
            }
            _ => String::new(),
        };
        let lasting = if self.duration.is_zero() {
            String::new()
        } else {
            format!(" for {}ms", self.duration.as_millis())
        };
        let chance = if self.probability < 1.0 {
            format!(" with probability {}", self.probability)
        } else {
            String::new()
        };
        let what = match self.action {
            Action::ConsumerCrash { point, after, worker, restart_after } => {
                return format!("consumer-crash: consumer {worker} aborts {} at its delivery {after}, restarted after {}ms", point.name(), restart_after.as_millis())
            }
            Action::ProducerCrash { after, worker, restart_after } => {
                return format!("producer-crash: producer {worker} aborts after its publish {after}, restarted after {}ms", restart_after.as_millis())
            }
            Action::Net { link, effect } => format!("{} on the {} link", net_name(&effect), link_name(link)),
            Action::BrokerKill { restart_after } => format!("broker-kill (SIGKILL, restart after {}ms)", restart_after.as_millis()),
            Action::BrokerRestart => "broker-restart".to_string(),
            Action::BrokerPause => "broker-pause (SIGSTOP)".to_string(),
            Action::MemoryAlarm => "memory-alarm".to_string(),
            Action::Inbox { fault } => fault.name().to_string(),
            Action::RelayKill { restart_after } => format!("relay-kill (SIGKILL, restart after {}ms)", restart_after.as_millis()),
            Action::NodeKill { target, restart_after } => format!("node-kill of {} (SIGKILL, restart after {}ms)", target.describe(), restart_after.as_millis()),
            Action::NodePause { target } => format!("node-pause of {} (SIGSTOP)", target.describe()),
            Action::NodeRestart { target } => format!("node-restart of {}", target.describe()),
            Action::Partition { shape: PartitionShape::Halves, .. } => "partition: halves".to_string(),
            Action::Partition { shape: PartitionShape::Clients, target } => format!("partition: the clients of {} cut off", target.describe()),
            Action::Partition { shape, target } => format!("partition: {} {}", shape.name(), target.describe()),
            Action::Gateway { fault: GatewayFault::Unavailable { retry_after_s } } => format!("gateway-unavailable (503, Retry-After {retry_after_s}s)"),
            Action::Gateway { fault: GatewayFault::Throttled { retry_after_s } } => format!("gateway-throttled (429, Retry-After {retry_after_s}s)"),
            Action::Gateway { fault: GatewayFault::Slow { delay } } => format!("gateway-slow (answers {}ms after the effect)", delay.as_millis()),
            Action::Gateway { fault } => fault.name().to_string(),
        };
        format!("{what} {when}{lasting}{chance}")
    }
}

fn link_name(l: LinkSpec) -> &'static str {
    match l {
        LinkSpec::Producers => "producer",
        LinkSpec::Consumers => "consumer",
        LinkSpec::Both => "producer and consumer",
        LinkSpec::Push => "push",
    }
}

fn ways_name(w: DirectionSpec) -> &'static str {
    match w {
        DirectionSpec::ToServer => "to the server",
        DirectionSpec::ToClient => "to the client",
        DirectionSpec::Both => "both ways",
    }
}

fn net_name(e: &NetEffect) -> String {
    match *e {
        NetEffect::Latency {
            ways,
            latency,
            jitter,
        } => format!(
            "latency {}ms (+{}ms jitter) {}",
            latency.as_millis(),
            jitter.as_millis(),
            ways_name(ways)
        ),
        NetEffect::Bandwidth {
            ways,
            bytes_per_second,
        } => format!("bandwidth {bytes_per_second} B/s {}", ways_name(ways)),
        NetEffect::Slicer { ways, bytes } => format!("slicer {bytes} B {}", ways_name(ways)),
        NetEffect::Cut { rst } => format!("cut ({})", if rst { "rst" } else { "fin" }),
        NetEffect::Down => "down".to_string(),
        NetEffect::Blackhole { ways } => format!("blackhole {}", ways_name(ways)),
        NetEffect::LimitData { ways, bytes } => format!("limit-data {bytes} B {}", ways_name(ways)),
        NetEffect::ConfirmLost => "confirm-lost".to_string(),
        NetEffect::ReplyLostAfterDot => "reply-lost-after-dot".to_string(),
        NetEffect::ResponseLost => "response-lost".to_string(),
        NetEffect::StartTlsStrip => "starttls-strip".to_string(),
        NetEffect::Impostor { expired: false } => {
            "mitm-certificate (a foreign CA's certificate)".to_string()
        }
        NetEffect::Impostor { expired: true } => {
            "certificate-expired (the lab's own, out of date)".to_string()
        }
    }
}
