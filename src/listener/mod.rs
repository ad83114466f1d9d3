//! The running balancer: the listening sockets, the worker threads, the health checker,
//! and the live snapshot they all follow.
//!
//! [`start`] builds the first snapshot, binds every listener and starts the workers.
//! [`Running::reload`] builds a new snapshot from a new config (nothing changes if that
//! fails), binds the listeners it adds, swaps the snapshot in, tells the workers which
//! sockets to start and stop accepting on, and has the health checker follow; connections
//! in progress are never closed by a reload. [`Running::stop`] is the graceful stop.
//! A listener's `max_connections` is one semaphore shared by the workers: beyond it, new
//! connections wait in the kernel's accept queue.

pub mod handover;
pub mod socket;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::{Config, ListenerConfig, Protocol};
use crate::health::{self, Checker};
use crate::runtime::{BuildError, Live, Snapshot};
use socket::Bound;
use worker::{Command, Worker};

/// A running set of listeners and workers.
#[derive(Debug)]
pub struct Running {
    /// The snapshot in force, and the process's stop state.
    pub live: Arc<Live>,
    workers: Vec<Worker>,
    listening: Vec<Listening>,
    health: Checker,
    /// The link to the other instances' state (`[shared]`).
    shared: Option<crate::shared::link::Link>,
}

/// One bound listener.
#[derive(Debug)]
struct Listening {
    name: Arc<str>,
    config: ListenerConfig,
    addr: SocketAddr,
    socket: Bound,
    limit: Arc<Semaphore>,
    max_connections: usize,
}

/// Why listening (or reloading) failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("cannot listen on {addr} (listener `{name}`): {source}")]
    Bind {
        /// The listener.
        name: String,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Certificates, keys or CA files could not be loaded (they changed since `check`).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
}

/// Builds the pools, binds every listener and starts the worker threads.
pub fn start(config: &Config) -> Result<Running, ListenError> {
    start_with(config, Vec::new())
}

/// [`start`], accepting on the `inherited` sockets of a previous process where a
/// listener has the same name, address and kind (the others are closed).
pub fn start_with(
    config: &Config,
    mut inherited: Vec<handover::Inherited>,
) -> Result<Running, ListenError> {
    let threads = config.threads.max(1);
    let snapshot = Snapshot::build(config.clone(), None)?;
    let mut listening = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let udp = l.protocol == Protocol::Udp;
        let taken = inherited.iter().position(|i| {
            i.name == l.name
                && (i.addr == l.bind || l.bind.port() == 0 && i.addr.ip() == l.bind.ip())
                && matches!(i.socket, Bound::Udp(_)) == udp
        });
        match taken {
            Some(i) => {
                let i = inherited.swap_remove(i);
                tracing::info!(listener = %l.name, addr = %i.addr, "listening socket taken over");
                listening.push(Listening::new(l, i.addr, i.socket));
            }
            None => listening.push(bind(l)?),
        }
    }
    for i in inherited {
        tracing::info!(listener = %i.name, addr = %i.addr, "inherited socket not in the config: closed");
    }
    let live = Arc::new(Live::new(snapshot));
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        workers.push(worker::spawn(index, Arc::clone(&live)).map_err(ListenError::Thread)?);
    }
    let health = Checker::start().map_err(ListenError::Thread)?;
    let shared = config
        .shared
        .clone()
        .map(|s| crate::shared::link::Link::start(s, Arc::clone(&live)))
        .transpose()
        .map_err(ListenError::Thread)?;
    let running = Running {
        live,
        workers,
        listening,
        health,
        shared,
    };
    for l in &running.listening {
        running.open(l)?;
        tracing::info!(listener = %l.name, addr = %l.addr, threads, "listening");
    }
    running.follow_health();
    Ok(running)
}

fn bind(l: &ListenerConfig) -> Result<Listening, ListenError> {
    let socket =
        socket::bind(l.bind, l.protocol, l.freebind, l.defer_accept).map_err(|source| {
            ListenError::Bind {
                name: l.name.clone(),
                addr: l.bind,
                source,
            }
        })?;
    let addr = socket.local_addr().unwrap_or(l.bind);
    Ok(Listening::new(l, addr, socket))
}

