//! The push lines of a run's terminal report: the consumers' calls, the
//! gateway's own count, and its access log beside the effect store.

use super::PushReport;
use std::io::{self, Write};

/// Writes the push section.
pub fn write(out: &mut dyn Write, p: &PushReport) -> io::Result<()> {
    let c = &p.calls;
    writeln!(
        out,
        "  push      calls: {} requests, {} shown, {} replayed, {} timeouts, {} failed, 409/429/503/other {}/{}/{}/{}, {} retries ({} after Retry-After, {}ms waited), {} given up",
        c.attempts,
        c.shown,
        c.replayed,
        c.timeouts,
        c.failed,
        c.status_409,
        c.status_429,
        c.status_503,
        c.status_other,
        c.retries(),
        c.retry_after_waits,
        c.retry_after_ms,
        c.gave_up
    )?;
    let g = &p.gateway;
    writeln!(
        out,
        "            gateway: {} requests (2xx {}, 4xx {}, 5xx {}), {} applied, {} replayed, {} keys expired, {} restarts; keys kept {} for {}ms",
        g.requests,
        g.status_2xx,
        g.status_4xx,
        g.status_5xx,
        g.applied,
        g.replayed,
        g.keys_expired,
        g.restarts,
        if p.key_store == "disk" { "on disk" } else { "in memory" },
        p.key_ttl_ms
    )?;
    if let Some(tls) = gateway_tls(g) {
        writeln!(out, "            gateway: {tls}")?;
    }
    match (&p.access_log, &p.access_log_missing) {
        (Some(l), _) => writeln!(
            out,
            "            access log: {} lines, {} applied for {} messages ({} duplicates), {} replayed; effect store: {} rows{}",
            l.requests,
            l.applied,
            l.distinct_applied,
            l.duplicates,
            l.replayed,
            p.effect_rows,
            if p.log_agrees() == Some(true) {
                " (agrees)"
            } else {
                " (DIFFERS)"
            }
        ),
        (None, why) => writeln!(
            out,
            "            access log: unreadable ({})",
            why.as_deref().unwrap_or("unknown")
        ),
    }
}

/// The gateway's account of its HTTPS handshakes, in words (none for HTTP).
pub fn gateway_tls(g: &crate::push::gateway::GatewayStats) -> Option<String> {
    let t = &g.tls;
    if t.versions.is_empty() && t.failed == 0 {
        return None;
    }
    let list = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "HTTPS, {} handshake(s) ({}), clients {}, {} failed",
        t.versions.values().sum::<u64>(),
        list(&t.versions),
        list(&t.clients),
        t.failed
    ))
}
