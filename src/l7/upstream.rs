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

use crate::tls::Stream;
use crate::tls::client::BackendConnector;

/// How long an idle backend connection is kept for reuse.
pub const IDLE_TTL: Duration = Duration::from_secs(15);
/// Most idle connections kept per backend per worker thread.
pub const MAX_IDLE_PER_BACKEND: usize = 128;

struct Idle {
    stream: Stream,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, VecDeque<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection to a backend, and whether it came from the pool (so may be stale).
#[derive(Debug)]
pub struct Upstream {
    /// The connection (TLS if the pool encrypts).
    pub stream: Stream,
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
    /// The TLS handshake failed (for instance the certificate did not verify).
    Tls(io::Error),
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

/// Opens a new connection to `addr`, with its TLS handshake if `tls`, within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&BackendConnector>,
) -> Result<Upstream, ConnectError> {
    let stream = within(timeout, async {
        let tcp = open(addr).await?;
        Ok(match tls {
            None => Stream::Tcp(tcp),
            Some(tls) => Stream::Client(Box::new(
                tls.connect(addr.ip(), tcp)
                    .await
                    .map_err(ConnectError::Tls)?,
            )),
        })
    })
    .await?;
    Ok(Upstream {
        stream,
        reused: false,
    })
}

/// Opens a new plain TCP connection to `addr` within `timeout` (layer 4).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    within(timeout, open(addr)).await
}

/// A TCP connection to `addr`, with Nagle's algorithm off.
async fn open(addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(ConnectError::Failed)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `connecting`, or [`ConnectError::Timeout`] after `timeout`.
async fn within<T>(
    timeout: Duration,
    connecting: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// Returns a connection whose last exchange completed cleanly to the idle pool.
pub fn put_idle(addr: SocketAddr, stream: Stream) {
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
/// (A TLS connection with bytes pending, such as a close_notify, is not kept either.)
fn is_open(stream: &Stream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
