//! Listening sockets and worker threads.
//!
//! Every listener is bound once (so a port already in use is an error, not a silent
//! share). Each worker thread runs its own single-threaded event loop, NGINX-style, and
//! accepts from every listener; a connection stays on the worker that accepted it, which
//! is what lets backend connection pools be per-thread and lock-free.
//! A listener's `max_connections` is one semaphore shared by the workers: beyond it, new
//! connections wait in the kernel's accept queue.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::sync::Semaphore;

use crate::balance::{Backend, Pool};
use crate::config::{Config, HttpVersion, ListenerConfig, PoolConfig, Protocol};
use crate::l7::queue::Queue;
use crate::l7::retry::RetryPolicy;
use crate::l7::{self, Site};
use crate::tls::Stream;
use crate::tls::client::BackendConnector;
use crate::tls::server::{CertStore, server_config};
use tokio_rustls::TlsAcceptor;

/// Length of the kernel's queue of connections not yet accepted.
const BACKLOG: i32 = 4096;

/// A running set of listeners and workers.
#[derive(Debug)]
pub struct Running {
    /// Each listener's name and the address it actually listens on (port 0 resolved).
    pub listeners: Vec<(String, SocketAddr)>,
    /// The pools, as built from the config (their live counters included).
    pub pools: Vec<Arc<Pool>>,
    workers: Vec<JoinHandle<()>>,
    health: Option<JoinHandle<()>>,
}

impl Running {
    /// Blocks until every worker thread has stopped (they run until the process ends).
    pub fn wait(self) {
        for w in self.workers.into_iter().chain(self.health) {
            let _ = w.join();
        }
    }
}

/// Why listening failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("cannot listen on {addr} (listener `{name}`): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: io::Error,
    },
    /// Certificates, keys or CA files could not be loaded (they changed since `check`).
    #[error("cannot set up TLS for `{name}`: {message}")]
    Tls { name: String, message: String },
}

/// Builds the pools, binds every listener and starts the worker threads.
pub fn start(config: &Config) -> Result<Running, ListenError> {
    // Per pool, shared by every listener (and worker thread) sending traffic to it.
    let shared = config
        .pools
        .iter()
        .map(build_pool)
        .collect::<Result<Vec<PoolShared>, _>>()?;
    let mut cert_stores = Vec::new();
    let pools: Vec<Arc<Pool>> = shared.iter().map(|s| Arc::clone(&s.pool)).collect();
    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let socket = bind(l.bind, l.protocol).map_err(|source| ListenError::Bind {
            name: l.name.clone(),
            addr: l.bind,
            source,
        })?;
        let addr = socket.local_addr().unwrap_or(l.bind);
        let tls = match &l.tls {
            None => None,
            Some(tls) => {
                let store =
                    CertStore::load(&l.name, &tls.certificates).map_err(|e| ListenError::Tls {
                        name: l.name.clone(),
                        message: e.to_string(),
                    })?;
                let store = Arc::new(store);
                cert_stores.push((Arc::clone(&store), tls.reload_interval));
                Some(server_config(tls, store))
            }
        };
        let site = Arc::new(Site {
            sni_routes: l
                .sni_routes
                .iter()
                .map(|(pattern, pool)| {
                    let routed = site(l, &shared[*pool], config, None);
                    (pattern.as_str().into(), Arc::new(routed))
                })
                .collect(),
            ..site(l, &shared[l.pool], config, tls)
        });
        let limit = Arc::new(Semaphore::new(l.max_connections));
        bound.push((l.clone(), addr, socket, site, limit));
    }
    let listeners: Vec<(String, SocketAddr)> = bound
        .iter()
        .map(|(l, addr, ..)| (l.name.clone(), *addr))
        .collect();
    let mut workers = Vec::with_capacity(config.threads);
    for index in 0..config.threads.max(1) {
        let mut mine = Vec::with_capacity(bound.len());
        for (l, _, socket, site, limit) in &bound {
            let clone = socket.try_clone().map_err(|source| ListenError::Bind {
                name: l.name.clone(),
                addr: l.bind,
                source,
            })?;
            mine.push((clone, Arc::clone(site), Arc::clone(limit), index == 0));
        }
        let handle = std::thread::Builder::new()
            .name(format!("fulcrum-worker-{index}"))
            .spawn(move || run_worker(mine))
            .expect("cannot start a worker thread");
        workers.push(handle);
    }
    let mut checked = Vec::new();
    for (c, p) in config.pools.iter().zip(&pools) {
        let Some(health) = c.health.clone() else {
            continue;
        };
        // HTTP checks speak HTTP/1.1 and offer only that with ALPN; TCP checks of an
        // HTTP/2 pool offer h2, which gRPC servers insist on.
        let h2 =
            c.http_version == HttpVersion::Http2 && health.kind == crate::config::CheckKind::Tcp;
        let tls = match &c.tls {
            None => None,
            Some(tls) => {
                Some(
                    BackendConnector::new(tls, h2).map_err(|message| ListenError::Tls {
                        name: format!("pool {}", c.name),
                        message,
                    })?,
                )
            }
        };
        checked.push((Arc::clone(p), health, tls));
    }
    let health = crate::health::start(checked);
    crate::tls::server::watch(cert_stores);
    for (name, addr) in &listeners {
        tracing::info!(listener = %name, %addr, threads = config.threads, "listening");
    }
    Ok(Running {
        listeners,
        pools,
        workers,
        health,
    })
}

