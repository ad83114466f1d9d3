//! State shared between Fulcrum instances through Redis (`[shared]`, active-active).
//!
//! The request path never waits for Redis: stick tables and rate limits decide from
//! their local state, as without sharing, and only queue what changed in the
//! [`Outbox`] (a bounded channel; `try_send`, never blocking; a full queue drops the
//! change and counts it). The [`link`] thread sends the queue to Redis in one batch per
//! `interval` and applies what the other instances sent:
//!
//! - a stick table entry (a key now served by a backend) is stored in Redis as a key of
//!   its own, expiring with the table's `expire`, and published to the fleet's channel;
//!   the other instances put it in their table;
//! - a rate limit's key counts the requests it passed here since the last batch; the
//!   others advance the key's schedule (its GCRA time) by as many emission intervals, so
//!   that the limit holds across the fleet.
//!
//! When Redis is down or slower than `timeout`, each instance goes on with its own
//! state (limits are then per instance), says so in its log and in
//! `fulcrum_shared_redis_up`, and on reconnecting loads the stick entries Redis holds and
//! sends all of its own. The [`wire`] format of the published batches is ours.

pub mod link;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{LazyLock, Mutex};

/// Changes the outbox holds at most between two batches.
const OUTBOX_SIZE: usize = 16_384;

/// Something the other instances should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stick table `table` (see `StickTable::id`) now sends `key` to `backend`; the entry
    /// lives `expire_ms` in Redis.
    Stick {
        /// The table's identity.
        table: u64,
        /// The client's key.
        key: u64,
        /// The backend's stable identity.
        backend: u64,
        /// How long Redis keeps it.
        expire_ms: u64,
    },
    /// Rate limit `limit` passed requests of `key` (how many: the limit's count of
    /// unsent requests, taken when the batch is made).
    Rate {
        /// The limit's identity.
        limit: u64,
        /// The key.
        key: u64,
    },
}

/// The queue of changes from the request path to the link.
struct Outbox {
    tx: SyncSender<Change>,
    rx: Mutex<Receiver<Change>>,
}

static OUTBOX: LazyLock<Outbox> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::sync_channel(OUTBOX_SIZE);
    Outbox {
        tx,
        rx: Mutex::new(rx),
    }
});

/// Queues `change` for the other instances without waiting: `false` when the queue is
/// full (the change is dropped and counted).
#[inline]
pub fn send(change: Change) -> bool {
    match OUTBOX.tx.try_send(change) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            STATS.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Takes up to `most` queued changes, calling `f` on each.
pub(crate) fn drain(most: usize, mut f: impl FnMut(Change)) {
    let rx = OUTBOX.rx.lock().unwrap_or_else(|e| e.into_inner());
    for change in rx.try_iter().take(most) {
        f(change);
    }
}

/// What the link did, for the metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Whether Redis answers now.
    pub up: AtomicBool,
    /// Times it was lost.
    pub outages: AtomicU64,
    /// Stick entries and rate counts sent.
    pub sent: [AtomicU64; 2],
    /// Stick entries and rate counts received from other instances.
    pub received: [AtomicU64; 2],
    /// Changes dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// The link's figures.
pub static STATS: LazyLock<Stats> = LazyLock::new(Stats::default);

/// Index of stick entries in [`Stats::sent`] and [`Stats::received`].
pub const STICK: usize = 0;
/// Index of rate counts.
pub const RATE: usize = 1;

/// The identity of stick table or rate limit `name` across the fleet.
pub fn id_of(kind: &str, name: &str) -> u64 {
    crate::balance::hash::hash_parts(&[kind.as_bytes(), b":", name.as_bytes()])
}
