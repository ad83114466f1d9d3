//! The cache's memory: stored responses by key, each key with its variants (one per set
//! of request header values its response's `Vary` names), within a byte budget.
//!
//! Entries are immutable and shared (`Arc`): a hit holds one while it is sent, even if
//! the store drops or replaces it meanwhile; a revalidated response is a new entry that
//! shares the old body. The store is cut in shards (a mutex each, a share of the budget
//! each); a shard over its share evicts with CLOCK, an approximation of LRU: entries
//! queue in insertion order, a hit sets an entry's bit, and eviction takes the first
//! entry whose bit is clear, clearing bits on the way (a second chance).
//!
//! Requests for a key being fetched wait for that fetch ([`Store::fill`]): N concurrent
//! misses make one backend request.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::directives::Directives;
use super::freshness::Timing;
use crate::policy::shards::AsIs;

/// Bytes an entry costs beyond its key, headers and body.
const OVERHEAD: usize = 256;

/// The request header values a variant was stored for: each name its response's `Vary`
/// lists (lower case), and the request's value (`None`: absent).
pub type VaryValues = Box<[(Box<str>, Option<Box<[u8]>>)]>;

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Its primary key (see `key`).
    pub key: Box<[u8]>,
    /// The request header values it was stored for, by the names its `Vary` lists
    /// (lower case; `None`: the request had no such header).
    pub vary: VaryValues,
    /// The status.
    pub status: u16,
    /// Its end-to-end headers, as received.
    pub headers: Box<[(http::HeaderName, http::HeaderValue)]>,
    /// The body.
    pub body: Bytes,
    /// Its `Cache-Control`.
    pub directives: Directives,
    /// When and how it was received, how long it is fresh.
    pub timing: Timing,
    /// CLOCK's bit: used since the hand last passed.
    used: AtomicBool,
    /// What it costs the budget (see [`Entry::size`]).
    bytes: usize,
}

impl Entry {
    /// A new entry.
    pub fn new(
        key: Box<[u8]>,
        vary: VaryValues,
        status: u16,
        headers: Box<[(http::HeaderName, http::HeaderValue)]>,
        body: Bytes,
        directives: Directives,
        timing: Timing,
    ) -> Entry {
        let bytes = OVERHEAD
            + key.len()
            + headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
            + vary
                .iter()
                .map(|(n, v)| n.len() + v.as_ref().map_or(0, |v| v.len()) + 32)
                .sum::<usize>()
            + body.len();
        Entry {
            key,
            vary,
            status,
            headers,
            body,
            directives,
            timing,
            used: AtomicBool::new(false),
            bytes,
        }
    }

    /// What it costs the budget: its key, headers, `Vary` values and body, and
    /// [`OVERHEAD`].
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// The value of its header `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&http::HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
    }

    /// Whether it has a validator (`ETag` or `Last-Modified`) to be revalidated with.
    pub fn has_validator(&self) -> bool {
        self.header("etag").is_some() || self.header("last-modified").is_some()
    }

    /// Whether a request is served by it: `same(name, value)` says whether the
    /// request's header `name` has the value stored (`None`: absent).
    pub fn matches(&self, same: impl Fn(&str, Option<&[u8]>) -> bool) -> bool {
        self.vary
            .iter()
            .all(|(name, stored)| same(name, stored.as_deref()))
    }
}

struct Shard {
    map: HashMap<u64, Vec<Arc<Entry>>, BuildHasherDefault<AsIs>>,
    clock: VecDeque<(u64, Weak<Entry>)>,
    bytes: usize,
}

