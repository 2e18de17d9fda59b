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
    /// Distinct message IDs of the run found in what the tap read.
    pub message_ids_read: u64,
    /// Copies of a message body found in what the tap read.
    pub bodies_read: u64,
    /// Credentials found in clear, password never kept.
    pub credentials: Vec<CredentialRead>,
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
