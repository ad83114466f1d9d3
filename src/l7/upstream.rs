//! Kept-alive connections to backends, per worker thread, for the HTTP/1.1 engine.
//!
//! Each worker thread runs its own event loop and keeps its own idle connections, so
//! taking or returning one takes no lock. Connections are kept by [`ConnKey`] (address
//! and TLS settings), never by address alone. A kept connection is dropped when it is
//! older than [`IDLE_TTL`] or when the backend has closed it: when it is next looked at,
//! or by the worker's sweep ([`SWEEP`]), which runs only while the worker keeps
//! connections, so that a quiet proxy closes them all and an idle worker has no timer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use crate::connect::{ConnKey, ConnMap};
use crate::tls::Stream;

/// How long an idle backend connection is kept for reuse.
pub const IDLE_TTL: Duration = Duration::from_secs(15);
/// Most idle connections kept per backend per worker thread.
pub const MAX_IDLE_PER_BACKEND: usize = 128;
/// How often a worker that keeps idle connections closes those past [`IDLE_TTL`] or
/// closed by their backend.
pub const SWEEP: Duration = Duration::from_secs(5);

struct Idle {
    stream: Stream,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<ConnMap<VecDeque<Idle>>> = RefCell::new(ConnMap::default());
    /// Whether this worker's sweep task is running.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// A connection to a backend, and whether it came from the pool (so may be stale).
#[derive(Debug)]
pub struct Upstream {
    /// The connection (TLS if the pool encrypts).
    pub stream: Stream,
    /// Taken from the idle pool rather than newly connected.
    pub reused: bool,
}

/// A kept connection for `key` that the backend has not closed, if any.
pub fn take_idle(key: ConnKey) -> Option<Upstream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        while let Some(conn) = list.pop_back() {
            if conn.since.elapsed() < IDLE_TTL && is_open(&conn.stream) {
                return Some(Upstream {
                    stream: conn.stream,
                    reused: true,
                });
            }
        }
        None
    })
}

/// Returns a connection whose last exchange completed cleanly to the idle pool.
pub fn put_idle(key: ConnKey, stream: Stream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(key).or_default();
        // The oldest connections are at the front: close those past their time.
        let now = Instant::now();
        while list
            .front()
            .is_some_and(|c| now.duration_since(c.since) >= IDLE_TTL)
        {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push_back(Idle { stream, since: now });
        }
    });
    if !SWEEPING.replace(true) {
        tokio::spawn(sweep());
    }
}

/// Closes this worker's kept connections that are past [`IDLE_TTL`] or that their
/// backend closed, every [`SWEEP`], until it keeps none.
async fn sweep() {
    loop {
        tokio::time::sleep(SWEEP).await;
        let kept = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            idle.retain(|_, list| {
                list.retain(|c| c.since.elapsed() < IDLE_TTL && is_open(&c.stream));
                !list.is_empty()
            });
            // The map's memory goes too once nothing is kept.
            if idle.is_empty() {
                idle.shrink_to_fit();
            }
            !idle.is_empty()
        });
        if !kept {
            SWEEPING.set(false);
            return;
        }
    }
}

/// Whether an idle connection still looks open: no EOF and no stray bytes pending.
/// (A TLS connection with bytes pending, such as a close_notify, is not kept either.)
fn is_open(stream: &Stream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read_raw(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