/// A fetch in progress for a key: requests for it wait for its end.
#[derive(Debug, Default)]
pub struct Fill {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Fill {
    /// Waits until the fetch ends, at most `limit`; whether it ended.
    pub async fn wait(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if self.done.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// The request that fetches a key; waiting requests go on when it is dropped (stored or
/// not).
#[derive(Debug)]
pub struct Filling {
    store: Arc<Store>,
    hash: u64,
    fill: Arc<Fill>,
}

impl Drop for Filling {
    fn drop(&mut self) {
        self.fill.done.store(true, Ordering::Release);
        self.fill.notify.notify_waiters();
        if let Ok(mut fills) = self.store.fills.lock() {
            fills.remove(&self.hash);
        }
    }
}

/// What [`Store::fill`] says of a key.
#[derive(Debug)]
pub enum Turn {
    /// Fetch it (the others wait for this).
    Fetch(Filling),
    /// Another request is fetching it: wait, then look again.
    Wait(Arc<Fill>),
}

/// Stored responses within a byte budget.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    /// Each shard's share of the budget.
    share: usize,
    /// Bytes held.
    bytes: AtomicUsize,
    /// Entries held.
    entries: AtomicUsize,
    fills: Mutex<HashMap<u64, Arc<Fill>, BuildHasherDefault<AsIs>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("bytes", &self.bytes())
            .field("entries", &self.entries())
            .finish()
    }
}

/// Shards get at least this much of the budget each.
const MIN_SHARE: usize = 16 << 20;

impl Store {
    /// A store of at most `budget` bytes.
    pub fn new(budget: usize) -> Store {
        let count = (budget / MIN_SHARE).clamp(1, 16).next_power_of_two();
        let count = if count * MIN_SHARE > budget && count > 1 {
            count / 2
        } else {
            count
        };
        Store {
            shards: (0..count)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        clock: VecDeque::new(),
                        bytes: 0,
                    })
                })
                .collect(),
            share: budget / count,
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            fills: Mutex::default(),
        }
    }

    /// The largest entry a shard can hold.
    pub fn largest(&self) -> usize {
        self.share
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        let i = (hash >> 59) as usize & (self.shards.len() - 1);
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The variant of `key` (hashed `hash`) for a request, if stored: `same(name,
    /// value)` says whether the request's header `name` has that value.
    pub fn get(
        &self,
        hash: u64,
        key: &[u8],
        same: impl Fn(&str, Option<&[u8]>) -> bool,
    ) -> Option<Arc<Entry>> {
        let shard = self.shard(hash);
        let found = shard
            .map
            .get(&hash)?
            .iter()
            .find(|e| &*e.key == key && e.matches(&same))?;
        found.used.store(true, Ordering::Relaxed);
        Some(Arc::clone(found))
    }

    /// Stores `entry` under `hash`, replacing the variant it replaces (same key, same
    /// request values), evicting others if its shard is over its share. False when the
    /// entry is larger than a shard's share.
    pub fn insert(&self, hash: u64, entry: Entry) -> bool {
        self.insert_evicting(hash, Arc::new(entry), &mut Vec::new())
    }

    /// [`Store::insert`], giving the entries it evicts to `evicted` (with their hash).
    pub fn insert_evicting(
        &self,
        hash: u64,
        entry: Arc<Entry>,
        evicted: &mut Vec<(u64, Arc<Entry>)>,
    ) -> bool {
        let size = entry.size();
        if size > self.share {
            return false;
        }
        let mut shard = self.shard(hash);
        let variants = shard.map.entry(hash).or_default();
        let mut freed = 0;
        let mut dropped = 0;
        variants.retain(|e| {
            let same = e.key == entry.key && e.vary == entry.vary;
            if same {
                freed += e.size();
                dropped += 1;
            }
            !same
        });
        variants.push(Arc::clone(&entry));
        shard.clock.push_back((hash, Arc::downgrade(&entry)));
        shard.bytes = shard.bytes + size - freed;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.entries.fetch_sub(dropped, Ordering::Relaxed);
        self.evict(&mut shard, evicted);
        true
    }

    /// CLOCK: drops entries until the shard is within its share.
    fn evict(&self, shard: &mut Shard, evicted: &mut Vec<(u64, Arc<Entry>)>) {
        let mut passes = shard.clock.len() * 2 + 1;
        while shard.bytes > self.share && passes > 0 {
            passes -= 1;
            let Some((hash, weak)) = shard.clock.pop_front() else {
                break;
            };
            let Some(entry) = weak.upgrade() else {
                continue;
            };
            let stored = shard
                .map
                .get(&hash)
                .is_some_and(|v| v.iter().any(|e| Arc::ptr_eq(e, &entry)));
            if !stored {
                continue;
            }
            if entry.used.swap(false, Ordering::Relaxed) {
                shard.clock.push_back((hash, weak));
                continue;
            }
            self.unlink(shard, hash, &entry);
            evicted.push((hash, entry));
        }
    }

    fn unlink(&self, shard: &mut Shard, hash: u64, entry: &Arc<Entry>) {
        if let Some(variants) = shard.map.get_mut(&hash) {
            variants.retain(|e| !Arc::ptr_eq(e, entry));
            if variants.is_empty() {
                shard.map.remove(&hash);
            }
        }
        let size = entry.size();
        shard.bytes -= size;
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops every variant of `key`; how many.
    pub fn remove(&self, hash: u64, key: &[u8]) -> usize {
        let mut shard = self.shard(hash);
        let found: Vec<Arc<Entry>> = shard
            .map
            .get(&hash)
            .map(|v| v.iter().filter(|e| &*e.key == key).cloned().collect())
            .unwrap_or_default();
        for e in &found {
            self.unlink(&mut shard, hash, e);
        }
        found.len()
    }

    /// Drops every entry whose key starts with `prefix`; how many.
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let mut count = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let found: Vec<(u64, Arc<Entry>)> = shard
                .map
                .iter()
                .flat_map(|(h, v)| v.iter().map(move |e| (*h, e)))
                .filter(|(_, e)| e.key.starts_with(prefix))
                .map(|(h, e)| (h, Arc::clone(e)))
                .collect();
            for (h, e) in &found {
                self.unlink(&mut shard, *h, e);
            }
            // The clock forgets what is gone.
            shard.clock.retain(|(_, w)| w.strong_count() > 0);
            count += found.len();
        }
        count
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries held.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// The turn of a request that missed `hash`: fetch it, or wait for the request that
    /// already does.
    pub fn fill(self: &Arc<Self>, hash: u64) -> Turn {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = fills.get(&hash) {
            return Turn::Wait(Arc::clone(fill));
        }
        let fill = Arc::new(Fill::default());
        fills.insert(hash, Arc::clone(&fill));
        Turn::Fetch(Filling {
            store: Arc::clone(self),
            hash,
            fill,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, body: usize, vary: &[(&str, Option<&str>)]) -> Entry {
        Entry::new(
            key.as_bytes().into(),
            vary.iter()
                .map(|(n, v)| ((*n).into(), v.map(|v| v.as_bytes().into())))
                .collect(),
            200,
            Box::new([]),
            Bytes::from(vec![b'x'; body]),
            Directives::default(),
            Timing {
                request_time: 0,
                response_time: 0,
                initial_age: 0,
                lifetime: 60,
            },
        )
    }

    fn hash(key: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
    }

    #[test]
    fn variants_are_kept_apart_and_replaced() {
        let store = Store::new(1 << 20);
        let h = hash("k");
        assert!(store.insert(h, entry("k", 10, &[("accept-language", Some("en"))])));
        assert!(store.insert(h, entry("k", 20, &[("accept-language", Some("fr"))])));
        assert!(store.insert(h, entry("k", 30, &[("accept-language", Some("fr"))])));
        assert_eq!(store.entries(), 2);
        let en = store.get(h, b"k", |_, v| v == Some(&b"en"[..])).unwrap();
        assert_eq!(en.body.len(), 10);
        let fr = store.get(h, b"k", |_, v| v == Some(&b"fr"[..])).unwrap();
        assert_eq!(fr.body.len(), 30);
        assert!(store.get(h, b"k", |_, v| v.is_none()).is_none());
        assert!(
            store
                .get(h, b"other", |_, v| v == Some(&b"en"[..]))
                .is_none()
        );
        assert_eq!(store.remove(h, b"k"), 2);
        assert_eq!((store.entries(), store.bytes()), (0, 0));
    }

    #[test]
    fn memory_stays_within_the_budget_and_used_entries_stay() {
        let budget = 1 << 20;
        let store = Store::new(budget);
        let hot = hash("hot");
        assert!(store.insert(hot, entry("hot", 10_000, &[])));
        for i in 0..2000 {
            let k = format!("k{i}");
            assert!(store.insert(hash(&k), entry(&k, 10_000, &[])));
            // The hot entry is read between inserts.
            assert!(
                store.get(hot, b"hot", |_, v| v.is_none()).is_some(),
                "evicted at {i}"
            );
            assert!(store.bytes() <= budget, "{} over {budget}", store.bytes());
        }
        assert!(store.entries() > 80, "{}", store.entries());
        assert!(!store.insert(hash("big"), entry("big", 2 << 20, &[])));
    }

    #[test]
    fn prefixes_are_purged() {
        let store = Store::new(1 << 20);
        for k in ["h\0/a/1", "h\0/a/2", "h\0/b/1"] {
            store.insert(hash(k), entry(k, 100, &[]));
        }
        assert_eq!(store.purge_prefix(b"h\0/a/"), 2);
        assert_eq!(store.entries(), 1);
        assert!(
            store
                .get(hash("h\0/b/1"), b"h\0/b/1", |_, v| v.is_none())
                .is_some()
        );
    }

    #[test]
    fn one_request_fetches_the_others_wait() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Arc::new(Store::new(1 << 20));
            let Turn::Fetch(filling) = store.fill(7) else {
                panic!("the first request fetches");
            };
            let Turn::Wait(fill) = store.fill(7) else {
                panic!("the second waits");
            };
            let waiter = tokio::spawn(async move { fill.wait(Duration::from_secs(5)).await });
            tokio::task::yield_now().await;
            drop(filling);
            assert!(waiter.await.unwrap());
            assert!(matches!(store.fill(7), Turn::Fetch(_)));
        });
    }
}
