//! The AMQP transport's engine: a RabbitMQ queue between producer and
//! consumer worker processes, behind the run skeleton's
//! [`Engine`](crate::runner::engine::Engine) interface.
//!
//! Prepare: declare the run's queue, put the fault proxies in front of the
//! broker, read the broker's own counters. Run: the [`Supervisor`] starts
//! the workers and folds their events. Settled: every consumer ready and
//! owing no ack, and the queue has no ready message. Finish: read the
//! broker's counters again and delete the queue. Its report section: the
//! broker's own count beside the ledger's. With `effect = "push"` the
//! consumers' effect is a call to dlab's push gateway through a third proxy
//! (`push_use.rs`).

use super::cluster_use::ClusterUse;
use super::inspect::Inspector;
use super::push_use::PushUse;
use super::supervise::Supervisor;
use super::worker::WorkerArgs;
use super::{topology, BrokerError};
use crate::broker::{Counters, Management, QueueInfo};
use crate::proxy::{Protocol, Proxy};
use crate::report::{self, RunResult};
use crate::runner::engine::{Engine as EngineTrait, Finished, Prepared, Setup};
use crate::runner::faults::Links;
use crate::runner::fold::Fold;
use crate::runner::servers::{Part, Servers};
use crate::runner::workers::Launch;
use crate::runner::RunError;
use crate::scenario::TlsMode;
use std::time::{Duration, Instant};

/// One AMQP run in progress.
pub struct Engine {
    url: String,
    queue: String,
    keep_queue: bool,
    /// Taken when the run finishes (the queue is deleted then).
    inspector: Option<Inspector>,
    workers: Supervisor,
    /// The management API and its counters before the run (or why there are none).
    counters_before: Result<(Vec<Management>, Vec<Counters>), String>,
    broker_read: Result<BrokerRead, String>,
    /// A run on a cluster: what it does besides.
    cluster: Option<ClusterUse>,
    /// A run whose effect is a push: the gateway and its proxy.
    push: Option<PushUse>,
    /// dlab's own read of the queue after the drain.
    remaining: u64,
    /// A TLS run: the node to ask for the workers' connections, and the
    /// task asking it.
    tls_node: Option<crate::broker::NodeState>,
    tls_watch: Option<tokio::task::JoinHandle<Vec<report::eavesdrop::TlsConnection>>>,
    run_id: String,
}

/// What the broker said after the drain.
struct BrokerRead {
    source: String,
    queue: QueueInfo,
    /// Its counters' growth since the run started or, when a counter went
    /// down (the node restarted and began again at zero), since that restart.
    counted: Counters,
    /// Whether `counted` covers the whole run.
    since_start: bool,
}

