//! `dlab compare`: one workload through AMQP (RabbitMQ) and through SMTP (a
//! Postfix relay), side by side, first undisturbed and then with the
//! downstream side (the AMQP consumers, the SMTP inbox) unreachable for the
//! same length of time.
//!
//! The AMQP outage refuses the consumers' connections and cuts the open ones
//! (the runner restarts consumers until they can connect again); the SMTP
//! outage takes the inbox down. Both upstreams keep accepting: the broker's
//! queue and the relay's disk queue hold the backlog.

use crate::policy::Guarantee;
use crate::scenario::{ExpectSpec, FaultKind, FaultSpec, LinkSpec, Plan, Spec, Transport};

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

/// The plans: AMQP and SMTP undisturbed, then both with the outage.
pub fn plans(w: &Workload) -> Vec<Plan> {
    let mut plans = Vec::new();
    let outages: Vec<Option<&str>> = match &w.outage {
        Some(d) => vec![None, Some(d.as_str())],
        None => vec![None],
    };
    for outage in outages {
        for transport in [Transport::Amqp, Transport::Smtp] {
            let suffix = if outage.is_some() { "-outage" } else { "" };
            let faults = match (outage, transport) {
                (None, _) => vec![],
                (Some(d), Transport::Amqp) => vec![
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
                (Some(d), Transport::Smtp) => vec![FaultSpec {
                    kind: Some(FaultKind::InboxDown),
                    at: Some("1s".into()),
                    duration: Some(d.into()),
                    ..FaultSpec::default()
                }],
            };
            let spec = Spec {
                name: Some(format!("compare-{}{suffix}", transport.name())),
                description: Some(match outage {
                    None => format!("{} over {}", w.guarantee, transport.name()),
                    Some(d) => format!(
                        "{} over {}, downstream unreachable for {d}",
                        w.guarantee,
                        transport.name()
                    ),
                }),
                transport: Some(transport),
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
        assert_eq!(p.len(), 4);
        assert_eq!(
            p.iter().map(|p| p.transport.kind()).collect::<Vec<_>>(),
            [
                Transport::Amqp,
                Transport::Smtp,
                Transport::Amqp,
                Transport::Smtp
            ]
        );
        assert!(p.iter().all(|p| p.messages == 1000 && p.rate == 500));
        assert!(p[0].faults.is_empty() && p[1].faults.is_empty());
        for p in &p[2..] {
            assert!(
                p.faults.iter().any(|f| f.duration.as_secs() == 3),
                "{:?}",
                p.faults
            );
        }
    }
}
