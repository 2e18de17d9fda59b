//! The fault driver: starts and ends each scheduled occurrence of the
//! runner-side faults (network faults through the proxies, broker process
//! faults through the node, inbox and relay faults on an SMTP run) and
//! records what each did.
//!
//! Crashes are not driven here: a crashing worker is told its crash point on
//! its command line and aborts by itself.

use super::node_faults;
use super::servers::Servers;
use crate::proxy::wire::{Impostor, Wire};
use crate::proxy::{Direction, End, LinkFaults, Proxy, StatsSnapshot};
use crate::push::gateway::Misbehaviour as GatewayMisbehaviour;
pub use crate::report::{FaultRecord, Tally};
use crate::scenario::{
    Action, DirectionSpec, Fault, GatewayFault, InboxFault, LinkSpec, NetEffect, Trigger,
};
use crate::schedule;
use crate::smtp::inbox::Misbehaviour;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The proxied links: producers to broker, consumers to broker, and
/// consumers to the push gateway when the effect is a push.
pub struct Links {
    /// The producers' proxy.
    pub producers: Proxy,
    /// The consumers' proxy.
    pub consumers: Proxy,
    /// The consumers' proxy to the push gateway.
    pub push: Option<Proxy>,
}

impl Links {
    /// Every link with its name in reports: producers, consumers, push.
    pub fn named(&self) -> Vec<(&'static str, &Proxy)> {
        let mut all = vec![
            ("producers", &self.producers),
            ("consumers", &self.consumers),
        ];
        all.extend(self.push.iter().map(|p| ("push", p)));
        all
    }

    /// Gives every link the man in the middle's certificates from the lab
    /// CA in `dir` (a run with TLS).
    pub fn impersonate_with(&self, dir: &std::path::Path) -> Result<(), super::RunError> {
        let with = crate::proxy::wire::Impersonation::from_dir(dir).map_err(|e| {
            super::RunError::Unsupported(format!("cannot set up the lab's TLS: {e}"))
        })?;
        let with = std::sync::Arc::new(with);
        for (_, p) in self.named() {
            p.impersonate_with(with.clone());
        }
        Ok(())
    }

    /// Tells each link that no fault of `faults` arms a protocol point on
    /// it, where none does: such a link may move idle streams without
    /// copying them.
    fn settle_points(&self, faults: &[(usize, Fault)]) {
        let armed = |p: &Proxy| {
            faults.iter().any(|(_, f)| match f.action {
                Action::Net { link, effect } => {
                    effect.reads_plaintext() && self.of(link).iter().any(|q| std::ptr::eq(*q, p))
                }
                _ => false,
            })
        };
        for (_, p) in self.named() {
            if !armed(p) {
                p.without_points();
            }
        }
    }

    fn of(&self, link: LinkSpec) -> Vec<&Proxy> {
        match link {
            LinkSpec::Producers => vec![&self.producers],
            LinkSpec::Consumers => vec![&self.consumers],
            LinkSpec::Both => vec![&self.producers, &self.consumers],
            LinkSpec::Push => self.push.iter().collect(),
        }
    }

    fn stats(&self) -> StatsSnapshot {
        let all = [
            Some(&self.producers),
            Some(&self.consumers),
            self.push.as_ref(),
        ];
        all.into_iter()
            .flatten()
            .map(Proxy::stats)
            .fold(StatsSnapshot::default(), |a, b| a.plus(&b))
    }
}

struct Active {
    record: usize,
    until: Instant,
    stats_before: StatsSnapshot,
    tally_before: Tally,
    task: Option<JoinHandle<Result<(), String>>>,
    /// The cluster member a node fault aimed at.
    member: Option<usize>,
}

/// Drives the runner-side faults of a plan.
pub struct Driver {
    faults: Vec<(usize, Fault)>,
    seed: u64,
    next: Vec<u64>,
    active: Vec<Option<Active>>,
    links: Option<Links>,
    servers: Servers,
    queue: Option<String>,
    start: Instant,
    /// Every occurrence so far.
    pub records: Vec<FaultRecord>,
}

fn ways(w: DirectionSpec) -> &'static [Direction] {
    match w {
        DirectionSpec::ToServer => &[Direction::ToServer],
        DirectionSpec::ToClient => &[Direction::ToClient],
        DirectionSpec::Both => &[Direction::ToServer, Direction::ToClient],
    }
}

