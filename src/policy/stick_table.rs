//! A stick table: which backend a key (a client address, a header, a cookie, an
//! application's session cookie) was last served by, as HAProxy's `stick-table`. Shared
//! by every worker thread, bounded in size, entries forgotten after `expire` without
//! use, and carried over reloads by the pool (see `pipeline::sticky`).
//!
//! Keys are stable 64-bit hashes of the key's bytes (the same on every instance, for
//! sharing); values are the backend's stable identity (a hash of pool, backend name and
//! address), so an entry stays right across reloads and restarts. The maps are sharded,
//! allocated to twice their share of `size` up front and never grown: a full shard drops
//! its expired entries, then about the older half (an approximate LRU).
//!
//! A shared table (`[shared]`) also queues, for the other instances, each entry that is
//! new or changed, and again each entry still in use after half its `expire` (so that
//! Redis keeps it as long as this table does); see `crate::shared`.

use std::time::{Duration, Instant};

use super::shards::{Shard, Shards};

/// One entry: the backend and when it was last used and last sent to the other
/// instances (seconds since the table's epoch; [`NEVER`]: not sent).
#[derive(Debug, Clone, Copy)]
struct Entry {
    backend: u64,
    used: u32,
    published: u32,
}

const NEVER: u32 = u32::MAX;

/// A bounded, expiring map from keys to backends.
#[derive(Debug)]
pub struct StickTable {
    entries: Shards<Entry>,
    expire: u32,
    epoch: Instant,
    /// Its identity across the fleet, when it is shared.
    shared: Option<u64>,
}

impl StickTable {
    /// A table of at most `size` entries, each forgotten `expire` after its last use;
    /// `shared`: its identity across the fleet, when its changes go to the others.
    pub fn new(size: usize, expire: Duration, shared: Option<u64>) -> StickTable {
        StickTable {
            entries: Shards::new(size),
            expire: expire.as_secs().clamp(1, u64::from(u32::MAX / 2)) as u32,
            epoch: Instant::now(),
            shared,
        }
    }

    /// Its identity across the fleet, when it is shared.
    pub fn shared(&self) -> Option<u64> {
        self.shared
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    /// The backend `key` was last served by, unless expired (the entry's use is
    /// refreshed).
    pub fn get(&self, key: u64) -> Option<u64> {
        let now = self.now();
        let mut shard = self.entries.lock(key);
        let entry = shard.get_mut(&key)?;
        if now.saturating_sub(entry.used) > self.expire {
            shard.remove(&key);
            return None;
        }
        entry.used = now;
        Some(entry.backend)
    }

    /// Records that `key` is served by `backend` (and, in a shared table, queues it for
    /// the other instances when it is new, changed, or was last sent half its `expire`
    /// ago).
    pub fn put(&self, key: u64, backend: u64) {
        let now = self.now();
        let mut shard = self.entries.lock(key);
        let mut published = NEVER;
        if let Some(table) = self.shared {
            published = shard.get(&key).map_or(NEVER, |e| e.published);
            let due = published == NEVER || now.saturating_sub(published) >= self.expire / 2;
            let changed = shard.get(&key).is_none_or(|e| e.backend != backend);
            if (due || changed)
                && crate::shared::send(crate::shared::Change::Stick {
                    table,
                    key,
                    backend,
                    expire_ms: u64::from(self.expire) * 1000,
                })
            {
                published = now;
            }
        }
        self.insert(
            &mut shard,
            key,
            Entry {
                backend,
                used: now,
                published,
            },
        );
    }

    /// Records that another instance sent `key` to `backend` (not sent back).
    pub fn put_remote(&self, key: u64, backend: u64) {
        let now = self.now();
        let mut shard = self.entries.lock(key);
        self.insert(
            &mut shard,
            key,
            Entry {
                backend,
                used: now,
                published: now,
            },
        );
    }

    /// Calls `f` with the key and backend of every entry in force.
    pub fn each(&self, mut f: impl FnMut(u64, u64)) {
        let now = self.now();
        self.entries.each(|shard| {
            for (&key, e) in shard.iter() {
                if now.saturating_sub(e.used) <= self.expire {
                    f(key, e.backend);
                }
            }
        });
    }

    /// How long entries live without use.
    pub fn expire(&self) -> Duration {
        Duration::from_secs(u64::from(self.expire))
    }

    fn insert(&self, shard: &mut Shard<Entry>, key: u64, entry: Entry) {
        let now = entry.used;
        let expire = self.expire;
        let room = self.entries.room(shard, key, |shard, again| {
            if !again {
                shard.retain(|_, e| now.saturating_sub(e.used) <= expire);
            } else {
                let sum: u64 = shard.values().map(|e| u64::from(e.used)).sum();
                let mean = (sum / shard.len() as u64) as u32;
                shard.retain(|_, e| e.used > mean);
            }
        });
        if !room {
            // Every entry used this very second: one of them makes way for the newest.
            if let Some(&any) = shard.keys().next() {
                shard.remove(&any);
            }
        }
        shard.insert(key, entry);
    }

    /// Entries held now (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stick_and_the_size_holds() {
        let t = StickTable::new(1000, Duration::from_secs(60), None);
        t.put(1, 11);
        t.put(2, 22);
        assert_eq!(t.get(1), Some(11));
        assert_eq!(t.get(2), Some(22));
        assert_eq!(t.get(3), None);
        t.put(1, 33);
        assert_eq!(t.get(1), Some(33));
        for k in 0..100_000u64 {
            t.put(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), k);
        }
        assert!(t.len() <= 1000, "{}", t.len());
        // The last key put is there.
        let last = 99_999u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert_eq!(t.get(last), Some(99_999));
    }
}
