//! The response cache (RFC 9111, a shared cache): what may be stored and for how long
//! ([`freshness`]), read from `Cache-Control` ([`directives`]). The store, request
//! coalescing and the pipeline phase that serves hits build on these.

pub mod directives;
pub mod freshness;
pub mod key;
pub mod store;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::config::caches::CacheConfig;

/// A cache of the running config: its settings, its store, its counts. Carried over
/// reloads (with what it holds) while its settings stay the same.
#[derive(Debug)]
pub struct Cache {
    /// Its settings.
    pub config: CacheConfig,
    /// What it holds.
    pub store: Arc<store::Store>,
    /// Keys are hashed with a key of this process's own (no collisions on demand).
    hasher: std::collections::hash_map::RandomState,
    /// What happened to requests: served from it, fetched (and stored or not).
    pub counts: Counts,
}

/// A cache's counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// Served fresh from the cache.
    pub hits: AtomicU64,
    /// Served stale from the cache (while it is refreshed, or the backend failing).
    pub stale: AtomicU64,
    /// Background refreshes started (`stale-while-revalidate`).
    pub refreshes: AtomicU64,
    /// Fetched from a backend.
    pub misses: AtomicU64,
    /// Fetched and stored.
    pub stored: AtomicU64,
    /// Not for the cache (method, range, `no-store`).
    pub bypassed: AtomicU64,
    /// Waited for another request's fetch of the same key.
    pub coalesced: AtomicU64,
}

impl Cache {
    /// A new, empty cache.
    pub fn new(config: CacheConfig) -> Cache {
        Cache {
            store: Arc::new(store::Store::new(config.memory as usize)),
            config,
            hasher: Default::default(),
            counts: Counts::default(),
        }
    }

    /// The hash of a primary key.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The freshness limits of its settings.
    pub fn limits(&self) -> freshness::Limits {
        freshness::Limits {
            default_ttl: self.config.default_ttl.as_secs(),
            max_heuristic: self.config.max_heuristic.as_secs(),
        }
    }

    /// The largest body stored.
    pub fn max_object(&self) -> usize {
        (self.config.max_object_size as usize).min(self.store.largest())
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
