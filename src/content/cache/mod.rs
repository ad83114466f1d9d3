//! The response cache (RFC 9111, a shared cache): what may be stored and for how long
//! ([`freshness`]), read from `Cache-Control` ([`directives`]); the memory it is kept
//! in with request coalescing ([`store`]) and the optional disk tier evicted entries go
//! on to ([`disk`]). The pipeline phase that serves hits builds on these.

pub mod directives;
pub mod disk;
pub mod freshness;
pub mod key;
pub mod store;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::config::caches::CacheConfig;
use store::Entry;

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
    /// Where evicted entries go on to, if it has a disk tier.
    pub disk: Option<disk::Disk>,
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
    /// A new cache: empty memory, and what its disk tier holds (a disk tier that
    /// cannot be opened is left out, with an error in the log).
    pub fn new(config: CacheConfig) -> Cache {
        let mut cache = Cache {
            store: Arc::new(store::Store::new(config.memory as usize)),
            config,
            hasher: Default::default(),
            counts: Counts::default(),
            disk: None,
        };
        if let Some((dir, cap)) = &cache.config.disk {
            match disk::Disk::open(dir, *cap, |key| cache.hash(key)) {
                Ok(d) => cache.disk = Some(d),
                Err(e) => {
                    tracing::error!(cache = %cache.config.name, dir = %dir.display(), error = %e, "the cache's disk tier cannot be used")
                }
            }
        }
        cache
    }

    /// Stores `entry` in memory; what memory evicts goes on to the disk tier.
    pub fn insert(&self, hash: u64, entry: Arc<Entry>) -> bool {
        let mut evicted = Vec::new();
        let stored = self.store.insert_evicting(hash, entry, &mut evicted);
        if let Some(disk) = &self.disk {
            for (hash, entry) in evicted {
                disk.spill(hash, entry);
            }
        }
        stored
    }

    /// Drops every variant of `key` (hashed `hash`), in memory and on disk; how many.
    pub fn remove(&self, hash: u64, key: &[u8]) -> usize {
        let on_disk = self.disk.as_ref().map_or(0, |d| d.remove(|k| k == key));
        self.store.remove(hash, key).max(on_disk)
    }

    /// Drops every entry whose key starts with `prefix`, in memory and on disk; how
    /// many (those on disk counted once).
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let on_disk = self
            .disk
            .as_ref()
            .map_or(0, |d| d.remove(|k| k.starts_with(prefix)));
        self.store.purge_prefix(prefix).max(on_disk)
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
