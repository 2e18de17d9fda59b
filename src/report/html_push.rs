//! The push part of a run's HTML section: the consumers' calls, the
//! gateway's own count and its access log beside the effect store, as one
//! table with a column per account.

use super::html::esc;
use super::PushReport;
use std::fmt::Write as _;

/// The push table.
pub fn details(p: &PushReport) -> String {
    let (c, g) = (&p.calls, &p.gateway);
    let log = p.access_log.as_ref();
    let cell = |v: Option<u64>| v.map_or("&ndash;".to_string(), |n| n.to_string());
    // Per row: its name, then the consumers', the gateway's and the log's count.
    type Row<'a> = (&'a str, Option<u64>, Option<u64>, Option<u64>);
    let rows: [Row<'_>; 7] = [
        (
            "requests",
            Some(c.attempts),
            Some(g.requests),
            log.map(|l| l.requests),
        ),
        (
            "shown (effect applied)",
            Some(c.shown),
            Some(g.applied),
            log.map(|l| l.applied),
        ),
        (
            "replayed (key seen)",
            Some(c.replayed),
            Some(g.replayed),
            log.map(|l| l.replayed),
        ),
        (
            "503 unavailable",
            Some(c.status_503),
            Some(g.unavailable),
            log.map(|l| l.unavailable),
        ),
        (
            "429 throttled",
            Some(c.status_429),
            Some(g.throttled),
            log.map(|l| l.throttled),
        ),
        (
            "409 key in flight",
            Some(c.status_409),
            Some(g.in_flight),
            log.map(|l| l.in_flight),
        ),
        ("timeouts", Some(c.timeouts), None, None),
    ];
    let mut h = String::from(
        "<table class=\"push\"><tr><th>push hop</th><th>consumers saw</th><th>gateway counted</th><th>access log says</th></tr>",
    );
    for (name, a, b, l) in rows {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            cell(a),
            cell(b),
            cell(l)
        );
    }
    let _ = write!(
        h,
        "</table><p>{}{} retries ({} after Retry-After, {} ms waited; {} after backoff), {} failed connections, {} given up. Keys kept {} for {} ms; {} expired; {} gateway restarts. Access log <code>{}</code>: {}; the effect store holds {} rows{}.</p>",
        super::push_text::gateway_tls(g).map_or(String::new(), |t| format!("Gateway: {}. ", esc(&t))),
        c.retries(),
        c.retry_after_waits,
        c.retry_after_ms,
        c.backoff_waits,
        c.failed,
        c.gave_up,
        if p.key_store == "disk" { "on disk" } else { "in memory" },
        p.key_ttl_ms,
        g.keys_expired,
        g.restarts,
        esc(&p.access_log_path),
        match log {
            Some(l) => format!(
                "{} applied lines for {} messages, {} duplicates",
                l.applied, l.distinct_applied, l.duplicates
            ),
            None => format!(
                "unreadable ({})",
                esc(p.access_log_missing.as_deref().unwrap_or("unknown"))
            ),
        },
        p.effect_rows,
        match p.log_agrees() {
            Some(true) => " (the same count)",
            Some(false) => " (<b>a different count</b>)",
            None => "",
        }
    );
    h
}
