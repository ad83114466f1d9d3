//! Rate and concurrency limits per key: one [`Limiter`] per `[rate_limits.NAME]`, shared
//! by every worker thread and carried over reloads while its settings stay the same.
//!
//! The rate is enforced with GCRA (the generic cell rate algorithm, a token bucket in
//! one number): each key keeps the time at which its next request would be "on
//! schedule" (its TAT). A request at `now` passes when the TAT is no further ahead of
//! `now` than the burst allows, and pushes the TAT one emission interval further. A key
//! whose TAT is in the past is the same as a key never seen, so such entries can be
//! dropped at any time: that is what bounds the memory.
//!
//! Keys are 64-bit keyed hashes of what the request is limited by (its client address,
//! a header...), kept in a fixed number of shards, each a hash map with its capacity
//! reserved up front and never grown: `max_keys` entries at most, whatever an attacker
//! sends. When a shard is full, entries that no longer limit anything go first; if the
//! shard is still full, the entries nearest to their allowance are forgotten (their
//! clients get a fresh allowance, the only approximation).
//!
//! A shared limit (`[shared]`) hashes keys with the fleet's seed instead of a random one,
//! so that every instance names a key alike; it counts each key's passed requests not
//! yet sent and queues the key once per batch (see `crate::shared`); what the other
//! instances passed advances the key's TAT here ([`Limiter::absorb`]).

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::shards::Shards;
use crate::config::rate_limits::RateLimitConfig;

/// A key's state: when its next request is due (nanoseconds since the limiter's epoch)
/// and how many of its requests (or connections) are in progress.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    tat: u64,
    in_flight: u32,
    /// Requests passed here and not yet sent to the other instances (shared limits).
    unsent: u32,
}

type Shard = super::shards::Shard<Entry>;

/// What a limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Under the limit; `remaining` more may come at once.
    Pass {
        /// Requests the key may still send now.
        remaining: u32,
    },
    /// Over the rate, but the limit delays instead of refusing: wait this long, then go.
    Delay(Duration),
    /// Over the rate: refused; a request would pass after `retry_after`.
    Limited {
        /// How long until the key is under the limit again.
        retry_after: Duration,
    },
    /// Too many of the key's requests (or connections) in progress.
    Busy,
}

/// How many decisions a limiter made, by outcome.
#[derive(Debug, Default)]
pub struct Counts {
    /// Passed at once.
    pub passed: AtomicU64,
    /// Passed after a delay.
    pub delayed: AtomicU64,
    /// Refused: over the rate.
    pub limited: AtomicU64,
    /// Refused: too many in progress.
    pub busy: AtomicU64,
}

/// One named limit and the state of every key it has seen.
#[derive(Debug)]
pub struct Limiter {
    /// Its settings.
    pub config: RateLimitConfig,
    /// Decisions made.
    pub counts: Counts,
    hasher: KeyHasher,
    /// Its identity across the fleet (shared limits).
    id: u64,
    /// Nanoseconds between two requests of one key at the steady rate (0: no rate).
    emission: u64,
    /// How far ahead of now a key's TAT may be and its request still pass.
    tolerance: u64,
    epoch: Instant,
    keys: Shards<Entry>,
}

/// How keys are hashed: with a random seed, or the fleet's (shared limits).
#[derive(Debug)]
enum KeyHasher {
    Random(std::hash::RandomState),
    Seeded(u64),
}

/// A request (or connection) counted against its key's concurrency until dropped.
#[derive(Debug)]
pub struct Hold {
    limiter: Arc<Limiter>,
    key: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

impl Limiter {
    /// A limiter with nothing seen yet; every map is allocated now, to its full size.
    pub fn new(config: RateLimitConfig) -> Limiter {
        let (emission, tolerance) = match config.rate {
            Some(rate) => {
                let emission = (rate.per.as_nanos() / u128::from(rate.count.max(1))) as u64;
                (emission.max(1), emission.max(1) * u64::from(config.burst))
            }
            None => (0, 0),
        };
        Limiter {
            counts: Counts::default(),
            hasher: match config.shared {
                Some(seed) => KeyHasher::Seeded(seed),
                None => KeyHasher::Random(std::hash::RandomState::new()),
            },
            id: crate::shared::id_of("limit", &config.name),
            emission,
            tolerance,
            epoch: Instant::now(),
            keys: Shards::new(config.max_keys),
            config,
        }
    }

