//! The cluster's own account after the drain, from RabbitMQ's CLI tools on
//! a running member: the queue's message count (`rabbitmqctl list_queues`),
//! its Raft members and terms (`rabbitmq-queues quorum_status`) and the
//! members and partitions (`rabbitmq-diagnostics cluster_status`). Each
//! tool starts an Erlang VM, so this is read once, not polled.

use super::Cluster;
use crate::report::{ClusterAfter, RaftMember};
use serde_json::Value;
use std::time::Duration;

/// How long a queue's `messages` statistic may take to catch up.
pub const CATCH_UP: Duration = Duration::from_secs(15);

/// `list_queues name messages --formatter json`: the messages of `queue`.
pub fn parse_list_queues(text: &str, queue: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    v.as_array()?
        .iter()
        .find(|q| q["name"].as_str() == Some(queue))?["messages"]
        .as_u64()
}

fn field<'a>(row: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| row.get(*n))
}

/// `quorum_status QUEUE --formatter json`: one row per member.
pub fn parse_quorum_status(text: &str) -> Vec<RaftMember> {
    let Ok(v) = serde_json::from_str::<Value>(text.trim()) else {
        return Vec::new();
    };
    v.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    Some(RaftMember {
                        node: field(r, &["Node Name", "node"])?.as_str()?.to_string(),
                        state: field(r, &["Raft State", "raft_state"])
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        term: field(r, &["Term", "term"]).and_then(|t| {
                            t.as_u64()
                                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
                        }),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `cluster_status --formatter json`: running members and the partitions
/// any member reports (`node: [peers]`).
pub fn parse_cluster_status(text: &str) -> (Vec<String>, Vec<String>) {
    let Ok(v) = serde_json::from_str::<Value>(text.trim()) else {
        return (Vec::new(), Vec::new());
    };
    let running = v["running_nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let partitions = match &v["partitions"] {
        Value::Object(m) => m
            .iter()
            .filter(|(_, peers)| peers.as_array().is_some_and(|a| !a.is_empty()))
            .map(|(node, peers)| format!("{node}: {peers}"))
            .collect(),
        Value::Array(a) => a.iter().map(Value::to_string).collect(),
        _ => Vec::new(),
    };
    (running, partitions)
}

/// Asks the first member whose CLI answers; None (and why) when none does.
/// `list_queues`' `messages` is a statistic the queue emits every few
/// seconds, so it may still show the last moments of the run: when it
/// differs from `settled` (dlab's own read of the queue over AMQP, taken
/// just before), it is asked again for up to [`CATCH_UP`], and the last
/// answer is what the report shows.
/// (`amqp_remaining` and `agree` are filled in once dlab's own read is in.)
pub async fn read(
    cluster: &Cluster,
    queue: &str,
    quorum: bool,
    settled: Option<u64>,
) -> Result<ClusterAfter, String> {
    let mut why = Vec::new();
    for m in cluster.members() {
        let s = m.state();
        if !s.alive() {
            continue;
        }
        let list = || {
            s.ctl(
                "rabbitmqctl",
                &["list_queues", "name", "messages", "--formatter", "json"],
            )
        };
        let mut queue_messages = match list().await {
            Ok(text) => parse_list_queues(&text, queue),
            Err(e) => {
                why.push(e);
                continue;
            }
        };
        let until = std::time::Instant::now() + CATCH_UP;
        while settled.is_some() && queue_messages != settled && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if let Ok(text) = list().await {
                queue_messages = parse_list_queues(&text, queue);
            }
        }
        let raft = if quorum {
            s.ctl(
                "rabbitmq-queues",
                &["quorum_status", queue, "--formatter", "json"],
            )
            .await
            .map(|t| parse_quorum_status(&t))
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        let (running, partitions) = s
            .ctl(
                "rabbitmq-diagnostics",
                &["cluster_status", "--formatter", "json"],
            )
            .await
            .map(|t| parse_cluster_status(&t))
            .unwrap_or_default();
        return Ok(ClusterAfter {
            asked: s.node,
            queue_messages,
            amqp_remaining: 0,
            agree: None,
            raft,
            running,
            partitions,
        });
    }
    Err(format!(
        "no member's CLI answered: {}",
        if why.is_empty() {
            "none runs".to_string()
        } else {
            why.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_s_json_is_read_as_rabbitmq_3_10_prints_it() {
        let listed = r#"[{"name":"other","messages":4},{"name":"dlab.q.1","messages":0}]"#;
        assert_eq!(parse_list_queues(listed, "dlab.q.1"), Some(0));
        assert_eq!(parse_list_queues(listed, "missing"), None);
        let raft = parse_quorum_status(
            r#"[{"Node Name":"a@h1","Raft State":"leader","Term":3},{"Node Name":"b@h2","Raft State":"follower","Term":3}]"#,
        );
        assert_eq!(raft.len(), 2);
        assert_eq!(raft[0].state, "leader");
        assert_eq!(raft[1].term, Some(3));
        let (running, partitions) = parse_cluster_status(
            r#"{"running_nodes":["a@h1","b@h2"],"partitions":{"a@h1":["c@h3"],"b@h2":[]}}"#,
        );
        assert_eq!(running, ["a@h1", "b@h2"]);
        assert_eq!(partitions, [r#"a@h1: ["c@h3"]"#]);
    }
}
