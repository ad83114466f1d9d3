//! Worker threads, NGINX-style: each runs its own single-threaded event loop and accepts
//! from every listening socket; a connection stays on the worker that accepted it, which
//! is what lets backend connection pools be per-thread and lock-free.
//!
//! A worker takes orders over a channel ([`Command`]): start accepting on a socket (a
//! listener added by a reload), stop (a listener removed), or stop everything (graceful
//! stop: connections in progress finish, then the worker ends). What a connection does
//! comes from the live snapshot, never from the worker.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Semaphore, mpsc};

use crate::metrics::counters::inc;
use tokio::task::JoinHandle as Task;
use tokio_rustls::TlsAcceptor;

use super::socket::Bound;
use crate::config::Protocol;
use crate::l7;
use crate::lazy_tcp::LazyTcp;
use crate::pipeline;
use crate::runtime::{Connection, Frontend, Live};
use crate::tls::Stream;

/// An order to a worker.
#[derive(Debug)]
pub enum Command {
    /// Accept connections (or read datagrams, when `udp_reader`) on `socket` for the
    /// listener `name`, within `limit` connections at once.
    Listen {
        /// The listener.
        name: Arc<str>,
        /// This worker's handle on the socket.
        socket: Bound,
        /// The listener's connection limit, shared by every worker.
        limit: Arc<Semaphore>,
        /// This worker is the one reading the (UDP) socket.
        udp_reader: bool,
    },
    /// Stop accepting for the listener `name` (connections in progress go on).
    Close {
        /// The listener.
        name: Arc<str>,
    },
    /// Stop accepting everywhere, let connections finish, then end the worker.
    Stop,
}

/// A running worker thread.
#[derive(Debug)]
pub struct Worker {
    /// The thread.
    pub thread: JoinHandle<()>,
    /// Its orders.
    pub commands: mpsc::UnboundedSender<Command>,
}

/// Starts worker `index`.
pub fn spawn(index: usize, live: Arc<Live>) -> std::io::Result<Worker> {
    let (commands, orders) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name(format!("fulcrum-worker-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start a worker event loop");
            runtime.block_on(run(live, orders));
        })?;
    Ok(Worker { thread, commands })
}

/// Hands memory this thread freed back to the system, about once a second. mimalloc
/// gives freed pages back after a delay, but only when the thread allocates again: a
/// worker whose connections went idle (HTTP/2 connections that let their buffers go)
/// would keep them, 4 KB per idle HTTP/2 connection. A collection that finds nothing to
/// do costs well under a microsecond.
async fn give_back_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: asks mimalloc to process this thread's delayed frees and purges; no
        // other effect (a no-op when mimalloc is not the global allocator).
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

async fn run(live: Arc<Live>, mut orders: mpsc::UnboundedReceiver<Command>) {
    let mut accepting: HashMap<Arc<str>, Task<()>> = HashMap::new();
    // Access log lines wait in this thread's batch at most FLUSH_EVERY.
    tokio::spawn(crate::accesslog::flusher());
    tokio::spawn(give_back_memory());
    // A graceful stop wakes this worker's parked connections, which then close.
    let stopping = Arc::clone(&live);
    tokio::spawn(async move {
        stopping.stopped().await;
        crate::runtime::parking::wake_all();
    });
    while let Some(order) = orders.recv().await {
        match order {
            Command::Listen {
                name,
                socket,
                limit,
                udp_reader,
            } => {
                let task = match socket {
                    // SAFETY: the `TcpListener` owns its descriptor and keeps it open
                    // and unchanged for as long as the `AsyncFd` owns the listener.
                    Bound::Tcp(socket) => {
                        match unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
                        {
                            Ok(l) => tokio::spawn(accept_loop(
                                l,
                                Arc::clone(&live),
                                Arc::clone(&name),
                                limit,
                            )),
                            Err(e) => {
                                tracing::error!(listener = %name, error = %e, "cannot register listener");
                                continue;
                            }
                        }
                    }
                    Bound::Udp(socket) if udp_reader => {
                        let Some(frontend) = live.snapshot().frontend(&name).cloned() else {
                            continue;
                        };
                        match tokio::net::UdpSocket::from_std(socket) {
                            Ok(s) => {
                                tokio::spawn(crate::l4::udp::serve(s, Arc::clone(&live), frontend))
                            }
                            Err(e) => {
                                tracing::error!(listener = %name, error = %e, "cannot register listener");
                                continue;
                            }
                        }
                    }
                    Bound::Udp(_) => continue,
                };
                if let Some(old) = accepting.insert(name, task) {
                    old.abort();
                }
            }
            Command::Close { name } => {
                if let Some(task) = accepting.remove(&name) {
                    task.abort();
                }
            }
            Command::Stop => break,
        }
    }
    for (_, task) in accepting.drain() {
        task.abort();
    }
    // Connections in progress (on every worker) finish; the process ends the wait at
    // its grace period.
    live.drained().await;
}

