//! Faults aimed at one member of a cluster dlab started (`node-kill`,
//! `node-pause`, `node-restart`) and partitions between members: the
//! member is resolved when the occurrence fires ("leader" is asked of the
//! cluster then), and what it aimed at goes into the fault record.

use crate::broker::Node;
use crate::cluster::{partition, Cluster};
use crate::scenario::{Action, PartitionShape, Target};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// What starting a cluster fault did.
pub struct Started {
    /// How long until it ends.
    pub until: Duration,
    /// A restart it waits for before it ends.
    pub task: Option<JoinHandle<Result<(), String>>>,
    /// The member it aimed at (a paused member is resumed at the end).
    pub member: Option<usize>,
    /// In words: which member, or which links.
    pub aimed_at: String,
    /// What went wrong, if anything.
    pub note: Option<String>,
}

/// The member `target` names now.
async fn resolve(cluster: &Cluster, queue: Option<&str>, target: Target) -> (usize, String) {
    let n = cluster.members().len();
    let leader = match (target, queue) {
        (Target::Member(_), _) | (_, None) => None,
        (_, Some(q)) => cluster.leader(q).await,
    };
    let (i, why) = match (target, leader) {
        (Target::Member(i), _) => (i as usize, String::new()),
        (Target::Leader, Some(l)) => (l, ", the leader".to_string()),
        (Target::Follower, Some(l)) => ((l + 1) % n, ", a follower".to_string()),
        (_, None) => (
            0,
            ", because the cluster named no leader of the queue".to_string(),
        ),
    };
    (i, format!("node {i} ({}){why}", cluster.name(i)))
}

/// Starts a cluster fault (`action.needs_cluster()`).
pub async fn start(
    cluster: &Arc<Cluster>,
    queue: Option<&str>,
    action: Action,
    duration: Duration,
) -> Started {
    let target = match action {
        Action::NodeKill { target, .. }
        | Action::NodePause { target }
        | Action::NodeRestart { target }
        | Action::Partition { target, .. } => target,
        _ => unreachable!("only cluster faults come here"),
    };
    let (i, aimed_at) = resolve(cluster, queue, target).await;
    let node = cluster.members()[i].clone();
    let mut started = Started {
        until: duration,
        task: None,
        member: Some(i),
        aimed_at,
        note: None,
    };
    match action {
        Action::NodeKill { restart_after, .. } => {
            started.until = restart_after;
            started.task = Some(kill_then_relaunch(node, restart_after));
        }
        Action::NodeRestart { .. } => started.task = Some(stop_then_relaunch(node)),
        Action::NodePause { .. } => node.pause(true),
        Action::Partition { shape, .. } => {
            let n = cluster.members().len();
            let cuts = partition::cuts(shape, n, i);
            let links: Vec<String> = cuts.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            let clients_of: Vec<usize> = match shape {
                PartitionShape::Clients => vec![i],
                _ => Vec::new(),
            };
            started.aimed_at = match shape {
                PartitionShape::Halves => format!("links {} cut", links.join(", ")),
                PartitionShape::Clients => format!("{}: its clients cut off", started.aimed_at),
                _ => format!("{}: links {} cut", started.aimed_at, links.join(", ")),
            };
            started.member = None;
            started.note = cluster.partition(&cuts, &clients_of).err();
        }
        _ => {}
    }
    started
}

/// SIGKILL to `node` now, a relaunch on its ports and data after `delay`
/// (a single node's `broker-kill` and a member's `node-kill`).
pub fn kill_then_relaunch(node: Arc<Node>, delay: Duration) -> JoinHandle<Result<(), String>> {
    node.kill();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        node.relaunch().await.map_err(|e| e.to_string())
    })
}

/// A graceful stop of `node` (SIGKILL after 60 s), then a relaunch
/// (`broker-restart`, `node-restart`).
pub fn stop_then_relaunch(node: Arc<Node>) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        tokio::task::spawn_blocking({
            let node = node.clone();
            move || node.stop(Duration::from_secs(60))
        })
        .await
        .map_err(|e| e.to_string())?;
        node.relaunch().await.map_err(|e| e.to_string())
    })
}

/// Ends a cluster fault: resumes a paused member, heals a partition.
pub fn end(cluster: &Cluster, action: Action, member: Option<usize>) {
    match action {
        Action::NodePause { .. } => {
            if let Some(m) = member.and_then(|i| cluster.members().get(i)) {
                m.pause(false);
            }
        }
        Action::Partition { .. } => cluster.heal(),
        _ => {}
    }
}
