//! What `dlab certs` shows: each certificate of a lab CA's directory read
//! back from its file (subject, issuer, names, validity, fingerprint) and
//! checked the way dlab's clients and servers check it (rustls' WebPKI
//! verifiers with the lab CA as the only root), so a listed "verifies"
//! is the same verdict a handshake would reach.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::prelude::*;

/// One certificate as read from its file.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The file.
    pub file: PathBuf,
    /// Subject common name.
    pub subject: String,
    /// Issuer common name.
    pub issuer: String,
    /// `CA`, `server` or `client`.
    pub kind: &'static str,
    /// DNS names and IP addresses it names.
    pub names: Vec<String>,
    /// Validity, RFC 3339 dates.
    pub not_before: String,
    /// Validity, RFC 3339 dates.
    pub not_after: String,
    /// Whether now is within its validity.
    pub current: bool,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// The verifier's verdict with the lab CA as the only root: `Ok` or
    /// its reason.
    pub verdict: Result<(), String>,
}

fn cn(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("?")
        .to_string()
}

/// The DER certificates in a PEM file.
pub fn read_pem(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(&bytes) {
        let pem = pem.map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    Ok(out)
}

/// Checks `der` as a `kind` certificate against the roots of `ca_der`.
pub fn verify(der: &[u8], kind: &str, ca_der: &[u8]) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| format!("the CA certificate: {e}"))?;
    let roots = Arc::new(roots);
    let cert = CertificateDer::from(der.to_vec());
    match kind {
        "server" => {
            let v = WebPkiServerVerifier::builder_with_provider(roots, super::provider())
                .build()
                .map_err(|e| e.to_string())?;
            let name = ServerName::try_from("localhost").expect("a DNS name");
            v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "client" => {
            let v = WebPkiClientVerifier::builder_with_provider(roots, super::provider())
                .build()
                .map_err(|e| e.to_string())?;
            v.verify_client_cert(&cert, &[], UnixTime::now())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads every `*.pem` of `dir`, the CA first.
pub fn list(dir: &Path) -> Result<Vec<CertInfo>, String> {
    let ca_der = read_pem(&dir.join("ca.pem"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no certificate", dir.join("ca.pem").display()))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort_by_key(|p| (p.file_name() != Some("ca.pem".as_ref()), p.clone()));
    let mut out = Vec::new();
    for file in files {
        for der in read_pem(&file)? {
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| format!("{}: not an X.509 certificate: {e}", file.display()))?;
            let eku = cert
                .extended_key_usage()
                .ok()
                .flatten()
                .map(|e| e.value.clone());
            let kind = if cert.is_ca() {
                "CA"
            } else if eku.as_ref().is_some_and(|e| e.client_auth) {
                "client"
            } else {
                "server"
            };
            let names = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            GeneralName::DNSName(d) => Some(d.to_string()),
                            GeneralName::IPAddress(ip) if ip.len() == 4 => Some(
                                std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                            ),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let v = cert.validity();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
            out.push(CertInfo {
                file: file.clone(),
                subject: cn(cert.subject()),
                issuer: cn(cert.issuer()),
                kind,
                names,
                not_before: v.not_before.to_datetime().date().to_string(),
                not_after: v.not_after.to_datetime().date().to_string(),
                current: v.is_valid(),
                sha256: hex(&digest.as_ref()[..8]),
                verdict: verify(&der, kind, &ca_der),
            });
        }
    }
    Ok(out)
}

/// One line per certificate, for the terminal.
pub fn describe(c: &CertInfo) -> String {
    let names = if c.names.is_empty() {
        String::new()
    } else {
        format!(" names {}", c.names.join(", "))
    };
    let verdict = match (&c.verdict, c.kind) {
        (_, "CA") => "the lab's root".to_string(),
        (Ok(()), "server") => "verifies against the lab CA as localhost".to_string(),
        (Ok(()), _) => "verifies against the lab CA as a client".to_string(),
        (Err(e), _) => format!("does NOT verify: {e}"),
    };
    format!(
        "{}: {} \"{}\" issued by \"{}\"{names}; valid {} to {}{}; sha256 {}…; {verdict}",
        c.file.display(),
        c.kind,
        c.subject,
        c.issuer,
        c.not_before,
        c.not_after,
        if c.current { "" } else { " (NOT now)" },
        c.sha256,
    )
}