/// Accepts one connection: non-blocking, and not registered with the event loop (see
/// [`LazyTcp`]).
async fn accept(listener: &AsyncFd<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        let accepted = ready.try_io(|l| {
            let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            let (socket, addr) = socket2::SockRef::from(l.get_ref()).accept4(flags)?;
            let peer = addr
                .as_socket()
                .ok_or_else(|| std::io::Error::other("a connection from a non-IP address"))?;
            Ok((TcpStream::from(socket), peer))
        });
        if let Ok(accepted) = accepted {
            return accepted;
        }
    }
}

/// Registers a connection accepted by [`accept`] with the event loop.
fn polled(stream: TcpStream) -> std::io::Result<tokio::net::TcpStream> {
    tokio::net::TcpStream::from_std(stream)
}

async fn accept_loop(
    listener: AsyncFd<TcpListener>,
    live: Arc<Live>,
    name: Arc<str>,
    limit: Arc<Semaphore>,
) {
    let Some(mut frontend) = live.snapshot().frontend(&name).cloned() else {
        return;
    };
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        match accept(&listener).await {
            Ok((stream, peer)) => {
                if let Some(newer) = live.refresh(&frontend) {
                    frontend = newer;
                }
                // A refused address: closed before any byte is read (behind a PROXY
                // protocol header, once the header names the client).
                if !frontend.accept_proxy && !frontend.access.admits(peer.ip()) {
                    inc(&frontend.stats.connections.denied);
                    continue;
                }
                let holds = if frontend.accept_proxy {
                    None
                } else {
                    match pipeline::admit::connection(&frontend, peer.ip()) {
                        Ok(holds) => holds,
                        Err(refusal) => {
                            if let Ok(stream) = polled(stream) {
                                refuse(stream, &frontend, refusal);
                            }
                            continue;
                        }
                    }
                };
                let mut held = live.connection(Some(permit), &frontend.stats);
                held.keep(holds);
                let frontend = Arc::clone(&frontend);
                if frontend.protocol == Protocol::Http
                    && !frontend.accept_proxy
                    && frontend.server_tls().is_none()
                {
                    // Plain HTTP/1.1, the common case: the task is the engine's own future,
                    // with no wrapper around it (an idle connection costs only that).
                    let _ = stream.set_nodelay(true);
                    let stream = Stream::Tcp(LazyTcp::fresh(stream));
                    tokio::spawn(l7::serve(stream, peer, held, frontend));
                } else if let Ok(stream) = polled(stream) {
                    tokio::spawn(serve_connection(stream, peer, held, frontend));
                }
            }
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection over the listener's per-client limits: counted, and closed; on plain
/// HTTP listeners it is first answered (429 and the `RateLimit-*` headers) by a task of
/// its own, so that the client knows why.
fn refuse(
    stream: tokio::net::TcpStream,
    frontend: &Arc<Frontend>,
    refusal: pipeline::admit::Refusal,
) {
    inc(&frontend.stats.connections.limited);
    if frontend.protocol != Protocol::Http || frontend.server_tls().is_some() {
        return;
    }
    let mut reply = pipeline::admit::reply(frontend, None, refusal);
    reply.close = true;
    let mut out = Vec::with_capacity(256);
    reply.write_h1(&mut out, false);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let answered = async {
            stream.write_all(&out).await?;
            stream.shutdown().await?;
            // Read what the client sends until it closes, so that closing with unread
            // input does not reset the connection before it has read the answer.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), answered).await;
    });
}

/// Serves a connection that needs more than plain HTTP/1.1: a PROXY protocol header,
/// TLS, HTTP/2, hyper's HTTP/1.1, or a TCP relay.
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut held: Connection,
    frontend: Arc<Frontend>,
) {
    // Behind another balancer, the client is who its PROXY header says.
    let peer = if frontend.accept_proxy {
        let limit = frontend.timeouts.request_header;
        let source = match Box::pin(crate::l4::proxy_protocol::read_header(&mut stream, limit))
            .await
        {
            Ok(source) => source.unwrap_or(peer),
            Err(e) => {
                tracing::debug!(listener = %frontend.name, client = %peer, error = %e, "connection refused");
                return;
            }
        };
        if !frontend.access.admits(source.ip()) {
            inc(&frontend.stats.connections.denied);
            return;
        }
        match pipeline::admit::connection(&frontend, source.ip()) {
            Ok(holds) => held.keep(holds),
            Err(refusal) => {
                refuse(stream, &frontend, refusal);
                return;
            }
        }
        source
    } else {
        peer
    };
    match frontend.protocol {
        Protocol::Http => serve_http(stream, peer, held, frontend).await,
        // Boxed: the relay's state must not make every HTTP connection's task larger.
        Protocol::Tcp | Protocol::Udp => {
            Box::pin(crate::l4::tcp::serve(stream, peer, frontend)).await
        }
    }
}

