//! The plan's second layer: what belongs to one transport only, and the one
//! rule that keeps a scenario to its own transport.
//!
//! Each transport names, in one place, the scenario keys only it reads, its
//! producer and consumer policies, its faults and what the presets mean on it
//! (a [`Vocabulary`]: `amqp_plan.rs`, `smtp_plan.rs`). [`check`] rejects a
//! key, a policy or a fault of another transport with the key it is about.
//! The scenario file stays flat; the split happens when a spec becomes a plan.

use super::amqp_plan::{AmqpPlan, AMQP};
use super::plan::Invalid;
use super::smtp_plan::{SmtpPlan, SMTP};
use super::spec::{FaultKind, Spec, Transport};
use crate::policy::{ConsumerPolicy, Guarantee, ProducerPolicy};
use serde::{Deserialize, Serialize};

/// The settings of the scenario's transport: its kind and its own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TransportPlan {
    /// AMQP 0-9-1 through RabbitMQ: workers, queue, confirms.
    Amqp(AmqpPlan),
    /// SMTP: dlab's sender, a Postfix relay, dlab's inbox.
    Smtp(SmtpPlan),
}

impl TransportPlan {
    /// Which transport this is.
    pub fn kind(&self) -> Transport {
        match self {
            TransportPlan::Amqp(_) => Transport::Amqp,
            TransportPlan::Smtp(_) => Transport::Smtp,
        }
    }

    /// The name used in scenario files and reports.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// `plan.transport == Transport::Smtp` reads as it says.
impl PartialEq<Transport> for TransportPlan {
    fn eq(&self, other: &Transport) -> bool {
        self.kind() == *other
    }
}

/// A scenario key only one transport reads.
pub struct Key {
    /// Its name in scenario files.
    pub name: &'static str,
    /// Whether a spec sets it.
    pub set: fn(&Spec) -> bool,
}

/// What a scenario may name only with one transport.
pub struct Vocabulary {
    /// The transport.
    pub transport: Transport,
    /// The scenario keys only this transport reads.
    pub keys: &'static [Key],
    /// Its producer policies.
    pub producers: &'static [ProducerPolicy],
    /// Its consumer policies.
    pub consumers: &'static [ConsumerPolicy],
    /// Its faults.
    pub faults: &'static [FaultKind],
    /// The producer and consumer policies a preset stands for on it.
    pub preset: fn(Guarantee) -> (ProducerPolicy, ConsumerPolicy),
}

/// Every transport, in the order errors search them.
pub const TRANSPORTS: [&Vocabulary; 2] = [&AMQP, &SMTP];

/// The vocabulary of `transport`.
pub fn vocabulary(transport: Transport) -> &'static Vocabulary {
    TRANSPORTS
        .into_iter()
        .find(|v| v.transport == transport)
        .expect("every transport has a vocabulary")
}

/// The transport whose `part` of the vocabulary holds `x`, for error messages.
fn owner<T: PartialEq>(part: fn(&Vocabulary) -> &[T], x: &T) -> &'static str {
    TRANSPORTS
        .into_iter()
        .find(|v| part(v).contains(x))
        .map_or("another", |v| v.transport.name())
}

fn names<T: Copy>(items: &[T], name: fn(T) -> &'static str) -> String {
    let names: Vec<&str> = items.iter().map(|x| name(*x)).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "none".into(),
    }
}

