//! Overload protection: when every usable backend of a pool is at its `max_in_flight`,
//! requests wait in a bounded queue until one has room, for at most `queue_timeout`;
//! past the queue's size or its timeout they get 503 with `Retry-After`.
//!
//! The queue is a count and a wake-up signal shared by every worker thread: a request
//! that finishes on a limited backend wakes one waiter, which picks again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::{Error, QUEUE_FULL, QUEUE_TIMEOUT};
use crate::balance::{Backend, Pool};
use crate::metrics::counters::{Queued, inc};

/// One pool's queue of requests waiting for a backend with room.
#[derive(Debug)]
pub struct Queue {
    /// Notified each time a request ends on a backend with a limit.
    pub released: Arc<Notify>,
    waiting: AtomicU32,
    max: u32,
    timeout: Duration,
}

/// Leaves the queue when dropped.
struct Place<'a>(&'a AtomicU32);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Queue {
    /// A queue of at most `max` requests, each waiting at most `timeout`; `released` is
    /// the signal of the queue this one replaces (a reload), so that its waiters still
    /// hear of backends with room.
    pub fn new(max: u32, timeout: Duration, released: Option<Arc<Notify>>) -> Self {
        Queue {
            released: released.unwrap_or_default(),
            waiting: AtomicU32::new(0),
            max,
            timeout,
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Picks a backend of `pool` for `key`, waiting in the queue while every usable one
    /// is full, and says how long it waited (`None`: it did not queue). The error is
    /// the 503 to send (`no_backend` when none is up). Waits and refusals are counted
    /// in `stats`.
    pub async fn pick<'p>(
        &self,
        pool: &'p Pool,
        key: u64,
        no_backend: impl Fn() -> Error,
        stats: &Queued,
    ) -> Result<(&'p Arc<Backend>, Option<Duration>), Error> {
        if let Some(b) = pool.pick(key) {
            return Ok((b, None));
        }
        let since = Instant::now();
        let waited = self.wait(pool, key, no_backend, stats).await;
        if let Ok(b) = waited {
            let took = since.elapsed();
            stats.wait.record(took);
            return Ok((b, Some(took)));
        }
        waited.map(|b| (b, None))
    }

    async fn wait<'p>(
        &self,
        pool: &'p Pool,
        key: u64,
        no_backend: impl Fn() -> Error,
        stats: &Queued,
    ) -> Result<&'p Arc<Backend>, Error> {
        if !pool.is_saturated() {
            return Err(no_backend());
        }
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if joined.is_err() {
            inc(&stats.full);
            return Err(QUEUE_FULL.come_back_in(self.timeout));
        }
        let _place = Place(&self.waiting);
        let deadline = Instant::now() + self.timeout;
        loop {
            // Register for the wake-up before looking, so that a release between the
            // look and the wait is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(b) = pool.pick(key) {
                return Ok(b);
            }
            if !pool.is_saturated() {
                return Err(no_backend());
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                inc(&stats.timed_out);
                return Err(QUEUE_TIMEOUT.come_back_in(self.timeout));
            }
        }
    }
}