/// The shared context of `l`'s connections when they go to `pool`.
fn site(
    l: &ListenerConfig,
    pool: &PoolShared,
    config: &Config,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Site {
    Site {
        tls,
        backend_tls: pool.backend_tls.clone(),
        http_version: pool.http_version,
        name: l.name.as_str().into(),
        protocol: l.protocol,
        accept_proxy: l.accept_proxy,
        splice: l.splice,
        send_proxy: pool.send_proxy,
        sni_routes: Vec::new(),
        pool: Arc::clone(&pool.pool),
        retry: Arc::clone(&pool.retry),
        unavailable_body: pool.unavailable_body.clone(),
        queue: Arc::clone(&pool.queue),
        timeouts: config.timeouts,
        limits: config.limits,
        access_log: config.access_log,
    }
}

/// What every listener sending traffic to one pool shares.
struct PoolShared {
    pool: Arc<Pool>,
    retry: Arc<RetryPolicy>,
    unavailable_body: Option<Arc<str>>,
    queue: Arc<Queue>,
    send_proxy: Option<crate::l4::proxy_protocol::Version>,
    backend_tls: Option<BackendConnector>,
    http_version: HttpVersion,
}

fn build_pool(p: &PoolConfig) -> Result<PoolShared, ListenError> {
    let backend_tls = match &p.tls {
        None => None,
        Some(tls) => Some(
            BackendConnector::new(tls, p.http_version == HttpVersion::Http2).map_err(
                |message| ListenError::Tls {
                    name: format!("pool {}", p.name),
                    message,
                },
            )?,
        ),
    };
    let queue = Arc::new(Queue::new(p.queue, p.queue_timeout));
    let backends = p
        .backends
        .iter()
        .map(|b| {
            let backend = Backend::new(b.name.as_str(), b.address, b.weight, b.backup)
                .with_circuit(p.breaker)
                .with_slow_start(p.slow_start)
                .with_max_in_flight(p.max_in_flight, Arc::clone(&queue.released));
            Arc::new(backend)
        })
        .collect();
    Ok(PoolShared {
        backend_tls,
        http_version: p.http_version,
        pool: Arc::new(Pool::new(
            p.name.as_str(),
            p.algorithm,
            p.hash_key.clone(),
            backends,
        )),
        retry: Arc::new(RetryPolicy::new(&p.retries)),
        unavailable_body: p.unavailable_body.as_deref().map(Arc::from),
        queue,
        send_proxy: p.send_proxy,
    })
}

/// A bound listening socket.
#[derive(Debug)]
enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Bound {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Tcp(s) => s.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        }
    }

    fn try_clone(&self) -> io::Result<Bound> {
        Ok(match self {
            Bound::Tcp(s) => Bound::Tcp(s.try_clone()?),
            Bound::Udp(s) => Bound::Udp(s.try_clone()?),
        })
    }
}