/// The one rule: a scenario names only its own transport's keys, policies
/// and faults. `producer` and `consumer` are the policies in force (the
/// preset's, or the ones the spec names).
pub fn check(
    spec: &Spec,
    own: &Vocabulary,
    producer: ProducerPolicy,
    consumer: ConsumerPolicy,
) -> Result<(), Invalid> {
    let t = own.transport.name();
    for other in TRANSPORTS.iter().filter(|v| v.transport != own.transport) {
        if let Some(key) = other.keys.iter().find(|k| (k.set)(spec)) {
            return Err(Invalid::at(
                &[key.name],
                format!(
                    "a setting of the {} transport; this scenario's transport is {t}",
                    other.transport.name()
                ),
            ));
        }
    }
    if !own.producers.contains(&producer) {
        return Err(Invalid::at(
            &["producer"],
            format!(
                "{} is a producer policy of the {} transport; this scenario's transport is {t}, expected {}",
                producer.name(),
                owner(|v| v.producers, &producer),
                names(own.producers, ProducerPolicy::name)
            ),
        ));
    }
    if !own.consumers.contains(&consumer) {
        return Err(Invalid::at(
            &["consumer"],
            format!(
                "{} is a consumer policy of the {} transport; this scenario's transport is {t}, expected {}",
                consumer.name(),
                owner(|v| v.consumers, &consumer),
                names(own.consumers, ConsumerPolicy::name)
            ),
        ));
    }
    for (i, f) in spec.faults.iter().enumerate() {
        let Some(kind) = f.kind.filter(|k| !own.faults.contains(k)) else {
            continue;
        };
        return Err(Invalid::fault_kind(
            i,
            format!(
                "{} is a fault of the {} transport; this scenario's transport is {t}",
                kind.name(),
                owner(|v| v.faults, &kind)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;

    fn error(text: &str) -> (String, String) {
        let e = parse(text, "s.toml", "s", &[]).unwrap_err();
        (e.origin, e.message)
    }

    #[test]
    fn an_amqp_key_in_an_smtp_scenario_is_an_error_at_its_line_and_column() {
        let (origin, message) = error(
            "transport = \"smtp\"\nguarantee = \"at-least-once\"\nmessages = 10\n  prefetch = 3\n",
        );
        assert_eq!(origin, "s.toml:4:3");
        assert_eq!(
            message,
            "`prefetch`: a setting of the amqp transport; this scenario's transport is smtp"
        );
        for key in AMQP.keys {
            let value = match key.name {
                "confirm_timeout" | "effect_time" => "\"1s\"",
                "durable" | "persistent" => "true",
                "queue_type" => "\"classic\"",
                "partition_handling" => "\"ignore\"",
                "effect" => "\"local\"",
                "push" => "{ timeout = \"1s\" }",
                _ => "1",
            };
            let text = format!(
                "transport = \"smtp\"\nguarantee = \"exactly-once\"\n{} = {value}\n",
                key.name
            );
            let (origin, message) = error(&text);
            assert_eq!(origin, "s.toml:3:1", "{}", key.name);
            assert!(
                message.starts_with(&format!("`{}`: a setting of the amqp", key.name)),
                "{message}"
            );
            // The same key is the AMQP scenario's own (partition handling
            // on a cluster).
            let mut text = text.replace("transport = \"smtp\"", "transport = \"amqp\"");
            if key.name == "partition_handling" {
                text.push_str("nodes = 3\n");
            }
            if key.name == "push" {
                text = format!("effect = \"push\"\n{text}");
            }
            assert!(parse(&text, "s.toml", "s", &[]).is_ok(), "{}", key.name);
        }
    }

    #[test]
    fn an_smtp_policy_or_fault_in_an_amqp_scenario_is_an_error_at_its_line_and_column() {
        let (origin, message) =
            error("guarantee = \"at-least-once\"\n\nproducer = \"send-once\"\n");
        assert_eq!(origin, "s.toml:3:1");
        assert_eq!(message, "`producer`: send-once is a producer policy of the smtp transport; this scenario's transport is amqp, expected fire-and-forget or confirm-retry");
        let (origin, message) = error(
            "guarantee = \"at-least-once\"\n[[faults]]\nkind = \"cut\"\nat = \"1s\"\n[[faults]]\n kind = \"relay-kill\"\nat = \"1s\"\n",
        );
        assert_eq!(origin, "s.toml:6:2");
        assert_eq!(message, "`faults[1].kind`: relay-kill is a fault of the smtp transport; this scenario's transport is amqp");
        let (origin, message) =
            error("transport = \"smtp\"\nguarantee = \"at-least-once\"\nconsumer = \"auto-ack\"\n");
        assert_eq!(origin, "s.toml:3:1");
        assert_eq!(message, "`consumer`: auto-ack is a consumer policy of the amqp transport; this scenario's transport is smtp, expected ack-after-effect or idempotent");
    }

    #[test]
    fn an_override_of_another_transport_s_key_names_the_override() {
        let text = "transport = \"smtp\"\nguarantee = \"at-least-once\"\n";
        let o = [crate::scenario::Override::parse("consumers=4").unwrap()];
        let e = parse(text, "s.toml", "s", &o).unwrap_err();
        assert_eq!(e.origin, "--set consumers=4");
        assert!(
            e.message
                .starts_with("`consumers`: a setting of the amqp transport"),
            "{e}"
        );
    }

    /// The scenario keys every transport reads.
    const COMMON_KEYS: [&str; 15] = [
        "name",
        "description",
        "transport",
        "guarantee",
        "producer",
        "consumer",
        "messages",
        "rate",
        "producers",
        "drain_timeout",
        "eavesdropper",
        "tls",
        "seed",
        "faults",
        "expect",
    ];

    #[test]
    fn every_scenario_key_is_common_or_one_transport_s() {
        let schema: serde_json::Value =
            serde_json::from_str(&crate::scenario::json_schema()).unwrap();
        let mut written: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut classified: Vec<&str> = COMMON_KEYS.to_vec();
        for v in TRANSPORTS {
            classified.extend(v.keys.iter().map(|k| k.name));
        }
        written.sort_unstable();
        classified.sort_unstable();
        assert_eq!(
            written, classified,
            "each key once: common or one transport's"
        );
        // The schema's descriptions say which keys are AMQP's.
        for (key, property) in schema["properties"].as_object().unwrap() {
            let marked = property["description"]
                .as_str()
                .unwrap()
                .starts_with("AMQP: ");
            assert_eq!(marked, AMQP.keys.iter().any(|k| k.name == key), "{key}");
        }
        let kinds = schema["$defs"]["FaultKind"]["oneOf"].as_array().unwrap();
        for k in kinds {
            let kind: FaultKind = serde_json::from_value(k["const"].clone()).unwrap();
            assert!(
                TRANSPORTS.iter().any(|v| v.faults.contains(&kind)),
                "{}",
                kind.name()
            );
        }
        assert!(!kinds.is_empty());
    }

    #[test]
    fn each_transport_s_presets_use_its_own_policies() {
        for v in TRANSPORTS {
            for g in Guarantee::ALL {
                let (p, c) = (v.preset)(g);
                assert!(v.producers.contains(&p) && v.consumers.contains(&c), "{g}");
            }
        }
    }

    #[test]
    fn the_transport_part_survives_the_plan_file() {
        for text in [
            "guarantee = \"exactly-once\"\nprefetch = 7\n",
            "transport = \"smtp\"\nguarantee = \"exactly-once\"\n",
        ] {
            let plan = parse(text, "s.toml", "s", &[]).unwrap();
            let json = serde_json::to_string(&plan).unwrap();
            assert_eq!(
                serde_json::from_str::<crate::scenario::Plan>(&json).unwrap(),
                plan,
                "{json}"
            );
        }
    }
}
