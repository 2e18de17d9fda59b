//! Delivery policies: what a producer and a consumer do to keep a promise.
//!
//! A guarantee is not a switch but the composition of one producer policy and
//! one consumer policy (PRODUCT.md, "Guarantees are policies that compose").
//! The presets name the three classic compositions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a producer publishes and what it does when it does not know the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProducerPolicy {
    /// Publish without publisher confirms and never retry.
    FireAndForget,
    /// Publisher confirms with a bounded window in flight; republish on nack,
    /// confirm timeout or lost connection.
    ConfirmRetry,
    /// SMTP: one attempt per message; a refusal or a lost reply is given up.
    SendOnce,
    /// SMTP: send again until a 2xx reply, also after a lost reply (RFC 1047).
    Retry,
}

/// When a consumer acknowledges relative to the effect it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerPolicy {
    /// The broker forgets the message as soon as it sends it.
    AutoAck,
    /// Manual ack, then the effect.
    AckBeforeEffect,
    /// The effect, then the ack.
    AckAfterEffect,
    /// The seen-check, the effect and the seen-insert in one transaction, then
    /// the ack; an ID already seen is acked with no second effect.
    Idempotent,
    /// Push: a local seen-table around the remote call (check, call, mark,
    /// ack): what many teams write, and what cannot be atomic with an effect
    /// on somebody else's server.
    SeenTable,
    /// Push: the call carries the message ID as its `Idempotency-Key`, retried
    /// until a 2xx, then the ack; the gateway applies a key once.
    IdempotencyKey,
}

/// A named composition of a producer and a consumer policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// fire-and-forget + auto-ack: never two effects, possibly none.
    AtMostOnce,
    /// confirm-retry + ack-after-effect: at least one effect, possibly more.
    AtLeastOnce,
    /// confirm-retry + idempotent: exactly one effect.
    ExactlyOnce,
}

impl Guarantee {
    /// Every preset, weakest first.
    pub const ALL: [Guarantee; 3] = [
        Guarantee::AtMostOnce,
        Guarantee::AtLeastOnce,
        Guarantee::ExactlyOnce,
    ];

    /// The producer and consumer policies this preset stands for on the AMQP
    /// transport.
    pub fn amqp_policies(self) -> (ProducerPolicy, ConsumerPolicy) {
        match self {
            Guarantee::AtMostOnce => (ProducerPolicy::FireAndForget, ConsumerPolicy::AutoAck),
            Guarantee::AtLeastOnce => {
                (ProducerPolicy::ConfirmRetry, ConsumerPolicy::AckAfterEffect)
            }
            Guarantee::ExactlyOnce => (ProducerPolicy::ConfirmRetry, ConsumerPolicy::Idempotent),
        }
    }

    /// The policies this preset stands for on the SMTP transport: the sender
    /// sends once or retries, the inbox commits its effect before its 250
    /// (ack-after-effect) or deduplicates by Message-ID (idempotent). The
    /// relay in between always retries: SMTP has no auto-ack.
    pub fn smtp_policies(self) -> (ProducerPolicy, ConsumerPolicy) {
        match self {
            Guarantee::AtMostOnce => (ProducerPolicy::SendOnce, ConsumerPolicy::AckAfterEffect),
            Guarantee::AtLeastOnce => (ProducerPolicy::Retry, ConsumerPolicy::AckAfterEffect),
            Guarantee::ExactlyOnce => (ProducerPolicy::Retry, ConsumerPolicy::Idempotent),
        }
    }

    /// The policies this preset stands for on AMQP when the consumer's effect
    /// is a call to the push gateway: ack after the call for at-least-once,
    /// an idempotency key per message ID for exactly-once (a local seen-table
    /// cannot commit with somebody else's server).
    pub fn push_policies(self) -> (ProducerPolicy, ConsumerPolicy) {
        match self {
            Guarantee::ExactlyOnce => {
                (ProducerPolicy::ConfirmRetry, ConsumerPolicy::IdempotencyKey)
            }
            g => g.amqp_policies(),
        }
    }