impl EngineTrait for Engine {
    async fn prepare(s: &Setup<'_>) -> Result<Prepared<Engine>, RunError> {
        let (plan, ctx) = (s.plan, s.ctx);
        let amqp = plan.amqp().ok_or_else(|| {
            RunError::Unsupported(format!("scenario {} is not an AMQP scenario", plan.name))
        })?;
        let mut cluster = match amqp.nodes {
            1 => None,
            _ => Some(ClusterUse::obtain(s, amqp).await?),
        };
        // The broker: every member of the cluster, or the one target.
        let (urls, managements, node) = match &cluster {
            Some(c) => (c.cluster().urls(), c.cluster().managements(), None),
            None => {
                let target = ctx.amqp.as_ref().ok_or_else(|| {
                    RunError::Unsupported(
                        "an AMQP run needs a broker: give --amqp-url, or let dlab start one".into(),
                    )
                })?;
                if plan.needs_node() && target.node.is_none() {
                    return Err(RunError::Unsupported(format!(
                        "scenario {} injects broker process faults or asks for `tls`, which need a broker dlab starts itself; run it without --amqp-url / DLAB_AMQP_URL",
                        plan.name
                    )));
                }
                (
                    vec![target.url.clone()],
                    target.management.iter().cloned().collect(),
                    target.node.clone(),
                )
            }
        };
        let url = urls[0].clone();
        let queue = format!("dlab.{}.{}", plan.name, s.run_id);
        if let Some(c) = cluster.as_mut() {
            c.before_declare(&queue, s.run_id).await?;
        }
        let mut inspector =
            Inspector::connect(&urls, &queue, &format!("dlab runner {}", s.run_id)).await?;
        let channel = inspector
            .channel()
            .await
            .ok_or_else(|| BrokerError::refused(&url, "a channel", "the connection closed"))?;
        topology::declare_queue(channel, &queue, amqp)
            .await
            .map_err(|e| BrokerError::refused(&url, &format!("declaring queue {queue}"), e))?;

        if cluster.is_some() && plan.proxied() {
            return Err(RunError::Unsupported(format!(
                "scenario {}: network faults and the eavesdropper go through dlab's proxy, which is for one node; on a cluster, use `partition`",
                plan.name
            )));
        }
        // The workers' broker: the node's TLS listener when the scenario
        // asks for TLS (the runner's own reads stay on the plain one).
        let (worker_url, tls_dir) = match (plan.tls, &node) {
            (TlsMode::Off, _) => (url.clone(), None),
            (_, Some(n)) => {
                let state = n.state();
                let tls_url = state.tls_url().ok_or_else(|| {
                    RunError::Unsupported(
                        "the node dlab started has no TLS listener (a node of an older `dlab up`?). Try: `dlab down`, then `dlab up`".into(),
                    )
                })?;
                (tls_url, Some(state.tls_dir()))
            }
            (_, None) => {
                return Err(RunError::Unsupported(format!(
                    "scenario {}: `tls` needs a node dlab starts itself",
                    plan.name
                )))
            }
        };
        // A push effect: the gateway (HTTPS with the same lab CA when the
        // scenario asks for TLS) and its proxy (the consumers' third link).
        let (push, push_proxy) = match amqp.push {
            Some(p) => {
                let tls = tls_dir.as_deref().map(|d| (d, plan.tls == TlsMode::Mutual));
                let (u, proxy) = PushUse::start(s, p, tls).await?;
                (Some(u), Some(proxy))
            }
            None => (None, None),
        };
        let (producer_urls, consumer_urls, links) = if cluster.is_some() {
            (urls.clone(), urls.clone(), None)
        } else if plan.proxied() || ctx.always_proxy || push.is_some() {
            let upstream = broker_addr(&worker_url).await?;
            let producers = Proxy::start(upstream, Protocol::Amqp, plan.seed)
                .await
                .map_err(RunError::io("cannot start the fault proxy"))?;
            let consumers = Proxy::start(upstream, Protocol::Amqp, plan.seed ^ 1)
                .await
                .map_err(RunError::io("cannot start the fault proxy"))?;
            (
                vec![super::url::with_host_port(&worker_url, producers.addr())],
                vec![super::url::with_host_port(&worker_url, consumers.addr())],
                Some(Links {
                    producers,
                    consumers,
                    push: push_proxy,
                }),
            )
        } else {
            (vec![worker_url.clone()], vec![worker_url.clone()], None)
        };
        if let (Some(links), Some(dir)) = (&links, &tls_dir) {
            links.impersonate_with(dir)?;
        }
        let launch = Launch {
            exe: ctx.worker_exe.clone(),
            transport: "amqp",
            plan: s.plan_file.to_path_buf(),
            run_id: s.run_id.to_string(),
            log_dir: s.run_dir.to_path_buf(),
        };
        let worker = |urls: Vec<String>| WorkerArgs {
            amqp_url: urls,
            first_member: 0,
            push_url: push.as_ref().map(|p| p.url().to_string()),
            queue: queue.clone(),
            effect_store: Some(s.store.to_path_buf()),
            send_log: None,
            crash_point: None,
            crash_after: None,
            index: 0,
            run_id: s.run_id.to_string(),
            tls_dir: tls_dir.clone(),
            tls_identity: None,
        };
        // Mutual TLS: each worker presents its role's certificate.
        let identity = |role: &str| (plan.tls == TlsMode::Mutual).then(|| role.to_string());
        let (producer, consumer) = (
            WorkerArgs {
                push_url: None,
                tls_identity: identity("producer"),
                ..worker(producer_urls)
            },
            WorkerArgs {
                tls_identity: identity("consumer"),
                ..worker(consumer_urls)
            },
        );
        // The broker's counters before the run: its own count is their
        // growth (on a cluster, summed over the members).
        let counters_before = match managements.is_empty() {
            false => counters(&managements)
                .await
                .map(|before| (managements, before)),
            true => Err("no management API is known for this broker".to_string()),
        };
        let mut servers = Servers::none();
        if let Some(node) = &node {
            servers.add("node", Part::Node(node.clone()));
        }
        if let Some(c) = &cluster {
            servers.add("cluster", Part::Cluster(c.cluster().clone()));
        }
        if let Some(p) = &push {
            servers.add("gateway", Part::Gateway(p.gateway().clone()));
        }
        Ok(Prepared {
            engine: Engine {
                url,
                queue: queue.clone(),
                keep_queue: ctx.keep_queue,
                inspector: Some(inspector),
                workers: Supervisor::new(plan, launch, producer, consumer),
                counters_before,
                broker_read: Err("the run did not finish".into()),
                cluster,
                push,
                remaining: 0,
                tls_node: (plan.tls != TlsMode::Off)
                    .then(|| node.as_ref().map(|n| n.state()))
                    .flatten(),
                tls_watch: None,
                run_id: s.run_id.to_string(),
            },
            servers,
            links,
            backlog_queue: Some(queue),
        })
    }

