//! `dlab compare`: one workload through three paths side by side: AMQP
//! (RabbitMQ, the effect local), AMQP whose consumers call the push gateway
//! over HTTP (the effect remote), and SMTP (a Postfix relay), first
//! undisturbed and then with the downstream side (the AMQP consumers, the
//! push gateway, the SMTP inbox) unreachable for the same length of time.
//!
//! The AMQP outage refuses the consumers' connections and cuts the open ones
//! (the runner restarts consumers until they can connect again); the push
//! outage takes the gateway down (consumers hold their deliveries and call
//! again with backoff); the SMTP outage takes the inbox down. Every upstream
//! keeps accepting: the broker's queue and the relay's disk queue hold the
//! backlog.

use crate::policy::Guarantee;
use crate::scenario::{
    EffectKind, ExpectSpec, FaultKind, FaultSpec, LinkSpec, Plan, Spec, Transport,
};

/// The paths a workload is compared over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Amqp,
    Push,
    Smtp,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Amqp => "amqp",
            Path::Push => "push",
            Path::Smtp => "smtp",
        }
    }

    fn transport(self) -> Transport {
        match self {
            Path::Smtp => Transport::Smtp,
            _ => Transport::Amqp,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Path::Amqp => "amqp",
            Path::Push => "amqp with the push gateway as the effect",
            Path::Smtp => "smtp",
        }
    }
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages per run.
    pub messages: u64,
    /// Messages per second (0: as fast as possible).
    pub rate: u64,
    /// The preset on both transports.
    pub guarantee: Guarantee,
    /// How long the downstream side is unreachable (`None`: no outage runs).
    pub outage: Option<String>,
    /// Seed.
    pub seed: u64,
}

/// The plans: AMQP, push and SMTP undisturbed, then each with the outage.
pub fn plans(w: &Workload) -> Vec<Plan> {
    let mut plans = Vec::new();
    let outages: Vec<Option<&str>> = match &w.outage {
        Some(d) => vec![None, Some(d.as_str())],
        None => vec![None],
    };
    for outage in outages {
        for path in [Path::Amqp, Path::Push, Path::Smtp] {
            let transport = path.transport();
            let suffix = if outage.is_some() { "-outage" } else { "" };
            let faults = match (outage, path) {
                (None, _) => vec![],
                (Some(d), Path::Push) => vec![FaultSpec {
                    kind: Some(FaultKind::GatewayDown),
                    at: Some("1s".into()),
                    duration: Some(d.into()),
                    ..FaultSpec::default()
                }],
                (Some(d), Path::Amqp) => vec![
                    FaultSpec {
                        kind: Some(FaultKind::Down),
                        link: Some(LinkSpec::Consumers),
                        at: Some("1s".into()),
                        duration: Some(d.into()),
                        ..FaultSpec::default()
                    },
                    FaultSpec {
                        kind: Some(FaultKind::Cut),
                        link: Some(LinkSpec::Consumers),
                        at: Some("1s".into()),
                        ..FaultSpec::default()
                    },
                ],
                (Some(d), Path::Smtp) => vec![FaultSpec {
                    kind: Some(FaultKind::InboxDown),
                    at: Some("1s".into()),
                    duration: Some(d.into()),
                    ..FaultSpec::default()
                }],
            };
            let spec = Spec {
                name: Some(format!("compare-{}{suffix}", path.name())),
                description: Some(match outage {
                    None => format!("{} over {}", w.guarantee, path.describe()),
                    Some(d) => format!(
                        "{} over {}, downstream unreachable for {d}",
                        w.guarantee,
                        path.describe()
                    ),
                }),
                transport: Some(transport),
                effect: (path == Path::Push).then_some(EffectKind::Push),
                guarantee: Some(w.guarantee),
                messages: Some(w.messages),
                rate: Some(w.rate),
                producers: Some(if transport == Transport::Smtp { 4 } else { 1 }),
                consumers: (transport == Transport::Amqp).then_some(2),
                seed: Some(w.seed),
                drain_timeout: Some("90s".into()),
                faults,
                expect: Some(match w.guarantee {
                    Guarantee::AtMostOnce => ExpectSpec::default(),
                    _ => ExpectSpec {
                        max_lost: Some(0),
                        ..ExpectSpec::default()
                    },
                }),
                ..Spec::default()
            };
            plans.push(
                Plan::from_spec(&spec, "compare").expect("compare plans are valid by construction"),
            );
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transport_runs_the_same_workload_with_and_without_the_outage() {
        let w = Workload {
            messages: 1000,
            rate: 500,
            guarantee: Guarantee::AtLeastOnce,
            outage: Some("3s".into()),
            seed: 1,
        };
        let p = plans(&w);
        assert_eq!(p.len(), 6);
        assert_eq!(
            p.iter().map(|p| p.transport.kind()).collect::<Vec<_>>(),
            [
                Transport::Amqp,
                Transport::Amqp,
                Transport::Smtp,
                Transport::Amqp,
                Transport::Amqp,
                Transport::Smtp
            ]
        );
        let push: Vec<bool> = p
            .iter()
            .map(|p| p.amqp().is_some_and(|a| a.push.is_some()))
            .collect();
        assert_eq!(push, [false, true, false, false, true, false]);
        assert!(p.iter().all(|p| p.messages == 1000 && p.rate == 500));
        assert!(p[..3].iter().all(|p| p.faults.is_empty()));
        for p in &p[3..] {
            assert!(
                p.faults.iter().any(|f| f.duration.as_secs() == 3),
                "{:?}",
                p.faults
            );
        }
    }
}
