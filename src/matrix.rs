//! The guarantee matrix: every preset against every fault row, one grid.
//!
//! Each cell is an ordinary run of a generated plan whose expectations are
//! the preset's own promise, so the matrix checks itself: a preset that
//! breaks its promise makes `dlab matrix` exit 1. Rows that need the
//! broker's process (kill, pause, memory alarm) run only on a node dlab
//! started itself.
//!
//! Push rows run the AMQP presets with the consumer's effect a call to the
//! push gateway (at-least-once acks after the call, exactly-once sends an
//! idempotency key); one more row gives the local seen-table, which claims
//! exactly-once, a lost response: its one cell expects duplicates.
//!
//! SMTP rows run the same presets through the Postfix relay. One cell is
//! expected to break its preset's promise, and the grid shows it: across a
//! store-and-forward relay there is no at-most-once, because the relay
//! retries its next hop after a lost reply whatever the sender does.

use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use crate::push::keys::KeyStore;
use crate::scenario::{
    CrashPoint, CutMode, EffectKind, EsmtpSpec, ExpectSpec, FaultKind, FaultSpec, LinkSpec, Plan,
    PushSpec, Spec, Transport,
};
use crate::smtp::esmtp::{Body, Extension, Recipient};

/// One row of the grid: a fault (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Label shown in the grid.
    pub label: &'static str,
    /// Short name used in scenario names.
    pub key: &'static str,
    /// Whether the row belongs to the core matrix (consumer crashes).
    pub core: bool,
    /// The transport the row runs over.
    pub transport: Transport,
    /// AMQP rows whose consumer effect is a call to the push gateway.
    pub push: bool,
}

/// Every row, in the order of the grid.
pub const ROWS: [Row; 24] = [
    Row {
        label: "no fault",
        key: "no-fault",
        core: true,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "consumer crash before effect",
        key: "crash-before-effect",
        core: true,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "consumer crash after effect, before ack",
        key: "crash-after-effect",
        core: true,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "confirms lost on the way back",
        key: "confirm-lost",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "connection cut while publishing",
        key: "connection-cut",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "producer crash, confirms pending",
        key: "producer-crash",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "partition producers-broker 2s",
        key: "partition",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "broker paused (SIGSTOP) 2s",
        key: "broker-pause",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "broker kill -9 (durable, persistent)",
        key: "broker-kill",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "memory alarm blocks publishers",
        key: "memory-alarm",
        core: false,
        transport: Transport::Amqp,
        push: false,
    },
    Row {
        label: "smtp: no fault",
        key: "smtp-no-fault",
        core: true,
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "smtp: inbox hangs up after the dot",
        key: "smtp-inbox-hangup",
        core: true,
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "smtp: reply lost, sender to relay",
        key: "smtp-reply-lost",
        core: false,
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "smtp: inbox down 3s (store-and-forward)",
        key: "smtp-inbox-down",
        core: false,
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "smtp: 8-bit text, inbox no 8BITMIME",
        key: "smtp-no-8bitmime",
        core: false,
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "smtp: UTF-8 address, inbox no SMTPUTF8",
        key: "smtp-no-smtputf8",
        core: false,
        transport: Transport::Smtp,
        push: false,
    },
    Row {
        label: "push: no fault",
        key: "push-no-fault",
        core: true,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: response lost (gateway applied)",
        key: "push-response-lost",
        core: true,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: response lost, local seen-table",
        key: "push-seen-table",
        core: true,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: gateway 503 + Retry-After 1s, 2s",
        key: "push-unavailable",
        core: false,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: gateway slow (after the timeout)",
        key: "push-slow",
        core: false,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: gateway down 2s",
        key: "push-down",
        core: false,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: gateway restart (keys on disk)",
        key: "push-restart",
        core: false,
        transport: Transport::Amqp,
        push: true,
    },
    Row {
        label: "push: consumer crash after call, pre-ack",
        key: "push-crash-after-call",
        core: false,
        transport: Transport::Amqp,
        push: true,
    },
];

