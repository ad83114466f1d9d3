//! A TCP connection relayed to a backend: the pipeline picks one (hashing on the client's
//! IP for the hash algorithms) and admits it, the relay connects within the connect
//! timeout (another backend when the connect fails: nothing was sent yet), then copies
//! both ways until both sides are done.
//!
//! A side that finishes sending (EOF) is half-closed on the other side, so protocols that
//! close their write side first (e.g. a client sending a request then `shutdown(WR)`)
//! work; the connection ends when both directions are done, or after `timeouts.idle` with
//! no byte in either direction. With the pool's `send_proxy`, the backend first gets a
//! PROXY protocol header naming the client. With `splice`, bytes move by splice(2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{proxy_protocol, sni};
use crate::pipeline::error;
use crate::pipeline::upstream::{Admitted, Attempts, Why};
use crate::routing::hash_ip;
use crate::runtime::{Frontend, Pool};

/// Relays one client connection until it ends.
pub async fn serve(mut client: TcpStream, peer: SocketAddr, frontend: Arc<Frontend>) {
    let _ = client.set_nodelay(true);
    let started = Instant::now();
    // TLS passthrough: the ClientHello's server name picks the pool.
    let mut pool = frontend.default_pool();
    if !frontend.sni_routes.is_empty() {
        let name = sni::peek_name(&client, frontend.timeouts.request_header).await;
        if let Some(routed) = name.and_then(|name| {
            frontend
                .sni_routes
                .iter()
                .find(|(pattern, _)| sni::matches(pattern, &name))
                .map(|(_, p)| *p)
        }) {
            pool = frontend.pools.get(routed);
        }
    }
    let Some(pool) = pool else {
        return;
    };
    let (sticky, key) = pool
        .sticky
        .as_ref()
        .map_or((None, None), |s| s.find_client(peer.ip()));
    let mut attempts = Attempts::new(pool, hash_ip(peer.ip()), None).stick_to(sticky, key);
    let Some((mut upstream, mut admitted)) = connect(&frontend, &mut attempts).await else {
        crate::pipeline::log::unrelayed(&frontend, pool);
        return;
    };
    if let Some(version) = pool.send_proxy {
        let mut header = Vec::with_capacity(64);
        let local = client.local_addr().unwrap_or(peer);
        proxy_protocol::encode(version, peer, local, &mut header);
        if upstream.write_all(&header).await.is_err() {
            attempts.report(&mut admitted, false);
            return;
        }
    }
    let idle = frontend.timeouts.idle;
    let outcome = if frontend.splice {
        super::splice::relay(&client, &upstream, idle).await
    } else {
        crate::relay::relay(&mut client, &mut upstream, idle).await
    };
    attempts.report(&mut admitted, outcome.is_ok());
    crate::pipeline::log::relayed(
        false,
        &frontend,
        peer,
        pool,
        &admitted.backend,
        outcome.unwrap_or((0, 0)),
        Some(&attempts.trail),
        started,
    );
}

/// Picks a backend and connects to it, trying others (up to the pool's retry attempts)
/// when connecting fails. `None`: no backend could be reached; the client is dropped.
async fn connect(
    frontend: &Frontend,
    attempts: &mut Attempts<'_>,
) -> Option<(TcpStream, Admitted)> {
    let pool: &Pool = attempts.pool();
    let mut admitted = match attempts.first().await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(listener = %frontend.name, pool = %pool.name, reason = e.reason, "tcp connection refused");
            return None;
        }
    };
    let timeout = frontend.timeouts.connect;
    loop {
        let started = Instant::now();
        match crate::connect::connect_tcp(admitted.backend.addr, timeout).await {
            Ok(up) => {
                attempts.connected(&admitted, started.elapsed());
                attempts.kept(&admitted);
                return Some((up, admitted));
            }
            Err(e) => {
                let error = error::cannot_connect(&admitted.backend, &e);
                attempts.failed(&mut admitted, timeout, timeout);
                admitted =
                    attempts.retry(&admitted, error.retry, false, Why::Failed(error.reason))?;
            }
        }
    }
}
