//! Connections to backends: connect with a timeout, and a per-worker-thread pool of idle
//! keep-alive connections.
//!
//! Each worker thread runs its own event loop and keeps its own idle connections, so
//! taking or returning one takes no lock. A pooled connection is dropped when it is older
//! than [`IDLE_TTL`] or when the backend has closed it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// How long an idle backend connection is kept for reuse.
pub const IDLE_TTL: Duration = Duration::from_secs(15);
/// Most idle connections kept per backend per worker thread.
pub const MAX_IDLE_PER_BACKEND: usize = 128;

struct Idle {
    stream: TcpStream,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, VecDeque<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection to a backend, and whether it came from the pool (so may be stale).
#[derive(Debug)]
pub struct Upstream {
    /// The socket.
    pub stream: TcpStream,
    /// Taken from the idle pool rather than newly connected.
    pub reused: bool,
}

/// Why a backend could not be reached.
#[derive(Debug)]
pub enum ConnectError {
    /// The connect timeout elapsed.
    Timeout,
    /// The connection was refused or failed.
    Failed(io::Error),
}

/// A pooled connection to `addr` that the backend has not closed, if any.
pub fn take_idle(addr: SocketAddr) -> Option<Upstream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
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

/// Opens a new connection to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Upstream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(Upstream {
                stream,
                reused: false,
            })
        }
    }
}

/// Returns a connection whose last exchange completed cleanly to the idle pool.
pub fn put_idle(addr: SocketAddr, stream: TcpStream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
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
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