    async fn start(&mut self, _s: &Setup<'_>, fold: &mut Fold) -> Result<(), RunError> {
        if let Some(c) = self.cluster.as_mut() {
            c.watch(&self.queue, fold.start());
        }
        self.workers.start(fold).await?;
        if let Some(node) = self.tls_node.take() {
            let workers = self.workers.worker_count();
            self.tls_watch = Some(super::tls_view::watch(node, self.run_id.clone(), workers));
        }
        Ok(())
    }

    async fn next(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        self.workers.next(fold).await
    }

    async fn tick(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        self.workers.restart_due(fold)?;
        self.workers.catch_up(fold)
    }

    fn producing(&self) -> bool {
        !self.workers.producers_finished()
    }

    fn stop_producing(&mut self) {
        self.workers.stop_producers();
    }

    async fn settled(&mut self, _fold: &Fold, _drain_started: Instant) -> bool {
        self.workers.consumers_settled()
            && match self.inspector.as_mut() {
                Some(i) => i.ready().await == Some(0),
                None => false,
            }
            && match &self.cluster {
                Some(c) => c.holds_nothing(&self.queue).await,
                None => true,
            }
    }

    async fn stop(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        self.workers.stop(fold).await
    }

    async fn finish(&mut self, _fold: &mut Fold) -> Result<Finished, RunError> {
        // The broker's own count, read before the queue is deleted.
        self.broker_read = match &self.counters_before {
            Ok((m, before)) => broker_count_read(m, &self.queue, before).await,
            Err(e) => Err(e.clone()),
        };
        if let Some(c) = self.cluster.as_mut() {
            let inspector = self.inspector.as_mut().expect("a run finishes once");
            let settled = inspector.ready().await.map(u64::from);
            c.after_drain(&self.queue, settled).await;
        }
        let inspector = self.inspector.take().expect("a run finishes once");
        let remaining = inspector.finish(self.keep_queue).await?;
        self.remaining = u64::from(remaining);
        Ok(Finished {
            broker: super::mask_password(&self.url),
            queue: self.queue.clone(),
            remaining: u64::from(remaining),
        })
    }

