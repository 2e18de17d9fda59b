//! The SMTP part of a run's HTML section: ESMTP, the text check, the relay
//! log's own count, and the relay's queue depth over time as an SVG chart
//! with the fault windows shaded.

use super::html::{esc, time_chart_svg};
use super::{RunResult, SmtpReport};
use crate::smtp::ehlo::OF_INTEREST;
use plotters::prelude::*;
use std::fmt::Write as _;

/// ESMTP, text and relay-log lines.
pub fn details(s: &SmtpReport, duplicates: u64) -> String {
    let ext = |adv: &[String]| {
        OF_INTEREST
            .iter()
            .map(|x| {
                let on = adv.iter().any(|a| a == x);
                format!(
                    "<td class=\"{}\">{x}</td>",
                    if on { "held" } else { "broken" }
                )
            })
            .collect::<String>()
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<table><tr><th>after EHLO</th>{}</tr><tr><td>relay</td>{}</tr><tr><td>inbox</td>{}</tr></table>",
        OF_INTEREST.iter().map(|x| format!("<th>{x}</th>")).collect::<String>(),
        ext(&s.relay_advertised),
        ext(&s.inbox_advertised)
    );
    let _ = write!(
        h,
        "<p>text \u{201c}{}\u{201d}: intact in {} message(s), mangled in {}. Sender: {} attempts, {} accepted, {} refused, {} in doubt, {} given up.</p>",
        esc(&s.text.expected),
        s.text.intact,
        s.text.mangled,
        s.sender.attempts,
        s.sender.accepted,
        s.sender.refused,
        s.sender.in_doubt,
        s.sender.given_up
    );
    if let Some(l) = &s.relay_log {
        let _ = write!(
            h,
            "<p>relay log ({}): {} message(s), {} deliveries, {} \u{2018}may be sent more than once\u{2019}: {} duplicate(s); the ledger counts {duplicates}</p>",
            esc(&l.log),
            l.messages,
            l.deliveries,
            l.maybe_twice,
            l.duplicates
        );
    }
    h
}

/// The relay's queue depth over time.
pub fn relay_queue_svg(i: usize, r: &RunResult) -> String {
    let Some(s) = &r.smtp else {
        return String::new();
    };
    let x_max = s
        .relay_queue
        .last()
        .map_or(1.0, |q| q.at_ms as f64 / 1000.0)
        .max(0.1);
    let y_max = (s.relay_queue_peak as f64 * 1.1).max(1.0);
    time_chart_svg(
        &format!("relay-queue-{i}"),
        &format!("relay queue depth ({})", s.relay_queue_source),
        "messages queued",
        r,
        (x_max, y_max),
        false,
        |chart| {
            let points: Vec<(f64, f64)> = s
                .relay_queue
                .iter()
                .map(|q| (q.at_ms as f64 / 1000.0, q.depth as f64))
                .collect();
            let _ = chart.draw_series(LineSeries::new(
                points,
                // tests/integration/smtp_runs.rs finds the line by this colour.
                RGBColor(120, 60, 180).stroke_width(2),
            ));
        },
    )
}
