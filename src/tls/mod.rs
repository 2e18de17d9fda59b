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

/// The client roles that get a certificate of their own (the SMTP sender
/// is the producer; the relay is a client of the inbox).
pub const ROLES: [&str; 3] = ["producer", "consumer", "relay"];

/// The lab's certificate for its servers, in a standard set's directory.
pub fn server_identity(dir: &Path) -> Issued {
    named(dir, "server")
}

/// Certificate `name` of a standard set (issued by [`standard`] or
/// [`fault_certificates`]).
pub fn named(dir: &Path, name: &str) -> Issued {
    Issued {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// The certificates the wire's faults present, made once per directory:
/// `server-expired` (signed by the lab CA, its validity over) and
/// `foreign/server` (for the same names, signed by a CA the lab does not
/// know: what a man in the middle holds).
pub fn fault_certificates(dir: &Path) -> Result<(Issued, Issued), String> {
    let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let expired = named(dir, "server-expired");
    if !expired.cert.exists() {
        LabCa::open(dir)?.issue(
            "server-expired",
            "dlab server (expired)",
            Usage::Server,
            &loopback,
            Validity::Expired,
        )?;
    }
    let foreign_dir = dir.join("foreign");
    let foreign = named(&foreign_dir, "server");
    if !foreign.cert.exists() {
        LabCa::open(&foreign_dir)?.issue(
            "server",
            "dlab server",
            Usage::Server,
            &loopback,
            Validity::Current,
        )?;
    }
    Ok((expired, foreign))
}

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

/// A client that accepts any certificate (a scenario's `tls_verify =
/// false`): it still encrypts, but to whoever answers.
pub fn client_config_unverified(identity: Option<&Issued>) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())));
    match identity {
        Some(id) => builder
            .with_client_auth_cert(certs(&id.cert)?, key(&id.key)?)
            .map_err(|e| format!("{}: {e}", id.cert.display())),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The verifier of a client that verifies nothing but the handshake's own
/// signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection in clear or in TLS, boxed where a session can change from
/// one to the other (STARTTLS, a man in the middle).
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Conn for T {}

/// What a server's side of a completed handshake says, as servers log it:
/// the TLS version ("TLSv1.3", as Postfix and RabbitMQ write it) and the
/// client ("CN=consumer", or "no client certificate").
pub fn peer(c: &rustls::ServerConnection) -> (String, String) {
    let version = c.protocol_version().map_or("TLS".into(), |v| {
        v.as_str().unwrap_or("TLS").replace('_', ".")
    });
    let client = match c.peer_certificates().and_then(|chain| chain.first()) {
        Some(der) => format!("CN={}", subject_cn(der).unwrap_or_else(|| "?".into())),
        None => "no client certificate".to_string(),
    };
    (version, client)
}

/// The common name of a certificate's subject (DER), as a broker or a
/// relay logs a client's identity.
pub fn subject_cn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
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
