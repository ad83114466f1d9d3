//! One backend server as the balancer sees it: its address and weight, plus the live
//! counters (in-flight requests, response-time EWMA, availability) that the selectors read.
//!
//! Every counter is an atomic so that worker threads read and update them without locks.
//! This module does not decide health; it only stores what the health logic (active
//! checks, the circuit breaker, draining, slow start) reports.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use super::circuit::{Admission, Circuit, CircuitPolicy};

/// Microseconds since the first call: a monotonic clock cheap to store in an atomic.
#[inline]
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64;
    LAST_SAMPLE_US.fetch_max(now, Ordering::Relaxed);
    now
}

/// The [`now_us`] of the latest clock reading, which under traffic is at most one
/// response old: selectors read it instead of the clock on every pick.
#[inline]
pub fn coarse_now_us() -> u64 {
    LAST_SAMPLE_US.load(Ordering::Relaxed)
}

static LAST_SAMPLE_US: AtomicU64 = AtomicU64::new(0);

/// Weight of a backend relative to the others of its pool (1..=1000).
pub use crate::config::MAX_WEIGHT;

/// [`Backend::effective_weight`] counts in 1/16 of a weight unit, so that slow start
/// can ramp a backend of weight 1 (as HAProxy scales weights internally).
pub const WEIGHT_SCALE: u32 = 16;

/// A backend server with its live state.
#[derive(Debug)]
pub struct Backend {
    /// Name shown in logs (defaults to the address).
    pub name: Box<str>,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative share of traffic, 1..=[`MAX_WEIGHT`] (changed by a reload).
    weight: AtomicU32,
    /// A backup backend receives traffic only while no primary is available.
    backup: AtomicBool,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    released: Option<Arc<Notify>>,
    ewma_us: AtomicU64,
    samples: AtomicU32,
    sampled_at_us: AtomicU64,
    available: AtomicBool,
    healthy: AtomicBool,
    draining: AtomicBool,
    /// Passive health: the backend's circuit breaker.
    pub circuit: Circuit,
    slow_start_us: AtomicU64,
    ramp_from_us: AtomicU64,
    check_code: AtomicU32,
    served: AtomicU64,
    /// What its agent (or its load header) reported: capacity left in thousandths
    /// (bits 0-10) and the agent's `down` and `drain` (see [`AgentState`]).
    agent: AtomicU32,
    /// Requests whose last try went to this backend (for the metrics).
    pub stats: crate::metrics::Stats,
}

/// What a backend's agent asked for (see `crate::health::agent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Traffic as usual.
    Up,
    /// No new requests (as `fulcrum ctl drain`).
    Drain,
    /// Out of rotation.
    Down,
}

const HEADROOM: u32 = 0x7ff;
const AGENT_DOWN: u32 = 1 << 12;
const AGENT_DRAIN: u32 = 1 << 13;
const FULL_HEADROOM: u32 = 1000;

impl Backend {
    /// A new, available backend.
    pub fn new(name: impl Into<Box<str>>, addr: SocketAddr, weight: u32, backup: bool) -> Self {
        Backend {
            name: name.into(),
            addr,
            weight: AtomicU32::new(weight.clamp(1, MAX_WEIGHT)),
            backup: AtomicBool::new(backup),
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(0),
            released: None,
            ewma_us: AtomicU64::new(0),
            samples: AtomicU32::new(0),
            sampled_at_us: AtomicU64::new(0),
            available: AtomicBool::new(true),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            circuit: Circuit::new(CircuitPolicy::DISABLED),
            slow_start_us: AtomicU64::new(0),
            ramp_from_us: AtomicU64::new(0),
            check_code: AtomicU32::new(0),
            served: AtomicU64::new(0),
            agent: AtomicU32::new(FULL_HEADROOM),
            stats: crate::metrics::Stats::default(),
        }
    }

    /// The same backend, limited to `max` requests in flight at once (0: no limit);
    /// `released` is notified each time one of them ends, for requests queued for room.
    pub fn with_max_in_flight(mut self, max: u32, released: Arc<Notify>) -> Self {
        self.max_in_flight = AtomicU32::new(max);
        self.released = Some(released);
        self
    }

    /// The same backend with a circuit breaker following `policy`.
    pub fn with_circuit(mut self, policy: CircuitPolicy) -> Self {
        self.circuit = Circuit::new(policy);
        self
    }

    /// The same backend, ramping its weight up over `slow_start` each time it comes back.
    pub fn with_slow_start(self, slow_start: Duration) -> Self {
        self.slow_start_us
            .store(slow_start.as_micros() as u64, Ordering::Relaxed);
        self
    }

    /// Applies a reloaded config to this backend in place, keeping its live state
    /// (health, circuit, in-flight count, response time, slow start).
    pub fn reconfigure(
        &self,
        weight: u32,
        backup: bool,
        max_in_flight: u32,
        slow_start: Duration,
        circuit: CircuitPolicy,
    ) {
        self.weight
            .store(weight.clamp(1, MAX_WEIGHT), Ordering::Relaxed);
        self.backup.store(backup, Ordering::Relaxed);
        self.max_in_flight.store(max_in_flight, Ordering::Relaxed);
        self.slow_start_us
            .store(slow_start.as_micros() as u64, Ordering::Relaxed);
        self.circuit.set_policy(circuit);
    }

