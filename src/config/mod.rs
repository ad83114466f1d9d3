//! Configuration: the TOML file is read once, every value is checked, and the result is a
//! typed [`Config`] that the rest of Fulcrum uses without re-parsing anything.
//!
//! `raw` mirrors the file with positions, `validate` turns it into a [`Config`] or a
//! [`ConfigError`] listing each problem as `FILE:LINE:COL: message` with a hint.
//! This module builds no sockets and starts nothing.

mod access;
mod agent;
pub mod caches;
pub mod certs;
pub mod compression;
mod discovery;
mod error;
mod explain;
mod fields;
mod kinds;
mod listeners;
mod logging;
pub mod rate_limits;
mod raw;
mod request_limits;
mod resilience;
mod route_actions;
mod route_check;
pub mod routes;
mod shadow;
pub mod shared;
mod sticky;
pub mod tls;
pub mod units;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use agent::AgentCheck;
pub use discovery::{ResolverConfig, system_nameservers};
pub use error::{ConfigError, Problem, closest};
pub use resilience::{CheckKind, HealthCheck, HttpCheck, Retries};
pub use sticky::{StickyConfig, StickyMode};
pub use units::{parse_duration, parse_size};
pub use validate::RESOLVE_NAMES;

pub use kinds::{Algorithm, CircuitPolicy, HashKey, MAX_WEIGHT, ProxyVersion, is_token_byte};
pub use logging::{AccessLogConfig, LOG_VARIABLES, LogFormat, template_pieces, unknown_variables};

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Worker threads (each runs its own event loop); at least 1.
    pub threads: usize,
    /// The access log: whether and how every request is logged.
    pub access_log: AccessLogConfig,
    /// How long a graceful stop waits for requests in flight and tunnels.
    pub shutdown_grace: Duration,
    /// How long a graceful stop keeps accepting, with its health saying draining, before
    /// it closes its listeners (time for a VRRP daemon or a load balancer in front to
    /// move traffic away).
    pub shutdown_delay: Duration,
    /// The control socket `fulcrum reload` talks to (default: derived from the config
    /// file's path, see `cli`).
    pub control_socket: Option<std::path::PathBuf>,
    /// The admin listener (metrics, state, runtime changes); none unless configured.
    pub admin: Option<AdminConfig>,
    /// DNS service discovery: name servers and TTL bounds.
    pub resolver: ResolverConfig,
    /// Timeouts shared by all listeners.
    pub timeouts: Timeouts,
    /// Limits shared by all listeners.
    pub limits: Limits,
    /// The listening sockets.
    pub listeners: Vec<ListenerConfig>,
    /// The backend pools, in name order.
    pub pools: Vec<PoolConfig>,
    /// The named rate limits, in name order.
    pub rate_limits: Vec<rate_limits::RateLimitConfig>,
    /// The response caches (`[caches.NAME]`), by name order.
    pub caches: Vec<caches::CacheConfig>,
    /// State shared with other instances through Redis (`[shared]`), if any.
    pub shared: Option<shared::SharedConfig>,
}

/// `[admin]`: where the admin listener listens, and who may change things through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Its address.
    pub bind: std::net::SocketAddr,
    /// A file holding the bearer token that changes (drain, weight, reload...) need;
    /// without it the admin API is read-only.
    pub token_file: Option<std::path::PathBuf>,
}

/// Timeouts; see docs/configuration.md for what each one bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a TCP connection to a backend (504 when exceeded).
    pub connect: Duration,
    /// Receiving a complete request head from the client (408 when exceeded).
    pub request_header: Duration,
    /// Inactivity: a keep-alive client between requests, or any stalled body transfer.
    pub idle: Duration,
    /// From the request head being read to the backend's response head (504 when exceeded).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            request: Duration::from_secs(60),
        }
    }
}

/// Limits on what a client may send or hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_size: usize,
    /// Most header lines in a request; more gets 431.
    pub max_headers: usize,
    /// Default for each listener's maximum of simultaneous client connections.
    pub max_connections: usize,
    /// Most concurrent streams (requests) one HTTP/2 client connection may open.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_size: 16 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            max_concurrent_streams: 100,
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0), and HTTP/2; in clear text or over TLS.
    Http,
    /// Any TCP stream, relayed as is to a backend (layer 4).
    Tcp,
    /// UDP datagrams, relayed per client flow (layer 4).
    Udp,
}

