//! Backend connections for the hyper path, kept per worker thread (no locks): HTTP/1.1
//! connections are reused one request at a time, an HTTP/2 connection carries every
//! request of the worker to that backend at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::HttpVersion;
use crate::l7::upstream::{self, ConnectError};
use crate::tls::client::BackendConnector;

/// Most idle HTTP/1.1 connections kept per backend per worker thread.
const MAX_IDLE_H1: usize = 128;

/// A way to send one request to a backend.
pub enum Sender {
    /// An HTTP/1.1 connection, used by this request alone.
    H1(http1::SendRequest<Incoming>),
    /// A shared HTTP/2 connection.
    H2(http2::SendRequest<Incoming>),
}

thread_local! {
    static H1: RefCell<HashMap<SocketAddr, Vec<http1::SendRequest<Incoming>>>> =
        RefCell::new(HashMap::new());
    static H2: RefCell<HashMap<SocketAddr, http2::SendRequest<Incoming>>> =
        RefCell::new(HashMap::new());
}

/// A new connection to `addr` (`reused` = false).
pub async fn connect(
    addr: SocketAddr,
    version: HttpVersion,
    connect_timeout: Duration,
    tls: Option<&BackendConnector>,
) -> Result<(Sender, bool), ConnectError> {
    let up = upstream::connect(addr, connect_timeout, tls).await?;
    let io = TokioIo::new(up.stream);
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
            H2.with(|h2| h2.borrow_mut().insert(addr, sender.clone()));
            Sender::H2(sender)
        }
    };
    Ok((sender, false))
}

/// A kept connection to `addr` that can take a request now, if there is one.
pub fn take(addr: SocketAddr, version: HttpVersion) -> Option<Sender> {
    match version {
        HttpVersion::Http2 => H2.with(|h2| {
            let mut h2 = h2.borrow_mut();
            match h2.get(&addr) {
                Some(s) if !s.is_closed() => Some(Sender::H2(s.clone())),
                Some(_) => {
                    h2.remove(&addr);
                    None
                }
                None => None,
            }
        }),
        HttpVersion::Http1 => H1.with(|h1| {
            let mut h1 = h1.borrow_mut();
            let list = h1.get_mut(&addr)?;
            list.retain(|s| !s.is_closed());
            // One still streaming its last response body is not ready yet: skip it.
            let ready = list.iter().position(|s| s.is_ready())?;
            Some(Sender::H1(list.swap_remove(ready)))
        }),
    }
}

/// Keeps an HTTP/1.1 connection for the next request once its response is sent.
pub fn put_back(addr: SocketAddr, sender: Sender) {
    if let Sender::H1(s) = sender
        && !s.is_closed()
    {
        H1.with(|h1| {
            let mut h1 = h1.borrow_mut();
            let list = h1.entry(addr).or_default();
            if list.len() < MAX_IDLE_H1 {
                list.push(s);
            }
        });
    }
}

/// Forgets the HTTP/2 connection to `addr` (after it failed), so the next request opens
/// a new one.
pub fn forget_h2(addr: SocketAddr) {
    H2.with(|h2| h2.borrow_mut().remove(&addr));
}
