//! The log phase, last of every request: the request is counted in the metrics of its
//! listener, route, pool and backend (see `crate::metrics`), and, when the access log
//! wants it, one line is written with the routing decision (route, pool, algorithm,
//! backend), the outcome and the time taken (see `crate::accesslog`). Every engine ends
//! a request here, and TCP connections and UDP flows are logged here too.

use std::net::SocketAddr;
use std::time::Instant;

use super::upstream::Trail;
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
    /// The HTTP version: `1.0`, `1.1` or `2`.
    pub http: &'static str,
    /// Over TLS: its version and the server name the client asked for.
    pub tls: Option<(&'static str, Option<&'a str>)>,
    /// Bytes from the client and to it (head and body).
    pub bytes: (u64, u64),
    /// Queue, connect and first-byte times, and why retries were made.
    pub trail: &'a Trail,
    /// When the request head was complete.
    pub started: Instant,
}

/// Counts one HTTP request and, when the access log wants it, logs it.
pub fn request(r: &Request<'_>) {
    let now = Instant::now();
    let took = now.saturating_duration_since(r.started);
    let f = r.frontend;
    let (bytes_in, bytes_out) = r.bytes;
    let route = r.route.and_then(|i| f.route_stats.get(i)).map(|s| &**s);
    let pool = r.pool.map(|p| &*p.stats);
    let backend = r.backend.map(|b| &b.stats);
    for stats in [Some(&*f.stats), route, pool, backend]
        .into_iter()
        .flatten()
    {
        stats.record(r.status, took);
        stats.record_bytes(bytes_in, bytes_out);
    }
    if !f.access_log {
        // Failures are logged even with the access log off.
        if r.status >= 500 {
            failed(r, took);
        }
        return;
    }
    if !f.log.wants(r.status) {
        return;
    }
    let (tls, sni) = match r.tls {
        Some((version, sni)) => (Some(version), sni),
        None => (None, None),
    };
    crate::accesslog::log(
        &f.log,
        &crate::accesslog::Fields {
            relay: None,
            listener: &f.name,
            client: Some(r.client),
            method: Some(r.method),
            path: Some(r.path),
            http: Some(r.http),
            tls,
            sni,
            route: r
                .route
                .and_then(|i| f.routes.routes().get(i))
                .map(|r| &*r.name),
            pool: r.pool.map(|p| &*p.name),
            algorithm: r.pool.map(|p| p.config.algorithm.name()),
            backend: r.backend.map(|b| &*b.name),
            status: Some(r.status),
            retries: Some(r.retries),
            grpc_status: r.grpc_status,
            bytes_in: Some(bytes_in),
            bytes_out: Some(bytes_out),
            trail: Some(r.trail),
            took,
        },
        now,
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

/// Counts a TCP connection or UDP flow of `frontend` (to `pool`) that reached no
/// backend.
pub fn unrelayed(frontend: &Frontend, pool: &Pool) {
    for stats in [&frontend.stats, &pool.stats] {
        crate::metrics::counters::inc(&stats.relayed.failed);
    }
}

/// Counts one TCP connection or UDP flow (`udp`) relayed to `backend` of `pool`, and
/// logs it when the access log is on (`trail`: its queue and connect times, and why it
/// went to another backend, for TCP).
#[allow(clippy::too_many_arguments)]
pub fn relayed(
    udp: bool,
    frontend: &Frontend,
    client: SocketAddr,
    pool: &Pool,
    backend: &Backend,
    bytes: (u64, u64),
    trail: Option<&Trail>,
    started: Instant,
) {
    for stats in [&frontend.stats, &pool.stats, &backend.stats] {
        stats.relayed.record(bytes.0, bytes.1);
    }
    if !frontend.access_log || !frontend.log.wants(200) {
        return;
    }
    crate::accesslog::log(
        &frontend.log,
        &crate::accesslog::Fields {
            relay: Some(if udp { "udp" } else { "tcp" }),
            listener: &frontend.name,
            client: Some(client),
            pool: Some(&pool.name),
            algorithm: Some(pool.config.algorithm.name()),
            backend: Some(&backend.name),
            bytes_in: Some(bytes.0),
            bytes_out: Some(bytes.1),
            trail,
            took: started.elapsed(),
            ..Default::default()
        },
        Instant::now(),
    );
}
