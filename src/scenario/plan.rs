//! The checked plan: a [`Spec`] with defaults filled in, ranges checked and
//! durations resolved. Engines take a [`Plan`], never raw TOML.
//!
//! A plan has two layers: the settings every transport reads (here) and the
//! part only the scenario's transport reads ([`TransportPlan`], checked by
//! the one rule in `transport.rs`).
//!
//! Architecture invariant: a `Plan` that exists is runnable; nothing after this
//! point rejects a scenario for its content.

use super::amqp_plan::AmqpPlan;
use super::duration::parse_duration;
use super::fault::{Action, Fault};
use super::smtp_plan::SmtpPlan;
use super::spec::{CrashPoint, EffectKind, Spec, TlsMode, Transport};
use super::transport::{self, TransportPlan};
use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A validated, runnable scenario in two layers: the settings every
/// transport reads, and `transport`, the part only its own transport reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Short name shown in reports.
    pub name: String,
    /// What the scenario teaches.
    pub description: String,
    /// Which way notifications travel, with that transport's own settings.
    pub transport: TransportPlan,
    /// The preset the policies form, if they form one.
    pub guarantee: Option<Guarantee>,
    /// The producer policy.
    pub producer: ProducerPolicy,
    /// The consumer policy.
    pub consumer: ConsumerPolicy,
    /// Intended notifications.
    pub messages: u64,
    /// Messages per second across all producers; 0 is unthrottled.
    pub rate: u64,
    /// Producer worker processes (SMTP: sender sessions).
    pub producers: u32,
    /// Upper bound of the drain phase.
    pub drain_timeout: Duration,
    /// Seed for everything random.
    pub seed: u64,
    /// Whether the eavesdropper taps every proxied link.
    #[serde(default)]
    pub eavesdropper: bool,
    /// TLS on every hop.
    #[serde(default)]
    pub tls: TlsMode,
    /// Faults in schedule order.
    pub faults: Vec<Fault>,
    /// Bounds on the outcome.
    pub expect: Expectations,
}

/// Bounds a run's counts must stay within; a broken bound makes the run exit 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expectations {
    /// Upper bound on lost messages.
    pub max_lost: Option<u64>,
    /// Lower bound on lost messages.
    pub min_lost: Option<u64>,
    /// Upper bound on duplicate effects.
    pub max_duplicates: Option<u64>,
    /// Lower bound on duplicate effects.
    pub min_duplicates: Option<u64>,
    /// Upper bound on lost messages the broker had confirmed.
    #[serde(default)]
    pub max_lost_after_confirm: Option<u64>,
    /// Lower bound on lost messages the broker had confirmed.
    #[serde(default)]
    pub min_lost_after_confirm: Option<u64>,
    /// Upper bound on the message IDs the eavesdropper read on one link.
    #[serde(default)]
    pub max_ids_read: Option<u64>,
    /// Lower bound on the message IDs the eavesdropper read on one link.
    #[serde(default)]
    pub min_ids_read: Option<u64>,
}

/// One step of a path into the scenario document, used to point at a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A rule a spec broke, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Where in the document (empty for the document as a whole).
    pub path: Vec<Segment>,
    /// What was expected.
    pub message: String,
}

impl Invalid {
    /// An error about the key at `path` (table keys only).
    pub(super) fn at(path: &[&str], message: impl Into<String>) -> Self {
        Invalid::at_path(
            path.iter()
                .map(|k| Segment::Key((*k).to_string()))
                .collect(),
            message,
        )
    }

    /// An error at `faults[i].kind`.
    pub(super) fn fault_kind(i: usize, message: impl Into<String>) -> Self {
        let path = vec![
            Segment::Key("faults".into()),
            Segment::Index(i),
            Segment::Key("kind".into()),
        ];
        Invalid::at_path(path, message)
    }

    fn at_path(path: Vec<Segment>, message: impl Into<String>) -> Self {
        Invalid {
            path,
            message: message.into(),
        }
    }

    /// The dotted key this error is about, e.g. `faults[0].after`.
    pub fn key(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(k) if out.is_empty() => out.push_str(k),
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.key(), self.message)
        }
    }
}

