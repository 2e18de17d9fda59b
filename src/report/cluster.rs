//! What a cluster said of itself during and after a run: its members and
//! their states over time, the queue's leader and replicas, partitions seen,
//! which member each client was on, and the queue's count from the
//! cluster's own CLI after the drain, set beside the ledger's.

use serde::{Deserialize, Serialize};

/// A run on a cluster dlab started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterReport {
    /// The members' Erlang node names, in order (member 0 first).
    pub members: Vec<String>,
    /// `cluster_partition_handling`.
    pub partition_handling: String,
    /// The queue type as run: classic, mirrored or quorum.
    pub queue_type: String,
    /// What the cluster said whenever it changed (sampled once a second
    /// from the management API of the first member that answered).
    pub samples: Vec<ClusterSample>,
    /// Leader changes of the run's queue, from `samples`.
    pub leader_changes: u32,
    /// Which member each client connected to, and when.
    pub clients: Vec<ClientConnection>,
    /// The cluster's own CLI after the drain.
    pub after: Option<ClusterAfter>,
    /// Why `after` is missing, or what could not be read.
    pub notes: Vec<String>,
}

/// One member as one sample saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberState {
    /// Its Erlang node name.
    pub name: String,
    /// Whether the asked member saw it running.
    pub running: bool,
    /// The members it says it is partitioned from.
    pub partitions: Vec<String>,
}

/// What the cluster said at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterSample {
    /// Milliseconds after the producers started.
    pub at_ms: u64,
    /// The member that answered (others were down, paused or cut off).
    pub asked: Option<String>,
    /// Every member as the asked one sees it (empty when none answered).
    pub members: Vec<MemberState>,
    /// The queue's leader (quorum) or master (classic, mirrored).
    pub leader: Option<String>,
    /// The queue's replicas that are online (quorum: `online`; mirrored:
    /// the synchronised mirrors and the master).
    pub online: Vec<String>,
}

impl ClusterReport {
    /// Member `name` as reports show it: `node 1 (dlab-5001@h2)`.
    pub fn member(&self, name: &str) -> String {
        match self.members.iter().position(|m| m == name) {
            Some(i) => format!("node {i} ({name})"),
            None => name.to_string(),
        }
    }

    /// What changed from one sample to the next, in words, at the later
    /// sample's time: members that stopped or came back, partitions seen or
    /// gone, the queue's leader moving, no member answering.
    pub fn changes(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut last: Option<&ClusterSample> = None;
        for s in &self.samples {
            let mut said = Vec::new();
            if s.asked.is_none() {
                if last.is_none_or(|l| l.asked.is_some()) {
                    said.push("no member answered the management API".to_string());
                }
                out.extend(said.into_iter().map(|w| (s.at_ms, w)));
                continue;
            }
            let was = |name: &str| last.and_then(|l| l.members.iter().find(|m| m.name == name));
            for m in &s.members {
                let before = was(&m.name);
                let (ran, cut) =
                    before.map_or((true, false), |b| (b.running, !b.partitions.is_empty()));
                if ran && !m.running {
                    said.push(format!("{} not running", self.member(&m.name)));
                }
                if !ran && m.running {
                    said.push(format!("{} running again", self.member(&m.name)));
                }
                if !cut && !m.partitions.is_empty() {
                    said.push(format!(
                        "{} partitioned from {}",
                        self.member(&m.name),
                        m.partitions.join(", ")
                    ));
                }
                if cut && m.partitions.is_empty() {
                    said.push(format!("{} sees no partition", self.member(&m.name)));
                }
            }
            let leader_before = last.and_then(|l| l.leader.as_deref());
            match (leader_before, s.leader.as_deref()) {
                (None, Some(l)) => said.push(format!("leader {}", self.member(l))),
                (Some(a), Some(b)) if a != b => said.push(format!(
                    "leader moved from {} to {}",
                    self.member(a),
                    self.member(b)
                )),
                (Some(_), None) => said.push("no leader named".to_string()),
                _ => {}
            }
            if !said.is_empty() {
                let by = s
                    .asked
                    .as_deref()
                    .map_or(String::new(), |a| format!(" (as {} says)", self.member(a)));
                out.push((s.at_ms, format!("cluster: {}{by}", said.join("; "))));
            }
            last = Some(s);
        }
        out
    }
}

impl ClusterSample {
    /// Whether two samples say the same (apart from when).
    pub fn same_as(&self, other: &ClusterSample) -> bool {
        self.asked == other.asked
            && self.members == other.members
            && self.leader == other.leader
            && self.online == other.online
    }
}

/// A client's connection to one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClientConnection {
    /// Milliseconds after the producers started (0 for connections before).
    pub at_ms: u64,
    /// `producer 0`, `consumer 1`, ...
    pub client: String,
    /// The member's index (0-based).
    pub member: u32,
}

/// The cluster's own CLI after the drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterAfter {
    /// The member asked.
    pub asked: String,
    /// `rabbitmqctl list_queues messages` of the run's queue (ready and
    /// unacknowledged), after the workers stopped.
    pub queue_messages: Option<u64>,
    /// What dlab's own AMQP read of the queue said right after (the run's
    /// `drain.remaining_in_queue`).
    pub amqp_remaining: u64,
    /// Whether the two agree.
    pub agree: Option<bool>,
    /// `rabbitmq-queues quorum_status`: each member's Raft state and term
    /// (quorum queues only).
    pub raft: Vec<RaftMember>,
    /// `rabbitmq-diagnostics cluster_status`: running members.
    pub running: Vec<String>,
    /// `rabbitmq-diagnostics cluster_status`: partitions it still knows of.
    pub partitions: Vec<String>,
}

/// One member of a quorum queue's Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RaftMember {
    /// The member's node name.
    pub node: String,
    /// leader, follower, ...
    pub state: String,
    /// Its Raft term.
    pub term: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, leader: &str, down: &[&str], cut: &[&str]) -> ClusterSample {
        ClusterSample {
            at_ms,
            asked: Some("a@h1".into()),
            members: ["a@h1", "b@h2", "c@h3"]
                .iter()
                .map(|n| MemberState {
                    name: n.to_string(),
                    running: !down.contains(n),
                    partitions: if cut.contains(n) {
                        vec!["x".into()]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            leader: Some(leader.into()),
            online: Vec::new(),
        }
    }

    #[test]
    fn the_timeline_says_what_changed_and_only_that() {
        let c = ClusterReport {
            members: vec!["a@h1".into(), "b@h2".into(), "c@h3".into()],
            samples: vec![
                sample(0, "a@h1", &[], &[]),
                sample(1000, "a@h1", &[], &[]),
                sample(2000, "b@h2", &["a@h1"], &[]),
                sample(3000, "b@h2", &[], &["c@h3"]),
            ],
            ..ClusterReport::default()
        };
        let said: Vec<String> = c
            .changes()
            .into_iter()
            .map(|(at, w)| format!("{at} {w}"))
            .collect();
        assert_eq!(
            said,
            [
                "0 cluster: leader node 0 (a@h1) (as node 0 (a@h1) says)",
                "2000 cluster: node 0 (a@h1) not running; leader moved from node 0 (a@h1) to node 1 (b@h2) (as node 0 (a@h1) says)",
                "3000 cluster: node 0 (a@h1) running again; node 2 (c@h3) partitioned from x (as node 0 (a@h1) says)",
            ]
        );
    }
}
