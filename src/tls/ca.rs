//! The lab's certificate authority: one CA key and certificate per
//! directory, and the certificates dlab's servers and clients present,
//! signed by it (rcgen). Every server certificate names `localhost` and the
//! loopback addresses it is given; a client certificate names its role in
//! its common name (the identity a broker's EXTERNAL mechanism reads).
//!
//! Files, under the directory: `ca.pem` and `ca.key`, then `NAME.pem` and
//! `NAME.key` per certificate. Keys are written readable by the owner only.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA's common name.
pub const CA_NAME: &str = "dlab lab CA";

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server: names `localhost` and its addresses.
    Server,
    /// A client: its common name is its role.
    Client,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago for a year.
    Current,
    /// It ended yesterday (the `certificate-expired` fault's certificate).
    Expired,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// The lab CA of one directory.
pub struct LabCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| err(&format!("cannot write {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| err(&format!("cannot write {}", path.display()), e))
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dlab");
    dn.push(DnType::CommonName, common);
    dn
}

fn valid(params: &mut CertificateParams, validity: Validity) {
    let now = OffsetDateTime::now_utc();
    let (from, to) = match validity {
        Validity::Current => (now - Duration::days(1), now + Duration::days(365)),
        Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
    };
    params.not_before = from;
    params.not_after = to;
}

impl LabCa {
    /// The CA of `dir`: read from `ca.pem` and `ca.key` if they are there,
    /// made (and written) if not.
    pub fn open(dir: &Path) -> Result<LabCa, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(&format!("cannot create {}", dir.display()), e))?;
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let issuer = if cert.exists() && key.exists() {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| err(&format!("cannot read {}", p.display()), e))
            };
            let key = KeyPair::from_pem(&read(&key)?)
                .map_err(|e| err(&format!("{}: not a key", key.display()), e))?;
            Issuer::from_ca_cert_pem(&read(&cert)?, key)
                .map_err(|e| err(&format!("{}: not a CA certificate", cert.display()), e))?
        } else {
            let mut params = CertificateParams::default();
            params.distinguished_name = name(CA_NAME);
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::days(31);
            params.not_after = now + Duration::days(3650);
            let key_pair = KeyPair::generate().map_err(|e| err("cannot make the CA key", e))?;
            let ca = params
                .self_signed(&key_pair)
                .map_err(|e| err("cannot sign the CA certificate", e))?;
            write(&key, &key_pair.serialize_pem(), true)?;
            write(&cert, &ca.pem(), false)?;
            Issuer::new(params, key_pair)
        };
        Ok(LabCa {
            dir: dir.to_path_buf(),
            issuer,
        })
    }

    /// The directory the CA's files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues (or issues again) certificate `file_name` for `common_name`:
    /// a server certificate names `localhost` and `addrs`.
    pub fn issue(
        &self,
        file_name: &str,
        common_name: &str,
        usage: Usage,
        addrs: &[IpAddr],
        validity: Validity,
    ) -> Result<Issued, String> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        valid(&mut params, validity);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        match usage {
            Usage::Server => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                let dns = "localhost"
                    .try_into()
                    .map_err(|e| err("localhost as a DNS name", e))?;
                params.subject_alt_names = std::iter::once(SanType::DnsName(dns))
                    .chain(addrs.iter().map(|a| SanType::IpAddress(*a)))
                    .collect();
            }
            Usage::Client => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        let key_pair = KeyPair::generate().map_err(|e| err("cannot make a key", e))?;
        let cert = params
            .signed_by(&key_pair, &self.issuer)
            .map_err(|e| err(&format!("cannot sign {file_name}"), e))?;
        let issued = Issued {
            cert: self.dir.join(format!("{file_name}.pem")),
            key: self.dir.join(format!("{file_name}.key")),
        };
        write(&issued.key, &key_pair.serialize_pem(), true)?;
        write(&issued.cert, &cert.pem(), false)?;
        Ok(issued)
    }
}
