//! The `[listeners.tls]` (TLS termination) and `[pools.NAME.tls]` (TLS to backends)
//! sections: their raw form, their validated form and the checks between the two.
//!
//! Certificate, key and CA files are read at check time, so that `fulcrum check` reports a
//! missing file, a malformed PEM or a key that does not match its certificate. Relative
//! paths are relative to the config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::certs::{self, CertPaths, Which};
use super::error::Problems;
use super::fields::duration_or_zero;

/// Application protocols a TLS listener may offer with ALPN.
const ALPN: &[&str] = &["h2", "http/1.1"];

/// `[listeners.tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub certificates: Spanned<Vec<RawCertificate>>,
    pub alpn: Option<Spanned<Vec<String>>>,
    pub min_version: Option<Spanned<String>>,
    pub reload_interval: Option<Spanned<String>>,
}

/// One `{ cert = "...", key = "..." }` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[pools.NAME.tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoolTls {
    pub ca: Option<Spanned<String>>,
    pub verify: Option<Spanned<bool>>,
    pub server_name: Option<Spanned<String>>,
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// TLS termination on a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// Certificates, chosen by the client's SNI name; the first is the default.
    pub certificates: Vec<CertPaths>,
    /// ALPN protocols offered, in order of preference.
    pub alpn: Vec<String>,
    /// Oldest version accepted.
    pub min_version: TlsVersion,
    /// How often the certificate files are checked for changes (0: never).
    pub reload_interval: Duration,
}

/// TLS to a pool's backends.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTls {
    /// CA bundle backends' certificates must chain to (`None` only with `verify = false`).
    pub ca: Option<PathBuf>,
    /// Verify the backend's certificate and name.
    pub verify: bool,
    /// Name sent with SNI and checked against the certificate (default: the backend's IP).
    pub server_name: Option<String>,
}

/// Validates a listener's TLS section, reading every certificate and key.
pub fn check_listener_tls(
    raw: &RawListenerTls,
    listener: &str,
    base: &Path,
    problems: &mut Problems<'_>,
) -> ListenerTls {
    let key = |k: &str| format!("listeners.{listener}.tls.{k}");
    if raw.certificates.get_ref().is_empty() {
        problems.add(
            raw.certificates.span(),
            "`certificates` is empty: a TLS listener needs at least one",
            Some("add { cert = \"server.pem\", key = \"server.key\" }".into()),
        );
    }
    let mut certificates = Vec::new();
    for c in raw.certificates.get_ref() {
        let paths = CertPaths {
            cert: resolve(base, c.cert.get_ref()),
            key: resolve(base, c.key.get_ref()),
        };
        if let Err(e) = certs::load(&paths) {
            let span = match e.which {
                Which::Cert => c.cert.span(),
                Which::Key => c.key.span(),
            };
            problems.add(span, e.message, Some(e.hint.into()));
        }
        certificates.push(paths);
    }
    let alpn = match &raw.alpn {
        None => ALPN.iter().map(|p| p.to_string()).collect(),
        Some(list) => {
            for p in list.get_ref() {
                if !ALPN.contains(&p.as_str()) {
                    problems.add(
                        list.span(),
                        format!("unknown ALPN protocol `{p}`"),
                        Some(format!("offer any of: {}", ALPN.join(", "))),
                    );
                }
            }
            list.get_ref().clone()
        }
    };
    let min_version = match &raw.min_version {
        None => TlsVersion::Tls12,
        Some(v) if v.get_ref() == "1.2" => TlsVersion::Tls12,
        Some(v) if v.get_ref() == "1.3" => TlsVersion::Tls13,
        Some(v) => {
            problems.add(
                v.span(),
                format!("unsupported TLS version `{}`", v.get_ref()),
                Some("use \"1.2\" or \"1.3\" (older versions are not offered)".into()),
            );
            TlsVersion::Tls12
        }
    };
    let reload_interval = match &raw.reload_interval {
        None => Duration::from_secs(5),
        some => duration_or_zero(some, &key("reload_interval"), problems),
    };
    ListenerTls {
        certificates,
        alpn,
        min_version,
        reload_interval,
    }
}

/// Validates a pool's TLS section, reading the CA bundle.
pub fn check_pool_tls(
    raw: &RawPoolTls,
    pool: &Spanned<String>,
    base: &Path,
    problems: &mut Problems<'_>,
) -> BackendTls {
    let verify = raw.verify.as_ref().is_none_or(|v| *v.get_ref());
    let ca = raw.ca.as_ref().map(|ca| {
        let path = resolve(base, ca.get_ref());
        if let Err(message) = certs::load_roots(&path) {
            problems.add(
                ca.span(),
                message,
                Some("give a PEM file with the CA certificates that sign the backends".into()),
            );
        }
        path
    });
    if verify && ca.is_none() {
        let span = raw.verify.as_ref().map_or(pool.span(), |v| v.span());
        let pool = pool.get_ref();
        problems.add(
            span,
            format!("pool `{pool}` verifies its backends' certificates but names no CA"),
            Some(format!(
                "add `ca = \"ca.pem\"` to [pools.{pool}.tls], or `verify = false` to skip verification"
            )),
        );
    }
    if let Some(name) = &raw.server_name
        && rustls::pki_types::ServerName::try_from(name.get_ref().as_str()).is_err()
    {
        problems.add(
            name.span(),
            format!("`{}` is not a valid server name", name.get_ref()),
            Some("a DNS name such as \"api.internal\" or an IP address".into()),
        );
    }
    BackendTls {
        ca,
        verify,
        server_name: raw.server_name.as_ref().map(|n| n.get_ref().clone()),
    }
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
