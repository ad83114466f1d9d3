//! The circuit breaker of one backend, fed by real traffic (passive health checks,
//! "outlier detection"): too many consecutive failures, or too high an error rate over a
//! window, open the circuit and the backend gets no requests; after a backoff (doubling
//! with each consecutive opening, up to a maximum) or a passed active check, the circuit
//! is half-open and admits a few probe requests; enough successes close it, one failure
//! opens it again.
//!
//! All state is in atomics, read on every pick. This module only keeps the state; the
//! proxy reports each request's result and logs the transitions returned.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

pub use crate::config::CircuitPolicy;

/// A [`CircuitPolicy`] that a reload can replace while requests read it (one atomic
/// per field; a reader may see a mix of old and new fields for an instant, which is
/// harmless).
#[derive(Debug)]
struct PolicyCell {
    failures: AtomicU32,
    error_rate_percent: AtomicU32,
    window_us: AtomicU64,
    min_requests: AtomicU32,
    open_for_us: AtomicU64,
    max_open_for_us: AtomicU64,
    probes: AtomicU32,
}

impl PolicyCell {
    fn new(p: CircuitPolicy) -> PolicyCell {
        PolicyCell {
            failures: AtomicU32::new(p.failures),
            error_rate_percent: AtomicU32::new(p.error_rate_percent),
            window_us: AtomicU64::new(p.window_us),
            min_requests: AtomicU32::new(p.min_requests),
            open_for_us: AtomicU64::new(p.open_for_us),
            max_open_for_us: AtomicU64::new(p.max_open_for_us),
            probes: AtomicU32::new(p.probes),
        }
    }

    fn set(&self, p: CircuitPolicy) {
        self.failures.store(p.failures, Ordering::Relaxed);
        self.error_rate_percent
            .store(p.error_rate_percent, Ordering::Relaxed);
        self.window_us.store(p.window_us, Ordering::Relaxed);
        self.min_requests.store(p.min_requests, Ordering::Relaxed);
        self.open_for_us.store(p.open_for_us, Ordering::Relaxed);
        self.max_open_for_us
            .store(p.max_open_for_us, Ordering::Relaxed);
        self.probes.store(p.probes, Ordering::Relaxed);
    }

    #[inline]
    fn get(&self) -> CircuitPolicy {
        CircuitPolicy {
            failures: self.failures.load(Ordering::Relaxed),
            error_rate_percent: self.error_rate_percent.load(Ordering::Relaxed),
            window_us: self.window_us.load(Ordering::Relaxed),
            min_requests: self.min_requests.load(Ordering::Relaxed),
            open_for_us: self.open_for_us.load(Ordering::Relaxed),
            max_open_for_us: self.max_open_for_us.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
        }
    }
}

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Traffic flows.
    Closed,
    /// No traffic until the backoff ends (or an active check passes).
    Open,
    /// A few probe requests are admitted.
    HalfOpen,
}

/// A change of state that the caller should log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    /// The circuit opened for this many microseconds, because of `why`.
    Opened {
        /// Backoff before probing.
        for_us: u64,
        /// What tripped it.
        why: &'static str,
    },
    /// Enough probes succeeded: traffic flows again.
    Closed,
}

/// How a request was admitted, to be handed back with its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A normal request through a closed circuit.
    Normal,
    /// One of the half-open circuit's probes.
    Probe,
    /// The circuit does not admit a request now.
    Refused,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// A backend's circuit breaker.
#[derive(Debug)]
pub struct Circuit {
    policy: PolicyCell,
    state: AtomicU8,
    consecutive: AtomicU32,
    open_until_us: AtomicU64,
    openings: AtomicU32,
    probes_in_flight: AtomicU32,
    probe_successes: AtomicU32,
    window_start_us: AtomicU64,
    window_total: AtomicU32,
    window_errors: AtomicU32,
}

impl Circuit {
    /// A closed circuit following `policy`.
    pub fn new(policy: CircuitPolicy) -> Self {
        Circuit {
            policy: PolicyCell::new(policy),
            state: AtomicU8::new(CLOSED),
            consecutive: AtomicU32::new(0),
            open_until_us: AtomicU64::new(0),
            openings: AtomicU32::new(0),
            probes_in_flight: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            window_start_us: AtomicU64::new(0),
            window_total: AtomicU32::new(0),
            window_errors: AtomicU32::new(0),
        }
    }

