//! Connections to HTTP/2 backends for the HTTP/2 path, kept per worker thread (no locks):
//! one connection carries every request of the worker to that backend at once. They are
//! kept by [`ConnKey`] (address and TLS settings), never by address alone. (HTTP/1.1
//! backends are reached over the HTTP/1.1 engine's connections: [`super::to_http1`].)

use std::cell::RefCell;
use std::time::Duration;

use super::upload::Upload;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::connect::{self, ConnKey, ConnMap, ConnectError};
use crate::tls::client::BackendConnector;

/// A way to send requests to an HTTP/2 backend.
pub type Sender = http2::SendRequest<Upload>;

thread_local! {
    static H2: RefCell<ConnMap<Sender>> = RefCell::new(ConnMap::default());
}

/// A new connection to `key`'s address, kept for the worker's next requests.
pub async fn connect(
    key: ConnKey,
    connect_timeout: Duration,
    tls: Option<&BackendConnector>,
) -> Result<Sender, ConnectError> {
    let stream = connect::connect(key.addr, connect_timeout, tls).await?;
    let io = TokioIo::new(stream);
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_connection_window_size(4 << 20)
        .handshake(io)
        .await
        .map_err(|e| {
            ConnectError::Failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    H2.with(|h2| h2.borrow_mut().insert(key, sender.clone()));
    Ok(sender)
}

/// The kept connection for `key`, if it is still open.
pub fn take(key: ConnKey) -> Option<Sender> {
    H2.with(|h2| {
        let mut h2 = h2.borrow_mut();
        match h2.get(&key) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                h2.remove(&key);
                None
            }
            None => None,
        }
    })
}

/// Forgets the connection for `key` (after it failed), so the next request opens a new
/// one.
pub fn forget(key: ConnKey) {
    H2.with(|h2| h2.borrow_mut().remove(&key));
}
