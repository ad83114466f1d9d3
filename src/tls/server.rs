//! TLS termination: the certificate chosen for each client by its SNI name, the rustls
//! server settings, and reloading certificates when their files change.
//!
//! A listener's certificates form a [`CertStore`]. A client's SNI name is looked up among
//! the names of every certificate (their subjectAltNames): an exact name first, then a
//! wildcard (`*.example.com` matches one label). A client with no SNI, or a name no
//! certificate has, gets the first certificate (HAProxy's and NGINX's default).
//!
//! Files are checked for changes every `reload_interval` by one background thread. A
//! change is loaded in full before it replaces anything: if the new files are unreadable
//! or the key does not match, the error is logged and the old certificates stay in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::{self, CertPaths, LoadError};
use crate::config::tls::{ListenerTls, TlsVersion};

/// How many TLS sessions a listener remembers for resumption (TLS 1.2 session IDs and
/// TLS 1.3 stateful tickets), about the number of clients in a few minutes of traffic.
const SESSION_CACHE: usize = 20_000;

/// The certificates of one listener, swapped whole when their files change.
#[derive(Debug)]
pub struct CertStore {
    listener: Box<str>,
    paths: Vec<CertPaths>,
    table: ArcSwap<Table>,
    /// Modification times of the files the table was loaded from.
    stamps: Mutex<Vec<Option<(SystemTime, SystemTime)>>>,
}

#[derive(Debug)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl Table {
    fn load(paths: &[CertPaths]) -> Result<Table, LoadError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for p in paths {
            let loaded = certs::load(p)?;
            for name in loaded.names {
                // The first certificate naming a host wins, as listed.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| Arc::clone(&loaded.key));
            }
            default.get_or_insert(loaded.key);
        }
        let default = default.ok_or_else(|| LoadError {
            which: certs::Which::Cert,
            message: "no certificate".into(),
            hint: "add one to `certificates`",
        })?;
        Ok(Table {
            exact,
            wildcard,
            default,
        })
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = name {
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                &lower
            } else {
                name
            };
            if let Some(key) = self.exact.get(name) {
                return Arc::clone(key);
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = self.wildcard.get(parent)
            {
                return Arc::clone(key);
            }
        }
        Arc::clone(&self.default)
    }
}

impl CertStore {
    /// Loads every certificate of a listener.
    pub fn load(listener: &str, paths: &[CertPaths]) -> Result<CertStore, LoadError> {
        let stamps = paths.iter().map(certs::modified).collect();
        let table = Table::load(paths)?;
        Ok(CertStore {
            listener: listener.into(),
            paths: paths.to_vec(),
            table: ArcSwap::from_pointee(table),
            stamps: Mutex::new(stamps),
        })
    }

    /// Reloads the certificates if any of their files changed since the last load.
    /// Returns whether new certificates are in use.
    pub fn reload_if_changed(&self) -> bool {
        let now: Vec<_> = self.paths.iter().map(certs::modified).collect();
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *stamps == now {
            return false;
        }
        // Remember the new times even on failure: a bad file is reported once, and
        // loaded as soon as it is fixed (which changes its time again).
        *stamps = now;
        match Table::load(&self.paths) {
            Ok(table) => {
                self.table.store(Arc::new(table));
                tracing::info!(listener = %self.listener, "TLS certificates reloaded");
                true
            }
            Err(e) => {
                tracing::error!(listener = %self.listener, error = %e, "TLS certificates changed but cannot be loaded: keeping the previous ones");
                false
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.table.load().pick(hello.server_name()))
    }
}

/// The rustls settings of a TLS listener: TLS 1.2 and 1.3 (or 1.3 only) with ring's
/// cipher suites (AES-GCM and ChaCha20-Poly1305, forward secrecy only), ALPN, session
/// resumption by cache and by tickets.
pub fn server_config(tls: &ListenerTls, store: Arc<CertStore>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // The server's order of cipher suites wins (as HAProxy and NGINX with
    // ssl_prefer_server_ciphers): AES-GCM, then ChaCha20.
    config.ignore_client_order = true;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    Arc::new(config)
}

/// Starts the thread that reloads `stores` when their files change (checking every
/// `interval`); does nothing if there is nothing to watch. The thread holds the stores
/// weakly and ends once all of them are gone (a reload replaced them).
pub fn watch(stores: Vec<(Arc<CertStore>, Duration)>) {
    let stores: Vec<_> = stores
        .into_iter()
        .filter(|(_, i)| !i.is_zero())
        .map(|(s, i)| (Arc::downgrade(&s), i))
        .collect();
    let Some(tick) = stores.iter().map(|(_, i)| *i).min() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("fulcrum-tls-reload".into())
        .spawn(move || {
            let mut next: Vec<_> = stores.iter().map(|(_, i)| *i).collect();
            let mut elapsed = Duration::ZERO;
            loop {
                std::thread::sleep(tick);
                elapsed += tick;
                let mut alive = false;
                for ((store, interval), due) in stores.iter().zip(&mut next) {
                    let Some(store) = store.upgrade() else {
                        continue;
                    };
                    alive = true;
                    if elapsed >= *due {
                        store.reload_if_changed();
                        *due = elapsed + *interval;
                    }
                }
                if !alive {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the TLS reload thread: certificates will not be reloaded");
    }
}