/// One cell to run.
#[derive(Debug, Clone)]
pub struct CellPlan {
    /// The row.
    pub row: Row,
    /// The column.
    pub guarantee: Guarantee,
    /// What to run.
    pub plan: Plan,
}

fn fault(kind: FaultKind) -> FaultSpec {
    FaultSpec {
        kind: Some(kind),
        ..FaultSpec::default()
    }
}

/// Fills in a row's fault and the workload changes it needs.
fn apply_row(row: Row, spec: &mut Spec, messages: u64) {
    let quarter = (messages / 4).max(1);
    if row.transport == Transport::Smtp {
        spec.transport = Some(Transport::Smtp);
        spec.producers = Some(4);
        // Timed faults need a run that lasts: four seconds of sending.
        if row.key == "smtp-inbox-hangup" || row.key == "smtp-inbox-down" {
            spec.rate = Some(quarter);
        }
        // No fault: the phone's inbox lacks an extension the message needs.
        let (inbox, recipient) = match row.key {
            "smtp-no-8bitmime" => (vec![Extension::Pipelining, Extension::Size], None),
            "smtp-no-smtputf8" => (
                vec![
                    Extension::Pipelining,
                    Extension::EightBitMime,
                    Extension::Size,
                ],
                Some(Recipient::Utf8),
            ),
            _ => (Vec::new(), None),
        };
        if !inbox.is_empty() {
            spec.esmtp = Some(EsmtpSpec {
                inbox: Some(inbox),
                body: Some(Body::EightBitMime),
                recipient,
                ..EsmtpSpec::default()
            });
        }
    }
    if row.push {
        spec.effect = Some(EffectKind::Push);
        // Four seconds of calls, so that timed faults meet some.
        spec.rate = Some(quarter);
        spec.push = Some(PushSpec {
            timeout: Some("500ms".into()),
            backoff: Some("20ms".into()),
            max_backoff: Some("500ms".into()),
            key_store: (row.key == "push-restart").then_some(KeyStore::Disk),
            ..PushSpec::default()
        });
    }
    let f = match row.key {
        "push-response-lost" | "push-seen-table" => FaultSpec {
            after: Some(quarter / 2),
            every: Some(crate::scenario::EverySpec::Messages(quarter / 2)),
            duration: Some("1s".into()),
            ..fault(FaultKind::ResponseLost)
        },
        "push-unavailable" => FaultSpec {
            at: Some("1s".into()),
            duration: Some("2s".into()),
            retry_after: Some("1s".into()),
            ..fault(FaultKind::GatewayUnavailable)
        },
        "push-slow" => FaultSpec {
            at: Some("1s".into()),
            duration: Some("1s".into()),
            delay: Some("1500ms".into()),
            ..fault(FaultKind::GatewaySlow)
        },
        "push-down" => FaultSpec {
            at: Some("1s".into()),
            duration: Some("2s".into()),
            ..fault(FaultKind::GatewayDown)
        },
        "push-restart" => FaultSpec {
            at: Some("1500ms".into()),
            ..fault(FaultKind::GatewayRestart)
        },
        "push-crash-after-call" => FaultSpec {
            point: Some(CrashPoint::AfterEffectBeforeAck),
            after: Some((messages / 8).max(1)),
            worker: Some(0),
            restart_after: Some("500ms".into()),
            ..fault(FaultKind::ConsumerCrash)
        },
        "smtp-inbox-hangup" => FaultSpec {
            at: Some("1s".into()),
            duration: Some("1500ms".into()),
            ..fault(FaultKind::InboxHangup)
        },
        "smtp-inbox-down" => FaultSpec {
            at: Some("1s".into()),
            duration: Some("3s".into()),
            ..fault(FaultKind::InboxDown)
        },
        "smtp-reply-lost" => FaultSpec {
            after: Some((messages / 5).max(1)),
            every: Some(crate::scenario::EverySpec::Messages((messages / 5).max(1))),
            ..fault(FaultKind::ReplyLostAfterDot)
        },
        "crash-before-effect" | "crash-after-effect" => FaultSpec {
            point: Some(if row.key == "crash-before-effect" {
                CrashPoint::BeforeEffect
            } else {
                CrashPoint::AfterEffectBeforeAck
            }),
            after: Some((messages / 8).max(1)),
            worker: Some(0),
            restart_after: Some("500ms".into()),
            ..fault(FaultKind::ConsumerCrash)
        },
        "confirm-lost" => {
            // Paced, so that the producer still publishes (and the broker
            // still confirms) when each occurrence arms: on a loaded machine
            // the runner sees a count trigger late, and an unpaced producer
            // may be done by then.
            spec.rate = Some(quarter);
            FaultSpec {
                link: Some(LinkSpec::Producers),
                after: Some((messages / 5).max(1)),
                every: Some(crate::scenario::EverySpec::Messages((messages / 5).max(1))),
                duration: Some("2s".into()),
                ..fault(FaultKind::ConfirmLost)
            }
        }
        "connection-cut" => FaultSpec {
            link: Some(LinkSpec::Producers),
            mode: Some(CutMode::Rst),
            after: Some(quarter),
            every: Some(crate::scenario::EverySpec::Messages(quarter)),
            ..fault(FaultKind::Cut)
        },
        "producer-crash" => FaultSpec {
            after: Some((messages / 3).max(1)),
            restart_after: Some("500ms".into()),
            ..fault(FaultKind::ProducerCrash)
        },
        "partition" => {
            spec.confirm_timeout = Some("1s".into());
            FaultSpec {
                link: Some(LinkSpec::Producers),
                after: Some(quarter),
                duration: Some("2s".into()),
                ..fault(FaultKind::Blackhole)
            }
        }
        "broker-pause" => {
            spec.confirm_timeout = Some("1s".into());
            FaultSpec {
                after: Some(quarter),
                duration: Some("2s".into()),
                ..fault(FaultKind::BrokerPause)
            }
        }
        "broker-kill" => {
            // A slow consumer keeps a backlog in the queue when the broker dies.
            spec.prefetch = Some(1);
            spec.consumers = Some(1);
            spec.effect_time = Some("1ms".into());
            spec.confirm_timeout = Some("2s".into());
            FaultSpec {
                after: Some(messages * 2 / 3),
                restart_after: Some("500ms".into()),
                ..fault(FaultKind::BrokerKill)
            }
        }
        "memory-alarm" => {
            spec.rate = Some(messages / 5);
            FaultSpec {
                after: Some(quarter),
                duration: Some("5s".into()),
                ..fault(FaultKind::MemoryAlarm)
            }
        }
        _ => return,
    };
    spec.faults = vec![f];
}

