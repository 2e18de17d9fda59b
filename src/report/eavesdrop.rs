//! The eavesdropper's part of a result: per proxied link, what a passive
//! sniffer on the wire could read in clear (message IDs, bodies,
//! credentials) and how much of the traffic was TLS records it could not.

use serde::{Deserialize, Serialize};

/// What the eavesdropper read on every tapped link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EavesdropReport {
    /// One row per tapped link.
    pub links: Vec<EavesdropLink>,
}

impl EavesdropReport {
    /// The most message IDs read on any one link.
    pub fn most_ids_read(&self) -> u64 {
        self.links
            .iter()
            .map(|l| l.message_ids_read)
            .max()
            .unwrap_or(0)
    }
}

/// What the eavesdropper read on one link (both directions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EavesdropLink {
    /// The link: producers, consumers or push.
    pub link: String,
    /// Connections the tap saw.
    pub connections: u64,
    /// Bytes that crossed the link while the tap listened.
    pub bytes_seen: u64,
    /// Bytes the tap kept and read (its budget bounds them).
    pub bytes_read: u64,
    /// Of those, bytes outside any TLS record (readable as they are).
    pub clear_bytes: u64,
    /// Of those, bytes inside TLS records.
    pub tls_bytes: u64,
    /// Connections that began a TLS handshake (at once or after STARTTLS).
    pub tls_connections: u64,
    /// Handshakes the tap saw whole and timed, from the client's hello to
    /// its next flight after the server's first record.
    #[serde(default)]
    pub handshakes_timed: u64,
    /// Median of those handshake times, in microseconds (0: none).
    #[serde(default)]
    pub handshake_p50_us: u64,
    /// The longest of them, in microseconds.
    #[serde(default)]
    pub handshake_max_us: u64,
    /// Distinct message IDs of the run found in what the tap read.
    pub message_ids_read: u64,
    /// Copies of a message body found in what the tap read.
    pub bodies_read: u64,
    /// Credentials found in clear, password never kept.
    pub credentials: Vec<CredentialRead>,
}

/// One worker connection as the broker describes it (RabbitMQ's
/// management API: `ssl`, `ssl_protocol`, `peer_cert_subject`, `user`,
/// `auth_mechanism`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TlsConnection {
    /// The worker, e.g. `dlab producer 0`.
    pub client: String,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The TLS version, e.g. `tlsv1.3` (empty without TLS).
    pub protocol: String,
    /// The subject of the client certificate the broker verified (empty:
    /// none was presented).
    pub peer_cert_subject: String,
    /// The user the connection authenticated as.
    pub user: String,
    /// The SASL mechanism, e.g. `PLAIN`.
    pub auth_mechanism: String,
}

/// A credential a client sent in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialRead {
    /// Where it was read: `AMQP PLAIN`, `SMTP AUTH LOGIN`, `HTTP Basic`...
    pub how: String,
    /// The user name it carried (a token's first 4 characters and `…`).
    pub user: String,
    /// Whether its secret (password, token) was readable too.
    pub secret_read: bool,
    /// How many times it crossed the link.
    pub times: u64,
}