/// `value` (or `default`) within `min..=max`, as a `T`.
pub(super) fn ranged<T: TryFrom<u64> + Copy>(
    value: Option<u64>,
    default: u64,
    key: &str,
    min: u64,
    max: u64,
) -> Result<T, Invalid> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(Invalid::at(
            &[key],
            format!("{v} is out of range; expected {min} to {max}"),
        ));
    }
    T::try_from(v).map_err(|_| Invalid::at(&[key], format!("{v} does not fit")))
}

/// `value` as a duration, or `default`.
pub(super) fn duration(
    value: &Option<String>,
    default: Duration,
    path: &[&str],
) -> Result<Duration, Invalid> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|m| Invalid::at(path, m)),
    }
}

/// The consumer's policy and the faults against where its effect happens: a
/// local seen-table transaction cannot include a remote call, the push
/// policies and faults need the push gateway.
fn check_effect(
    spec: &Spec,
    push: bool,
    consumer: ConsumerPolicy,
    faults: &[Fault],
) -> Result<(), Invalid> {
    let key = if spec.consumer.is_some() {
        "consumer"
    } else {
        "guarantee"
    };
    if push && consumer == ConsumerPolicy::Idempotent {
        return Err(Invalid::at(
            &[key],
            "idempotent commits its seen-mark with a local effect; with `effect = \"push\"` expected idempotency-key (or seen-table, to see it fail)",
        ));
    }
    if !push && consumer.push_only() {
        return Err(Invalid::at(
            &[key],
            format!(
                "{} wraps a call to the push gateway; expected `effect = \"push\"`",
                consumer.name()
            ),
        ));
    }
    if let Some(i) = faults
        .iter()
        .position(|f| f.action.needs_push())
        .filter(|_| !push)
    {
        return Err(Invalid::fault_kind(
            i,
            "a fault of the push hop needs the push gateway; expected `effect = \"push\"`",
        ));
    }
    Ok(())
}

/// A fault that reads the protocol in clear cannot act on a TLS link (the
/// proxy sees only records; the README says how to get the same outcome
/// under TLS), and a fault of the wire's TLS needs TLS.
fn check_tls(tls: TlsMode, faults: &[Fault]) -> Result<(), Invalid> {
    for (i, f) in faults.iter().enumerate() {
        let Action::Net { effect, .. } = f.action else {
            continue;
        };
        let message = if tls != TlsMode::Off && effect.reads_plaintext() {
            "reads a protocol point in clear at the proxy, and with `tls` every link carries only TLS records there; expected `tls = \"off\"` for it (under TLS, a cut or a crash loses the same reply)"
        } else if tls == TlsMode::Off && effect.needs_tls() {
            "acts on TLS, and this scenario has none; expected `tls = \"on\"` or `tls = \"mutual\"`"
        } else {
            continue;
        };
        return Err(Invalid::fault_kind(i, message));
    }
    Ok(())
}

