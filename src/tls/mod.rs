//! TLS for the lab: its certificate authority ([`ca`]), what `dlab certs`
//! shows ([`inspect`]), and the rustls configurations dlab's clients and
//! servers use, built from the lab CA's files. The lab CA is the only root
//! a dlab client trusts: a certificate it did not sign is refused.

pub mod ca;
pub mod inspect;

pub use ca::{Issued, LabCa, Usage, Validity};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

/// The client roles that get a certificate of their own.
pub const ROLES: [&str; 2] = ["producer", "consumer"];

/// The lab's standard set in `dir`: the CA, one server certificate for
/// `localhost` and 127.0.0.1, one client certificate per role. Returns the
/// CA.
pub fn standard(dir: &Path) -> Result<LabCa, String> {
    let ca = LabCa::open(dir)?;
    if !dir.join("server.pem").exists() {
        ca.issue(
            "server",
            "dlab server",
            Usage::Server,
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::Current,
        )?;
    }
    for role in ROLES {
        if !dir.join(format!("{role}.pem")).exists() {
            ca.issue(role, role, Usage::Client, &[], Validity::Current)?;
        }
    }
    Ok(ca)
}

/// The crypto provider every TLS configuration of dlab uses (aws-lc-rs).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// A client that trusts the lab CA only, presenting `identity` if given
/// (mutual TLS).
pub fn client_config(ca: &Path, identity: Option<&Issued>) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(certs(&id.cert)?, key(&id.key)?)
            .map_err(|e| format!("{}: {e}", id.cert.display())),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A server presenting `identity`; with `client_ca`, it requires a client
/// certificate signed by it (mutual TLS).
pub fn server_config(identity: &Issued, client_ca: Option<&Path>) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| e.to_string())?,
        ),
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs(&identity.cert)?, key(&identity.key)?)
        .map_err(|e| format!("{}: {e}", identity.cert.display()))
}
