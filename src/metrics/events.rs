//! The last backend state changes, with their reasons (health checks, circuit breaker,
//! admin actions), for the admin API and the dashboard, and their count per kind for the
//! metrics (`fulcrum_backend_state_changes_total`).
//!
//! State changes are rare, so a lock is fine here: nothing on the request path records
//! one except a circuit opening or closing.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many changes are kept.
pub const KEPT: usize = 200;

/// The kinds of change, as labels.
pub const KINDS: [&str; 10] = [
    "down",
    "up",
    "circuit_open",
    "circuit_closed",
    "draining",
    "undrained",
    "disabled",
    "enabled",
    "added",
    "removed",
];

/// One change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The pool.
    pub pool: String,
    /// The backend.
    pub backend: String,
    /// What happened: one of [`KINDS`].
    pub kind: &'static str,
    /// Why (a check's outcome, the breaker's reason, `admin`...).
    pub reason: String,
}

static RECENT: Mutex<VecDeque<Event>> = Mutex::new(VecDeque::new());
static COUNTS: [AtomicU64; KINDS.len()] = [const { AtomicU64::new(0) }; KINDS.len()];

/// Records a change of `kind` (one of [`KINDS`]) for `pool`/`backend`.
pub fn record(pool: &str, backend: &str, kind: &'static str, reason: impl Into<String>) {
    if let Some(i) = KINDS.iter().position(|k| *k == kind) {
        COUNTS[i].fetch_add(1, Ordering::Relaxed);
    }
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() == KEPT {
        recent.pop_front();
    }
    recent.push_back(Event {
        at_ms,
        pool: pool.to_owned(),
        backend: backend.to_owned(),
        kind,
        reason: reason.into(),
    });
}

/// The last `n` changes, newest first.
pub fn recent(n: usize) -> Vec<Event> {
    let recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    recent.iter().rev().take(n).cloned().collect()
}

/// Changes counted so far, by kind (in the order of [`KINDS`]).
pub fn counts() -> [u64; KINDS.len()] {
    std::array::from_fn(|i| COUNTS[i].load(Ordering::Relaxed))
}