/// One listening socket and the pool it sends traffic to.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Name used in logs (defaults to the bind address).
    pub name: String,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Protocol spoken by clients.
    pub protocol: Protocol,
    /// Where requests that match no route go: an index into [`Config::pools`]. `None`
    /// (HTTP listeners with routes only): they get 404.
    pub pool: Option<usize>,
    /// HTTP routes, tried in order; the first that matches decides.
    pub routes: Vec<routes::RouteConfig>,
    /// Most simultaneous client connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Every connection starts with a PROXY protocol header from a balancer in front.
    pub accept_proxy: bool,
    /// Relay TCP with splice(2), zero-copy (TCP listeners, Linux).
    pub splice: bool,
    /// Bind the address even if it is not on this host yet (IP_FREEBIND): a standby
    /// of an HA pair listens on the floating address before it arrives.
    pub freebind: bool,
    /// Have the kernel hand over a connection only once its first bytes have arrived
    /// (Linux `TCP_DEFER_ACCEPT`); on by default for HTTP listeners.
    pub defer_accept: bool,
    /// TLS passthrough routing (TCP listeners): server-name patterns and the index of the
    /// pool each sends to, exact names first; unmatched connections use `pool`.
    pub sni_routes: Vec<(String, usize)>,
    /// TLS termination, if the listener is HTTPS.
    pub tls: Option<tls::ListenerTls>,
    /// Which client addresses are accepted (`allow`, `deny`, and their files as read
    /// with the config).
    pub access: crate::policy::Access,
    /// What the lists are made of (to read the files again when they change).
    pub access_sources: crate::policy::lists::Sources,
    /// Where the client's address comes from behind trusted proxies.
    pub real_ip: Option<crate::policy::RealIp>,
    /// Limits checked on every request (indices into [`Config::rate_limits`]).
    pub rate_limits: Vec<usize>,
    /// Limits checked on every new connection, keyed by the client's address.
    pub connection_limits: Vec<usize>,
    /// Response compression for the default pool (routes have their own copy).
    pub compression: Option<compression::Compression>,
}

/// One named pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The pool's name.
    pub name: String,
    /// How backends are picked.
    pub algorithm: Algorithm,
    /// What `hash` and `consistent_hash` hash on.
    pub hash_key: HashKey,
    /// The backends, in file order (those found through DNS in place of the entry).
    pub backends: Vec<BackendConfig>,
    /// Backends found through DNS, followed at run time (`crate::discovery`).
    pub discovery: Vec<crate::discovery::Discovered>,
    /// Active health checks, if configured.
    pub health: Option<HealthCheck>,
    /// Retrying failed requests on another backend.
    pub retries: Retries,
    /// Body of the 503 sent when no backend is available (default: a one-line reason).
    pub unavailable_body: Option<String>,
    /// Passive health: every backend's circuit breaker ([`CircuitPolicy::DISABLED`]
    /// without a `breaker` section).
    pub breaker: CircuitPolicy,
    /// A backend coming back ramps its weight up over this long (zero: at once).
    pub slow_start: Duration,
    /// Most requests in flight on each backend at once (0: no limit).
    pub max_in_flight: u32,
    /// Most requests waiting for a backend with room.
    pub queue: u32,
    /// Longest a request waits in the queue before a 503.
    pub queue_timeout: Duration,
    /// Send a PROXY protocol header to backends (TCP listeners only).
    pub send_proxy: Option<ProxyVersion>,
    /// The HTTP version spoken to backends.
    pub http_version: HttpVersion,
    /// TLS to the backends, if configured.
    pub tls: Option<tls::BackendTls>,
    /// Session persistence by cookie, if configured.
    pub sticky: Option<StickyConfig>,
    /// Backend-reported load: an agent port and/or a response header.
    pub agent: Option<AgentCheck>,
}

/// The HTTP version a pool speaks to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/1.1 with keep-alive (the default).
    #[default]
    Http1,
    /// HTTP/2: prior knowledge in clear text, ALPN `h2` over TLS.
    Http2,
}

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Name used in logs (defaults to the address).
    pub name: String,
    /// Address to connect to.
    pub address: SocketAddr,
    /// Relative weight, 1..=1000.
    pub weight: u32,
    /// Only used while no primary backend is available.
    pub backup: bool,
    /// Found through DNS: the index of the pool's discovered backend it comes from.
    pub source: Option<usize>,
}

/// How long a graceful stop waits by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// One worker thread per CPU core (the default, as HAProxy's `nbthread`).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source =
            std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Config::parse(path, &source)
    }

    /// Validates config text; `path` is only used in error messages.
    pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
        validate::validate(path, source)
    }
}
