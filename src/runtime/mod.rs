//! The running configuration as one immutable [`Snapshot`], swapped atomically by a
//! reload ([`Live`]).
//!
//! A snapshot holds every listener's [`Frontend`] (settings, route table, TLS) and every
//! [`Pool`]. A connection holds the `Arc<Frontend>` of its listener and, between two
//! requests, checks one atomic generation counter: when a reload has happened it takes the
//! new frontend, so a request always finishes on the snapshot it started with, and the
//! next one runs on the new config. Nothing of the config is frozen into worker threads.
//!
//! Building a snapshot ([`Snapshot::build`]) reads files (certificates, CA bundles) and
//! may fail; it never touches the running one. Backends that stay the same keep their
//! live state (see [`pool`]).

pub mod diff;
pub mod frontend;
pub mod node;
pub mod parking;
pub mod pool;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::metrics::Stats;
use crate::policy::ratelimit::Limiter;
use crate::tls::client::BackendConnector;

pub use frontend::Frontend;
pub use pool::Pool;

/// One complete running configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts reloads: 1 for the first config.
    pub generation: u64,
    /// The config it was built from.
    pub config: Config,
    /// The pools, in config order.
    pub pools: Box<[Arc<Pool>]>,
    /// The listeners' frontends, in config order.
    pub frontends: Box<[Arc<Frontend>]>,
    /// The rate limits, in config order (carried over reloads while unchanged).
    pub limiters: Box<[Arc<Limiter>]>,
    /// The response caches, in config order (carried over reloads, with what they
    /// hold, while unchanged).
    pub caches: Box<[Arc<crate::content::cache::Cache>]>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Certificates, keys or CA files could not be loaded (they changed since `check`).
    #[error("cannot set up TLS for `{name}`: {message}")]
    Tls {
        /// The listener or pool.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl Snapshot {
    /// Builds the snapshot of `config`, carrying live state over from `previous`.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, BuildError> {
        let generation = previous.map_or(1, |p| p.generation + 1);
        let mut pools = Vec::with_capacity(config.pools.len());
        for c in &config.pools {
            let old = previous.and_then(|p| p.pool(&c.name));
            let h2 = c.http_version == crate::config::HttpVersion::Http2;
            let connector = |alpn_h2: bool| -> Result<Option<BackendConnector>, BuildError> {
                c.tls
                    .as_ref()
                    .map(|t| BackendConnector::new(t, alpn_h2))
                    .transpose()
                    .map_err(|message| BuildError::Tls {
                        name: format!("pool {}", c.name),
                        message,
                    })
            };
            let tls = connector(h2)?;
            // HTTP checks speak HTTP/1.1 and offer only that with ALPN; TCP checks of an
            // HTTP/2 pool offer h2, which gRPC servers insist on.
            let check_tls = match &c.health {
                Some(h) => connector(h2 && h.kind == crate::config::CheckKind::Tcp)?,
                None => None,
            };
            pools.push(Arc::new(Pool::build(c, old.map(|p| &**p), tls, check_tls)));
        }
        let pools: Box<[Arc<Pool>]> = pools.into();
        // A limit whose settings did not change keeps what it knows of every key.
        let limiters: Box<[Arc<Limiter>]> = config
            .rate_limits
            .iter()
            .map(|c| {
                previous
                    .and_then(|p| p.limiters.iter().find(|l| l.config == *c))
                    .map_or_else(|| Arc::new(Limiter::new(c.clone())), Arc::clone)
            })
            .collect();
        let caches: Box<[Arc<crate::content::cache::Cache>]> = config
            .caches
            .iter()
            .map(|c| {
                previous
                    .and_then(|p| p.caches.iter().find(|x| x.config == *c))
                    .map_or_else(
                        || Arc::new(crate::content::cache::Cache::new(c.clone())),
                        Arc::clone,
                    )
            })
            .collect();
        let mut frontends = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let old = previous.and_then(|p| p.frontend(&l.name));
            frontends.push(Arc::new(Frontend::build(
                generation,
                l,
                &config,
                &pools,
                &limiters,
                &caches,
                old.map(|f| &**f),
            )?));
        }
        Ok(Snapshot {
            generation,
            frontends: frontends.into(),
            pools,
            limiters,
            caches,
            config,
        })
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| &*p.name == name)
    }

    /// The frontend of the listener named `name`.
    pub fn frontend(&self, name: &str) -> Option<&Arc<Frontend>> {
        self.frontends.iter().find(|f| &*f.name == name)
    }
}

