//! A plain TCP client connection that joins the worker's event loop (epoll) only when it
//! first has to wait.
//!
//! On an HTTP listener with `defer_accept` (the default) the kernel hands a connection
//! over only once its request is in the socket, and the answer to a short request fits
//! in the socket's send buffer: such a connection is read, answered and closed with
//! direct `recv`/`send` calls and never registered, which spares two `epoll_ctl` calls
//! per connection (add, then delete at close). Without `defer_accept` the request is
//! usually not there yet at accept (measured: 1.84 `epoll_ctl` per request instead of
//! 2.0, no gain); the first read then registers the connection. HAProxy does the same (it subscribes to events only after a read or a write
//! would block). The first read or write that would block registers the connection;
//! from then on it is an ordinary tokio `TcpStream`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A plain TCP connection, registered with the event loop or not yet.
#[derive(Debug)]
pub enum LazyTcp {
    /// Not registered: reads and writes are tried directly.
    Fresh(std::net::TcpStream),
    /// Registered with the worker's event loop.
    Polled(tokio::net::TcpStream),
    /// Its registration failed: the connection is over.
    Lost,
}

impl From<tokio::net::TcpStream> for LazyTcp {
    fn from(tcp: tokio::net::TcpStream) -> LazyTcp {
        LazyTcp::Polled(tcp)
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection could not be polled",
    )
}

impl LazyTcp {
    /// A connection just accepted (non-blocking), not registered.
    pub fn fresh(tcp: std::net::TcpStream) -> LazyTcp {
        LazyTcp::Fresh(tcp)
    }

    /// Whether the connection has not been registered yet.
    pub fn is_fresh(&self) -> bool {
        matches!(self, LazyTcp::Fresh(_))
    }

    /// The registered connection, registering it first if it is fresh (must be called
    /// within the worker's runtime).
    pub fn polled(&mut self) -> io::Result<&mut tokio::net::TcpStream> {
        if let LazyTcp::Fresh(_) = self {
            let LazyTcp::Fresh(tcp) = std::mem::replace(self, LazyTcp::Lost) else {
                unreachable!("checked above");
            };
            *self = LazyTcp::Polled(tokio::net::TcpStream::from_std(tcp)?);
        }
        match self {
            LazyTcp::Polled(tcp) => Ok(tcp),
            _ => Err(lost()),
        }
    }

    /// The registered connection, if it is registered.
    pub fn polled_ref(&self) -> Option<&tokio::net::TcpStream> {
        match self {
            LazyTcp::Polled(tcp) => Some(tcp),
            _ => None,
        }
    }

    /// The socket, for socket options.
    pub fn sock_ref(&self) -> Option<socket2::SockRef<'_>> {
        match self {
            LazyTcp::Fresh(tcp) => Some(socket2::SockRef::from(tcp)),
            LazyTcp::Polled(tcp) => Some(socket2::SockRef::from(tcp)),
            LazyTcp::Lost => None,
        }
    }

    /// The address the client connected to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            LazyTcp::Fresh(tcp) => tcp.local_addr(),
            LazyTcp::Polled(tcp) => tcp.local_addr(),
            LazyTcp::Lost => Err(lost()),
        }
    }

    /// Reads what is there without waiting (`WouldBlock` when nothing is).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LazyTcp::Fresh(tcp) => io::Read::read(&mut &*tcp, buf),
            LazyTcp::Polled(tcp) => tcp.try_read(buf),
            LazyTcp::Lost => Err(lost()),
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// One `recv` into the unfilled part of `buf`, without initializing it first.
fn recv_into(tcp: &std::net::TcpStream, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    let sock = socket2::SockRef::from(tcp);
    // SAFETY: `recv` only writes into the slice; no byte of it is de-initialized.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = loop {
        match sock.recv(unfilled) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    // SAFETY: `recv` wrote (initialized) the first `n` bytes of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(())
}

impl LazyTcp {
    /// One read or write: through tokio on a registered connection; on a fresh one,
    /// tried `direct`ly first, the connection registered only if that would block.
    fn poll_io<A: ?Sized, T>(
        &mut self,
        cx: &mut Context<'_>,
        arg: &mut A,
        direct: impl FnOnce(&mut std::net::TcpStream, &mut A) -> io::Result<T>,
        polled: impl FnOnce(
            Pin<&mut tokio::net::TcpStream>,
            &mut Context<'_>,
            &mut A,
        ) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let LazyTcp::Polled(tcp) = self {
            return polled(Pin::new(tcp), cx, arg);
        }
        if let LazyTcp::Fresh(tcp) = self {
            match direct(tcp, arg) {
                Err(e) if would_block(&e) => {}
                done => return Poll::Ready(done),
            }
        }
        match self.polled() {
            Ok(tcp) => polled(Pin::new(tcp), cx, arg),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncRead for LazyTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_io(
            cx,
            buf,
            |tcp, buf| recv_into(tcp, buf),
            |tcp, cx, buf| tcp.poll_read(cx, buf),
        )
    }
}

impl AsyncWrite for LazyTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = buf;
        self.get_mut().poll_io(
            cx,
            &mut buf,
            |tcp, buf| tcp.write(buf),
            |tcp, cx, buf| tcp.poll_write(cx, buf),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut bufs = bufs;
        self.get_mut().poll_io(
            cx,
            &mut bufs,
            |tcp, bufs| tcp.write_vectored(bufs),
            |tcp, cx, bufs| tcp.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LazyTcp::Fresh(tcp) => Poll::Ready(tcp.shutdown(std::net::Shutdown::Write)),
            LazyTcp::Polled(tcp) => Pin::new(tcp).poll_shutdown(cx),
            LazyTcp::Lost => Poll::Ready(Err(lost())),
        }
    }
}