/// Serves an HTTP connection: TLS handshake first on HTTPS listeners, then HTTP/2 if
/// the client chose it with ALPN, else HTTP/1.1 (which hands over to HTTP/2 when the
/// connection starts with the HTTP/2 preface).
async fn serve_http(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    held: Connection,
    frontend: Arc<Frontend>,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match frontend.server_tls() {
        None => Stream::tcp(tcp),
        Some(config) => {
            let acceptor = TlsAcceptor::from(Arc::clone(config));
            let limit = frontend.timeouts.request_header;
            // Boxed, like the HTTP/2 paths below: their state would otherwise make the
            // task of every plain HTTP/1.1 connection as large as theirs.
            let counts = &frontend.stats.connections;
            match Box::pin(tokio::time::timeout(limit, acceptor.accept(tcp))).await {
                Ok(Ok(tls)) => {
                    let v13 = tls.get_ref().1.protocol_version()
                        == Some(rustls::ProtocolVersion::TLSv1_3);
                    inc(&counts.tls[usize::from(v13)]);
                    Stream::Server(Box::new(tls))
                }
                Ok(Err(e)) => {
                    inc(&counts.tls_failed[0]);
                    tracing::debug!(listener = %frontend.name, client = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    inc(&counts.tls_failed[1]);
                    tracing::debug!(listener = %frontend.name, client = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let tls = stream.tls_owned();
    let live = Arc::clone(held.live());
    if stream.alpn() == Some(b"h2") {
        Box::pin(l7::http2::serve_h2(
            stream,
            bytes::Bytes::new(),
            peer,
            tls,
            live,
            frontend,
        ))
        .await
    } else {
        l7::serve(stream, peer, held, frontend).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, Fut, F: Fn(A, B, C, D) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn an_idle_connection_task_stays_small() {
        // Each client connection is one task of this size, idle or not: rare paths
        // (TLS handshakes, HTTP/2, TCP relays, error drains, a request being served) are
        // boxed so that they do not make every kept-alive connection pay for them.
        // Up to 280 bytes of future make a 384-byte task (tokio aligns tasks to 128
        // bytes and adds about 104 of its own); 256 keeps a margin.
        let size = future_size(&l7::serve);
        assert!(size <= 256, "a connection's task takes {size} bytes");
    }
}
