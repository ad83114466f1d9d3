//! A kept-alive HTTP/1.1 client connection between requests, and its wait for the next
//! one.
//!
//! A parked connection holds its socket, its client address, its place in the live
//! config and nothing else: no buffer, no request state (those live on the heap while
//! requests are served, see `proxy`). Its whole task is about 280 bytes, which tokio
//! rounds to a 384-byte allocation; an idle connection costs that, the socket's
//! registration in the event loop, and the kernel's socket.
//!
//! The wait is a future of its own ([`Readable`]), not an `async fn`, so that it holds
//! exactly a timer, a place in the worker's parking list and two references.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::runtime::parking::Place;
use crate::runtime::{Connection, Frontend, Live};
use crate::tls::Stream;

/// A client connection between requests.
pub(super) struct Parked {
    pub(super) client: Stream,
    pub(super) peer: SocketAddr,
    pub(super) live: Connection,
    pub(super) frontend: Arc<Frontend>,
}

impl Parked {
    /// Waits, holding no buffer, until the client sends something (plain TCP; TLS
    /// connections go straight to reading: rustls may hold decrypted bytes), or the
    /// process stops (then reading decides how the connection ends). `false`: the
    /// client stayed silent for `limit`.
    pub(super) fn readable(&self, limit: Duration) -> Readable<'_> {
        Readable {
            tcp: match &self.client {
                // A fresh connection goes straight to reading: it is registered with
                // the event loop only if its request is not there yet.
                Stream::Tcp(tcp) => tcp.polled_ref(),
                _ => None,
            },
            live: &self.live,
            place: Place::default(),
            sleep: tokio::time::sleep(limit),
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`Parked::readable`].
    pub(super) struct Readable<'a> {
        tcp: Option<&'a TcpStream>,
        live: &'a Live,
        place: Place,
        #[pin]
        sleep: Sleep,
    }
}

impl Future for Readable<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        let Some(tcp) = this.tcp else {
            return Poll::Ready(true);
        };
        // In the list first, then the flag: a stop cannot slip between the two.
        this.place.enter(cx.waker());
        if this.live.is_stopping() {
            return Poll::Ready(true);
        }
        if let Poll::Ready(ready) = tcp.poll_read_ready(cx) {
            return Poll::Ready(ready.is_ok());
        }
        this.sleep.poll(cx).map(|()| false)
    }
}
