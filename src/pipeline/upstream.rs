//! The upstream phase, shared by every engine: pick a backend of the pool (waiting in the
//! overload queue while every usable one is full), admit the request (room under
//! `max_in_flight`, a probe slot of a half-open circuit), report each try's outcome to
//! passive health, and decide whether a failed try goes to another backend (within the
//! retry attempts and the pool's retry budget).
//!
//! The engines only move bytes: the HTTP/1.1 engine, the HTTP/2 path and the TCP relay
//! each run the same loop, [`Attempts::first`] then, per failure, [`Attempts::retry`].

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::counters::inc;

use super::error::{Error, Retry};
use super::retry::{self, Tried};
use crate::balance::Backend;
use crate::balance::backend::InFlight;
use crate::balance::circuit::Admission;
use crate::health;
use crate::runtime::Pool;

/// A backend admitted for one try: it counts as in flight until this is dropped, and its
/// circuit's verdict is pending until the try is reported.
#[derive(Debug)]
pub struct Admitted {
    /// The backend.
    pub backend: Arc<Backend>,
    in_flight: Option<InFlight>,
    admission: Option<Admission>,
}

impl Admitted {
    /// Keeps the backend counted in flight after the try has been reported (until the
    /// response body has been sent).
    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// Passive health: reports the try's outcome to the backend's circuit breaker (once).
    pub fn report(&mut self, pool: &crate::balance::Pool, success: bool) {
        if let Some(admission) = self.admission.take() {
            health::report(pool, &self.backend, admission, success);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // Ended without a verdict (the client left): a probe slot is given back.
        if let Some(admission) = self.admission.take() {
            self.backend.circuit.release(admission);
        }
    }
}

/// Why a try is repeated, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Why {
    /// The try failed.
    Failed(&'static str),
    /// The backend answered with a status that is retried.
    Status(u16),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Failed(reason) => f.write_str(reason),
            Why::Status(status) => write!(f, "the backend answered {status}"),
        }
    }
}

/// The retries a request's log line names, at most.
pub const LOGGED_RETRIES: usize = 3;

/// What happened on the way to the backends, for the access log: the time spent in
/// the queue, connecting and waiting for the first byte (of the last try), and why each
/// retry was made (the first [`LOGGED_RETRIES`]).
#[derive(Debug, Default)]
pub struct Trail {
    /// Waited in the overload queue (`None`: did not queue).
    pub queued: Option<Duration>,
    /// Opened a new connection to the backend (`None`: a kept one was used).
    pub connect: Option<Duration>,
    /// From the request sent to the response head.
    pub first_byte: Option<Duration>,
    /// The backend each retry left, and why.
    pub retried: [Option<(Arc<Backend>, Why)>; LOGGED_RETRIES],
    /// What the pool's sticky cookie did, if it has one (see [`STICKY`]).
    pub sticky: Option<&'static str>,
    /// What the admission phase refused it for (`limited=rate`, `denied=method`...).
    pub refused: Option<(&'static str, &'static str)>,
    /// The content coding the response was compressed with (`compressed=br`).
    pub compressed: Option<&'static str>,
    /// What the cache did (`cache=hit|miss|bypass`).
    pub cache: Option<&'static str>,
}

/// What a sticky cookie did: the request went where its cookie said (`hit`), had no
/// cookie for this pool (`new`), or its backend could not take it (`moved`).
pub const STICKY: [&str; 3] = ["hit", "new", "moved"];

impl Trail {
    /// Empties it for the next request (without freeing anything when nothing was
    /// retried).
    #[inline]
    pub fn clear(&mut self) {
        self.queued = None;
        self.connect = None;
        self.first_byte = None;
        self.sticky = None;
        self.refused = None;
        self.compressed = None;
        self.cache = None;
        if self.retried[0].is_some() {
            self.retried = Default::default();
        }
    }
}

/// The tries of one request (or TCP connection) at one pool.
#[derive(Debug)]
pub struct Attempts<'p> {
    pool: &'p Pool,
    key: u64,
    tried: Tried,
    max_retries: u32,
    on_status: &'p [u16],
    /// Retries made so far.
    pub retries: u32,
    /// Timings and retry reasons, for the log.
    pub trail: Trail,
    /// The backend the request's sticky cookie (or stick table entry) names.
    sticky: Option<u32>,
    /// The request's stick table key, if the pool keeps one.
    stick_key: Option<u64>,
}

