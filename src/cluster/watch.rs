//! What a cluster says of itself while a run goes on: a background task
//! asks the management API once a second (members, running, partitions,
//! the queue's leader and online replicas) and keeps each answer that
//! differs from the one before.
//!
//! It asks the members in turn and takes the first answer, within a short
//! timeout each: a paused or cut-off member must not hold it up, and which
//! member answered is part of the sample.

use crate::broker::Management;
use crate::report::{ClusterSample, MemberState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the cluster is asked.
const EVERY: Duration = Duration::from_secs(1);
/// How long one member may take to answer.
const PATIENCE: Duration = Duration::from_millis(800);

/// A member as `/api/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    /// Its node name.
    pub name: String,
    /// Whether it runs.
    pub running: bool,
    /// The nodes it is partitioned from.
    pub partitions: Vec<String>,
}

/// The queue as `/api/queues/VHOST/NAME` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueSeen {
    /// Its leader (quorum) or master (classic).
    pub leader: Option<String>,
    /// Its online replicas (quorum), or master and synchronised mirrors.
    pub online: Vec<String>,
    /// Its messages, ready and unacknowledged (for a quorum queue, also
    /// those checked out to a consumer whose node is out of reach): a
    /// statistic the queue emits every few seconds.
    pub messages: Option<u64>,
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `/api/nodes`.
pub fn parse_nodes(v: &serde_json::Value) -> Vec<NodeSeen> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| {
                    Some(NodeSeen {
                        name: n["name"].as_str()?.to_string(),
                        running: n["running"].as_bool().unwrap_or(false),
                        partitions: strings(&n["partitions"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `/api/queues/VHOST/NAME`: a quorum queue names its `leader` and
/// `online` members; a classic queue its `node`, and when mirrored its
/// `synchronised_slave_nodes`.
pub fn parse_queue(v: &serde_json::Value) -> QueueSeen {
    let leader = v["leader"]
        .as_str()
        .or_else(|| v["node"].as_str())
        .map(str::to_string);
    let mut online = strings(&v["online"]);
    if online.is_empty() {
        online.extend(leader.clone());
        online.extend(strings(&v["synchronised_slave_nodes"]));
    }
    online.sort();
    QueueSeen {
        leader,
        online,
        messages: v["messages"].as_u64(),
    }
}

/// The members `m` knows of.
pub async fn ask_nodes(m: &Management, within: Duration) -> Result<Vec<NodeSeen>, String> {
    m.json("nodes", within).await.map(|v| parse_nodes(&v))
}

/// What `m` says of `queue`.
pub async fn ask_queue(m: &Management, queue: &str, within: Duration) -> Result<QueueSeen, String> {
    m.json(&m.queue_path(queue), within)
        .await
        .map(|v| parse_queue(&v))
}

/// One sample: the first member (in order) that answers.
async fn sample(apis: &[(String, Management)], queue: &str, at_ms: u64) -> ClusterSample {
    for (name, m) in apis {
        let Ok(nodes) = ask_nodes(m, PATIENCE).await else {
            continue;
        };
        let q = ask_queue(m, queue, PATIENCE).await.unwrap_or_default();
        let mut members: Vec<MemberState> = nodes
            .into_iter()
            .map(|n| MemberState {
                name: n.name,
                running: n.running,
                partitions: n.partitions,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        return ClusterSample {
            at_ms,
            asked: Some(name.clone()),
            members,
            leader: q.leader,
            online: q.online,
        };
    }
    ClusterSample {
        at_ms,
        asked: None,
        members: Vec::new(),
        leader: None,
        online: Vec::new(),
    }
}

/// The background sampler of one run.
pub struct Watcher {
    samples: Arc<Mutex<Vec<ClusterSample>>>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts asking `apis` (each member's name and management API) about
    /// `queue`; times are counted from `start`.
    pub fn start(apis: Vec<(String, Management)>, queue: String, start: Instant) -> Watcher {
        let samples = Arc::new(Mutex::new(Vec::<ClusterSample>::new()));
        let keep = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let at_ms = start.elapsed().as_millis() as u64;
                let s = sample(&apis, &queue, at_ms).await;
                {
                    let mut all = keep.lock().expect("not poisoned");
                    if all.last().is_none_or(|last| !last.same_as(&s)) {
                        all.push(s);
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        Watcher { samples, task }
    }

    /// Stops sampling; returns every sample kept.
    pub fn stop(self) -> Vec<ClusterSample> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock().expect("not poisoned"))
    }
}

/// How often the leader changed (from one named leader to another).
pub fn leader_changes(samples: &[ClusterSample]) -> u32 {
    let mut last: Option<&str> = None;
    let mut changes = 0;
    for l in samples.iter().filter_map(|s| s.leader.as_deref()) {
        if last.is_some_and(|x| x != l) {
            changes += 1;
        }
        last = Some(l);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_api_s_nodes_and_queue_are_read_as_rabbitmq_writes_them() {
        let nodes = parse_nodes(&json!([
            {"name": "dlab-1@h1", "running": true, "partitions": []},
            {"name": "dlab-2@h3", "running": false, "partitions": ["dlab-1@h1"]}
        ]));
        assert_eq!(nodes.len(), 2);
        assert!(!nodes[1].running);
        assert_eq!(nodes[1].partitions, ["dlab-1@h1"]);
        let quorum = parse_queue(&json!({
            "type": "quorum", "leader": "b@h2", "node": "b@h2",
            "members": ["a@h1", "b@h2", "c@h3"], "online": ["c@h3", "b@h2"]
        }));
        assert_eq!(quorum.leader.as_deref(), Some("b@h2"));
        assert_eq!(quorum.online, ["b@h2", "c@h3"]);
        assert_eq!(quorum.messages, None);
        let mirrored = parse_queue(&json!({
            "type": "classic", "node": "a@h1", "messages": 3,
            "slave_nodes": ["b@h2", "c@h3"], "synchronised_slave_nodes": ["c@h3"]
        }));
        assert_eq!(mirrored.leader.as_deref(), Some("a@h1"));
        assert_eq!(mirrored.online, ["a@h1", "c@h3"]);
        assert_eq!(mirrored.messages, Some(3));
    }

    #[test]
    fn a_leader_change_is_a_new_name_not_a_gap() {
        let s = |leader: Option<&str>| ClusterSample {
            at_ms: 0,
            asked: None,
            members: Vec::new(),
            leader: leader.map(str::to_string),
            online: Vec::new(),
        };
        let samples = [
            s(Some("a")),
            s(None),
            s(Some("a")),
            s(Some("b")),
            s(Some("c")),
        ];
        assert_eq!(leader_changes(&samples), 2);
    }
}