impl Plan {
    /// Checks a spec and fills in defaults; `default_name` is used when the
    /// spec names none (the file stem).
    pub fn from_spec(spec: &Spec, default_name: &str) -> Result<Plan, Invalid> {
        let own = transport::vocabulary(spec.transport.unwrap_or(Transport::Amqp));
        let push = spec.effect == Some(EffectKind::Push);
        let (producer, consumer) = match (spec.guarantee, spec.producer, spec.consumer) {
            (Some(g), p, c) => {
                let (gp, gc) = if push {
                    g.push_policies()
                } else {
                    (own.preset)(g)
                };
                (p.unwrap_or(gp), c.unwrap_or(gc))
            }
            (None, Some(p), Some(c)) => (p, c),
            (None, _, _) => {
                return Err(Invalid::at(
                    &[],
                    "no guarantee: expected `guarantee` (at-most-once, at-least-once, exactly-once) or both `producer` and `consumer`",
                ))
            }
        };
        transport::check(spec, own, producer, consumer)?;
        let transport = match own.transport {
            Transport::Amqp => TransportPlan::Amqp(AmqpPlan::from_spec(spec)?),
            Transport::Smtp => TransportPlan::Smtp(SmtpPlan::from_spec(spec)?),
        };
        let consumers = match &transport {
            TransportPlan::Amqp(a) => a.consumers,
            TransportPlan::Smtp(_) => 0,
        };
        let producers: u32 = ranged(spec.producers, 1, "producers", 1, 64)?;
        let nodes = match &transport {
            TransportPlan::Amqp(a) => a.nodes,
            TransportPlan::Smtp(_) => 1,
        };
        let faults = spec
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| Fault::from_spec(i, f, producers, consumers, nodes))
            .collect::<Result<Vec<_>, _>>()?;
        check_effect(spec, push, consumer, &faults)?;
        check_tls(spec.tls.unwrap_or_default(), &faults)?;
        let e = spec.expect.clone().unwrap_or_default();
        let expect = Expectations {
            max_lost: e.max_lost,
            min_lost: e.min_lost,
            max_duplicates: e.max_duplicates,
            min_duplicates: e.min_duplicates,
            max_lost_after_confirm: e.max_lost_after_confirm,
            min_lost_after_confirm: e.min_lost_after_confirm,
            max_ids_read: e.max_ids_read,
            min_ids_read: e.min_ids_read,
        };
        if (expect.max_ids_read.is_some() || expect.min_ids_read.is_some())
            && spec.eavesdropper != Some(true)
        {
            let key = if expect.max_ids_read.is_some() {
                "max_ids_read"
            } else {
                "min_ids_read"
            };
            return Err(Invalid::at(
                &["expect", key],
                "counts what the eavesdropper read; expected `eavesdropper = true` beside it"
                    .to_string(),
            ));
        }
        let messages = ranged(spec.messages, 1000, "messages", 1, 10_000_000)?;
        for (min, max, what) in [
            (expect.min_lost, expect.max_lost, "lost"),
            (expect.min_duplicates, expect.max_duplicates, "duplicates"),
            (
                expect.min_lost_after_confirm,
                expect.max_lost_after_confirm,
                "lost_after_confirm",
            ),
            (expect.min_ids_read, expect.max_ids_read, "ids_read"),
        ] {
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    return Err(Invalid::at(
                        &["expect", &format!("min_{what}")],
                        format!(
                            "{lo} is above max_{what} = {hi}; expected min_{what} <= max_{what}"
                        ),
                    ));
                }
            }
        }
        Ok(Plan {
            name: spec
                .name
                .clone()
                .unwrap_or_else(|| default_name.to_string()),
            description: spec.description.clone().unwrap_or_default(),
            transport,
            guarantee: Guarantee::from_policies(producer, consumer),
            producer,
            consumer,
            messages,
            rate: ranged(spec.rate, 0, "rate", 0, 10_000_000)?,
            producers,
            drain_timeout: duration(
                &spec.drain_timeout,
                Duration::from_secs(60),
                &["drain_timeout"],
            )?,
            seed: spec.seed.unwrap_or(1),
            eavesdropper: spec.eavesdropper.unwrap_or(false),
            tls: spec.tls.unwrap_or_default(),
            faults,
            expect,
        })
    }

    /// The AMQP part, when the transport is AMQP.
    pub fn amqp(&self) -> Option<&AmqpPlan> {
        match &self.transport {
            TransportPlan::Amqp(a) => Some(a),
            _ => None,
        }
    }

    /// The SMTP part, when the transport is SMTP.
    pub fn smtp(&self) -> Option<&SmtpPlan> {
        match &self.transport {
            TransportPlan::Smtp(s) => Some(s),
            _ => None,
        }
    }

    /// Consumer worker processes the run starts (AMQP `consumers`; an SMTP
    /// run's inbox is no worker process).
    pub fn consumer_workers(&self) -> u32 {
        self.amqp().map_or(0, |a| a.consumers)
    }

    /// The crash a given consumer worker's first process must perform, if any.
    pub fn crash_for_consumer(&self, worker: u32) -> Option<(CrashPoint, u64, Duration)> {
        self.faults.iter().find_map(|f| match f.action {
            Action::ConsumerCrash {
                point,
                after,
                worker: w,
                restart_after,
            } if w == worker => Some((point, after, restart_after)),
            _ => None,
        })
    }

    /// The crash a given producer worker's first process must perform, if any.
    pub fn crash_for_producer(&self, worker: u32) -> Option<(u64, Duration)> {
        self.faults.iter().find_map(|f| match f.action {
            Action::ProducerCrash {
                after,
                worker: w,
                restart_after,
            } if w == worker => Some((after, restart_after)),
            _ => None,
        })
    }

    /// Whether the run needs a node dlab starts: a fault needs the broker's
    /// process, or TLS needs the node's TLS listener and its lab CA.
    pub fn needs_node(&self) -> bool {
        self.faults.iter().any(|f| f.action.needs_node())
            || (self.amqp().is_some() && self.tls != TlsMode::Off)
    }

    /// Whether the run needs a cluster dlab starts (`nodes` above 1).
    pub fn needs_cluster(&self) -> bool {
        self.amqp().is_some_and(|a| a.nodes > 1)
    }

    /// Whether the run needs one broker node (an AMQP run with `nodes = 1`).
    pub fn needs_one_broker(&self) -> bool {
        self.amqp().is_some_and(|a| a.nodes == 1)
    }

    /// Whether a fault needs the relay's processes (a dlab-started relay).
    pub fn needs_relay(&self) -> bool {
        self.faults.iter().any(|f| f.action.needs_relay())
    }

    /// Whether a fault goes through the proxy.
    pub fn needs_proxy(&self) -> bool {
        self.faults.iter().any(|f| f.action.needs_proxy())
    }

    /// Whether the run's links go through dlab's proxies: for network
    /// faults or for the eavesdropper's tap.
    pub fn proxied(&self) -> bool {
        self.needs_proxy() || self.eavesdropper
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::spec::{FaultKind, FaultSpec, QueueType};

    fn spec() -> Spec {
        Spec {
            guarantee: Some(Guarantee::AtLeastOnce),
            ..Spec::default()
        }
    }

    #[test]
    fn a_preset_fills_both_policies_and_one_side_can_be_overridden() {
        let plan = Plan::from_spec(&spec(), "x").unwrap();
        assert_eq!(plan.producer, ProducerPolicy::ConfirmRetry);
        assert_eq!(plan.consumer, ConsumerPolicy::AckAfterEffect);
        assert_eq!(plan.guarantee, Some(Guarantee::AtLeastOnce));
        let plan = Plan::from_spec(
            &Spec {
                consumer: Some(ConsumerPolicy::AckBeforeEffect),
                ..spec()
            },
            "x",
        )
        .unwrap();
        assert_eq!(plan.consumer, ConsumerPolicy::AckBeforeEffect);
        assert_eq!(plan.guarantee, None);
    }

    #[test]
    fn no_policy_at_all_is_an_error() {
        let err = Plan::from_spec(&Spec::default(), "x").unwrap_err();
        assert!(err.message.contains("guarantee"), "{err}");
    }

    #[test]
    fn ranges_name_the_key() {
        let err = Plan::from_spec(
            &Spec {
                consumers: Some(0),
                ..spec()
            },
            "x",
        )
        .unwrap_err();
        assert_eq!(err.key(), "consumers");
        let err = Plan::from_spec(
            &Spec {
                faults: vec![FaultSpec {
                    kind: Some(FaultKind::ConsumerCrash),
                    point: Some(CrashPoint::BeforeEffect),
                    after: Some(10),
                    worker: Some(3),
                    ..FaultSpec::default()
                }],
                ..spec()
            },
            "x",
        )
        .unwrap_err();
        assert_eq!(err.key(), "faults[0].worker");
    }

    #[test]
    fn quorum_queues_must_be_durable() {
        let err = Plan::from_spec(
            &Spec {
                queue_type: Some(QueueType::Quorum),
                durable: Some(false),
                ..spec()
            },
            "x",
        )
        .unwrap_err();
        assert_eq!(err.key(), "durable");
    }
}
