//! The cluster part of a run's HTML section: the cluster's own count after
//! the drain, where the clients were, and a chart of membership and the
//! queue's leader over time with the fault windows shaded.

use super::html::{esc, time_chart_svg};
use super::{ClusterReport, RunResult};
use plotters::prelude::*;
use std::fmt::Write as _;

/// Running, as the asked member saw it.
pub const RUNNING: RGBColor = RGBColor(60, 160, 80);
/// Not running, or cut off from the asked member.
pub const DOWN: RGBColor = RGBColor(200, 60, 60);
/// No member answered.
pub const UNKNOWN: RGBColor = RGBColor(170, 170, 170);
/// The queue's leader (tests/integration/cluster.rs finds it by this colour).
pub const LEADER: RGBColor = RGBColor(20, 40, 160);

/// Members, counts after the drain, clients.
pub fn details(c: &ClusterReport) -> String {
    let mut h = format!(
        "<table class=\"cluster\"><caption>cluster: {} members, partition handling {}, {} queue, {} leader change(s)</caption><tr><th>member</th><th>node</th><th>clients</th></tr>",
        c.members.len(),
        esc(&c.partition_handling),
        esc(&c.queue_type),
        c.leader_changes
    );
    for (i, m) in c.members.iter().enumerate() {
        let clients: Vec<String> = c
            .clients
            .iter()
            .filter(|x| x.member as usize == i)
            .map(|x| format!("{} at {}ms", esc(&x.client), x.at_ms))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{i}</td><td>{}</td><td>{}</td></tr>",
            esc(m),
            clients.join(", ")
        );
    }
    h.push_str("</table>");
    match &c.after {
        Some(a) => {
            let _ = write!(
                h,
                "<p class=\"cluster-count\">after the drain, {} says the queue holds {} (rabbitmqctl list_queues); dlab's own read: {}: <span class=\"{}\">{}</span>. Raft: {}. Partitions: {}.</p>",
                esc(&a.asked),
                a.queue_messages.map_or("nothing (not listed)".to_string(), |n| n.to_string()),
                a.amqp_remaining,
                if a.agree == Some(true) { "held" } else { "differs" },
                match a.agree {
                    Some(true) => "agree",
                    Some(false) => "differ",
                    None => "cannot compare",
                },
                if a.raft.is_empty() {
                    "none (not a quorum queue)".to_string()
                } else {
                    a.raft
                        .iter()
                        .map(|m| format!("{} {} term {}", esc(&m.node), esc(&m.state), m.term.unwrap_or(0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                if a.partitions.is_empty() { "none".to_string() } else { esc(&a.partitions.join("; ")) }
            );
        }
        None => {
            let _ = write!(
                h,
                "<p class=\"cluster-count\">the cluster's own count is missing: {}</p>",
                esc(&c.notes.join("; "))
            );
        }
    }
    h
}

/// Membership (a band per member: running or not, as the member asked saw
/// it) and the leader (a dark bar inside its member's band) over time.
pub fn membership_svg(i: usize, r: &RunResult) -> String {
    let Some(c) = &r.cluster else {
        return String::new();
    };
    let n = c.members.len().max(1);
    let end_ms = c
        .samples
        .last()
        .map_or(0, |s| s.at_ms + 1000)
        .max((r.duration_s * 1000.0) as u64)
        .max(1);
    let x_max = end_ms as f64 / 1000.0;
    time_chart_svg(
        &format!("cluster-{i}"),
        "cluster members (bands) and the queue's leader (dark bar)",
        "member",
        r,
        (x_max, n as f64),
        false,
        |chart| {
            for (k, s) in c.samples.iter().enumerate() {
                let a = s.at_ms as f64 / 1000.0;
                let b = c.samples.get(k + 1).map_or(end_ms, |t| t.at_ms) as f64 / 1000.0;
                for (m, name) in c.members.iter().enumerate() {
                    let y = m as f64;
                    let colour = match s.members.iter().find(|x| &x.name == name) {
                        None => UNKNOWN,
                        Some(x) if x.running && x.partitions.is_empty() => RUNNING,
                        Some(_) => DOWN,
                    };
                    let _ = chart.draw_series(std::iter::once(Rectangle::new(
                        [(a, y + 0.15), (b, y + 0.85)],
                        colour.mix(0.6).filled(),
                    )));
                    if s.leader.as_deref() == Some(name.as_str()) {
                        let _ = chart.draw_series(std::iter::once(Rectangle::new(
                            [(a, y + 0.4), (b, y + 0.6)],
                            LEADER.filled(),
                        )));
                    }
                }
            }
        },
    )
}
