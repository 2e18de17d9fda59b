//! The inbox's STARTTLS (RFC 3207): the TLS it offers after EHLO, the
//! handshake once a client asked for it, and the inbox's own account of
//! what came over TLS: handshakes and their TLS versions, the client
//! certificates presented (mutual TLS: the relay's), messages received over
//! TLS or in clear, and how many carried the relay's `Received:` line
//! saying it took them from the sender "using TLS" (the first hop's
//! evidence, written by Postfix).

use crate::tls::Conn;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the inbox offers after EHLO.
#[derive(Clone)]
pub struct InboxTls {
    acceptor: TlsAcceptor,
    /// A transaction in clear is refused (530), as Postfix's `encrypt` does.
    pub required: bool,
}

impl InboxTls {
    /// STARTTLS with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>, required: bool) -> InboxTls {
        InboxTls {
            acceptor: TlsAcceptor::from(config),
            required,
        }
    }

    /// The server's side of the handshake on `conn`, counted in `account`;
    /// the TLS connection, or nothing if it failed.
    pub(super) async fn handshake(
        &self,
        conn: Box<dyn Conn>,
        account: &TlsAccount,
    ) -> Option<Box<dyn Conn>> {
        let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(conn)).await;
        match outcome {
            Ok(Ok(stream)) => {
                let (version, client) = crate::tls::peer(stream.get_ref().1);
                account.handshake(version, client);
                Some(Box::new(stream))
            }
            Ok(Err(e)) => {
                account.failed(&e.to_string());
                None
            }
            Err(_) => {
                account.failed("handshake timed out");
                None
            }
        }
    }
}

/// The inbox's count of what came over TLS.
#[derive(Debug, Default)]
pub struct TlsAccount {
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Messages received inside TLS.
    pub messages_over_tls: AtomicU64,
    /// Messages received in clear.
    pub messages_in_clear: AtomicU64,
    /// Messages whose header carries a `Received:` line "using TLS" (the
    /// relay received them over TLS).
    pub received_using_tls: AtomicU64,
    tallies: Mutex<Tallies>,
}

#[derive(Debug, Default)]
struct Tallies {
    versions: BTreeMap<String, u64>,
    clients: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
}

/// Distinct values, each with its count.
pub type Tally = Vec<(String, u64)>;

impl TlsAccount {
    fn handshake(&self, version: String, client: String) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.tallies.lock() {
            *t.versions.entry(version).or_default() += 1;
            *t.clients.entry(client).or_default() += 1;
        }
    }

    fn failed(&self, why: &str) {
        if let Ok(mut t) = self.tallies.lock() {
            *t.failures.entry(why.to_string()).or_default() += 1;
        }
    }

    /// Counts a message that arrived (`secure`: inside TLS).
    pub(super) fn arrived(&self, message: &[u8], secure: bool) {
        if secure {
            &self.messages_over_tls
        } else {
            &self.messages_in_clear
        }
        .fetch_add(1, Ordering::Relaxed);
        if received_using_tls(message) {
            self.received_using_tls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// TLS versions of the completed handshakes.
    pub fn versions(&self) -> Tally {
        self.tally(|t| &t.versions)
    }

    /// Client certificates' subjects (or "no client certificate").
    pub fn clients(&self) -> Tally {
        self.tally(|t| &t.clients)
    }

    /// Why handshakes failed.
    pub fn failures(&self) -> Tally {
        self.tally(|t| &t.failures)
    }

    fn tally(&self, which: impl Fn(&Tallies) -> &BTreeMap<String, u64>) -> Tally {
        self.tallies
            .lock()
            .map(|t| which(&t).iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

/// Whether the header section has a `Received:` field that says "using
/// TLS" (Postfix's `smtpd_tls_received_header`, folded lines included).
fn received_using_tls(message: &[u8]) -> bool {
    let end = memchr::memmem::find(message, b"\r\n\r\n").unwrap_or(message.len());
    let header = String::from_utf8_lossy(&message[..end]);
    let mut in_received = false;
    for line in header.split("\r\n") {
        if !line.starts_with([' ', '\t']) {
            in_received = line
                .split_once(':')
                .is_some_and(|(name, _)| name.eq_ignore_ascii_case("received"));
        }
        if in_received && line.contains("using TLS") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_s_received_line_says_using_tls_even_when_folded() {
        let tls = b"Received: from sender (localhost [127.0.0.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\tby relay\r\nSubject: x\r\n\r\nusing TLS\r\n";
        assert!(received_using_tls(tls));
        let clear =
            b"Received: from sender by relay with ESMTP\r\nSubject: using TLS\r\n\r\nusing TLS\r\n";
        assert!(!received_using_tls(clear));
        let account = TlsAccount::default();
        account.arrived(tls, true);
        account.arrived(clear, false);
        account.handshake("TLSv1.3".into(), "CN=relay".into());
        account.handshake("TLSv1.3".into(), "no client certificate".into());
        assert_eq!(account.received_using_tls.load(Ordering::Relaxed), 1);
        assert_eq!(account.messages_over_tls.load(Ordering::Relaxed), 1);
        assert_eq!(account.messages_in_clear.load(Ordering::Relaxed), 1);
        assert_eq!(account.versions(), vec![("TLSv1.3".to_string(), 2)]);
        assert_eq!(
            account.clients(),
            vec![
                ("CN=relay".to_string(), 1),
                ("no client certificate".to_string(), 1)
            ]
        );
    }
}