/// Applies (`on`) or reverts a stream fault on a link's settings.
fn set_net(f: &mut LinkFaults, effect: NetEffect, on: bool) {
    match effect {
        NetEffect::Latency {
            ways: w,
            latency,
            jitter,
        } => {
            for d in ways(w) {
                let s = f.direction_mut(*d);
                s.latency = on.then_some(latency);
                s.jitter = if on { jitter } else { Duration::ZERO };
            }
        }
        NetEffect::Bandwidth {
            ways: w,
            bytes_per_second,
        } => {
            for d in ways(w) {
                f.direction_mut(*d).bandwidth = on.then_some(bytes_per_second);
            }
        }
        NetEffect::Slicer { ways: w, bytes } => {
            for d in ways(w) {
                f.direction_mut(*d).slice = on.then_some(bytes as usize);
            }
        }
        NetEffect::LimitData { ways: w, bytes } => {
            for d in ways(w) {
                f.direction_mut(*d).limit_data = on.then_some(bytes);
            }
        }
        NetEffect::Blackhole { ways: w } => {
            for d in ways(w) {
                f.direction_mut(*d).blackhole = on;
            }
        }
        NetEffect::Down => f.down = on,
        NetEffect::StartTlsStrip => f.wire = on.then_some(Wire::StripStartTls),
        NetEffect::Impostor { expired } => {
            f.wire = on.then_some(Wire::Impersonate(if expired {
                Impostor::Expired
            } else {
                Impostor::Foreign
            }))
        }
        NetEffect::Cut { .. }
        | NetEffect::ConfirmLost
        | NetEffect::ReplyLostAfterDot
        | NetEffect::ResponseLost => {}
    }
}

/// How the inbox misbehaves under an inbox fault (`down` is not a reply: it
/// closes the inbox).
fn misbehaviour(f: InboxFault) -> Option<Misbehaviour> {
    match f {
        InboxFault::Down => None,
        InboxFault::Tempfail => Some(Misbehaviour::Tempfail),
        InboxFault::Slow => Some(Misbehaviour::Slow),
        InboxFault::Hangup => Some(Misbehaviour::Hangup),
    }
}

/// How the gateway misbehaves under a gateway fault (`down` and `restart`
/// are not answers: they close it).
fn gateway_misbehaviour(f: GatewayFault) -> Option<GatewayMisbehaviour> {
    match f {
        GatewayFault::Unavailable { retry_after_s } => {
            Some(GatewayMisbehaviour::Unavailable { retry_after_s })
        }
        GatewayFault::Throttled { retry_after_s } => {
            Some(GatewayMisbehaviour::Throttled { retry_after_s })
        }
        GatewayFault::Slow { delay } => Some(GatewayMisbehaviour::Slow { delay }),
        GatewayFault::Down | GatewayFault::Restart => None,
    }
}

impl Driver {
    /// A driver for the runner-side faults of `faults`.
    pub fn new(
        faults: &[Fault],
        seed: u64,
        links: Option<Links>,
        servers: Servers,
        start: Instant,
    ) -> Driver {
        let faults: Vec<(usize, Fault)> = faults
            .iter()
            .cloned()
            .enumerate()
            .filter(|(_, f)| {
                !matches!(
                    f.action,
                    Action::ConsumerCrash { .. } | Action::ProducerCrash { .. }
                )
            })
            .collect();
        if let Some(links) = &links {
            links.settle_points(&faults);
        }
        Driver {
            next: vec![0; faults.len()],
            active: (0..faults.len()).map(|_| None).collect(),
            faults,
            seed,
            links,
            servers,
            queue: None,
            start,
            records: Vec::new(),
        }
    }

    /// The run's queue, whose backlog broker process faults record.
    pub fn with_queue(mut self, queue: Option<String>) -> Driver {
        self.queue = queue;
        self
    }

    fn ms_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    fn stats(&self) -> StatsSnapshot {
        self.links.as_ref().map(Links::stats).unwrap_or_default()
    }

    /// Whether fault `i` is a confirm-lost or reply-lost-after-dot that has
    /// done its cut (it ends then).
    fn confirm_taken(&self, i: usize) -> bool {
        match (&self.faults[i].1.action, &self.links) {
            (
                Action::Net {
                    link,
                    effect: NetEffect::ConfirmLost,
                },
                Some(links),
            ) => links.of(*link).iter().all(|p| !p.confirm_lost_armed()),
            (
                Action::Net {
                    link,
                    effect: NetEffect::ReplyLostAfterDot | NetEffect::ResponseLost,
                },
                Some(links),
            ) => links.of(*link).iter().all(|p| !p.reply_lost_armed()),
            _ => false,
        }
    }

