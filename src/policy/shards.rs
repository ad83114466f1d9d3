//! The bounded key tables of rate limits and stick tables: a fixed number of mutex-
//! guarded hash maps keyed by 64-bit hashes, each allocated at start to twice its share
//! of the bound (entries removed leave tombstones; a map at most half full cleans them
//! up in place instead of growing) and never grown. The owner decides what to drop when
//! a shard is full ([`Shards::room`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

/// The keys are hashes already: the maps use them as they are.
#[derive(Debug, Default)]
pub struct AsIs(u64);

impl Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One shard: a map from key hashes to `V`.
pub type Shard<V> = HashMap<u64, V, BuildHasherDefault<AsIs>>;

/// At most `bound` entries, in shards.
#[derive(Debug)]
pub struct Shards<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    per_shard: usize,
}

impl<V> Shards<V> {
    /// Room for `bound` entries, allocated now.
    pub fn new(bound: usize) -> Shards<V> {
        let count = (bound / 256).clamp(1, 64).next_power_of_two();
        let per_shard = bound.div_ceil(count).max(1);
        Shards {
            shards: (0..count)
                .map(|_| {
                    Mutex::new(Shard::with_capacity_and_hasher(
                        2 * per_shard,
                        Default::default(),
                    ))
                })
                .collect(),
            per_shard,
        }
    }

    /// The shard of `key`, locked.
    #[inline]
    pub fn lock(&self, key: u64) -> MutexGuard<'_, Shard<V>> {
        let i = (key >> 58) as usize & (self.shards.len() - 1);
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` may be added to `shard`: it is there already, or the shard has room
    /// once `drop_some` (called at most twice, while the shard is full) has made some.
    pub fn room(
        &self,
        shard: &mut Shard<V>,
        key: u64,
        mut drop_some: impl FnMut(&mut Shard<V>, bool),
    ) -> bool {
        if shard.len() < self.per_shard || shard.contains_key(&key) {
            return true;
        }
        drop_some(shard, false);
        if shard.len() >= self.per_shard {
            drop_some(shard, true);
        }
        shard.len() < self.per_shard
    }

    /// Calls `f` on each shard in turn, locked.
    pub fn each(&self, mut f: impl FnMut(&mut Shard<V>)) {
        for s in &self.shards {
            f(&mut s.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory the maps hold (slots of a key and a `V`, and a control byte each).
    pub fn memory(&self) -> usize {
        let slot = std::mem::size_of::<(u64, V)>() + 1;
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).capacity() * slot)
            .sum()
    }
}