    /// Follows `policy` from now on (a reload), keeping the circuit's state.
    pub fn set_policy(&self, policy: CircuitPolicy) {
        self.policy.set(policy);
    }

    /// When an open circuit lets probes through, in [`crate::balance::backend::now_us`]
    /// time; `None` when it is not open.
    pub fn open_until_us(&self) -> Option<u64> {
        (self.state.load(Ordering::Acquire) == OPEN)
            .then(|| self.open_until_us.load(Ordering::Acquire))
    }

    /// The current state (an open circuit whose backoff has ended reads as half-open).
    pub fn state(&self, now_us: u64) -> CircuitState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => CircuitState::Closed,
            OPEN if now_us < self.open_until_us.load(Ordering::Acquire) => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// Whether a request could be admitted now (read-only, for selectors).
    #[inline]
    pub fn admits(&self, now_us: u64) -> bool {
        match self.state(now_us) {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => {
                self.probes_in_flight.load(Ordering::Relaxed) < self.policy.get().probes
            }
        }
    }

    /// Admits a request that is about to be sent, taking a probe slot if half-open.
    pub fn admit(&self, now_us: u64) -> Admission {
        match self.state(now_us) {
            CircuitState::Closed => Admission::Normal,
            CircuitState::Open => Admission::Refused,
            CircuitState::HalfOpen => {
                // An open circuit whose backoff ended becomes half-open on first use.
                let _ = self.state.compare_exchange(
                    OPEN,
                    HALF_OPEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                let taken =
                    self.probes_in_flight
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < self.policy.get().probes).then_some(n + 1)
                        });
                if taken.is_ok() {
                    Admission::Probe
                } else {
                    Admission::Refused
                }
            }
        }
    }

    /// Folds in the result of an admitted request; returns a change to log, if any.
    pub fn record(
        &self,
        admission: Admission,
        success: bool,
        now_us: u64,
    ) -> Option<CircuitChange> {
        if !self.policy.get().enabled() {
            return None;
        }
        match admission {
            Admission::Refused => None,
            Admission::Probe => {
                self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
                if !success {
                    return self.open(now_us, "a probe request failed");
                }
                let ok = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
                if ok >= self.policy.get().probes
                    && self
                        .state
                        .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.consecutive.store(0, Ordering::Relaxed);
                    self.openings.store(0, Ordering::Relaxed);
                    self.reset_window(now_us);
                    return Some(CircuitChange::Closed);
                }
                None
            }
            Admission::Normal => {
                let consecutive = if success {
                    self.consecutive.store(0, Ordering::Relaxed);
                    0
                } else {
                    self.consecutive.fetch_add(1, Ordering::Relaxed) + 1
                };
                if self.policy.get().failures > 0 && consecutive >= self.policy.get().failures {
                    return self.open(now_us, "consecutive failures");
                }
                if self.policy.get().error_rate_percent > 0 && self.rate_exceeded(success, now_us) {
                    return self.open(now_us, "error rate");
                }
                None
            }
        }
    }

    /// Gives back an admission whose request ended without a verdict on the backend
    /// (the client went away): a probe slot is freed, nothing is counted.
    pub fn release(&self, admission: Admission) {
        if admission == Admission::Probe {
            self.probes_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// An active health check passed: an open circuit may start probing at once.
    pub fn check_passed(&self) {
        if self.state.load(Ordering::Acquire) == OPEN {
            self.open_until_us.store(0, Ordering::Release);
        }
    }

    fn open(&self, now_us: u64, why: &'static str) -> Option<CircuitChange> {
        let previous = self.state.swap(OPEN, Ordering::AcqRel);
        if previous == OPEN {
            return None;
        }
        let n = self.openings.fetch_add(1, Ordering::AcqRel).min(20);
        let for_us = self
            .policy
            .get()
            .open_for_us
            .saturating_mul(1 << n)
            .min(self.policy.get().max_open_for_us);
        self.open_until_us.store(now_us + for_us, Ordering::Release);
        self.probe_successes.store(0, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.reset_window(now_us);
        Some(CircuitChange::Opened { for_us, why })
    }

    /// Counts one result in the current window; whether the window's error rate is over
    /// the limit (with enough requests). The window restarts when it has run its length.
    fn rate_exceeded(&self, success: bool, now_us: u64) -> bool {
        let start = self.window_start_us.load(Ordering::Relaxed);
        if now_us.saturating_sub(start) > self.policy.get().window_us {
            self.reset_window(now_us);
        }
        let total = self.window_total.fetch_add(1, Ordering::Relaxed) + 1;
        let errors = if success {
            self.window_errors.load(Ordering::Relaxed)
        } else {
            self.window_errors.fetch_add(1, Ordering::Relaxed) + 1
        };
        total >= self.policy.get().min_requests.max(1)
            && u64::from(errors) * 100
                >= u64::from(total) * u64::from(self.policy.get().error_rate_percent)
    }

    fn reset_window(&self, now_us: u64) {
        self.window_start_us.store(now_us, Ordering::Relaxed);
        self.window_total.store(0, Ordering::Relaxed);
        self.window_errors.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn policy() -> CircuitPolicy {
        CircuitPolicy {
            failures: 3,
            error_rate_percent: 0,
            open_for_us: 10 * S,
            max_open_for_us: 25 * S,
            probes: 2,
            ..CircuitPolicy::DISABLED
        }
    }

    fn fail(c: &Circuit, now: u64) -> Option<CircuitChange> {
        let a = c.admit(now);
        c.record(a, false, now)
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_the_backoff() {
        let c = Circuit::new(policy());
        assert_eq!(fail(&c, 0), None);
        assert_eq!(fail(&c, 0), None);
        assert_eq!(
            fail(&c, 0),
            Some(CircuitChange::Opened {
                for_us: 10 * S,
                why: "consecutive failures"
            })
        );
        assert!(!c.admits(5 * S));
        assert_eq!(c.admit(5 * S), Admission::Refused);
        // Backoff over: two probes at a time, no third.
        assert!(c.admits(10 * S));
        let p1 = c.admit(10 * S);
        let p2 = c.admit(10 * S);
        assert_eq!((p1, p2), (Admission::Probe, Admission::Probe));
        assert_eq!(c.admit(10 * S), Admission::Refused);
        assert!(!c.admits(10 * S));
        assert_eq!(c.record(p1, true, 11 * S), None);
        assert_eq!(c.record(p2, true, 11 * S), Some(CircuitChange::Closed));
        assert_eq!(c.state(11 * S), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_maximum() {
        let c = Circuit::new(policy());
        for _ in 0..3 {
            fail(&c, 0);
        }
        let p = c.admit(10 * S);
        assert_eq!(
            c.record(p, false, 10 * S),
            Some(CircuitChange::Opened {
                for_us: 20 * S,
                why: "a probe request failed"
            })
        );
        let p = c.admit(30 * S);
        assert_eq!(
            c.record(p, false, 30 * S),
            Some(CircuitChange::Opened {
                for_us: 25 * S,
                why: "a probe request failed"
            })
        );
    }

    #[test]
    fn successes_reset_the_consecutive_count() {
        let c = Circuit::new(policy());
        for _ in 0..10 {
            fail(&c, 0);
            fail(&c, 0);
            let a = c.admit(0);
            assert_eq!(c.record(a, true, 0), None);
        }
        assert_eq!(c.state(0), CircuitState::Closed);
    }

    #[test]
    fn error_rate_over_the_window_opens() {
        let c = Circuit::new(CircuitPolicy {
            failures: 0,
            error_rate_percent: 50,
            window_us: 10 * S,
            min_requests: 10,
            ..policy()
        });
        // 4 errors in 8 requests: not enough requests yet.
        for i in 0..8 {
            let a = c.admit(S);
            assert_eq!(c.record(a, i % 2 == 0, S), None);
        }
        let a = c.admit(S);
        assert_eq!(c.record(a, true, S), None);
        let a = c.admit(S);
        assert!(matches!(
            c.record(a, false, S),
            Some(CircuitChange::Opened {
                why: "error rate",
                ..
            })
        ));
    }

    #[test]
    fn a_passed_active_check_ends_the_backoff() {
        let c = Circuit::new(policy());
        for _ in 0..3 {
            fail(&c, 0);
        }
        assert!(!c.admits(S));
        c.check_passed();
        assert!(c.admits(S));
    }

    #[test]
    fn disabled_never_opens() {
        let c = Circuit::new(CircuitPolicy::DISABLED);
        for _ in 0..100 {
            fail(&c, 0);
        }
        assert!(c.admits(0));
    }
}