impl Listening {
    /// Listener `l` on `socket`, which listens on `addr`.
    fn new(l: &ListenerConfig, addr: SocketAddr, socket: Bound) -> Listening {
        Listening {
            name: l.name.as_str().into(),
            config: l.clone(),
            addr,
            socket,
            limit: Arc::new(Semaphore::new(l.max_connections)),
            max_connections: l.max_connections,
        }
    }
}

impl Running {
    /// Each listener's name and the address it actually listens on (port 0 resolved).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.listening
            .iter()
            .map(|l| (l.name.to_string(), l.addr))
            .collect()
    }

    /// The running listener that `l` renames: same address and kind, and a name that
    /// the new config (`all`) no longer has.
    fn renamed(&self, l: &ListenerConfig, all: &[ListenerConfig]) -> Option<&Listening> {
        self.listening
            .iter()
            .find(|x| same_address(&x.config, l) && !all.iter().any(|n| n.name == x.config.name))
    }

    /// Sends every listening socket to a new process (`fulcrum run --takeover`).
    pub fn hand_over(&self, stream: &std::os::unix::net::UnixStream) -> io::Result<()> {
        let sockets: Vec<_> = self
            .listening
            .iter()
            .map(|l| (&*l.name, l.addr, &l.socket))
            .collect();
        handover::send(stream, &sockets)
    }

    /// Has every worker accept on `l`'s socket.
    fn open(&self, l: &Listening) -> Result<(), ListenError> {
        for (i, w) in self.workers.iter().enumerate() {
            let socket = l.socket.try_clone().map_err(|source| ListenError::Bind {
                name: l.name.to_string(),
                addr: l.addr,
                source,
            })?;
            let _ = w.commands.send(Command::Listen {
                name: Arc::clone(&l.name),
                socket,
                limit: Arc::clone(&l.limit),
                udp_reader: i == 0,
            });
        }
        Ok(())
    }

    fn follow_health(&self) {
        let snapshot = self.live.snapshot();
        let mut targets = Vec::new();
        for pool in snapshot.pools.iter() {
            let name: Arc<str> = Arc::from(&*pool.name);
            let mut probes = Vec::new();
            if let Some((check, tls)) = &pool.health {
                probes.push(health::Probe::Health(
                    Arc::new(check.clone()),
                    tls.clone().map(Arc::new),
                ));
            }
            if let Some(agent) = pool.config.agent.as_ref().filter(|a| a.port.is_some()) {
                probes.push(health::Probe::Agent(Arc::new(agent.clone())));
            }
            for probe in probes {
                for backend in pool.balancer.backends() {
                    targets.push(health::Target {
                        pool: Arc::clone(&name),
                        backend: Arc::clone(backend),
                        probe: probe.clone(),
                    });
                }
            }
        }
        self.health.follow(targets);
    }

    /// Puts `config` in force without closing a client connection: returns what changed,
    /// one line each. On error nothing changed.
    pub fn reload(&mut self, config: Config) -> Result<Vec<String>, ListenError> {
        let old = self.live.snapshot();
        let snapshot = Snapshot::build(config, Some(&old))?;
        // Bind what is new before changing anything: a port in use fails the reload. A
        // listener renamed on the same address keeps its socket.
        let mut added = Vec::new();
        for l in &snapshot.config.listeners {
            let kept = self.listening.iter().any(|x| same_socket(&x.config, l));
            if !kept && self.renamed(l, &snapshot.config.listeners).is_none() {
                added.push(bind(l)?);
            }
        }
        let changes = crate::runtime::diff::describe(&old.config, &snapshot.config);
        if old.config.access_log.path != snapshot.config.access_log.path {
            crate::accesslog::writer::switch(snapshot.config.access_log.path.clone());
        }
        let new_listeners = snapshot.config.listeners.clone();
        let shared = snapshot.config.shared.clone();
        self.live.swap(snapshot);
        if self.shared.as_ref().map(|l| &l.config) != shared.as_ref() {
            // Stops the old link, if any, before the new one starts.
            self.shared = None;
            self.shared = shared
                .map(|s| crate::shared::link::Link::start(s, Arc::clone(&self.live)))
                .transpose()
                .map_err(ListenError::Thread)?;
        }
        // Close what is gone or rebound; keep the rest, with its new connection limit.
        let mut kept = Vec::with_capacity(self.listening.len());
        for mut l in std::mem::take(&mut self.listening) {
            let renamed_to = new_listeners.iter().find(|n| {
                same_address(&l.config, n) && !new_listeners.iter().any(|x| x.name == l.config.name)
            });
            match new_listeners
                .iter()
                .find(|n| same_socket(&l.config, n))
                .or(renamed_to)
            {
                Some(n) => {
                    resize(&l.limit, l.max_connections, n.max_connections);
                    if l.config.defer_accept != n.defer_accept
                        && let Bound::Tcp(socket) = &l.socket
                    {
                        socket::set_defer_accept(socket, n.defer_accept).map_err(|source| {
                            ListenError::Bind {
                                name: n.name.clone(),
                                addr: n.bind,
                                source,
                            }
                        })?;
                    }
                    l.max_connections = n.max_connections;
                    l.config = n.clone();
                    if *l.name != *n.name {
                        // Same socket, new name: the workers accept for the new one.
                        for w in &self.workers {
                            let _ = w.commands.send(Command::Close {
                                name: Arc::clone(&l.name),
                            });
                        }
                        tracing::info!(from = %l.name, to = %n.name, addr = %l.addr, "listener renamed");
                        l.name = n.name.as_str().into();
                        self.open(&l)?;
                    }
                    kept.push(l);
                }
                None => {
                    for w in &self.workers {
                        let _ = w.commands.send(Command::Close {
                            name: Arc::clone(&l.name),
                        });
                    }
                    tracing::info!(listener = %l.name, addr = %l.addr, "listener closed");
                }
            }
        }
        self.listening = kept;
        for l in added {
            self.open(&l)?;
            tracing::info!(listener = %l.name, addr = %l.addr, "listening");
            self.listening.push(l);
        }
        self.follow_health();
        Ok(changes)
    }

    /// Graceful stop: stop accepting, let requests in flight and tunnels finish, close
    /// kept-alive connections as their request ends, for at most `grace`. Returns
    /// whether every connection ended in time.
    pub fn stop(self, grace: Duration) -> bool {
        self.live.stop();
        for w in &self.workers {
            let _ = w.commands.send(Command::Stop);
        }
        drop(self.listening);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.workers.iter().all(|w| w.thread.is_finished()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(
            open = self.live.connections(),
            "shutdown grace period over: closing the connections still open"
        );
        false
    }
}