impl<'p> Attempts<'p> {
    /// Starts the tries of a request with hash key `key`; `retries` overrides the pool's
    /// attempts and retried statuses (a route's own settings). Counts the request in
    /// the pool's retry budget.
    pub fn new(pool: &'p Pool, key: u64, retries: Option<(u32, &'p [u16])>) -> Attempts<'p> {
        pool.retry.budget.record_request();
        let (max_retries, on_status) =
            retries.unwrap_or((pool.retry.attempts, pool.retry.on_status()));
        Attempts {
            pool,
            key,
            tried: Tried::default(),
            max_retries,
            on_status,
            retries: 0,
            trail: Trail::default(),
            sticky: None,
            stick_key: None,
        }
    }

    /// Tries the backend the request's sticky cookie or stick table entry names first
    /// (`Forward::sticky`), and remembers the request's table key (`Forward::stick_key`)
    /// for whoever serves it.
    pub fn stick_to(mut self, sticky: Option<u32>, key: Option<u64>) -> Self {
        self.sticky = sticky;
        self.stick_key = key;
        self
    }

    /// The application's session cookie to prefix in `admitted`'s responses, and the
    /// prefix naming `admitted` (sticky `prefix` mode).
    #[inline]
    pub fn prefix_cookie(&self, admitted: &Admitted) -> Option<(&'p str, &'p str)> {
        let sticky = self.pool.sticky.as_ref()?;
        Some((sticky.prefixes()?, sticky.prefix_of(&admitted.backend)?))
    }

    /// The application's session cookie whose `Set-Cookie` in a response is learnt
    /// (sticky `learn` mode).
    #[inline]
    pub fn learns(&self) -> Option<&'p str> {
        self.pool.sticky.as_ref()?.learns()
    }

    /// The response of `admitted` sets the session cookie whose table key is `key`:
    /// the client is kept on that backend from now on.
    pub fn learned(&self, admitted: &Admitted, key: u64) {
        if let Some(sticky) = &self.pool.sticky {
            sticky.remember(key, &admitted.backend);
        }
    }

    /// What the request's sticky cookie does with `admitted` serving it: an index of
    /// [`STICKY`] (`None`: the pool has no sticky cookie).
    fn sticky_outcome(&self, admitted: &Admitted) -> Option<usize> {
        let sticky = self.pool.sticky.as_ref()?;
        Some(match self.sticky.and_then(|i| sticky.backend(i)) {
            Some(b) if Arc::ptr_eq(b, &admitted.backend) => 0,
            None => 1,
            Some(_) => 2,
        })
    }

    /// The sticky cookie the response sets when the request was served by another
    /// backend than its cookie names (or had none): `admitted`'s, over TLS if `tls`.
    pub fn sticky_cookie(&self, admitted: &Admitted, tls: bool) -> Option<&'p str> {
        match self.sticky_outcome(admitted)? {
            0 => None,
            _ => self
                .pool
                .sticky
                .as_ref()?
                .set_cookie(&admitted.backend, tls),
        }
    }

    /// The response of `admitted` is the one the client gets: what the sticky cookie
    /// did is counted, and kept for the log.
    pub fn kept(&mut self, admitted: &Admitted) {
        if let Some(outcome) = self.sticky_outcome(admitted) {
            self.trail.sticky = Some(STICKY[outcome]);
            inc(&self.pool.stats.upstream.sticky[outcome]);
            if let (Some(key), Some(sticky)) = (self.stick_key, &self.pool.sticky) {
                sticky.remember(key, &admitted.backend);
            }
        }
    }

    /// The pool.
    pub fn pool(&self) -> &'p Pool {
        self.pool
    }

    /// The first backend: picked (after waiting in the queue while every usable backend
    /// is full) and admitted. The error is the 503 to send.
    pub async fn first(&mut self) -> Result<Admitted, Error> {
        let pool = self.pool;
        // The backend the client is kept on, while it is up and has room.
        if let Some(b) = self
            .sticky
            .and_then(|i| pool.sticky.as_ref()?.backend(i))
            .filter(|b| b.is_up())
            && let Some(admitted) = self.admit(b)
        {
            return Ok(admitted);
        }
        for _ in 0..4 {
            let (picked, waited) = pool
                .queue
                .pick(
                    &pool.balancer,
                    self.key,
                    || pool.no_backend(),
                    &pool.stats.queue,
                )
                .await?;
            if waited.is_some() {
                self.trail.queued = waited;
            }
            // Another worker may have filled the backend, or taken the last probe slot
            // of its half-open circuit, since it was picked: pick again (a few times).
            if let Some(admitted) = self.admit(picked) {
                return Ok(admitted);
            }
        }
        Err(pool.no_backend())
    }

    fn admit(&mut self, backend: &Arc<Backend>) -> Option<Admitted> {
        let (in_flight, admission) = backend.try_admit()?;
        self.tried.add(backend);
        Some(Admitted {
            backend: Arc::clone(backend),
            in_flight: Some(in_flight),
            admission: Some(admission),
        })
    }

    /// Passive health: reports a try's outcome to the backend's circuit breaker.
    pub fn report(&self, a: &mut Admitted, success: bool) {
        a.report(&self.pool.balancer, success);
    }

    /// A new connection to the try's backend took `took` to open (TLS included).
    pub fn connected(&mut self, a: &Admitted, took: Duration) {
        self.trail.connect = Some(took);
        self.pool.stats.upstream.connect.record(took);
        a.backend.stats.upstream.connect.record(took);
    }

    /// The try's backend sent its response head `took` after the request was sent:
    /// response-time balancing learns it, and it is counted.
    #[inline]
    pub fn answered(&mut self, a: &Admitted, took: Duration) {
        a.backend.record_latency(took);
        self.trail.first_byte = Some(took);
        self.pool.stats.upstream.first_byte.record(took);
        a.backend.stats.upstream.first_byte.record(took);
    }

    /// The response header (lower case) in which the pool's backends report their load.
    #[inline]
    pub fn load_header(&self) -> Option<&'p str> {
        self.pool.config.agent.as_ref()?.header.as_deref()
    }

    /// The try's backend reported `load` (thousandths) in its response: balancing
    /// follows it (see `crate::health::agent`).
    pub fn reported(&self, a: &Admitted, load: u32) {
        a.backend.set_headroom(1000u32.saturating_sub(load));
    }

    /// A try failed after `elapsed`: reported to passive health, and counted as at least
    /// as slow as the connect timeout, so that response-time balancing moves away.
    pub fn failed(&self, a: &mut Admitted, elapsed: Duration, connect_timeout: Duration) {
        self.report(a, false);
        a.backend.record_latency(elapsed.max(connect_timeout));
    }

    /// Whether a response with `status` is to be retried (when the request may be).
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status)
    }

    /// The backend for another try after `failed` ended with `why`, if the request may
    /// have one: the error allows it (nothing was sent, or `repeatable`: the request is
    /// idempotent and still whole in memory), retries are left, the retry budget has one
    /// (unless nothing reached the backend), and another backend is available.
    pub fn retry(
        &mut self,
        failed: &Admitted,
        retry: Retry,
        repeatable: bool,
        why: Why,
    ) -> Option<Admitted> {
        match retry {
            Retry::No => return None,
            Retry::Budgeted if !repeatable => return None,
            _ => {}
        }
        if self.retries >= self.max_retries {
            return None;
        }
        // A request that never reached the backend adds no load when sent elsewhere.
        if retry == Retry::Budgeted && !self.pool.retry.budget.try_withdraw() {
            inc(&self.pool.stats.upstream.budget_refusals);
            tracing::debug!(pool = %self.pool.name, "retry budget exhausted: not retrying");
            return None;
        }
        for _ in 0..4 {
            let next = retry::pick_again(&self.pool.balancer, self.key, &self.tried)?;
            let next = Arc::clone(next);
            if let Some(admitted) = self.admit(&next) {
                self.retries += 1;
                inc(&self.pool.stats.upstream.retries);
                inc(&failed.backend.stats.upstream.retries);
                if let Some(slot) = self.trail.retried.iter_mut().find(|s| s.is_none()) {
                    *slot = Some((Arc::clone(&failed.backend), why));
                }
                tracing::debug!(
                    pool = %self.pool.name,
                    from = %failed.backend.name,
                    to = %next.name,
                    reason = %why,
                    retry = self.retries,
                    "retrying the request"
                );
                return Some(admitted);
            }
        }
        None
    }
}