    /// The smallest message count at which a fault is waiting to start.
    pub fn next_count_trigger(&self) -> Option<u64> {
        self.faults
            .iter()
            .enumerate()
            .filter(|(i, _)| self.active[*i].is_none())
            .filter_map(|(i, (_, f))| match schedule::occurrence(f, self.next[i]) {
                Some(Trigger::After(n)) => Some(n),
                _ => None,
            })
            .min()
    }

    /// What is active now, in words (for live progress).
    pub fn active_names(&self) -> Vec<String> {
        self.faults
            .iter()
            .zip(&self.active)
            .filter(|(_, a)| a.is_some())
            .map(|((_, f), _)| f.describe())
            .collect()
    }

    /// The proxied links, if the run has them.
    pub fn links(&self) -> Option<&Links> {
        self.links.as_ref()
    }

    /// Whether any fault is still active.
    pub fn busy(&self) -> bool {
        self.active.iter().any(Option::is_some)
    }

    /// Ends what is due to end and starts what is due to start; `may_start`
    /// is false once the producers finished (time triggers then no longer start).
    pub async fn tick(&mut self, elapsed: Duration, tally: Tally, may_start: bool) {
        let now = Instant::now();
        for i in 0..self.faults.len() {
            let waits_in_vain = !may_start && self.faults[i].1.action.waits_for_producers();
            let ending = self.active[i].as_ref().is_some_and(|a| {
                (a.until <= now || self.confirm_taken(i) || waits_in_vain)
                    && a.task.as_ref().is_none_or(|t| t.is_finished())
            });
            if ending {
                self.end(i, tally).await;
            }
            if self.active[i].is_some() {
                continue;
            }
            let (index, fault) = self.faults[i].clone();
            let Some(trigger) = schedule::occurrence(&fault, self.next[i]) else {
                continue;
            };
            // Time triggers start only while producers run (else a repeating
            // fault would hold the drain up forever); a count reached is
            // reached, except by a fault that waits for a producer's next
            // message: counts passed during a burst of republishes would
            // otherwise each wait out their full duration after the end.
            if !may_start && (matches!(trigger, Trigger::At(_)) || waits_in_vain) {
                continue;
            }
            if !schedule::reached(trigger, elapsed, tally.published) {
                continue;
            }
            let k = self.next[i];
            self.next[i] += 1;
            let fired = schedule::fires(self.seed, index, k, fault.probability);
            self.records.push(FaultRecord {
                fault: index,
                description: fault.describe(),
                occurrence: k,
                trigger: schedule::describe(trigger),
                fired,
                started_ms: fired.then(|| self.ms_since_start(now)),
                ended_ms: None,
                effect: None,
                during: None,
                after: None,
                note: None,
                backlog: None,
                aimed_at: None,
            });
            if fired {
                if fault.action.needs_node() || fault.action.needs_cluster() {
                    self.records.last_mut().expect("just pushed").backlog = self.backlog().await;
                }
                let stats_before = self.stats();
                let (until, task, note, member) = match self.servers.cluster().cloned() {
                    Some(cluster) if fault.action.needs_cluster() => {
                        let s = node_faults::start(
                            &cluster,
                            self.queue.as_deref(),
                            fault.action,
                            fault.duration,
                        )
                        .await;
                        self.records.last_mut().expect("just pushed").aimed_at = Some(s.aimed_at);
                        (s.until, s.task, s.note, s.member)
                    }
                    _ => {
                        let (until, task, note) = self.start(&fault).await;
                        (until, task, note, None)
                    }
                };
                if let Some(n) = note {
                    self.records.last_mut().expect("just pushed").note = Some(n);
                }
                // The window counts from when the fault took hold: starting
                // one (a CLI call, on a loaded machine) can take seconds.
                self.active[i] = Some(Active {
                    record: self.records.len() - 1,
                    until: Instant::now() + until,
                    stats_before,
                    tally_before: tally,
                    task,
                    member,
                });
            }
        }
    }

