//! The log phase: one access log line per HTTP request, TCP connection or UDP flow, with
//! the routing decision (route, pool, backend), the outcome and the time taken, written
//! the same way by every engine (target `fulcrum::access`).

use std::net::SocketAddr;
use std::time::Instant;

/// One HTTP request, as logged.
#[derive(Debug)]
pub struct Request<'a> {
    /// The listener.
    pub listener: &'a str,
    /// The client.
    pub client: SocketAddr,
    /// Method and target as received.
    pub method: &'a str,
    /// The request target (path and query).
    pub path: &'a str,
    /// The route that matched, if any.
    pub route: Option<&'a str>,
    /// The pool the request went to.
    pub pool: Option<&'a str>,
    /// The backend of the last try.
    pub backend: Option<&'a str>,
    /// The status sent to the client (0: none, the connection was closed).
    pub status: u16,
    /// Retries made.
    pub retries: u32,
    /// gRPC calls: the status the backend gave, if known.
    pub grpc_status: Option<&'a str>,
    /// When the request head was complete.
    pub started: Instant,
}

/// Logs one HTTP request.
pub fn request(r: &Request<'_>) {
    tracing::info!(
        target: "fulcrum::access",
        listener = %r.listener,
        client = %r.client,
        method = %r.method,
        path = %r.path,
        route = %r.route.unwrap_or("-"),
        pool = %r.pool.unwrap_or("-"),
        backend = %r.backend.unwrap_or("-"),
        status = r.status,
        retries = r.retries,
        grpc_status = %r.grpc_status.unwrap_or("-"),
        ms = %format_args!("{:.3}", r.started.elapsed().as_secs_f64() * 1000.0),
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
