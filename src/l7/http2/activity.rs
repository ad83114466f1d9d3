//! When an HTTP/2 client connection last had a request in progress, for its idle
//! timeouts: each request holds a [`Busy`] guard while it runs (its response body
//! included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// When a client connection last had nothing to do, for its idle timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    active: AtomicUsize,
    idle_since_us: AtomicU64,
    served: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_us: AtomicU64::new(0),
            served: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    /// How long the connection has had no request in progress (zero while it has one),
    /// and whether it has had any request yet.
    pub fn idle_for(&self) -> (Duration, bool) {
        let served = self.served.load(Ordering::Relaxed) > 0;
        if self.active.load(Ordering::Acquire) > 0 {
            return (Duration::ZERO, served);
        }
        let since = Duration::from_micros(self.idle_since_us.load(Ordering::Relaxed));
        (self.start.elapsed().saturating_sub(since), served)
    }
}

/// One request in progress on a client connection.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Busy {
    /// Counts a request as started on `conn`.
    pub fn new(conn: Arc<Activity>) -> Busy {
        conn.active.fetch_add(1, Ordering::AcqRel);
        conn.served.fetch_add(1, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Busy {
    /// A request no client connection watches (the HTTP/1.1 engine's requests to pools
    /// speaking HTTP/2, whose connection keeps its own timeouts; background refreshes):
    /// counted on one activity per worker thread that nobody reads.
    pub fn unwatched() -> Busy {
        thread_local! {
            static NOBODY: Arc<Activity> = Arc::new(Activity::default());
        }
        NOBODY.with(|a| Busy::new(Arc::clone(a)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.start.elapsed().as_micros() as u64;
        self.0.idle_since_us.store(now, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
