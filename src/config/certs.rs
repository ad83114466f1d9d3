//! Reading certificates, keys and CA bundles from PEM files, with errors a person can act
//! on: which file, what is wrong with it, what to do.
//!
//! A certificate file holds the server certificate first, then its intermediates (the
//! same layout as NGINX's `ssl_certificate` and HAProxy's `crt`). The key file holds one
//! private key (PKCS#8, PKCS#1 RSA or SEC1 EC). The key must match the certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Where a certificate and its key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM certificate chain, server certificate first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Which of the two files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The certificate file.
    Cert,
    /// The key file.
    Key,
}

/// Why a certificate could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file at fault.
    pub which: Which,
    /// What is wrong, naming the file.
    pub message: String,
    /// What to do about it.
    pub hint: &'static str,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.hint)
    }
}

/// A loaded certificate: ready for rustls, plus the host names it is valid for.
#[derive(Debug)]
pub struct Loaded {
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// DNS names from the certificate's subjectAltName (or its CN when it has none),
    /// lower-cased; wildcards keep their `*.`.
    pub names: Vec<String>,
}

/// Reads and checks one certificate and its key.
pub fn load(paths: &CertPaths) -> Result<Loaded, LoadError> {
    let chain = read_chain(&paths.cert)?;
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| LoadError {
        which: Which::Key,
        message: format!("cannot read a private key from {}: {}", paths.key.display(), pem_error(&e)),
        hint: "give a PEM file with one private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        let mismatch = matches!(e, rustls::Error::InconsistentKeys(_));
        LoadError {
            which: Which::Key,
            message: if mismatch {
                format!(
                    "the key in {} does not match the certificate in {}",
                    paths.key.display(),
                    paths.cert.display()
                )
            } else {
                format!("unusable private key in {}: {e}", paths.key.display())
            },
            hint: if mismatch {
                "pair each certificate with the key it was issued for"
            } else {
                "use an RSA (2048+ bits), ECDSA P-256/P-384 or Ed25519 key"
            },
        }
    })?;
    let names = names(&key.cert[0]).map_err(|message| LoadError {
        which: Which::Cert,
        message: format!("{}: {message}", paths.cert.display()),
        hint: "the first certificate in the file must be the server's (X.509, PEM)",
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
    })
}

/// Reads every certificate of a PEM file (at least one).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let error = |detail: String| LoadError {
        which: Which::Cert,
        message: format!("cannot read certificates from {}: {detail}", path.display()),
        hint: "give a PEM file with the server certificate first, then its intermediates",
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(pem_error(&e)))?;
    if chain.is_empty() {
        return Err(error("no BEGIN CERTIFICATE section".into()));
    }
    Ok(chain)
}

/// A CA bundle for verifying backends.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let chain = read_chain(path).map_err(|e| e.message)?;
    for cert in chain {
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The names a certificate is valid for.
fn names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(names)
}

/// The last modification time of the files, to notice when they change.
pub fn modified(paths: &CertPaths) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&paths.cert)?, m(&paths.key)?))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM section of the right kind".into(),
        other => format!("malformed PEM ({other})"),
    }
}
