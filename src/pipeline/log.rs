//! The log phase, last of every request: the request is counted in the metrics of its
//! listener, route, pool and backend (see `crate::metrics`), and, when the access log
//! is on, one line is written with the routing decision (route, pool, backend), the
//! outcome and the time taken (target `fulcrum::access`). Every engine ends a request
//! here, and TCP connections and UDP flows are logged here too.

use std::net::SocketAddr;
use std::time::Instant;

use crate::balance::Backend;
use crate::runtime::{Frontend, Pool};

/// One HTTP request, as counted and logged.
#[derive(Debug)]
pub struct Request<'a> {
    /// The listener.
    pub frontend: &'a Frontend,
    /// The client.
    pub client: SocketAddr,
    /// Method and target as received (only read when the access log is on).
    pub method: &'a str,
    /// The request target (path and query).
    pub path: &'a str,
    /// The index of the route that matched, if any.
    pub route: Option<usize>,
    /// The pool the request went to.
    pub pool: Option<&'a Pool>,
    /// The backend of the last try.
    pub backend: Option<&'a Backend>,
    /// The status sent to the client (0: none, the connection was closed).
    pub status: u16,
    /// Retries made.
    pub retries: u32,
    /// gRPC calls: the status the backend gave, if known.
    pub grpc_status: Option<&'a str>,
    /// When the request head was complete.
    pub started: Instant,
}

/// Counts one HTTP request and, when the access log is on, logs it.
pub fn request(r: &Request<'_>) {
    let took = r.started.elapsed();
    let f = r.frontend;
    f.stats.record(r.status, took);
    if let Some(stats) = r.route.and_then(|i| f.route_stats.get(i)) {
        stats.record(r.status, took);
    }
    if let Some(pool) = r.pool {
        pool.stats.record(r.status, took);
    }
    if let Some(backend) = r.backend {
        backend.stats.record(r.status, took);
    }
    if !f.access_log {
        // Failures are logged even with the access log off.
        if r.status >= 500 {
            failed(r, took);
        }
        return;
    }
    tracing::info!(
        target: "fulcrum::access",
        listener = %f.name,
        client = %r.client,
        method = %r.method,
        path = %r.path,
        route = %r.route.and_then(|i| f.routes.routes().get(i)).map_or("-", |r| &*r.name),
        pool = %r.pool.map_or("-", |p| &*p.name),
        backend = %r.backend.map_or("-", |b| &*b.name),
        status = r.status,
        retries = r.retries,
        grpc_status = %r.grpc_status.unwrap_or("-"),
        ms = %format_args!("{:.3}", took.as_secs_f64() * 1000.0),
    );
}

/// One failed request, when the access log is off: at WARN, as one line.
#[cold]
fn failed(r: &Request<'_>, took: std::time::Duration) {
    let f = r.frontend;
    tracing::warn!(
        target: "fulcrum::access",
        listener = %f.name,
        client = %r.client,
        method = %if r.method.is_empty() { "-" } else { r.method },
        path = %if r.path.is_empty() { "-" } else { r.path },
        route = %r.route.and_then(|i| f.routes.routes().get(i)).map_or("-", |r| &*r.name),
        pool = %r.pool.map_or("-", |p| &*p.name),
        backend = %r.backend.map_or("-", |b| &*b.name),
        status = r.status,
        retries = r.retries,
        ms = %format_args!("{:.3}", took.as_secs_f64() * 1000.0),
        "request failed"
    );
}

/// Logs one TCP connection or UDP flow (`udp`) relayed to `backend`.
#[allow(clippy::too_many_arguments)]
pub fn relayed(
    udp: bool,
    listener: &str,
    client: SocketAddr,
    pool: &str,
    backend: &str,
    bytes_in: u64,
    bytes_out: u64,
    started: Instant,
) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "fulcrum::access",
        listener = %listener,
        client = %client,
        pool = %pool,
        backend = %backend,
        bytes_in,
        bytes_out,
        ms = %format_args!("{ms:.3}"),
        "{}",
        if udp { "udp" } else { "tcp" }
    );
}
