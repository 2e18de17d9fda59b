//! Opening AMQP connections, with failures that name the broker and what to try.

use super::url::mask_password;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connect, Connection, ConnectionProperties};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// This process's TLS settings for `amqps://` URLs: the lab CA (PEM), the
/// only root trusted, and for mutual TLS a certificate and key (PEM).
struct TlsFiles {
    ca: String,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

static TLS: OnceLock<TlsFiles> = OnceLock::new();

/// Reads the lab CA of `dir` (and, for mutual TLS, `NAME.pem` and
/// `NAME.key`) for every later `amqps://` connection of this process.
pub fn use_tls(dir: &Path, identity: Option<&str>) -> Result<(), String> {
    let read = |f: &str| {
        std::fs::read(dir.join(f))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(f).display()))
    };
    let ca = String::from_utf8(read("ca.pem")?).map_err(|e| e.to_string())?;
    let identity = match identity {
        Some(name) => Some((read(&format!("{name}.pem"))?, read(&format!("{name}.key"))?)),
        None => None,
    };
    let _ = TLS.set(TlsFiles { ca, identity });
    Ok(())
}

fn tls_config() -> OwnedTLSConfig {
    match TLS.get() {
        Some(t) => OwnedTLSConfig {
            identity: t.identity.as_ref().map(|(pem, key)| OwnedIdentity::PKCS8 {
                pem: pem.clone(),
                key: key.clone(),
            }),
            cert_chain: Some(t.ca.clone()),
        },
        None => OwnedTLSConfig::default(),
    }
}

/// The broker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No AMQP connection could be opened.
    #[error("cannot reach the AMQP broker at {url}: {reason}. Try: `dlab up` to start a private broker, leave --amqp-url unset so dlab starts one itself, or check that RabbitMQ listens there (e.g. `rabbitmq-diagnostics -q ping`)")]
    Unreachable {
        /// The URL, password masked.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The broker refused an operation dlab needs (declaring its queue, say).
    #[error("the AMQP broker at {url} refused {what}: {reason}")]
    Refused {
        /// The URL, password masked.
        url: String,
        /// The operation.
        what: String,
        /// What the broker said.
        reason: String,
    },
}

impl BrokerError {
    /// A refusal of `what` by the broker at `url`.
    pub fn refused(url: &str, what: &str, err: impl std::fmt::Display) -> BrokerError {
        BrokerError::Refused {
            url: mask_password(url),
            what: what.to_string(),
            reason: err.to_string(),
        }
    }
}

/// Connects to `url`, naming the connection `name` in the broker's UI.
pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let unreachable = |reason: String| BrokerError::Unreachable {
        url: mask_password(url),
        reason,
    };
    let open = async {
        let runtime = lapin::runtime::default_runtime()?;
        url.connect_with_config(props, tls_config(), runtime).await
    };
    match tokio::time::timeout(timeout, open).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            timeout.as_secs()
        ))),
    }
}