    /// Messages ready in the run's queue, asked of the node directly (not
    /// through a proxy a fault may hold), or None if it cannot be asked.
    async fn backlog(&self) -> Option<u64> {
        let queue = self.queue.as_ref()?;
        let url = match (self.servers.node(), self.servers.cluster()) {
            (Some(node), _) => node.state().url(),
            (None, Some(cluster)) => cluster.urls().into_iter().next()?,
            (None, None) => return None,
        };
        let conn = crate::amqp::connect(&url, "dlab fault driver", Duration::from_secs(2))
            .await
            .ok()?;
        let ask = async {
            let ch = conn.create_channel().await.ok()?;
            crate::amqp::topology::ready_messages(&ch, queue).await.ok()
        };
        let n = tokio::time::timeout(Duration::from_secs(2), ask)
            .await
            .ok()
            .flatten();
        let _ = conn.close(200, "backlog read".into()).await;
        n.map(u64::from)
    }

    /// Starts a fault; returns how long until it ends, a background task whose
    /// end it also waits for, and a note if something went wrong.
    async fn start(
        &mut self,
        fault: &Fault,
    ) -> (
        Duration,
        Option<JoinHandle<Result<(), String>>>,
        Option<String>,
    ) {
        match fault.action {
            Action::Net { link, effect } => {
                let Some(links) = self.links.as_ref() else {
                    return (Duration::ZERO, None, Some("no proxy on this run".into()));
                };
                for p in links.of(link) {
                    match effect {
                        NetEffect::Cut { rst } => {
                            p.cut_all(if rst { End::CloseRst } else { End::CloseFin });
                        }
                        NetEffect::ConfirmLost => p.arm_confirm_lost(true),
                        NetEffect::ReplyLostAfterDot | NetEffect::ResponseLost => {
                            p.arm_reply_lost(true)
                        }
                        e => p.set(|f| set_net(f, e, true)),
                    }
                    if effect.needs_tls() {
                        // The middlebox takes the link's sessions from now on.
                        p.cut_all(End::CloseFin);
                    }
                }
                (fault.duration, None, None)
            }
            Action::BrokerKill { restart_after } => match self.servers.node().cloned() {
                Some(node) => (
                    restart_after,
                    Some(node_faults::kill_then_relaunch(node, restart_after)),
                    None,
                ),
                None => (
                    Duration::ZERO,
                    None,
                    Some("no dlab-started node to kill".into()),
                ),
            },
            Action::BrokerRestart => match self.servers.node().cloned() {
                Some(node) => (
                    Duration::ZERO,
                    Some(node_faults::stop_then_relaunch(node)),
                    None,
                ),
                None => (
                    Duration::ZERO,
                    None,
                    Some("no dlab-started node to restart".into()),
                ),
            },
            Action::BrokerPause => match self.servers.node() {
                Some(node) => {
                    node.pause(true);
                    (fault.duration, None, None)
                }
                None => (
                    Duration::ZERO,
                    None,
                    Some("no dlab-started node to pause".into()),
                ),
            },
            Action::MemoryAlarm => match self.servers.node() {
                Some(node) => (
                    fault.duration,
                    None,
                    node.set_memory_watermark(0.000_000_1).await.err(),
                ),
                None => (Duration::ZERO, None, Some("no dlab-started node".into())),
            },
            Action::Inbox { fault: how } => match self.servers.inbox() {
                Some(inbox) => {
                    let note = match misbehaviour(how) {
                        None => inbox.set_down(true).await.err().map(|e| e.to_string()),
                        Some(m) => {
                            inbox.misbehave(Some(m));
                            None
                        }
                    };
                    (fault.duration, None, note)
                }
                None => (Duration::ZERO, None, Some("no inbox on this run".into())),
            },
            Action::RelayKill { restart_after } => match self.servers.relay().cloned() {
                Some(relay) => {
                    let task = tokio::spawn(async move {
                        let r = relay.clone();
                        tokio::task::spawn_blocking(move || r.kill())
                            .await
                            .map_err(|e| e.to_string())?;
                        tokio::time::sleep(restart_after).await;
                        tokio::task::spawn_blocking(move || relay.launch())
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())
                    });
                    (restart_after, Some(task), None)
                }
                None => (
                    Duration::ZERO,
                    None,
                    Some("no dlab-started relay to kill".into()),
                ),
            },
            Action::Gateway { fault: how } => match self.servers.gateway().cloned() {
                Some(gateway) => match how {
                    GatewayFault::Down => (
                        fault.duration,
                        None,
                        gateway.set_down(true).await.err().map(|e| e.to_string()),
                    ),
                    GatewayFault::Restart => {
                        let task = tokio::spawn(async move {
                            gateway.restart().await.map_err(|e| e.to_string())
                        });
                        (Duration::ZERO, Some(task), None)
                    }
                    _ => {
                        gateway.misbehave(gateway_misbehaviour(how));
                        (fault.duration, None, None)
                    }
                },
                None => (Duration::ZERO, None, Some("no push gateway on this run".into())),
            },
            Action::ConsumerCrash { .. } | Action::ProducerCrash { .. } => {
                (Duration::ZERO, None, None)
            }
            Action::NodeKill { .. }
            | Action::NodePause { .. }
            | Action::NodeRestart { .. }
            | Action::Partition { .. } => (
                Duration::ZERO,
                None,
                Some("no cluster dlab started: node faults and partitions need `nodes = 3` and no --amqp-url".into()),
            ),
        }
    }

    async fn end(&mut self, i: usize, tally: Tally) {
        let Some(active) = self.active[i].take() else {
            return;
        };
        let fault = self.faults[i].1.clone();
        let mut note = None;
        match fault.action {
            Action::Net { link, effect } => {
                if let Some(links) = self.links.as_ref() {
                    for p in links.of(link) {
                        match effect {
                            NetEffect::ConfirmLost => p.arm_confirm_lost(false),
                            NetEffect::ReplyLostAfterDot | NetEffect::ResponseLost => {
                                p.arm_reply_lost(false)
                            }
                            NetEffect::Cut { .. } => {}
                            e => p.set(|f| set_net(f, e, false)),
                        }
                    }
                }
            }
            Action::BrokerPause => {
                if let Some(n) = self.servers.node() {
                    n.pause(false);
                }
            }
            Action::MemoryAlarm => {
                if let Some(n) = self.servers.node() {
                    note = n.set_memory_watermark(0.4).await.err();
                }
            }
            Action::Inbox { fault: how } => {
                if let Some(inbox) = self.servers.inbox() {
                    match misbehaviour(how) {
                        None => note = inbox.set_down(false).await.err().map(|e| e.to_string()),
                        Some(_) => inbox.misbehave(None),
                    }
                }
            }
            Action::Gateway { fault: how } => {
                if let Some(gateway) = self.servers.gateway() {
                    match how {
                        GatewayFault::Down => {
                            note = gateway.set_down(false).await.err().map(|e| e.to_string())
                        }
                        GatewayFault::Restart => {}
                        _ => gateway.misbehave(None),
                    }
                }
            }
            a if a.needs_cluster() => {
                if let Some(c) = self.servers.cluster() {
                    node_faults::end(c, a, active.member);
                }
            }
            _ => {}
        }
        if let Some(task) = active.task {
            if let Ok(Err(e)) = task.await {
                note = Some(e);
            }
        }
        let stats = self.stats().since(&active.stats_before);
        let ended = self.ms_since_start(Instant::now());
        let r = &mut self.records[active.record];
        r.ended_ms = Some(ended);
        r.effect = self.links.is_some().then_some(stats);
        r.during = Some(tally.since(&active.tally_before));
        r.after = Some(tally);
        if note.is_some() {
            r.note = note;
        }
    }

    /// Ends every active fault (waiting for restarts) and fills in what
    /// happened after each, given the final tally.
    pub async fn finish(&mut self, tally: Tally) {
        for i in 0..self.faults.len() {
            if self.active[i].is_some() {
                self.end(i, tally).await;
            }
        }
        for r in &mut self.records {
            if let Some(at_end) = r.after {
                r.after = Some(tally.since(&at_end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_FAULTS: &str = r#"
guarantee = "at-least-once"
messages = 1000

[[faults]]
kind = "confirm-lost"
after = 100
every = 100

[[faults]]
kind = "latency"
link = "consumers"
latency = "1ms"
duration = "1ms"
after = 100
every = 100
"#;

    fn tally(published: u64) -> Tally {
        Tally {
            published,
            ..Tally::default()
        }
    }

    #[tokio::test]
    async fn a_fault_that_waits_for_a_producer_does_not_start_once_they_finished() {
        let plan = crate::scenario::parse(TWO_FAULTS, "t.toml", "t", &[]).unwrap();
        let mut d = Driver::new(&plan.faults, 1, None, Servers::none(), Instant::now());
        // Republishes carried the count past many of the confirm-lost's
        // occurrences; the producers have finished.
        d.tick(Duration::from_secs(1), tally(1300), false).await;
        let started: Vec<usize> = d.records.iter().map(|r| r.fault).collect();
        assert_eq!(
            started,
            vec![1],
            "only the latency fault starts: {started:?}"
        );
        // While they publish, it starts.
        d.tick(Duration::from_secs(1), tally(1300), true).await;
        assert!(d.records.iter().any(|r| r.fault == 0));
    }
}