/// The snapshot in force, shared by every worker thread, and the process's graceful
/// stop: whether it is stopping, and how many client connections are still open.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    stopping: AtomicBool,
    stop_signal: Notify,
    connections: AtomicUsize,
    idle_signal: Notify,
    /// This process as a node of an HA pair or fleet: whether it should take traffic.
    pub node: node::Node,
}

/// One open client connection: counted, and holding its place under its listener's
/// `max_connections`, until dropped. It is how a connection reaches the [`Live`] config.
#[derive(Debug)]
pub struct Connection {
    live: Arc<Live>,
    /// The listener's connection limit it holds a place under (given back on drop; a
    /// bare semaphore rather than a permit, 8 bytes less on every idle connection).
    slot: Option<Arc<Semaphore>>,
    /// Its listener's counters (connections open).
    stats: Arc<Stats>,
    /// Its places under the listener's per-client connection limits.
    holds: crate::pipeline::admit::ConnectionHolds,
}

impl Connection {
    /// The live config the connection is served with.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Keeps `holds` (places under per-client connection limits) until it closes.
    pub fn keep(&mut self, holds: crate::pipeline::admit::ConnectionHolds) {
        self.holds = holds;
    }
}

impl std::ops::Deref for Connection {
    type Target = Live;

    fn deref(&self) -> &Live {
        &self.live
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.add_permits(1);
        }
        self.stats.connections.open.fetch_sub(1, Ordering::Relaxed);
        if self.live.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.live.idle_signal.notify_waiters();
        }
    }
}

impl Live {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Live {
        let generation = AtomicU64::new(snapshot.generation);
        Live {
            current: ArcSwap::from_pointee(snapshot),
            generation,
            stopping: AtomicBool::new(false),
            stop_signal: Notify::new(),
            connections: AtomicUsize::new(0),
            idle_signal: Notify::new(),
            node: node::Node::default(),
        }
    }

    /// Counts a new client connection while the returned guard lives (with `slot`, its
    /// place under the listener's connection limit; `stats`: its listener's counters).
    pub fn connection(
        self: &Arc<Self>,
        slot: Option<OwnedSemaphorePermit>,
        stats: &Arc<Stats>,
    ) -> Connection {
        self.connections.fetch_add(1, Ordering::AcqRel);
        stats.connections.open.fetch_add(1, Ordering::Relaxed);
        Connection {
            live: Arc::clone(self),
            slot: slot.map(|permit| {
                let semaphore = Arc::clone(permit.semaphore());
                permit.forget();
                semaphore
            }),
            stats: Arc::clone(stats),
            holds: None,
        }
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Starts the graceful stop: connections close once their request in flight is done.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop_signal.notify_waiters();
    }

    /// Whether the process is stopping (kept-alive connections are closed after their
    /// current request).
    #[inline]
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves once the process is stopping.
    pub async fn stopped(&self) {
        loop {
            let signal = self.stop_signal.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if self.is_stopping() {
                return;
            }
            signal.await;
        }
    }

    /// Resolves once no client connection is open.
    pub async fn drained(&self) {
        loop {
            let signal = self.idle_signal.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if self.connections() == 0 {
                return;
            }
            signal.await;
        }
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The generation in force: one relaxed atomic load, checked between requests.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `snapshot` in force; returns the one it replaces.
    pub fn swap(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let generation = snapshot.generation;
        let old = self.current.swap(Arc::new(snapshot));
        self.generation.store(generation, Ordering::Release);
        old
    }

    /// The current frontend of the listener named like `frontend`, if `frontend` is not
    /// current any more (`None`: it is, or its listener is gone).
    #[inline]
    pub fn refresh(&self, frontend: &Frontend) -> Option<Arc<Frontend>> {
        if frontend.generation == self.generation() {
            return None;
        }
        self.snapshot().frontend(&frontend.name).cloned()
    }
}
