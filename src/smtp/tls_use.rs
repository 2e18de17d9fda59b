//! What an SMTP run with `tls` adds: the lab CA's certificates under the
//! run's directory, and from them the inbox's and the sender's mailbox's
//! STARTTLS, the relay's TLS settings (its server certificate, its delivery
//! agent's level, with mutual TLS its client certificate), and the
//! sender's client; after the run, the TLS part of the report from each
//! side's own account.

use super::inbox::Inbox;
use super::sender::SenderTls;
use crate::relay;
use crate::report::{ReasonCount, SmtpTlsReport};
use crate::runner::RunError;
use crate::scenario::{SmtpTls, StartTls, TlsMode};
use crate::tls;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The TLS of one SMTP run.
pub struct TlsUse {
    mode: TlsMode,
    policy: SmtpTls,
    /// The inbox's server side (with mutual TLS it requires the relay's certificate).
    pub inbox: Arc<rustls::ServerConfig>,
    /// The sender's mailbox's server side (returns; no client certificate asked).
    pub mailbox: Arc<rustls::ServerConfig>,
    /// The relay's settings.
    pub relay: relay::Tls,
    /// The sender's client.
    pub sender: SenderTls,
    /// With mutual TLS, a transaction in clear is refused at the inbox.
    pub mutual: bool,
}

fn setup(e: String) -> RunError {
    RunError::Unsupported(format!("cannot set up the lab's TLS: {e}"))
}

impl TlsUse {
    /// The lab's certificates in `dir` (made if missing) and what each
    /// party of the run needs from them.
    pub fn prepare(dir: &Path, mode: TlsMode, policy: SmtpTls) -> Result<TlsUse, RunError> {
        tls::standard(dir).map_err(setup)?;
        let mutual = mode == TlsMode::Mutual;
        let ca = dir.join("ca.pem");
        let server = tls::server_identity(dir);
        let config = |client_ca: Option<&Path>| {
            tls::server_config(&server, client_ca)
                .map(Arc::new)
                .map_err(setup)
        };
        let identity = mutual.then(|| tls::named(dir, "producer"));
        let client = if policy.verify {
            tls::client_config(&ca, identity.as_ref())
        } else {
            tls::client_config_unverified(identity.as_ref())
        }
        .map_err(setup)?;
        Ok(TlsUse {
            mode,
            policy,
            inbox: config(mutual.then_some(ca.as_path()))?,
            mailbox: config(None)?,
            relay: relay::Tls {
                dir: dir.to_path_buf(),
                mutual,
                level: policy.postfix_level(),
            },
            sender: SenderTls {
                connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
                required: policy.starttls == StartTls::Required,
            },
            mutual,
        })
    }

    /// The report's TLS part: the relay's log (`relay_log`, when it is a
    /// private relay's) beside the inbox's own count.
    pub fn report(&self, inbox: &Inbox, relay_log: Option<&str>) -> SmtpTlsReport {
        let lines = relay_log.map(relay::tls_log::read).unwrap_or_default();
        let account = &inbox.stats().tls;
        let tally = |t: Vec<(String, u64)>| {
            t.into_iter()
                .map(|(reason, count)| ReasonCount { reason, count })
                .collect()
        };
        SmtpTlsReport {
            mode: match self.mode {
                TlsMode::Mutual => "mutual",
                _ => "on",
            }
            .to_string(),
            starttls: match self.policy.starttls {
                StartTls::Required => "required",
                StartTls::Opportunistic => "opportunistic",
            }
            .to_string(),
            verify: self.policy.verify,
            relay_level: self.policy.postfix_level().to_string(),
            relay_in: ReasonCount::tally(lines.inbound),
            relay_out: ReasonCount::tally(lines.outbound),
            relay_out_handshakes: lines.outbound_handshakes,
            relay_refused: ReasonCount::tally(lines.refused),
            received_using_tls: account.received_using_tls.load(Ordering::Relaxed),
            inbox_handshakes: account.handshakes.load(Ordering::Relaxed),
            inbox_versions: tally(account.versions()),
            inbox_clients: tally(account.clients()),
            inbox_failures: tally(account.failures()),
            inbox_over_tls: account.messages_over_tls.load(Ordering::Relaxed),
            inbox_in_clear: account.messages_in_clear.load(Ordering::Relaxed),
        }
    }
}
