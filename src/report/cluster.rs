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
