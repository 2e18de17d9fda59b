//! The cluster's lines of the run table: members, leader changes, where
//! the clients were, and the cluster's own count after the drain beside
//! dlab's. What the cluster said over time is in the run's timeline
//! (`cluster` entries).

use super::ClusterReport;
use std::io::{self, Write};

fn member(c: &ClusterReport, name: &str) -> String {
    c.member(name)
}

/// Writes the cluster section.
pub fn write(out: &mut dyn Write, c: &ClusterReport) -> io::Result<()> {
    let names: Vec<String> = (0..c.members.len())
        .map(|i| member(c, &c.members[i]))
        .collect();
    writeln!(
        out,
        "  cluster   {} members: {}; partition handling {}, {} queue",
        c.members.len(),
        names.join(", "),
        c.partition_handling,
        c.queue_type
    )?;
    writeln!(out, "            leader changes: {}", c.leader_changes)?;
    let mut by_client: Vec<(String, Vec<String>)> = Vec::new();
    for conn in &c.clients {
        let at = format!("node {} at {}ms", conn.member, conn.at_ms);
        match by_client.iter_mut().find(|(name, _)| *name == conn.client) {
            Some((_, list)) => list.push(at),
            None => by_client.push((conn.client.clone(), vec![at])),
        }
    }
    for (client, list) in by_client {
        writeln!(out, "            {client} on {}", list.join(", then "))?;
    }
    match &c.after {
        Some(a) => {
            let queue = a
                .queue_messages
                .map_or("not listed".to_string(), |n| n.to_string());
            writeln!(
                out,
                "            after the drain, {} says: queue holds {queue} (rabbitmqctl list_queues), dlab's read {}: {}",
                member(c, &a.asked),
                a.amqp_remaining,
                match a.agree {
                    Some(true) => "agree",
                    Some(false) => "DIFFER",
                    None => "cannot compare",
                }
            )?;
            if !a.raft.is_empty() {
                let raft: Vec<String> = a
                    .raft
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {} term {}",
                            member(c, &m.node),
                            m.state,
                            m.term.map_or("?".to_string(), |t| t.to_string())
                        )
                    })
                    .collect();
                writeln!(
                    out,
                    "            raft (rabbitmq-queues quorum_status): {}",
                    raft.join(", ")
                )?;
            }
            writeln!(
                out,
                "            running (cluster_status): {}; partitions: {}",
                a.running.len(),
                if a.partitions.is_empty() {
                    "none".to_string()
                } else {
                    a.partitions.join("; ")
                }
            )?;
        }
        None => {
            for n in &c.notes {
                writeln!(out, "            the cluster's own count is missing: {n}")?;
            }
        }
    }
    Ok(())
}
