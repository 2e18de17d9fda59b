//! The report's account of TLS on the SMTP hops, each side's own: the
//! relay's log (the TLS connections it took from the sender and made to the
//! inbox, and what TLS stopped), the `Received:` lines it wrote into each
//! message ("using TLS"), and the inbox's count of its handshakes, their
//! versions, the client certificates and the messages that came over TLS;
//! with its terminal lines and HTML table.

use super::html::esc;
use super::ReasonCount;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// TLS on the two SMTP hops (a scenario with `tls` on).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmtpTlsReport {
    /// `on` or `mutual`.
    pub mode: String,
    /// The clients' STARTTLS policy: `required` or `opportunistic`.
    pub starttls: String,
    /// Whether the clients verify the next hop's certificate.
    pub verify: bool,
    /// The relay delivery agent's `smtp_tls_security_level` towards the inbox.
    pub relay_level: String,
    /// The relay log: TLS connections from the sender, by trust and version.
    pub relay_in: Vec<ReasonCount>,
    /// The relay log: the delivery agent's TLS sessions to the inbox, one per
    /// delivery attempt (a new connection or one reused), by trust and version.
    pub relay_out: Vec<ReasonCount>,
    /// The relay log: TLS handshakes to the inbox (fewer than deliveries
    /// when the delivery agent reuses a connection).
    #[serde(default)]
    pub relay_out_handshakes: u64,
    /// The relay log: what TLS stopped (no STARTTLS offered where
    /// required, a certificate that did not verify, a failed handshake).
    pub relay_refused: Vec<ReasonCount>,
    /// Messages at the inbox whose relay `Received:` line says "using TLS":
    /// the relay took them from the sender over TLS.
    pub received_using_tls: u64,
    /// TLS handshakes the inbox completed.
    pub inbox_handshakes: u64,
    /// Their TLS versions.
    pub inbox_versions: Vec<ReasonCount>,
    /// The client certificates the inbox was shown (the relay's, with mutual TLS).
    pub inbox_clients: Vec<ReasonCount>,
    /// Handshakes the inbox saw fail, and why.
    pub inbox_failures: Vec<ReasonCount>,
    /// Messages the inbox received inside TLS.
    pub inbox_over_tls: u64,
    /// Messages the inbox received in clear.
    pub inbox_in_clear: u64,
}

fn list(r: &[ReasonCount]) -> String {
    if r.is_empty() {
        return "none".to_string();
    }
    r.iter()
        .map(|r| format!("{} x {}", r.count, r.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Terminal lines.
pub fn write(out: &mut dyn Write, t: &SmtpTlsReport) -> io::Result<()> {
    writeln!(
        out,
        "  tls       {} (STARTTLS {}, {}; relay to inbox at Postfix level `{}`)",
        t.mode,
        t.starttls,
        if t.verify {
            "certificates verified against the lab CA"
        } else {
            "certificates NOT verified"
        },
        t.relay_level
    )?;
    writeln!(
        out,
        "            sender to relay: relay log {}; {} message(s) at the inbox carry the relay's Received: \"using TLS\"",
        list(&t.relay_in),
        t.received_using_tls
    )?;
    writeln!(
        out,
        "            relay to inbox: relay log {} over {} handshake(s); inbox: {} handshake(s) ({}), clients {}, {} message(s) over TLS, {} in clear",
        list(&t.relay_out),
        t.relay_out_handshakes,
        t.inbox_handshakes,
        list(&t.inbox_versions),
        list(&t.inbox_clients),
        t.inbox_over_tls,
        t.inbox_in_clear
    )?;
    if !t.relay_refused.is_empty() || !t.inbox_failures.is_empty() {
        writeln!(
            out,
            "            stopped by TLS: relay log {}; inbox {}",
            list(&t.relay_refused),
            list(&t.inbox_failures)
        )?;
    }
    Ok(())
}

/// The HTML table.
pub fn html(t: &SmtpTlsReport) -> String {
    let row = |hop: &str, relay: &[ReasonCount], other: String| {
        format!(
            "<tr><td>{hop}</td><td>{}</td><td>{}</td></tr>",
            esc(&list(relay)),
            esc(&other)
        )
    };
    format!(
        "<table class=\"tls\"><caption>TLS: {} (STARTTLS {}, {}, relay level {})</caption><tr><th>hop</th><th>relay log</th><th>the other side</th></tr>{}{}{}</table>",
        esc(&t.mode),
        esc(&t.starttls),
        if t.verify { "verified" } else { "not verified" },
        esc(&t.relay_level),
        row(
            "sender \u{2192} relay",
            &t.relay_in,
            format!("{} message(s) with Received: \u{201c}using TLS\u{201d}", t.received_using_tls)
        ),
        row(
            "relay \u{2192} inbox",
            &t.relay_out,
            format!(
                "relay log: {} handshake(s); inbox: {} handshake(s) ({}), clients {}, {} message(s) over TLS, {} in clear",
                t.relay_out_handshakes,
                t.inbox_handshakes,
                list(&t.inbox_versions),
                list(&t.inbox_clients),
                t.inbox_over_tls,
                t.inbox_in_clear
            )
        ),
        row(
            "stopped by TLS",
            &t.relay_refused,
            format!("inbox: {}", list(&t.inbox_failures))
        ),
    )
}
