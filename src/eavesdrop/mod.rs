//! The eavesdropper: reads what a proxy's tap captured the way a passive
//! sniffer on the wire would, and counts what it could read: the run's
//! message IDs, copies of a message body, credentials. It searches every
//! byte it kept, TLS records included, so a TLS link that leaked plaintext
//! would show; it also counts how many bytes were TLS records.
//!
//! What a message body looks like comes from the transport ([`Clues`]); the
//! credentials are found by protocol ([`credentials`]); where TLS begins by
//! record structure ([`tls`]).

pub mod credentials;
pub mod tls;

use crate::proxy::{Captured, Protocol};
use crate::report::eavesdrop::{CredentialRead, EavesdropLink, EavesdropReport};
use crate::runner::faults::Links;
use crate::scenario::{Plan, TransportPlan};
use base64::Engine as _;
use memchr::memmem;
use std::collections::{BTreeMap, BTreeSet};

/// The most a tap keeps of one link's traffic; what crosses after is
/// counted in `bytes_seen`, not read.
pub const TAP_BUDGET: u64 = 32 << 20;

/// What the eavesdropper looks for.
pub struct Clues<'a> {
    /// The run's ID: message IDs are `<run>-<seq>`.
    pub run_id: &'a str,
    /// Text every message's body carries, as it travels in clear.
    pub bodies: Vec<Vec<u8>>,
}

/// What the run's messages look like on the wire: the AMQP body the
/// producers publish, the SMTP text (its ASCII start, which stays readable
/// in quoted-printable too), the push notification's text.
pub fn clues<'a>(plan: &Plan, run_id: &'a str) -> Clues<'a> {
    let mut bodies = Vec::new();
    match &plan.transport {
        TransportPlan::Amqp(a) => {
            bodies.push(crate::amqp::publisher::payload(plan.seed, a));
            if a.push.is_some() {
                bodies.push(crate::push::client::TEXT.as_bytes().to_vec());
            }
        }
        TransportPlan::Smtp(_) => {
            // In 8-bit or quoted-printable its ASCII start reads as it is;
            // in base64 (what a MIME library picks for this text) its first
            // whole 3-byte groups always encode the same way.
            let body = crate::smtp::sender::BODY;
            let ascii = body.split(|c: char| !c.is_ascii()).next().unwrap_or(body);
            bodies.push(ascii.as_bytes().to_vec());
            let whole = &body.as_bytes()[..body.len().min(57) / 3 * 3];
            bodies.push(
                base64::engine::general_purpose::STANDARD
                    .encode(whole)
                    .into_bytes(),
            );
        }
    }
    bodies.retain(|b| b.len() >= 8);
    Clues { run_id, bodies }
}

/// Reads every tapped link of a run.
pub fn report(links: &Links, clues: &Clues<'_>) -> EavesdropReport {
    EavesdropReport {
        links: links
            .named()
            .into_iter()
            .filter_map(|(name, proxy)| {
                let captured = proxy.captured()?;
                Some(read(name, proxy.protocol(), &captured, clues))
            })
            .collect(),
    }
}

/// Reads one link's capture.
pub fn read(
    link: &str,
    protocol: Protocol,
    captured: &Captured,
    clues: &Clues<'_>,
) -> EavesdropLink {
    let mut ids = BTreeSet::new();
    let mut creds: BTreeMap<credentials::Found, u64> = BTreeMap::new();
    let mut row = EavesdropLink {
        link: link.to_string(),
        connections: captured.connections.len() as u64,
        bytes_seen: captured.bytes_seen,
        bytes_read: captured.bytes_kept,
        ..EavesdropLink::default()
    };
    let mut handshakes = Vec::new();
    for c in &captured.connections {
        handshakes.extend(tls::handshake_time(c));
        let mut tls_begun = false;
        for stream in [&c.to_server, &c.to_client] {
            let s = tls::split(stream);
            row.clear_bytes += s.clear as u64;
            row.tls_bytes += s.tls as u64;
            tls_begun |= s.handshake;
            message_ids(stream, clues.run_id, &mut ids);
            row.bodies_read += clues
                .bodies
                .iter()
                .map(|b| memmem::find_iter(stream, b).count() as u64)
                .sum::<u64>();
        }
        row.tls_connections += u64::from(tls_begun);
        let found = match protocol {
            Protocol::Amqp => credentials::amqp(&c.to_server),
            Protocol::Smtp => credentials::smtp(&c.to_server),
            Protocol::Http => credentials::http(&c.to_server),
        };
        for f in found {
            *creds.entry(f).or_default() += 1;
        }
    }
    row.message_ids_read = ids.len() as u64;
    handshakes.sort();
    row.handshakes_timed = handshakes.len() as u64;
    row.handshake_p50_us = handshakes
        .get(handshakes.len() / 2)
        .map_or(0, |d| d.as_micros() as u64);
    row.handshake_max_us = handshakes.last().map_or(0, |d| d.as_micros() as u64);
    row.credentials = creds
        .into_iter()
        .map(|(f, times)| CredentialRead {
            how: f.how,
            user: f.user,
            secret_read: f.secret_read,
            times,
        })
        .collect();
    row
}

/// Adds every `<run>-<digits>` in `stream` to `ids`.
fn message_ids(stream: &[u8], run_id: &str, ids: &mut BTreeSet<u64>) {
    let prefix = format!("{run_id}-");
    for at in memmem::find_iter(stream, prefix.as_bytes()) {
        let digits = &stream[at + prefix.len()..];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(seq) = std::str::from_utf8(&digits[..n])
            .ok()
            .and_then(|d| d.parse().ok())
        {
            ids.insert(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Capture;

    #[test]
    fn counts_distinct_ids_and_body_copies_in_clear_and_none_in_records() {
        let clear = Capture {
            to_server: b"MAIL FROM:<a>\r\nMessage-ID: <ab12cd34-7@x>\r\n\r\nhello body\r\n.\r\nMessage-ID: <ab12cd34-7@x>\r\nab12cd34-8 hello body\r\n".to_vec(),
            to_client: b"250 ok\r\n".to_vec(),
            chunks: Vec::new(),
        };
        let mut sealed = vec![22, 3, 3, 0, 40];
        sealed.extend([0x5a; 40]);
        let tls = Capture {
            to_server: sealed.clone(),
            to_client: sealed,
            chunks: Vec::new(),
        };
        let captured = Captured {
            connections: vec![clear, tls],
            bytes_seen: 500,
            bytes_kept: 400,
        };
        let clues = Clues {
            run_id: "ab12cd34",
            bodies: vec![b"hello body".to_vec()],
        };
        let row = read("producers", Protocol::Smtp, &captured, &clues);
        assert_eq!(row.message_ids_read, 2);
        assert_eq!(row.bodies_read, 2);
        assert_eq!(row.tls_connections, 1);
        assert_eq!(row.tls_bytes, 90);
        assert_eq!(row.connections, 2);
    }
}