/// Whether two listener configs use the same socket (same name, address and kind).
fn same_socket(a: &ListenerConfig, b: &ListenerConfig) -> bool {
    a.name == b.name && same_address(a, b)
}

/// Whether two listener configs bind the same address (not port 0, unless the names
/// agree) with the same kind of socket.
fn same_address(a: &ListenerConfig, b: &ListenerConfig) -> bool {
    a.bind == b.bind
        && (a.bind.port() != 0 || a.name == b.name)
        && (a.protocol == Protocol::Udp) == (b.protocol == Protocol::Udp)
}

/// Changes a connection limit in place (permits in use are kept).
fn resize(limit: &Semaphore, from: usize, to: usize) {
    if to > from {
        limit.add_permits(to - from);
    } else if to < from {
        // Permits held by open connections are not taken back: the limit applies as
        // they close.
        let mut left = from - to;
        while left > 0 {
            let taken = limit.forget_permits(left);
            if taken == 0 {
                break;
            }
            left -= taken;
        }
    }
}

/// Whether `addr` is free to listen on, used by `demo` to pick a port.
pub fn is_free(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

impl ListenerConfig {
    /// A plain HTTP listener (used by `serve` and `demo`).
    pub fn http(name: &str, bind: SocketAddr, pool: usize, max_connections: usize) -> Self {
        ListenerConfig {
            name: name.into(),
            bind,
            protocol: Protocol::Http,
            pool: Some(pool),
            routes: Vec::new(),
            max_connections,
            accept_proxy: false,
            splice: false,
            freebind: false,
            defer_accept: true,
            sni_routes: Vec::new(),
            tls: None,
            access: crate::policy::Access::default(),
            access_sources: crate::policy::lists::Sources::default(),
            real_ip: None,
            rate_limits: Vec::new(),
            connection_limits: Vec::new(),
            compression: None,
        }
    }
}
