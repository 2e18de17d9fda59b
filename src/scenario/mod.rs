//! Scenario files: parse, apply overrides, validate into a [`Plan`].
//!
//! Parsing happens in two stages, as in ripgrep: first a [`Spec`] as close to the
//! TOML as possible (types and key names checked, every error with its line and
//! column), then the checked [`Plan`]. Nothing connects before both succeeded.

mod amqp_plan;
mod duration;
mod fault;
mod location;
mod overrides;
mod plan;
mod smtp_plan;
mod spec;
mod transport;

pub use amqp_plan::{AmqpPlan, PushPlan};
pub use duration::{parse_age, parse_duration};
pub use fault::{Action, Fault, GatewayFault, InboxFault, NetEffect, Target, Trigger};
pub use overrides::Override;
pub use plan::{Expectations, Invalid, Plan, Segment};
pub use smtp_plan::{SmtpPlan, SmtpTls};
pub use spec::{
    CrashPoint, CutMode, DirectionSpec, EffectKind, EsmtpSpec, EverySpec, ExpectSpec, FaultKind,
    FaultSpec, LinkSpec, NodeRole, NodeSpec, PartitionHandling, PartitionShape, PushSpec,
    QueueType, Spec, StartTls, TlsMode, Transport,
};
pub use transport::{vocabulary, TransportPlan, Vocabulary};

use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// A scenario that cannot run, said in one line: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// `file:line:column`, `file`, or `--set key=value`.
    pub origin: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The JSON Schema of a scenario file (its TOML read as JSON): key names and
/// types. Ranges and rules between keys are `dlab validate`'s. The committed
/// copy is `schema/scenario.schema.json`.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Spec);
    if let Some(o) = schema.as_object_mut() {
        o.insert("title".into(), "dlab scenario".into());
    }
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}

/// Reads, overrides and validates the scenario at `path`.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Plan, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        origin: path.display().to_string(),
        message: format!("cannot read the scenario file: {e}"),
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    parse(&text, &path.display().to_string(), &stem, overrides)
}

/// Parses scenario `text`; `file` names it in errors and `default_name` is the
/// scenario name when the text gives none.
pub fn parse(
    text: &str,
    file: &str,
    default_name: &str,
    overrides: &[Override],
) -> Result<Plan, ScenarioError> {
    let at = |offset: usize| {
        let lc = location::line_col(text, offset);
        format!("{file}:{}:{}", lc.line, lc.column)
    };
    let mut spec: Spec = toml::from_str(text).map_err(|e| {
        let message = one_line(e.message());
        let key = e.span().and_then(|s| location::key_at(text, s.start));
        let named = |k: &str| message.contains(&format!("`{}`", k.rsplit('.').next().unwrap_or(k)));
        ScenarioError {
            origin: e
                .span()
                .map_or_else(|| format!("{file}:1:1"), |s| at(s.start)),
            message: match key {
                Some(k) if !named(&k) => format!("`{k}`: {message}"),
                _ => message,
            },
        }
    })?;
    if !overrides.is_empty() {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ScenarioError {
            origin: file.to_string(),
            message: one_line(e.message()),
        })?;
        for o in overrides {
            overrides::merge(&mut table, &o.table);
        }
        spec = Spec::deserialize(toml::Value::Table(table)).map_err(|e| ScenarioError {
            origin: overrides
                .iter()
                .map(|o| format!("--set {}", o.raw))
                .collect::<Vec<_>>()
                .join(" "),
            message: one_line(e.message()),
        })?;
    }
    Plan::from_spec(&spec, default_name).map_err(|invalid| {
        let key = invalid.key();
        let origin = match overrides
            .iter()
            .rev()
            .find(|o| !key.is_empty() && o.covers(&key))
        {
            Some(o) => format!("--set {}", o.raw),
            None => location::span_of(text, &invalid.path)
                .map_or_else(|| format!("{file}:1:1"), |s| at(s.start)),
        };
        ScenarioError {
            origin,
            message: invalid.to_string(),
        }
    })
}

