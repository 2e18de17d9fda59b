//! What an AMQP run on a cluster does besides a single-node run: obtain the
//! cluster (the one `dlab up --nodes N` keeps, or one started for this run
//! alone), mirror the queue when the plan asks for a mirrored queue, watch
//! the cluster while the run goes on, and read the cluster's own account
//! after the drain for the report.

use crate::cluster::{counts, watch, Cluster};
use crate::report::{ClientConnection, ClusterReport};
use crate::runner::engine::Setup;
use crate::runner::RunError;
use crate::scenario::{AmqpPlan, QueueType};
use std::sync::Arc;
use std::time::Instant;

/// A run's use of its cluster.
pub struct ClusterUse {
    cluster: Arc<Cluster>,
    queue_type: QueueType,
    policy: Option<String>,
    watcher: Option<watch::Watcher>,
    report: ClusterReport,
}

impl ClusterUse {
    /// The cluster of `dlab up --nodes N` when it has the plan's size and
    /// partition handling; otherwise a cluster started for this run alone
    /// (retired when the run's last handle on it goes).
    pub async fn obtain(s: &Setup<'_>, amqp: &AmqpPlan) -> Result<ClusterUse, RunError> {
        let ctx = s.ctx;
        if ctx.amqp.as_ref().is_some_and(|t| t.node.is_none()) {
            return Err(RunError::Unsupported(format!(
                "scenario {} runs on a cluster of {} nodes that dlab starts itself; run it without --amqp-url / DLAB_AMQP_URL",
                s.plan.name, amqp.nodes
            )));
        }
        // A partition needs nftables (and root): refused before anything starts.
        let partitions = s
            .plan
            .faults
            .iter()
            .any(|f| matches!(f.action, crate::scenario::Action::Partition { .. }));
        if partitions {
            crate::cluster::partition::available()
                .map_err(|e| RunError::Unsupported(format!("scenario {}: {e}", s.plan.name)))?;
        }
        let up = ctx.cluster.clone().filter(|c| {
            c.members().len() == amqp.nodes as usize
                && c.record().partition_handling == amqp.partition_handling
        });
        let cluster = match up {
            Some(c) => c,
            None => {
                let dir = ctx.home.join("clusters").join(s.run_id);
                let c = Cluster::start(&dir, amqp.nodes, amqp.partition_handling, |m| {
                    eprintln!("{m}");
                })
                .await
                .map_err(|e| RunError::Unsupported(format!("cannot start the cluster: {e}")))?;
                Arc::new(c)
            }
        };
        let report = ClusterReport {
            members: (0..cluster.members().len())
                .map(|i| cluster.name(i))
                .collect(),
            partition_handling: amqp.partition_handling.name().to_string(),
            queue_type: amqp.queue_type.name().to_string(),
            ..ClusterReport::default()
        };
        Ok(ClusterUse {
            cluster,
            queue_type: amqp.queue_type,
            policy: None,
            watcher: None,
            report,
        })
    }

    /// The cluster.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Before the queue is declared: a mirrored queue gets its policy
    /// (`ha-mode: all`, automatic sync), set through the first member.
    pub async fn before_declare(&mut self, queue: &str, run_id: &str) -> Result<(), RunError> {
        if self.queue_type != QueueType::Mirrored {
            return Ok(());
        }
        let name = format!("dlab-mirror-{run_id}");
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        self.cluster.members()[0]
            .state()
            .ctl(
                "rabbitmqctl",
                &[
                    "set_policy",
                    &name,
                    &pattern,
                    r#"{"ha-mode":"all","ha-sync-mode":"automatic"}"#,
                    "--apply-to",
                    "queues",
                ],
            )
            .await
            .map_err(|e| RunError::Unsupported(format!("cannot mirror the queue: {e}")))?;
        self.policy = Some(name);
        Ok(())
    }

    /// Starts watching the cluster (members, partitions, the queue's leader).
    pub fn watch(&mut self, queue: &str, start: Instant) {
        let apis = (0..self.cluster.members().len())
            .map(|i| self.cluster.name(i))
            .zip(self.cluster.managements())
            .collect();
        self.watcher = Some(watch::Watcher::start(apis, queue.to_string(), start));
    }

    /// Whether the cluster holds none of the queue's messages, ready or
    /// checked out, as the first member that answers says. A quorum
    /// queue's messages checked out to a consumer on a member that was cut
    /// off count as neither ready nor ours until the member is back and the
    /// leader returns them; an empty AMQP read alone would end the drain
    /// before they are delivered again.
    pub async fn holds_nothing(&self, queue: &str) -> bool {
        for m in self.cluster.managements() {
            if let Ok(q) = watch::ask_queue(&m, queue, std::time::Duration::from_secs(2)).await {
                return q.messages == Some(0);
            }
        }
        false
    }

    /// After the drain, before the queue is deleted: stop watching, ask the
    /// cluster's CLI for its own account, remove the mirroring policy.
    pub async fn after_drain(&mut self, queue: &str, settled: Option<u64>) {
        if let Some(w) = self.watcher.take() {
            self.report.samples = w.stop();
        }
        self.report.leader_changes = watch::leader_changes(&self.report.samples);
        let quorum = self.queue_type == QueueType::Quorum;
        match counts::read(&self.cluster, queue, quorum, settled).await {
            Ok(after) => self.report.after = Some(after),
            Err(e) => self.report.notes.push(e),
        }
        if let Some(policy) = self.policy.take() {
            for m in self.cluster.members() {
                if m.state()
                    .ctl("rabbitmqctl", &["clear_policy", &policy])
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        }
    }

    /// Whether a member stopped running, or saw a partition, during the
    /// run (as the samples say): its rabbit application may have restarted
    /// and begun its counters again at zero, so the sum of the members'
    /// counters may not cover the whole run.
    pub fn disturbed(&self) -> bool {
        self.report.samples.iter().any(|s| {
            s.asked.is_none()
                || s.members.len() != self.report.members.len()
                || s.members
                    .iter()
                    .any(|m| !m.running || !m.partitions.is_empty())
        })
    }

    /// The report section, with the clients' connections and what dlab's
    /// own AMQP read found left in the queue.
    pub fn report(mut self, clients: &[ClientConnection], amqp_remaining: u64) -> ClusterReport {
        self.report.clients = clients.to_vec();
        if let Some(a) = self.report.after.as_mut() {
            a.amqp_remaining = amqp_remaining;
            a.agree = a.queue_messages.map(|q| q == amqp_remaining);
        }
        self.report
    }
}
