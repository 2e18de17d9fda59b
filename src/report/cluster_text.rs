//! The cluster's lines of the run table: members, the queue's leader and
//! its changes, partitions seen, where the clients were, and the cluster's
//! own count after the drain beside dlab's.

use super::ClusterReport;
use std::io::{self, Write};

/// A member's name as the table shows it: `node 1 (dlab-5001@h2)`.
fn member(c: &ClusterReport, name: &str) -> String {
    match c.members.iter().position(|m| m == name) {
        Some(i) => format!("node {i} ({name})"),
        None => name.to_string(),
    }
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
    for s in &c.samples {
        let down: Vec<String> = s
            .members
            .iter()
            .filter(|m| !m.running)
            .map(|m| member(c, &m.name))
            .collect();
        let cut: Vec<String> = s
            .members
            .iter()
            .filter(|m| !m.partitions.is_empty())
            .map(|m| format!("{} from {}", member(c, &m.name), m.partitions.join(", ")))
            .collect();
        let asked = s
            .asked
            .as_deref()
            .map_or("no member answered".to_string(), |a| {
                format!("asked {}", member(c, a))
            });
        let mut parts = vec![format!(
            "leader {}",
            s.leader
                .as_deref()
                .map_or("unknown".to_string(), |l| member(c, l))
        )];
        parts.push(format!(
            "{} of {} replicas online",
            s.online.len(),
            c.members.len()
        ));
        if !down.is_empty() {
            parts.push(format!("not running: {}", down.join(", ")));
        }
        if !cut.is_empty() {
            parts.push(format!("partitioned: {}", cut.join("; ")));
        }
        writeln!(
            out,
            "  {:>7}ms  cluster: {} ({asked})",
            s.at_ms,
            parts.join(", ")
        )?;
    }
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
