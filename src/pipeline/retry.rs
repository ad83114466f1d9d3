//! Retrying a failed request on another backend of its pool, within a budget.
//!
//! [`RetryPolicy`] is built once per pool from `[pools.NAME.retries]` and shared by every
//! listener and worker thread that sends traffic to the pool. It holds how many retries
//! one request may make, which response statuses are retried, and the [`RetryBudget`]
//! that keeps retries from multiplying the load on a pool that is already failing.
//!
//! The budget is two allowances, both lock-free (one atomic each) and allocation-free:
//!
//! - a **ratio** allowance: every request deposits `budget_percent / 100` of a token and a
//!   retry withdraws one whole token, so over time retries add at most `budget_percent`%
//!   to the requests the pool receives. The balance is capped at [`MAX_SAVED_RETRIES`]
//!   tokens, so that a long quiet spell does not save up a retry storm;
//! - a **minimum rate**: `min_per_second` retries per second are always allowed (up to
//!   one second's worth at once), so that a pool with little traffic can still retry.
//!   It is a GCRA (a token bucket kept as one "theoretical arrival time"), so it needs
//!   one atomic and no refill timer.
//!
//! A retry first takes from the minimum rate, then from the ratio allowance. The clock is
//! read only when a retry is asked for, never per request.
//!
//! [`Tried`] remembers the backends one request has already been sent to, and
//! [`pick_again`] picks the backend for the next try, avoiding those.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::balance::{Backend, Pool};
use crate::config::Retries;

/// Most retries the ratio allowance can save up.
pub const MAX_SAVED_RETRIES: u64 = 100;

/// One retry, in the ratio allowance's units (a request deposits `budget_percent * 10`).
const TOKEN: u64 = 1000;

/// Microseconds in one second: the minimum-rate window.
const SECOND_US: u64 = 1_000_000;

/// The retry settings of one pool and its shared budget.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Retries after the first try of a request (0: never retry).
    pub attempts: u32,
    on_status: Box<[u16]>,
    /// How many retries the pool may make at the moment.
    pub budget: RetryBudget,
}

impl RetryPolicy {
    /// The policy for a pool configured with `retries`.
    pub fn new(retries: &Retries) -> Self {
        RetryPolicy {
            attempts: retries.attempts,
            on_status: retries.on_status.clone().into_boxed_slice(),
            budget: RetryBudget::new(retries.budget_percent, retries.min_per_second),
        }
    }

    /// The statuses that are retried.
    pub fn on_status(&self) -> &[u16] {
        &self.on_status
    }
}

/// A pool's retry allowance, shared by every thread; see the [module docs](self).
#[derive(Debug)]
pub struct RetryBudget {
    /// Ratio allowance, in thousandths of a retry.
    saved: AtomicU64,
    /// What one request deposits, in thousandths of a retry.
    deposit: u64,
    /// Minimum rate: the theoretical arrival time of the next retry, in microseconds.
    tat_us: AtomicU64,
    /// Microseconds between two retries at the minimum rate; 0: no minimum.
    interval_us: u64,
}

impl RetryBudget {
    /// A budget letting retries add `percent`% to the requests, plus `min_per_second`.
    pub fn new(percent: u32, min_per_second: u32) -> Self {
        RetryBudget {
            saved: AtomicU64::new(0),
            deposit: u64::from(percent.min(100)) * TOKEN / 100,
            tat_us: AtomicU64::new(0),
            interval_us: match min_per_second {
                0 => 0,
                n => (SECOND_US / u64::from(n)).max(1),
            },
        }
    }

    /// Counts one request to the pool: it earns `percent`% of a retry. Once the balance is
    /// full this is a single relaxed load. (Threads depositing at the same moment may take
    /// the balance a few deposits past the cap, which is harmless.)
    #[inline]
    pub fn record_request(&self) {
        if self.deposit != 0 && self.saved.load(Ordering::Relaxed) < MAX_SAVED_RETRIES * TOKEN {
            self.saved.fetch_add(self.deposit, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(clock_us())
    }

    /// [`try_withdraw`](Self::try_withdraw) at time `now_us` (microseconds on any
    /// monotonic clock that starts at or after 0), for tests.
    pub fn try_withdraw_at(&self, now_us: u64) -> bool {
        self.take_min_rate(now_us) || self.take_saved()
    }

    /// GCRA: a retry at `now` is allowed if the theoretical arrival time is at most one
    /// second (less one interval) ahead of it; each allowed retry pushes it one interval on.
    fn take_min_rate(&self, now: u64) -> bool {
        if self.interval_us == 0 {
            return false;
        }
        let tolerance = SECOND_US.saturating_sub(self.interval_us);
        self.tat_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                (tat <= now + tolerance).then(|| tat.max(now) + self.interval_us)
            })
            .is_ok()
    }