fn bind(addr: SocketAddr, protocol: Protocol) -> io::Result<Bound> {
    let kind = match protocol {
        Protocol::Udp => Type::DGRAM,
        Protocol::Http | Protocol::Tcp => Type::STREAM,
    };
    let socket = Socket::new(Domain::for_address(addr), kind, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    if protocol == Protocol::Udp {
        return Ok(Bound::Udp(socket.into()));
    }
    socket.listen(BACKLOG)?;
    Ok(Bound::Tcp(socket.into()))
}

/// A listener as one worker serves it: the socket, the site, the connection limit, and
/// whether this worker is the one serving UDP sockets (one reader per UDP socket).
type WorkerListener = (Bound, Arc<Site>, Arc<Semaphore>, bool);

fn run_worker(listeners: Vec<WorkerListener>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start a worker event loop");
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for (socket, site, limit, first) in listeners {
            match socket {
                Bound::Tcp(socket) => match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => tasks.push(tokio::spawn(accept_loop(listener, site, limit))),
                    Err(e) => tracing::error!(error = %e, "cannot register listener"),
                },
                Bound::Udp(socket) if first => match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => tasks.push(tokio::spawn(crate::l4::udp::serve(socket, site))),
                    Err(e) => tracing::error!(error = %e, "cannot register listener"),
                },
                Bound::Udp(_) => {}
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

async fn accept_loop(listener: tokio::net::TcpListener, site: Arc<Site>, limit: Arc<Semaphore>) {
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                let site = Arc::clone(&site);
                tokio::spawn(async move {
                    // Behind another balancer, the client is who its PROXY header says.
                    let peer = if site.accept_proxy {
                        let limit = site.timeouts.request_header;
                        match crate::l4::proxy_protocol::read_header(&mut stream, limit).await {
                            Ok(source) => source.unwrap_or(peer),
                            Err(e) => {
                                tracing::debug!(listener = %site.name, client = %peer, error = %e, "connection refused");
                                return;
                            }
                        }
                    } else {
                        peer
                    };
                    match site.protocol {
                        Protocol::Http => serve_http(stream, peer, site).await,
                        Protocol::Tcp | Protocol::Udp => {
                            crate::l4::tcp::serve(stream, peer, site).await
                        }
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning.
                tracing::warn!(listener = %site.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves an HTTP connection: TLS handshake first on HTTPS listeners, then HTTP/2 if
/// the client chose it with ALPN, else HTTP/1.1 (which hands over to HTTP/2 when the
/// connection starts with the HTTP/2 preface).
async fn serve_http(tcp: tokio::net::TcpStream, peer: SocketAddr, site: Arc<Site>) {
    let _ = tcp.set_nodelay(true);
    let stream = match &site.tls {
        None => Stream::Tcp(tcp),
        Some(config) => {
            let acceptor = TlsAcceptor::from(Arc::clone(config));
            let limit = site.timeouts.request_header;
            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Stream::Server(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::debug!(listener = %site.name, client = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = %site.name, client = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let tls = stream.is_tls();
    if stream.alpn() == Some(b"h2") {
        l7::http2::serve_h2(stream, bytes::Bytes::new(), peer, tls, site).await
    } else if site.http_version == HttpVersion::Http2 {
        l7::http2::serve_h1(stream, peer, tls, site).await
    } else {
        l7::serve(stream, peer, site).await
    }
}

/// Whether `config`'s listener addresses are free, used by `demo` to pick a port.
pub fn is_free(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

impl ListenerConfig {
    /// A plain HTTP listener (used by `serve` and `demo`).
    pub fn http(name: &str, bind: SocketAddr, pool: usize, max_connections: usize) -> Self {
        ListenerConfig {
            name: name.into(),
            bind,
            protocol: crate::config::Protocol::Http,
            pool,
            max_connections,
            accept_proxy: false,
            splice: false,
            sni_routes: Vec::new(),
            tls: None,
        }
    }
}
