//! The SMTP part of a run's HTML section: ESMTP (what each hop announced,
//! and what that changed beside the relay log's account), the text check,
//! the relay log's own count, and the relay's queue depth over time as an SVG chart
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
    h.push_str(&consequences(s));
    if let Some(t) = &s.tls {
        h.push_str(&super::smtp_tls::html(t));
    }
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

/// What the sender sent and what the hops made of it: each count of the
/// inbox or the sender's mailbox beside the relay log's.
fn consequences(s: &SmtpReport) -> String {
    let e = &s.esmtp;
    if e.body.is_empty() {
        return String::new();
    }
    let log = s.relay_log.as_ref();
    let theirs = |n: Option<u64>| n.map_or("(no relay log)".to_string(), |n| n.to_string());
    let reasons = |r: &[super::ReasonCount]| {
        r.iter()
            .map(|r| format!("{} \u{d7} {}", r.count, esc(&r.reason)))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    format!(
        "<table class=\"esmtp\"><tr><th>ESMTP</th><th>dlab saw</th><th>relay log</th></tr>\
         <tr><td>sent</td><td>{} body to the {} address; inbox: {}</td><td></td></tr>\
         <tr><td>BODY=8BITMIME / SMTPUTF8 at the inbox</td><td>{} / {}</td><td></td></tr>\
         <tr><td>downgraded to quoted-printable</td><td>{}</td><td>{}</td></tr>\
         <tr><td>8-bit at a 7-bit hop (eighth bit cleared)</td><td>{}</td><td></td></tr>\
         <tr><td>bounced</td><td></td><td>{} {}</td></tr>\
         <tr><td>returned to the sender</td><td>{} {}</td><td>{}</td></tr></table>",
        esc(&e.body),
        esc(&e.recipient),
        esc(&e.inbox),
        e.declared_8bitmime,
        e.smtputf8,
        e.downgraded,
        theirs(log.map(|l| l.downgraded)),
        e.eight_bit_on_7bit_hop,
        theirs(log.map(|l| l.bounced)),
        log.map_or(String::new(), |l| reasons(&l.bounce_reasons)),
        e.returns_received,
        reasons(&e.return_reasons),
        theirs(log.map(|l| l.returns_sent)),
    )
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
