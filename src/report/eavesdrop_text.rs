//! "What an eavesdropper read": the terminal lines and the HTML table of a
//! run's eavesdropper section, one row per tapped link. A credential is
//! shown by how it was sent and its user name; its secret is never kept.

use super::eavesdrop::{EavesdropLink, EavesdropReport, TlsConnection};
use super::html::esc;
use std::fmt::Write as _;
use std::io::{self, Write};

fn credentials(l: &EavesdropLink) -> String {
    if l.credentials.is_empty() {
        return "no credential".to_string();
    }
    l.credentials
        .iter()
        .map(|c| {
            format!(
                "{} user {}{} ({}x)",
                c.how,
                c.user,
                if c.secret_read {
                    " with its secret"
                } else {
                    ""
                },
                c.times
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn wire(l: &EavesdropLink) -> String {
    let kept = if l.bytes_read < l.bytes_seen {
        format!(" (kept {} of {} bytes)", l.bytes_read, l.bytes_seen)
    } else {
        String::new()
    };
    let timed = if l.handshakes_timed > 0 {
        format!(
            "; handshake on the wire median {:.2} ms, longest {:.2} ms ({} timed)",
            l.handshake_p50_us as f64 / 1000.0,
            l.handshake_max_us as f64 / 1000.0,
            l.handshakes_timed
        )
    } else {
        String::new()
    };
    format!(
        "{} connection(s), {} of them TLS; {} bytes in clear, {} in TLS records{kept}{timed}",
        l.connections, l.tls_connections, l.clear_bytes, l.tls_bytes
    )
}

/// Writes the terminal lines.
pub fn write(out: &mut dyn Write, e: &EavesdropReport, intended: u64) -> io::Result<()> {
    for (i, l) in e.links.iter().enumerate() {
        writeln!(
            out,
            "  {:<9} {}: {} of {intended} message IDs, {} bodies, {}; {}",
            if i == 0 { "eavesdrop" } else { "" },
            l.link,
            l.message_ids_read,
            l.bodies_read,
            credentials(l),
            wire(l)
        )?;
    }
    Ok(())
}

/// The HTML table.
pub fn html(e: &EavesdropReport, intended: u64) -> String {
    let mut h = String::from(
        "<h3>What an eavesdropper read</h3><table><tr><th>link</th><th>message IDs</th><th>bodies</th><th>credentials</th><th>on the wire</th></tr>",
    );
    for l in &e.links {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{} of {intended}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.link),
            l.message_ids_read,
            l.bodies_read,
            esc(&credentials(l)),
            esc(&wire(l))
        );
    }
    h.push_str("</table>");
    h
}

fn broker_line(c: &TlsConnection) -> String {
    let tls = if c.tls {
        format!("TLS {}", c.protocol)
    } else {
        "plain TCP".to_string()
    };
    let cert = if c.peer_cert_subject.is_empty() {
        "no client certificate".to_string()
    } else {
        format!("client certificate {}", c.peer_cert_subject)
    };
    format!(
        "{}: {tls}, {cert}, user {} by {}",
        c.client, c.user, c.auth_mechanism
    )
}

/// Writes the broker's account of the workers' TLS connections.
pub fn write_broker_tls(out: &mut dyn Write, seen: &[TlsConnection]) -> io::Result<()> {
    for (i, c) in seen.iter().enumerate() {
        writeln!(
            out,
            "  {:<9} {}",
            if i == 0 { "tls" } else { "" },
            broker_line(c)
        )?;
    }
    Ok(())
}

/// The broker's account as an HTML list.
pub fn broker_tls_html(seen: &[TlsConnection]) -> String {
    let mut h = String::from("<h3>TLS, as the broker saw it</h3><ul>");
    for c in seen {
        let _ = write!(h, "<li>{}</li>", esc(&broker_line(c)));
    }
    h.push_str("</ul>");
    h
}