    /// The preset whose policies are exactly these, if any (any transport or effect).
    pub fn from_policies(producer: ProducerPolicy, consumer: ConsumerPolicy) -> Option<Guarantee> {
        Guarantee::ALL.into_iter().find(|g| {
            g.amqp_policies() == (producer, consumer)
                || g.smtp_policies() == (producer, consumer)
                || g.push_policies() == (producer, consumer)
        })
    }

    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::AtMostOnce => "at-most-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ProducerPolicy {
    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ProducerPolicy::FireAndForget => "fire-and-forget",
            ProducerPolicy::ConfirmRetry => "confirm-retry",
            ProducerPolicy::SendOnce => "send-once",
            ProducerPolicy::Retry => "retry",
        }
    }
}

impl ConsumerPolicy {
    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerPolicy::AutoAck => "auto-ack",
            ConsumerPolicy::AckBeforeEffect => "ack-before-effect",
            ConsumerPolicy::AckAfterEffect => "ack-after-effect",
            ConsumerPolicy::Idempotent => "idempotent",
            ConsumerPolicy::SeenTable => "seen-table",
            ConsumerPolicy::IdempotencyKey => "idempotency-key",
        }
    }

    /// Whether the consumer sends acks itself (everything but auto-ack).
    pub fn manual_ack(self) -> bool {
        self != ConsumerPolicy::AutoAck
    }

    /// Whether the ack follows the effect's commit.
    pub fn acks_after_effect(self) -> bool {
        matches!(
            self,
            ConsumerPolicy::AckAfterEffect
                | ConsumerPolicy::Idempotent
                | ConsumerPolicy::SeenTable
                | ConsumerPolicy::IdempotencyKey
        )
    }

    /// Whether the policy only makes sense when the effect is a remote call.
    pub fn push_only(self) -> bool {
        matches!(
            self,
            ConsumerPolicy::SeenTable | ConsumerPolicy::IdempotencyKey
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_their_policies() {
        for g in Guarantee::ALL {
            let (p, c) = g.amqp_policies();
            assert_eq!(Guarantee::from_policies(p, c), Some(g));
            let (p, c) = g.smtp_policies();
            assert_eq!(Guarantee::from_policies(p, c), Some(g));
            let (p, c) = g.push_policies();
            assert_eq!(Guarantee::from_policies(p, c), Some(g));
        }
        assert_eq!(
            Guarantee::from_policies(ProducerPolicy::ConfirmRetry, ConsumerPolicy::SeenTable),
            None,
            "the seen-table is no preset: it promises what it cannot keep"
        );
        assert_eq!(
            Guarantee::from_policies(
                ProducerPolicy::ConfirmRetry,
                ConsumerPolicy::AckBeforeEffect
            ),
            None
        );
    }

    #[test]
    fn names_are_the_scenario_file_spellings() {
        // Scenario files and reports spell policies with these names; the serde
        // attribute above must agree with `name()`.
        fn json(v: impl Serialize) -> String {
            serde_json::to_string(&v).unwrap()
        }
        for g in Guarantee::ALL {
            assert_eq!(json(g), format!("\"{}\"", g.name()));
            assert_eq!(g.to_string(), g.name());
        }
        assert_eq!(
            Guarantee::ALL.map(Guarantee::name),
            ["at-most-once", "at-least-once", "exactly-once"]
        );
        let producers = [
            ProducerPolicy::FireAndForget,
            ProducerPolicy::ConfirmRetry,
            ProducerPolicy::SendOnce,
            ProducerPolicy::Retry,
        ];
        for p in producers {
            assert_eq!(json(p), format!("\"{}\"", p.name()));
        }
        let consumers = [
            ConsumerPolicy::AutoAck,
            ConsumerPolicy::AckBeforeEffect,
            ConsumerPolicy::AckAfterEffect,
            ConsumerPolicy::Idempotent,
            ConsumerPolicy::SeenTable,
            ConsumerPolicy::IdempotencyKey,
        ];
        for c in consumers {
            assert_eq!(json(c), format!("\"{}\"", c.name()));
        }
    }

    #[test]
    fn what_each_policy_implies() {
        use ConsumerPolicy::*;
        assert_eq!(
            [AutoAck, AckBeforeEffect, AckAfterEffect, Idempotent].map(ConsumerPolicy::manual_ack),
            [false, true, true, true]
        );
        assert_eq!(
            [AutoAck, AckBeforeEffect, AckAfterEffect, Idempotent]
                .map(ConsumerPolicy::acks_after_effect),
            [false, false, true, true]
        );
    }
}
