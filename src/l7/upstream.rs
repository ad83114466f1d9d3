//! Kept-alive connections to backends, per worker thread, for the HTTP/1.1 engine.
//!
//! Each worker thread runs its own event loop and keeps its own idle connections, so
//! taking or returning one takes no lock. Connections are kept by [`ConnKey`] (address
//! and TLS settings), never by address alone. A kept connection is dropped when it is
//! older than [`IDLE_TTL`] or when the backend has closed it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use crate::connect::ConnKey;
use crate::tls::Stream;

/// How long an idle backend connection is kept for reuse.
pub const IDLE_TTL: Duration = Duration::from_secs(15);
/// Most idle connections kept per backend per worker thread.
pub const MAX_IDLE_PER_BACKEND: usize = 128;

struct Idle {
    stream: Stream,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<ConnKey, VecDeque<Idle>>> = RefCell::new(HashMap::new());
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
}

/// Whether an idle connection still looks open: no EOF and no stray bytes pending.
/// (A TLS connection with bytes pending, such as a close_notify, is not kept either.)
fn is_open(stream: &Stream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
