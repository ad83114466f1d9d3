//! Backend connections for the hyper path, kept per worker thread (no locks): HTTP/1.1
//! connections are reused one request at a time, an HTTP/2 connection carries every
//! request of the worker to that backend at once. Connections are kept by [`ConnKey`]
//! (address and TLS settings), never by address alone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use super::upload::Upload;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::HttpVersion;
use crate::connect::{self, ConnKey, ConnectError};
use crate::tls::client::BackendConnector;

/// Most idle HTTP/1.1 connections kept per backend per worker thread.
const MAX_IDLE_H1: usize = 128;

/// A way to send one request to a backend.
pub enum Sender {
    /// An HTTP/1.1 connection, used by this request alone.
    H1(http1::SendRequest<Upload>),
    /// A shared HTTP/2 connection.
    H2(http2::SendRequest<Upload>),
}

thread_local! {
    static H1: RefCell<HashMap<ConnKey, Vec<http1::SendRequest<Upload>>>> =
        RefCell::new(HashMap::new());
    static H2: RefCell<HashMap<ConnKey, http2::SendRequest<Upload>>> =
        RefCell::new(HashMap::new());
}

/// A new connection to `key`'s address (`reused` = false).
pub async fn connect(
    key: ConnKey,
    version: HttpVersion,
    connect_timeout: Duration,
    tls: Option<&BackendConnector>,
) -> Result<(Sender, bool), ConnectError> {
    let stream = connect::connect(key.addr, connect_timeout, tls).await?;
    let io = TokioIo::new(stream);
    let failed = |e: hyper::Error| {
        ConnectError::Failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    let sender = match version {
        HttpVersion::Http1 => {
            let (sender, conn) = http1::handshake(io).await.map_err(failed)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::H1(sender)
        }
        HttpVersion::Http2 => {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .initial_connection_window_size(4 << 20)
                .handshake(io)
                .await
                .map_err(failed)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            H2.with(|h2| h2.borrow_mut().insert(key, sender.clone()));
            Sender::H2(sender)
        }
    };
    Ok((sender, false))
}

/// A kept connection for `key` that can take a request now, if there is one.
pub fn take(key: ConnKey, version: HttpVersion) -> Option<Sender> {
    match version {
        HttpVersion::Http2 => H2.with(|h2| {
            let mut h2 = h2.borrow_mut();
            match h2.get(&key) {
                Some(s) if !s.is_closed() => Some(Sender::H2(s.clone())),
                Some(_) => {
                    h2.remove(&key);
                    None
                }
                None => None,
            }
        }),
        HttpVersion::Http1 => H1.with(|h1| {
            let mut h1 = h1.borrow_mut();
            let list = h1.get_mut(&key)?;
            list.retain(|s| !s.is_closed());
            // One still streaming its last response body is not ready yet: skip it.
            let ready = list.iter().position(|s| s.is_ready())?;
            Some(Sender::H1(list.swap_remove(ready)))
        }),
    }
}

/// Keeps an HTTP/1.1 connection for the next request once its response is sent.
pub fn put_back(key: ConnKey, sender: Sender) {
    if let Sender::H1(s) = sender
        && !s.is_closed()
    {
        H1.with(|h1| {
            let mut h1 = h1.borrow_mut();
            let list = h1.entry(key).or_default();
            if list.len() < MAX_IDLE_H1 {
                list.push(s);
            }
        });
    }
}

/// Forgets the HTTP/2 connection for `key` (after it failed), so the next request opens
/// a new one.
pub fn forget_h2(key: ConnKey) {
    H2.with(|h2| h2.borrow_mut().remove(&key));
}