    /// Relative share of traffic, 1..=[`MAX_WEIGHT`].
    #[inline]
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Whether the backend is a backup (receives traffic only while no primary is up).
    #[inline]
    pub fn is_backup(&self) -> bool {
        self.backup.load(Ordering::Relaxed)
    }

    /// Most requests in flight at once (0: no limit).
    #[inline]
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Whether new requests may be sent to this backend: it is in service, not draining,
    /// its health checks (if any) say it is up and its circuit admits requests.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.is_up() && self.has_room()
    }

    /// Whether the backend is in service and up, whether or not it has room for one
    /// more request.
    #[inline]
    pub fn is_up(&self) -> bool {
        let agent = self.agent.load(Ordering::Relaxed);
        self.available.load(Ordering::Relaxed)
            && self.healthy.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && agent & (AGENT_DOWN | AGENT_DRAIN) == 0
            && agent & HEADROOM != 0
            && self.circuit.admits(coarse_now_us())
    }

    /// Capacity left as its agent or load header last reported, in thousandths (1000
    /// without reports).
    #[inline]
    pub fn headroom(&self) -> u32 {
        self.agent.load(Ordering::Relaxed) & HEADROOM
    }

    /// Records the capacity left (thousandths, at most 1000).
    pub fn set_headroom(&self, permille: u32) {
        let permille = permille.min(FULL_HEADROOM);
        let _ = self
            .agent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                Some((a & !HEADROOM) | permille)
            });
    }

    /// What the agent last asked for.
    pub fn agent_state(&self) -> AgentState {
        let a = self.agent.load(Ordering::Relaxed);
        if a & AGENT_DOWN != 0 {
            AgentState::Down
        } else if a & AGENT_DRAIN != 0 {
            AgentState::Drain
        } else {
            AgentState::Up
        }
    }

    /// Records what the agent asked for; whether it changed.
    pub fn set_agent_state(&self, state: AgentState) -> bool {
        let bits = match state {
            AgentState::Up => 0,
            AgentState::Drain => AGENT_DRAIN,
            AgentState::Down => AGENT_DOWN,
        };
        let old = self
            .agent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                Some((a & HEADROOM) | bits)
            })
            .unwrap_or(0);
        if old & (AGENT_DOWN | AGENT_DRAIN) != bits && state == AgentState::Up {
            self.start_ramp();
        }
        old & (AGENT_DOWN | AGENT_DRAIN) != bits
    }

    /// Whether one more request fits under `max_in_flight`.
    #[inline]
    pub fn has_room(&self) -> bool {
        let max = self.max_in_flight();
        max == 0 || self.in_flight.load(Ordering::Relaxed) < max
    }

    /// Starts or stops draining: a draining backend gets no new requests (nor sticky
    /// sessions), while the ones in flight finish.
    pub fn set_draining(&self, draining: bool) {
        if self.draining.swap(draining, Ordering::Relaxed) != draining {
            if draining {
                tracing::info!(backend = %self.name, in_flight = self.in_flight(), "backend is DRAINING: no new requests");
            } else {
                tracing::info!(backend = %self.name, "backend stopped draining: back in rotation");
            }
        }
    }

    /// Whether the backend is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The weight selectors should use now, in units of 1/[`WEIGHT_SCALE`]: during slow
    /// start, the configured weight times the share of the ramp elapsed (at least 1 unit,
    /// so a backend of weight 1 ramps too, from 1/16); otherwise the weight.
    #[inline]
    pub fn effective_weight(&self) -> u32 {
        let headroom = self.headroom();
        let full = if headroom >= FULL_HEADROOM {
            self.weight() * WEIGHT_SCALE
        } else {
            // An agent or load header says part of it is in use: that much less.
            (self.weight() * WEIGHT_SCALE * headroom / FULL_HEADROOM).max(1)
        };
        let from = self.ramp_from_us.load(Ordering::Relaxed);
        if from == 0 {
            return full;
        }
        let elapsed = coarse_now_us().saturating_sub(from);
        let ramp = self.slow_start_us.load(Ordering::Relaxed);
        if elapsed >= ramp {
            self.ramp_from_us.store(0, Ordering::Relaxed);
            return full;
        }
        ((u64::from(full) * elapsed / ramp.max(1)) as u32).max(1)
    }

    /// The backend just came back (health check or circuit): start its slow start ramp.
    pub fn start_ramp(&self) {
        if self.slow_start_us.load(Ordering::Relaxed) > 0 {
            self.ramp_from_us.store(now_us().max(1), Ordering::Relaxed);
        }
    }

    /// Takes the backend in or out of service by hand (admin), whatever its health.
    pub fn set_available(&self, available: bool) {
        if self.available.swap(available, Ordering::Relaxed) != available {
            if available {
                tracing::info!(backend = %self.name, "backend ENABLED: back in service");
            } else {
                tracing::info!(backend = %self.name, in_flight = self.in_flight(), "backend DISABLED: out of service");
            }
        }
    }

    /// Whether the backend is in service (not disabled by hand).
    pub fn is_enabled(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Whether the active health checks consider the backend up (true without checks).
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records the health checks' verdict.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// The outcome of the last health check, as encoded by the health module (0: none).
    pub fn check_code(&self) -> u32 {
        self.check_code.load(Ordering::Relaxed)
    }

    /// Stores the outcome of the last health check.
    pub fn set_check_code(&self, code: u32) {
        self.check_code.store(code, Ordering::Relaxed);
    }

    /// Requests currently being served by this backend.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests this backend has been given since start.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts a request as started if it fits under `max_in_flight`; the guard counts it
    /// as finished when dropped. `None`: the backend is full.
    #[inline]
    pub fn try_begin(self: &Arc<Self>) -> Option<InFlight> {
        let max = self.max_in_flight();
        if max > 0 {
            self.in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .ok()?;
            self.served.fetch_add(1, Ordering::Relaxed);
            return Some(InFlight {
                backend: Arc::clone(self),
            });
        }
        Some(self.begin())
    }

    /// Admits one request that is about to be sent: room under `max_in_flight` and, if
    /// the circuit is half-open, a probe slot. `None`: another worker took the room or
    /// the last slot since the backend was picked; pick again.
    #[inline]
    pub fn try_admit(self: &Arc<Self>) -> Option<(InFlight, Admission)> {
        let in_flight = self.try_begin()?;
        match self.circuit.admit(now_us()) {
            Admission::Refused => None,
            admission => Some((in_flight, admission)),
        }
    }

    /// Counts a request as started; the returned guard counts it as finished when dropped.
    #[inline]
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: Arc::clone(self),
        }
    }

    /// Exponentially weighted moving average of the time to the response head, in
    /// microseconds; 0 until the first sample.
    #[inline]
    pub fn ewma_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Relaxed)
    }

    /// When the last response-time sample was recorded ([`now_us`]).
    #[inline]
    pub fn sampled_at_us(&self) -> u64 {
        self.sampled_at_us.load(Ordering::Relaxed)
    }

    /// How many response-time samples have been recorded (saturating).
    #[inline]
    pub fn latency_samples(&self) -> u32 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Folds one response-time sample into the average: the plain mean of the first eight
    /// samples (so that one cold first request does not dominate), then an EWMA giving the
    /// new sample a weight of 1/8, as TCP's SRTT. A racing update may lose one sample,
    /// which an average can afford.
    pub fn record_latency(&self, sample: Duration) {
        let sample = (sample.as_micros() as u64).max(1);
        let n = u64::from(self.samples.load(Ordering::Relaxed)).saturating_add(1);
        if n <= u64::from(u32::MAX) {
            self.samples.store(n as u32, Ordering::Relaxed);
        }
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if n <= 8 {
            // old + (sample - old) / n, in unsigned arithmetic.
            ((u128::from(old) * u128::from(n - 1) + u128::from(sample)) / u128::from(n)) as u64
        } else {
            old - (old >> 3) + (sample >> 3)
        };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
        self.sampled_at_us.store(now_us(), Ordering::Relaxed);
    }
}