    /// The hash of a key made of `parts` (each part is hashed with its length, so that
    /// `("ab", "c")` and `("a", "bc")` differ).
    pub fn key<'p>(&self, parts: impl IntoIterator<Item = &'p [u8]>) -> u64 {
        fn write<'p>(mut h: impl Hasher, parts: impl IntoIterator<Item = &'p [u8]>) -> u64 {
            for p in parts {
                h.write_u64(p.len() as u64);
                h.write(p);
            }
            h.finish()
        }
        match &self.hasher {
            KeyHasher::Random(state) => write(state.build_hasher(), parts),
            // SipHash-2-4, keyed by the seed every instance of the fleet shares.
            #[allow(deprecated)]
            KeyHasher::Seeded(seed) => write(
                std::hash::SipHasher::new_with_keys(*seed, seed.rotate_left(32) ^ 0x5bd1_e995),
                parts,
            ),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.keys.lock(key)
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Decides one request of `key` at `now`. With a concurrency limit, a request that
    /// passes is counted in progress until [`Limiter::release`] (see [`Hold`]).
    pub fn check(&self, key: u64, now: Instant) -> Verdict {
        let now = self.nanos(now);
        let mut shard = self.shard(key);
        let Some(entry) = self.entry(&mut shard, key, now) else {
            // Every entry of the shard is a request in progress: let it through
            // uncounted rather than refuse a client for someone else's load.
            return Verdict::Pass { remaining: 0 };
        };
        if let Some(max) = self.config.concurrency
            && entry.in_flight >= max
        {
            self.counts.busy.fetch_add(1, Ordering::Relaxed);
            return Verdict::Busy;
        }
        let mut remaining = u32::MAX;
        if self.emission > 0 {
            let tat = entry.tat.max(now);
            let ahead = tat - now;
            if ahead > self.tolerance {
                let over = ahead - self.tolerance;
                return match self.config.delay {
                    Some(bound) if over <= bound.as_nanos() as u64 => {
                        entry.tat = tat + self.emission;
                        entry.in_flight += u32::from(self.config.concurrency.is_some());
                        self.count_for_fleet(entry, key);
                        self.counts.delayed.fetch_add(1, Ordering::Relaxed);
                        Verdict::Delay(Duration::from_nanos(over))
                    }
                    _ => {
                        self.counts.limited.fetch_add(1, Ordering::Relaxed);
                        Verdict::Limited {
                            retry_after: Duration::from_nanos(over),
                        }
                    }
                };
            }
            entry.tat = tat + self.emission;
            remaining = ((self.tolerance - ahead) / self.emission) as u32;
            self.count_for_fleet(entry, key);
        }
        entry.in_flight += u32::from(self.config.concurrency.is_some());
        self.counts.passed.fetch_add(1, Ordering::Relaxed);
        Verdict::Pass { remaining }
    }

    /// A shared limit counts a request it passed for the other instances, queueing the
    /// key when it is the first since the last batch.
    #[inline]
    fn count_for_fleet(&self, entry: &mut Entry, key: u64) {
        if self.config.shared.is_some()
            && (entry.unsent > 0
                || crate::shared::send(crate::shared::Change::Rate {
                    limit: self.id,
                    key,
                }))
        {
            entry.unsent = entry.unsent.saturating_add(1);
        }
    }

    /// Its identity across the fleet.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The requests of `key` passed since the last call (for the batch to the others).
    pub fn take_unsent(&self, key: u64) -> u32 {
        self.shard(key)
            .get_mut(&key)
            .map_or(0, |e| std::mem::take(&mut e.unsent))
    }

    /// Another instance passed `count` requests of `key`: its TAT moves on as if they
    /// had passed here at `now`.
    pub fn absorb(&self, key: u64, count: u64, now: Instant) {
        if self.emission == 0 {
            return;
        }
        let now = self.nanos(now);
        let mut shard = self.shard(key);
        if let Some(entry) = self.entry(&mut shard, key, now) {
            entry.tat = entry.tat.max(now) + count.saturating_mul(self.emission);
        }
    }

    /// A request of `key` counted in progress by [`Limiter::check`] has ended.
    pub fn release(&self, key: u64) {
        if let Some(e) = self.shard(key).get_mut(&key) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }

    /// A [`Hold`] on `key` for a request that [`Limiter::check`] passed, when the limit
    /// counts requests in progress.
    pub fn hold(self: &Arc<Self>, key: u64) -> Option<Hold> {
        self.config.concurrency.map(|_| Hold {
            limiter: Arc::clone(self),
            key,
        })
    }

    /// The entry of `key`, made room for when the shard is full (`None`: no room).
    fn entry<'s>(&self, shard: &'s mut Shard, key: u64, now: u64) -> Option<&'s mut Entry> {
        let room = self.keys.room(shard, key, |shard, again| {
            if !again {
                // Entries whose allowance is whole again and with nothing in progress
                // are the same as absent ones.
                shard.retain(|_, e| e.tat > now || e.in_flight > 0 || e.unsent > 0);
            } else {
                // Still full of keys being limited: forget those nearest to their
                // allowance (below the mean time due), about half of them.
                let sum: u128 = shard.values().map(|e| u128::from(e.tat)).sum();
                let mean = (sum / shard.len() as u128) as u64;
                shard.retain(|_, e| e.tat > mean || e.in_flight > 0);
            }
        });
        room.then(|| shard.entry(key).or_default())
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// The memory the key maps hold (allocated at start, never grown).
    pub fn memory(&self) -> usize {
        self.keys.memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rate_limits::Rate;

    fn limiter(count: u32, per: Duration, burst: u32) -> Limiter {
        Limiter::new(RateLimitConfig {
            rate: Some(Rate { count, per }),
            burst,
            ..RateLimitConfig::default()
        })
    }

    #[test]
    fn the_rate_and_the_burst_hold() {
        let l = limiter(10, Duration::from_secs(1), 2);
        let t0 = Instant::now();
        let k = l.key([&b"10.0.0.1"[..]]);
        // Burst of 2: three at once pass, the fourth waits 100 ms.
        assert_eq!(l.check(k, t0), Verdict::Pass { remaining: 2 });
        assert_eq!(l.check(k, t0), Verdict::Pass { remaining: 1 });
        assert_eq!(l.check(k, t0), Verdict::Pass { remaining: 0 });
        assert_eq!(
            l.check(k, t0),
            Verdict::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        // Another key is not affected.
        assert!(matches!(
            l.check(l.key([&b"x"[..]]), t0),
            Verdict::Pass { .. }
        ));
        // 100 ms later one more passes.
        let t1 = t0 + Duration::from_millis(100);
        assert!(matches!(l.check(k, t1), Verdict::Pass { remaining: 0 }));
        assert!(matches!(l.check(k, t1), Verdict::Limited { .. }));
        // Over ten seconds at 10x the rate, exactly the rate passes (plus the burst).
        let mut passed = 0;
        for i in 0..1000u64 {
            let at = t1 + Duration::from_millis(10 * i);
            if matches!(l.check(k, at), Verdict::Pass { .. }) {
                passed += 1;
            }
        }
        assert!((99..=101).contains(&passed), "{passed} passed");
    }

    #[test]
    fn a_shared_limit_counts_for_the_fleet_and_absorbs_the_others_requests() {
        let config = RateLimitConfig {
            rate: Some(Rate {
                count: 10,
                per: Duration::from_secs(1),
            }),
            burst: 4,
            shared: Some(42),
            ..RateLimitConfig::default()
        };
        let (here, there) = (Limiter::new(config.clone()), Limiter::new(config));
        // The same key hashes alike on every instance of the fleet.
        let k = here.key([&b"api-key"[..]]);
        assert_eq!(k, there.key([&b"api-key"[..]]));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(matches!(here.check(k, t0), Verdict::Pass { .. }));
        }
        assert_eq!(here.take_unsent(k), 3);
        assert_eq!(here.take_unsent(k), 0);
        // The other instance passed 3: 2 of the allowance of 5 are left there.
        there.absorb(k, 3, t0);
        assert_eq!(there.check(k, t0), Verdict::Pass { remaining: 1 });
        assert_eq!(there.check(k, t0), Verdict::Pass { remaining: 0 });
        assert!(matches!(there.check(k, t0), Verdict::Limited { .. }));
    }

    #[test]
    fn delaying_spaces_requests_out_up_to_the_bound() {
        let mut config = RateLimitConfig {
            rate: Some(Rate {
                count: 10,
                per: Duration::from_secs(1),
            }),
            ..RateLimitConfig::default()
        };
        config.delay = Some(Duration::from_millis(250));
        let l = Limiter::new(config);
        let t0 = Instant::now();
        assert!(matches!(l.check(1, t0), Verdict::Pass { .. }));
        assert_eq!(l.check(1, t0), Verdict::Delay(Duration::from_millis(100)));
        assert_eq!(l.check(1, t0), Verdict::Delay(Duration::from_millis(200)));
        assert!(matches!(l.check(1, t0), Verdict::Limited { .. }));
    }

    #[test]
    fn concurrency_counts_requests_in_progress() {
        let l = Arc::new(Limiter::new(RateLimitConfig {
            concurrency: Some(2),
            ..RateLimitConfig::default()
        }));
        let now = Instant::now();
        assert!(matches!(l.check(7, now), Verdict::Pass { .. }));
        let a = l.hold(7);
        assert!(matches!(l.check(7, now), Verdict::Pass { .. }));
        let b = l.hold(7);
        assert_eq!(l.check(7, now), Verdict::Busy);
        drop(a);
        assert!(matches!(l.check(7, now), Verdict::Pass { .. }));
        drop(b);
    }

    #[test]
    fn memory_stays_bounded_whatever_the_number_of_keys() {
        let l = Limiter::new(RateLimitConfig {
            rate: Some(Rate {
                count: 1,
                per: Duration::from_secs(60),
            }),
            max_keys: 10_000,
            ..RateLimitConfig::default()
        });
        let before = l.memory();
        let now = Instant::now();
        for i in 0..200_000u64 {
            // Each key limited for a minute: none expires during the flood.
            l.check(l.key([&i.to_le_bytes()[..]]), now);
        }
        assert!(l.keys() <= 10_000, "{} keys", l.keys());
        assert!(l.keys() >= 3_000, "{} keys", l.keys());
        assert!(
            l.memory() <= before,
            "the maps grew: {} > {before}",
            l.memory()
        );
        assert!(before < 10_000 * 100, "{before} bytes for 10,000 keys");
        // The last keys seen are still limited.
        let last = l.key([&199_999u64.to_le_bytes()[..]]);
        assert!(matches!(l.check(last, now), Verdict::Limited { .. }));
    }
}