fn one_line(message: &str) -> String {
    message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("expected u64", "expected a whole number of at least 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "guarantee = \"exactly-once\"\nmessages = 50\n\n[[faults]]\nkind = \"consumer-crash\"\npoint = \"before-effect\"\nafter = 10\n";

    #[test]
    fn a_good_file_becomes_a_plan() {
        let plan = parse(GOOD, "s.toml", "s", &[]).unwrap();
        assert_eq!(plan.name, "s");
        assert_eq!(plan.messages, 50);
        assert_eq!(plan.faults.len(), 1);
    }

    #[test]
    fn unknown_keys_are_reported_at_their_line_and_column() {
        let text = "guarantee = \"exactly-once\"\nmesages = 50\n";
        let err = parse(text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:2:1");
        assert!(err.message.contains("unknown field `mesages`"), "{err}");
    }

    #[test]
    fn unknown_keys_inside_faults_are_reported_too() {
        let text = format!("{GOOD}restart = \"1s\"\n");
        let err = parse(&text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:8:1");
        assert!(err.message.contains("unknown field `restart`"), "{err}");
    }

    #[test]
    fn bad_values_point_at_the_key() {
        let text = "guarantee = \"exactly-once\"\n\nconsumers = 0\n";
        let err = parse(text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:3:1");
        assert!(err.message.contains("`consumers`"), "{err}");
        let text = "guarantee = \"twice\"\n";
        let err = parse(text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:1:13");
        assert!(err.message.contains("at-most-once"), "{err}");
        assert!(err.message.starts_with("`guarantee`"), "{err}");
        let text = "guarantee = \"exactly-once\"\nprefetch = \"lots\"\n";
        let err = parse(text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:2:12");
        assert!(err.message.starts_with("`prefetch`: invalid type"), "{err}");
    }

    #[test]
    fn smtp_scenarios_take_smtp_policies_and_faults_only() {
        let text = "transport = \"smtp\"\nguarantee = \"exactly-once\"\n";
        let plan = parse(text, "s.toml", "s", &[]).unwrap();
        assert_eq!(plan.producer, crate::policy::ProducerPolicy::Retry);
        assert_eq!(plan.guarantee, Some(crate::policy::Guarantee::ExactlyOnce));
        let text =
            "transport = \"smtp\"\nproducer = \"confirm-retry\"\nconsumer = \"idempotent\"\n";
        let err = parse(text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:2:1");
        assert!(err.message.contains("send-once or retry"), "{err}");
        let text = format!("transport = \"smtp\"\n{GOOD}");
        let err = parse(&text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:6:1");
        assert!(
            err.message
                .contains("consumer-crash is a fault of the amqp transport"),
            "{err}"
        );
        let text = "guarantee = \"at-least-once\"\n[[faults]]\nkind = \"inbox-down\"\nat = \"1s\"\nduration = \"2s\"\n";
        let err = parse(text, "s.toml", "s", &[]).unwrap_err();
        assert_eq!(err.origin, "s.toml:3:1");
        assert!(
            err.message
                .contains("inbox-down is a fault of the smtp transport"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("messages = \n", "s.toml", "s", &[]).unwrap_err();
        assert!(err.origin.starts_with("s.toml:1:"), "{err}");
    }

    #[test]
    fn overrides_apply_and_their_errors_name_the_override() {
        let o = [Override::parse("messages=7").unwrap()];
        assert_eq!(parse(GOOD, "s.toml", "s", &o).unwrap().messages, 7);
        let o = [Override::parse("consumers=0").unwrap()];
        let err = parse(GOOD, "s.toml", "s", &o).unwrap_err();
        assert_eq!(err.origin, "--set consumers=0");
        let o = [Override::parse("colour=red").unwrap()];
        let err = parse(GOOD, "s.toml", "s", &o).unwrap_err();
        assert!(err.message.contains("colour"), "{err}");
    }
}