/// Marks one request in flight on a backend for as long as it lives.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(released) = &self.backend.released
            && self.backend.max_in_flight() > 0
        {
            released.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(weight: u32) -> Backend {
        Backend::new("b", "127.0.0.1:1".parse().unwrap(), weight, false)
    }

    #[test]
    fn slow_start_ramps_the_weight_up() {
        let b = backend(10).with_slow_start(Duration::from_secs(3600));
        assert_eq!(
            b.effective_weight(),
            10 * WEIGHT_SCALE,
            "no ramp before the backend comes back"
        );
        b.start_ramp();
        assert_eq!(b.effective_weight(), 1, "the ramp starts at the minimum");
        let quick = backend(10).with_slow_start(Duration::from_millis(1));
        quick.start_ramp();
        std::thread::sleep(Duration::from_millis(5));
        now_us();
        assert_eq!(quick.effective_weight(), 160, "the ramp is over");
        let one = backend(1).with_slow_start(Duration::from_secs(3600));
        one.start_ramp();
        assert!(one.effective_weight() < WEIGHT_SCALE, "weight 1 ramps too");
        let none = backend(10);
        none.start_ramp();
        assert_eq!(
            none.effective_weight(),
            160,
            "without slow start, full weight at once"
        );
    }

    #[test]
    fn draining_and_open_circuits_are_unavailable() {
        let b = backend(1);
        assert!(b.is_available());
        b.set_draining(true);
        assert!(!b.is_available());
        b.set_draining(false);
        let b = backend(1).with_circuit(CircuitPolicy {
            failures: 1,
            ..CircuitPolicy::DISABLED
        });
        let a = b.circuit.admit(now_us());
        b.circuit.record(a, false, now_us());
        assert!(!b.is_available());
    }
}