    fn take_saved(&self) -> bool {
        self.deposit != 0
            && self
                .saved
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    s.checked_sub(TOKEN)
                })
                .is_ok()
    }
}

/// Microseconds since the first call.
fn clock_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Most backends one request can be sent to: the first try and up to 10 retries.
const MAX_TRIES: usize = 11;

/// The backends one request has been sent to (kept as addresses, for comparison only).
#[derive(Debug, Default)]
pub struct Tried {
    seen: [usize; MAX_TRIES],
    len: usize,
}

impl Tried {
    /// Remembers `backend` (beyond [`MAX_TRIES`] backends, further ones are not kept).
    pub fn add(&mut self, backend: &Backend) {
        if self.len < MAX_TRIES {
            self.seen[self.len] = std::ptr::from_ref(backend) as usize;
            self.len += 1;
        }
    }

    /// Whether the request was already sent to `backend`.
    pub fn contains(&self, backend: &Backend) -> bool {
        let addr = std::ptr::from_ref(backend) as usize;
        self.seen[..self.len].contains(&addr)
    }
}

/// Picks the backend for the next try of a request with hash key `key`: the pool's
/// choice if it was not tried yet; else (after one more pick, for algorithms that do not
/// hash) the first available untried backend of the same tier, scanning from a random
/// start (from a start given by the key, for the hashing algorithms, so that a key keeps
/// going to the same backend); else the pool's choice again, tried or not. A backup is
/// never chosen while a primary is available. `None` when no backend is available.
pub fn pick_again<'a>(pool: &'a Pool, key: u64, tried: &Tried) -> Option<&'a Arc<Backend>> {
    let first = pool.pick(key)?;
    if !tried.contains(first) {
        return Some(first);
    }
    if !pool.uses_key()
        && let Some(second) = pool.pick(key)
        && !tried.contains(second)
    {
        return Some(second);
    }
    let tier = || {
        pool.backends()
            .filter(|b| b.is_backup() == first.is_backup())
    };
    let n = tier().count();
    let start = if pool.uses_key() {
        (key % n as u64) as usize
    } else {
        fastrand::usize(..n)
    };
    tier()
        .skip(start)
        .chain(tier().take(start))
        .find(|b| b.is_available() && !tried.contains(b))
        .or(Some(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{Algorithm, HashKey};

    fn drain(budget: &RetryBudget, now: u64) -> usize {
        (0..10_000)
            .take_while(|_| budget.try_withdraw_at(now))
            .count()
    }

    #[test]
    fn ratio_allows_the_percentage_of_requests() {
        let budget = RetryBudget::new(20, 0);
        assert!(!budget.try_withdraw_at(0), "nothing earned yet");
        for _ in 0..50 {
            budget.record_request();
        }
        assert_eq!(drain(&budget, 0), 10, "20% of 50 requests");
        budget.record_request();
        assert!(
            !budget.try_withdraw_at(0),
            "a fifth of a retry is not a retry"
        );
        for _ in 0..4 {
            budget.record_request();
        }
        assert!(budget.try_withdraw_at(0));
        assert!(!budget.try_withdraw_at(0));
    }

    #[test]
    fn ratio_balance_is_capped() {
        let budget = RetryBudget::new(100, 0);
        for _ in 0..10_000 {
            budget.record_request();
        }
        assert_eq!(drain(&budget, 0) as u64, MAX_SAVED_RETRIES);
    }

    #[test]
    fn zero_budget_and_zero_minimum_never_retry() {
        let budget = RetryBudget::new(0, 0);
        for _ in 0..1000 {
            budget.record_request();
        }
        for second in 0..5 {
            assert!(!budget.try_withdraw_at(second * SECOND_US));
        }
    }

    #[test]
    fn minimum_rate_refills_with_time() {
        let budget = RetryBudget::new(0, 10);
        let t0 = 5 * SECOND_US;
        assert_eq!(drain(&budget, t0), 10, "one second's worth at once");
        assert!(
            !budget.try_withdraw_at(t0 + 50_000),
            "not yet a tenth of a second"
        );
        assert!(
            budget.try_withdraw_at(t0 + 100_000),
            "one more each tenth of a second"
        );
        assert!(!budget.try_withdraw_at(t0 + 150_000));
        assert_eq!(drain(&budget, t0 + 600_000), 5);
        // A long pause refills one second's worth, not more.
        assert_eq!(drain(&budget, t0 + 60 * SECOND_US), 10);
    }

    #[test]
    fn minimum_rate_comes_on_top_of_the_ratio() {
        let budget = RetryBudget::new(10, 2);
        for _ in 0..30 {
            budget.record_request();
        }
        assert_eq!(drain(&budget, 0), 2 + 3);
        assert_eq!(drain(&budget, SECOND_US), 2);
    }

    #[test]
    fn budget_is_shared_between_threads() {
        let budget = RetryBudget::new(50, 0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..100).for_each(|_| budget.record_request()));
            }
        });
        let taken: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| drain(&budget, 0))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // Half of 400 requests, capped at 100 (racing deposits may pass the cap by one).
        assert!((100..=101).contains(&taken), "{taken}");
    }

    #[test]
    fn policy_reads_the_config() {
        let p = RetryPolicy::new(&Retries {
            attempts: 3,
            on_status: vec![502, 503],
            budget_percent: 20,
            min_per_second: 10,
        });
        assert_eq!(p.attempts, 3);
        assert!(p.on_status().contains(&503));
        assert!(!p.on_status().contains(&500));
    }

    fn pool(algorithm: Algorithm, backups: &[bool]) -> Pool {
        let backends = backups
            .iter()
            .enumerate()
            .map(|(i, &backup)| {
                let addr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
                Arc::new(Backend::new(format!("b{i}"), addr, 1, backup))
            })
            .collect();
        Pool::new("p", algorithm, HashKey::default(), backends)
    }

    #[test]
    fn picks_an_untried_backend_for_every_algorithm() {
        for name in Algorithm::NAMES {
            let algorithm = Algorithm::from_name(name).unwrap();
            let pool = pool(algorithm, &[false, false, false]);
            for key in 0..50u64 {
                let key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut tried = Tried::default();
                tried.add(pool.pick(key).unwrap());
                let second = pick_again(&pool, key, &tried).unwrap();
                assert!(!tried.contains(second), "{name}: tried one picked again");
                tried.add(second);
                let third = pick_again(&pool, key, &tried).unwrap();
                assert!(!tried.contains(third), "{name}: tried one picked again");
                tried.add(third);
                // All tried: the pool's choice again.
                assert!(pick_again(&pool, key, &tried).is_some());
            }
        }
    }

    #[test]
    fn hashing_retries_go_to_the_same_backend_for_a_key() {
        let pool = pool(Algorithm::ConsistentHash, &[false, false, false, false]);
        for key in 0..20u64 {
            let mut tried = Tried::default();
            tried.add(pool.pick(key).unwrap());
            let a = pick_again(&pool, key, &tried).unwrap();
            let b = pick_again(&pool, key, &tried).unwrap();
            assert!(Arc::ptr_eq(a, b));
        }
    }

    #[test]
    fn skips_unavailable_backends_and_keeps_backups_for_when_primaries_are_down() {
        let pool = pool(Algorithm::RoundRobin, &[false, false, true]);
        let bs: Vec<_> = pool.backends().cloned().collect();
        bs[1].set_available(false);
        let mut tried = Tried::default();
        tried.add(&bs[0]);
        // The only available primary was tried: it is tried again, not the backup.
        for _ in 0..10 {
            assert!(Arc::ptr_eq(pick_again(&pool, 0, &tried).unwrap(), &bs[0]));
        }
        bs[0].set_available(false);
        assert!(Arc::ptr_eq(pick_again(&pool, 0, &tried).unwrap(), &bs[2]));
        bs[2].set_available(false);
        assert!(pick_again(&pool, 0, &tried).is_none());
    }

    #[test]
    fn tried_remembers_at_most_eleven() {
        let pool = pool(Algorithm::RoundRobin, &[false; 12]);
        let bs: Vec<_> = pool.backends().cloned().collect();
        let mut tried = Tried::default();
        for b in &bs {
            tried.add(b);
        }
        assert!(bs[..11].iter().all(|b| tried.contains(b)));
        assert!(!tried.contains(&bs[11]));
    }
}
