//! Opening AMQP connections, with failures that name the broker and what to try.

use super::url::mask_password;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

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
    match tokio::time::timeout(timeout, Connection::connect(url, props)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            timeout.as_secs()
        ))),
    }
}