/// The plans of every cell of `rows`, row by row.
pub fn plans(rows: &[Row], messages: u64, seed: u64) -> Vec<CellPlan> {
    let mut cells = Vec::new();
    for &row in rows {
        for guarantee in Guarantee::ALL {
            // The seen-table claims exactly-once: its one cell shows it
            // cannot keep that promise across a lost response.
            if row.key == "push-seen-table" && guarantee != Guarantee::ExactlyOnce {
                continue;
            }
            let expect = match guarantee {
                Guarantee::ExactlyOnce if row.key == "push-seen-table" => ExpectSpec {
                    max_lost: Some(0),
                    min_duplicates: Some(1),
                    ..ExpectSpec::default()
                },
                // Whatever the policies, the relay bounces every message it
                // accepted: a loss caused by a missing keyword, on purpose.
                _ if row.key == "smtp-no-smtputf8" => ExpectSpec {
                    min_lost: Some(messages),
                    min_lost_after_confirm: Some(messages),
                    max_duplicates: Some(0),
                    ..ExpectSpec::default()
                },
                // The relay retries its next hop: the phone rings twice.
                Guarantee::AtMostOnce if row.key == "smtp-inbox-hangup" => ExpectSpec {
                    max_lost: Some(0),
                    min_duplicates: Some(1),
                    ..ExpectSpec::default()
                },
                Guarantee::AtMostOnce => ExpectSpec {
                    max_duplicates: Some(0),
                    ..ExpectSpec::default()
                },
                Guarantee::AtLeastOnce => ExpectSpec {
                    max_lost: Some(0),
                    ..ExpectSpec::default()
                },
                Guarantee::ExactlyOnce => ExpectSpec {
                    max_lost: Some(0),
                    max_duplicates: Some(0),
                    ..ExpectSpec::default()
                },
            };
            let mut spec = Spec {
                name: Some(format!("matrix-{}-{}", guarantee.name(), row.key)),
                description: Some(format!("{guarantee} under {}", row.label)),
                guarantee: Some(guarantee),
                messages: Some(messages),
                // AMQP settings; an SMTP row's inbox is one server.
                consumers: (row.transport == Transport::Amqp).then_some(2),
                prefetch: (row.transport == Transport::Amqp).then_some(50),
                seed: Some(seed),
                expect: Some(expect),
                ..Spec::default()
            };
            apply_row(row, &mut spec, messages);
            if row.key == "push-seen-table" {
                spec.guarantee = None;
                spec.producer = Some(ProducerPolicy::ConfirmRetry);
                spec.consumer = Some(ConsumerPolicy::SeenTable);
                spec.description = Some(
                    "a local seen-table around the call, which claims exactly-once, under lost responses: the phone rings twice"
                        .into(),
                );
            }
            let plan =
                Plan::from_spec(&spec, "matrix").expect("matrix plans are valid by construction");
            cells.push(CellPlan {
                row,
                guarantee,
                plan,
            });
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_meets_every_row_once_and_every_row_has_its_fault() {
        let cells = plans(&ROWS, 1000, 7);
        assert_eq!(cells.len(), ROWS.len() * Guarantee::ALL.len() - 2);
        for row in ROWS {
            for g in Guarantee::ALL {
                if row.key == "push-seen-table" && g != Guarantee::ExactlyOnce {
                    continue;
                }
                let c: Vec<_> = cells
                    .iter()
                    .filter(|c| c.row == row && c.guarantee == g)
                    .collect();
                assert_eq!(c.len(), 1);
                // The ESMTP rows have no fault: the inbox lacks an extension.
                let esmtp = c[0].plan.smtp().is_some_and(|s| s.esmtp_changed());
                assert_eq!(
                    esmtp,
                    row.key.starts_with("smtp-no-") && !row.key.ends_with("fault")
                );
                assert_eq!(
                    c[0].plan.faults.is_empty(),
                    row.key.ends_with("no-fault") || esmtp,
                    "{}",
                    row.key
                );
            }
        }
        let crash = cells
            .iter()
            .find(|c| c.row.key == "crash-before-effect")
            .unwrap();
        assert_eq!(crash.plan.crash_for_consumer(0).unwrap().1, 125);
        assert!(cells.iter().any(|c| c.plan.needs_node()));
        for c in &cells {
            assert_eq!(c.plan.transport, c.row.transport, "{}", c.row.key);
            assert_eq!(c.plan.amqp().is_some_and(|a| a.push.is_some()), c.row.push);
        }
        let seen = cells
            .iter()
            .find(|c| c.row.key == "push-seen-table")
            .unwrap();
        assert_eq!(seen.plan.consumer, ConsumerPolicy::SeenTable);
        assert_eq!(seen.plan.expect.min_duplicates, Some(1));
        let key = cells
            .iter()
            .find(|c| c.row.key == "push-response-lost" && c.guarantee == Guarantee::ExactlyOnce)
            .unwrap();
        assert_eq!(key.plan.consumer, ConsumerPolicy::IdempotencyKey);
    }
}
