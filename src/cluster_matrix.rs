//! The cluster matrix (`dlab matrix --topology cluster`): queue types
//! (classic, mirrored, quorum) against cluster faults (leader kill, leader
//! paused 20 s, leader isolated under each partition-handling mode, the
//! cluster split in halves), every cell at-least-once on a three-node
//! cluster.
//!
//! A cell's expectations are only what the queue type itself promises: a
//! quorum queue loses nothing it confirmed (RabbitMQ's own Jepsen suite
//! checks exactly that); classic and mirrored cells are counted and shown,
//! not judged, since losing confirmed messages there is the finding, not a
//! defect of dlab. Cells that share a partition-handling mode run on one
//! cluster, started once for them.

use crate::policy::Guarantee;
use crate::scenario::{
    ExpectSpec, FaultKind, FaultSpec, NodeRole, NodeSpec, PartitionHandling, PartitionShape, Plan,
    QueueType, Spec,
};

/// The queue types, the grid's columns.
pub const QUEUE_TYPES: [QueueType; 3] =
    [QueueType::Classic, QueueType::Mirrored, QueueType::Quorum];

/// One row: a cluster fault under a partition-handling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Label shown in the grid.
    pub label: &'static str,
    /// Short name used in scenario names.
    pub key: &'static str,
    /// The cluster's partition handling.
    pub handling: PartitionHandling,
}

/// Every row, in the order of the grid.
pub const ROWS: [Row; 6] = [
    Row {
        label: "leader kill -9",
        key: "leader-kill",
        handling: PartitionHandling::PauseMinority,
    },
    Row {
        label: "leader paused (SIGSTOP) 20s",
        key: "leader-pause",
        handling: PartitionHandling::PauseMinority,
    },
    Row {
        label: "leader isolated 20s, pause-minority",
        key: "isolate-pause-minority",
        handling: PartitionHandling::PauseMinority,
    },
    Row {
        label: "split in halves 20s, pause-minority",
        key: "halves",
        handling: PartitionHandling::PauseMinority,
    },
    Row {
        label: "leader isolated 20s, ignore",
        key: "isolate-ignore",
        handling: PartitionHandling::Ignore,
    },
    Row {
        label: "leader isolated 20s, autoheal",
        key: "isolate-autoheal",
        handling: PartitionHandling::Autoheal,
    },
];

/// One cell to run.
#[derive(Debug, Clone)]
pub struct CellPlan {
    /// The row.
    pub row: Row,
    /// The column.
    pub queue_type: QueueType,
    /// What to run.
    pub plan: Plan,
}

fn fault(row: Row) -> FaultSpec {
    let leader = Some(NodeSpec::Role(NodeRole::Leader));
    let timed = |kind, partition| FaultSpec {
        kind: Some(kind),
        node: leader.clone(),
        partition,
        at: Some("3s".into()),
        duration: Some("20s".into()),
        ..FaultSpec::default()
    };
    match row.key {
        "leader-kill" => FaultSpec {
            kind: Some(FaultKind::NodeKill),
            node: leader,
            at: Some("3s".into()),
            restart_after: Some("3s".into()),
            ..FaultSpec::default()
        },
        "leader-pause" => timed(FaultKind::NodePause, None),
        "halves" => FaultSpec {
            node: None,
            ..timed(FaultKind::Partition, Some(PartitionShape::Halves))
        },
        _ => timed(FaultKind::Partition, Some(PartitionShape::Isolate)),
    }
}

/// The plans of every cell, grouped by partition-handling mode (in the
/// order of [`ROWS`] within a group).
pub fn plans(messages: u64, seed: u64) -> Vec<CellPlan> {
    let mut cells = Vec::new();
    for handling in [
        PartitionHandling::PauseMinority,
        PartitionHandling::Ignore,
        PartitionHandling::Autoheal,
    ] {
        for row in ROWS.iter().filter(|r| r.handling == handling) {
            for queue_type in QUEUE_TYPES {
                let expect = match queue_type {
                    QueueType::Quorum => ExpectSpec {
                        max_lost_after_confirm: Some(0),
                        ..ExpectSpec::default()
                    },
                    _ => ExpectSpec::default(),
                };
                let spec = Spec {
                    name: Some(format!("cluster-{}-{}", queue_type.name(), row.key)),
                    description: Some(format!(
                        "at-least-once over a {} queue on a three-node cluster, {}",
                        queue_type.name(),
                        row.label
                    )),
                    guarantee: Some(Guarantee::AtLeastOnce),
                    messages: Some(messages),
                    // Thirty seconds of publishing: the fault falls inside.
                    rate: Some((messages / 30).max(1)),
                    consumers: Some(1),
                    prefetch: Some(50),
                    nodes: Some(3),
                    partition_handling: Some(handling),
                    queue_type: Some(queue_type),
                    confirm_timeout: Some("5s".into()),
                    drain_timeout: Some("120s".into()),
                    seed: Some(seed),
                    faults: vec![fault(*row)],
                    expect: Some(expect),
                    ..Spec::default()
                };
                let plan = Plan::from_spec(&spec, "cluster-matrix")
                    .expect("cluster matrix plans are valid by construction");
                cells.push(CellPlan {
                    row: *row,
                    queue_type,
                    plan,
                });
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_type_meets_every_row_once_on_a_cluster_of_its_row_s_mode() {
        let cells = plans(3000, 1);
        assert_eq!(cells.len(), ROWS.len() * QUEUE_TYPES.len());
        for c in &cells {
            let a = c.plan.amqp().unwrap();
            assert_eq!(a.nodes, 3);
            assert_eq!(a.partition_handling, c.row.handling);
            assert_eq!(a.queue_type, c.queue_type);
            assert_eq!(c.plan.faults.len(), 1);
            assert!(c.plan.faults[0].action.needs_cluster(), "{}", c.row.key);
            // Only the quorum queue's own promise is judged.
            assert_eq!(
                c.plan.expect.max_lost_after_confirm.is_some(),
                c.queue_type == QueueType::Quorum
            );
        }
        // Grouped by mode: one cluster per group.
        let modes: Vec<_> = cells.iter().map(|c| c.row.handling).collect();
        let mut changes = modes.windows(2).filter(|w| w[0] != w[1]).count();
        changes += 1;
        assert_eq!(changes, 3);
    }
}