    async fn complete(self, s: &Setup<'_>, result: &mut RunResult) -> Result<(), RunError> {
        let restarted = result
            .fault_timeline
            .iter()
            .any(|r| r.fired && s.plan.faults[r.fault].action.restarts_broker())
            || self.cluster.as_ref().is_some_and(ClusterUse::disturbed);
        match self.broker_read {
            Ok(read) => {
                result.broker_count = Some(report::BrokerCount::compare(
                    read.source,
                    &read.queue,
                    &read.counted,
                    &result.counts,
                    read.since_start && !restarted,
                ))
            }
            Err(why) => result.broker_count_missing = Some(why),
        }
        if let Some(p) = &self.push {
            result.push = Some(p.report(self.workers.calls(), result.recount.effect_rows));
        }
        if let Some(watch) = self.tls_watch {
            result.broker_tls = match tokio::time::timeout(Duration::from_secs(15), watch).await {
                Ok(Ok(seen)) => seen,
                _ => Vec::new(),
            };
        }
        if let Some(c) = self.cluster {
            let report = c.report(self.workers.clients(), self.remaining);
            // What the cluster said over time joins the run's timeline.
            result
                .timeline
                .extend(
                    report
                        .changes()
                        .into_iter()
                        .map(|(at_ms, event)| report::TimelineEntry {
                            at_ms,
                            kind: report::TimelineKind::Cluster,
                            event,
                        }),
                );
            result.timeline.sort_by_key(|t| t.at_ms);
            result.cluster = Some(report);
        }
        Ok(())
    }
}

/// The counters of every member.
async fn counters(ms: &[Management]) -> Result<Vec<Counters>, String> {
    let mut all = Vec::with_capacity(ms.len());
    for m in ms {
        all.push(m.counters().await?);
    }
    Ok(all)
}

/// What every member counted since `before`, added up, and whether that
/// covers the whole run: a member whose counters went down restarted (a
/// kill, or its rabbit application stopped by a partition) and began again
/// at zero, and only its counts since then are in the sum.
fn grown(before: &[Counters], now: &[Counters]) -> (Counters, bool) {
    let mut sum = Counters::default();
    let mut whole = before.len() == now.len();
    for (b, n) in before.iter().zip(now) {
        let g = n.since(b);
        whole &= g.is_some();
        let c = g.unwrap_or(*n);
        sum.received += c.received;
        sum.delivered += c.delivered;
        sum.redelivered += c.redelivered;
        sum.acknowledged += c.acknowledged;
    }
    (sum, whole)
}

async fn broker_count_read(
    ms: &[Management],
    queue: &str,
    before: &[Counters],
) -> Result<BrokerRead, String> {
    let mut info = Err("no member answered".to_string());
    for m in ms {
        info = m.queue(queue).await;
        if info.is_ok() {
            break;
        }
    }
    let queue = info?;
    // A member paused by a partition, or restarting after a fault, comes
    // back within a minute once the cluster heals: wait for it.
    let deadline =
        Instant::now() + std::time::Duration::from_secs(if ms.len() > 1 { 60 } else { 0 });
    let now = loop {
        match counters(ms).await {
            Ok(c) => break c,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    };
    let (counted, since_start) = grown(before, &now);
    let source = match ms {
        [one] => one.describe(),
        _ => format!(
            "RabbitMQ's global counters, summed over {} members",
            ms.len()
        ),
    };
    Ok(BrokerRead {
        source,
        queue,
        since_start,
        counted,
    })
}

/// The socket address of the broker a URL names.
async fn broker_addr(url: &str) -> Result<std::net::SocketAddr, RunError> {
    let (host, port) = super::url::host_port(url).ok_or_else(|| {
        RunError::Unsupported(format!(
            "cannot read host and port from {}",
            super::mask_password(url)
        ))
    })?;
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| RunError::Unsupported(format!("cannot resolve the broker host {host}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_that_began_again_at_zero_makes_the_sum_partial() {
        let c = |n: u64| Counters {
            received: n,
            delivered: n,
            redelivered: 0,
            acknowledged: n,
        };
        let (sum, whole) = grown(&[c(10), c(5)], &[c(30), c(8)]);
        assert_eq!((sum.received, whole), (23, true));
        // Member 1 restarted: its 2 since then count, and the sum says so,
        // although the total still grew.
        let (sum, whole) = grown(&[c(10), c(5)], &[c(30), c(2)]);
        assert_eq!((sum.received, whole), (22, false));
    }
}
