//! A TCP connection relayed to a backend: pick one (hashing on the client's IP for the
//! hash algorithms), connect within the connect timeout (trying another backend when the
//! connect fails: nothing was sent yet), then copy both ways until both sides are done.
//!
//! A side that finishes sending (EOF) is half-closed on the other side, so protocols that
//! close their write side first (e.g. a client sending a request then `shutdown(WR)`)
//! work; the connection ends when both directions are done, or after `timeouts.idle` with
//! no byte in either direction. With the pool's `send_proxy`, the backend first gets a
//! PROXY protocol header naming the client. Not done here: zero-copy splice.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{proxy_protocol, sni};
use crate::balance::Backend;
use crate::balance::circuit::Admission;
use crate::health;
use crate::l7::Site;
use crate::l7::request::hash_ip;
use crate::l7::upstream;

/// Relays one client connection until it ends.
pub async fn serve(mut client: TcpStream, peer: SocketAddr, site: Arc<Site>) {
    let _ = client.set_nodelay(true);
    // TLS passthrough: the ClientHello's server name picks the pool.
    let site = if site.sni_routes.is_empty() {
        site
    } else {
        let name = sni::peek_name(&client, site.timeouts.request_header).await;
        name.and_then(|name| {
            site.sni_routes
                .iter()
                .find(|(pattern, _)| sni::matches(pattern, &name))
                .map(|(_, routed)| Arc::clone(routed))
        })
        .unwrap_or(site)
    };
    let key = hash_ip(peer.ip());
    let Some((mut upstream, backend, admission, _in_flight)) = connect(&site, key).await else {
        return;
    };
    if let Some(version) = site.send_proxy {
        let mut header = Vec::with_capacity(64);
        let local = client.local_addr().unwrap_or(peer);
        proxy_protocol::encode(version, peer, local, &mut header);
        if upstream.write_all(&header).await.is_err() {
            health::report(&site.pool, &backend, admission, false);
            return;
        }
    }
    let idle = site.timeouts.idle;
    let outcome = if site.splice {
        super::splice::relay(&client, &upstream, idle).await
    } else {
        super::relay::relay(&mut client, &mut upstream, idle).await
    };
    health::report(&site.pool, &backend, admission, outcome.is_ok());
    if site.access_log {
        let (up, down) = outcome.unwrap_or((0, 0));
        tracing::info!(
            target: "fulcrum::access",
            listener = %site.name,
            client = %peer,
            backend = %backend.name,
            bytes_in = up,
            bytes_out = down,
            "tcp"
        );
    }
}

type Connected = (
    TcpStream,
    Arc<Backend>,
    Admission,
    crate::balance::backend::InFlight,
);

/// Picks a backend and connects to it, trying others (up to the pool's retry attempts)
/// when connecting fails. `None`: no backend could be reached; the client is dropped.
async fn connect(site: &Site, key: u64) -> Option<Connected> {
    let mut tried = 0;
    loop {
        let backend = match site.queue.pick(&site.pool, key).await {
            Ok(b) => Arc::clone(b),
            Err(e) => {
                tracing::debug!(listener = %site.name, reason = e.reason, "tcp connection refused");
                return None;
            }
        };
        tried += 1;
        // Filled up, or its last probe slot taken, since it was picked: pick again.
        let Some((in_flight, admission)) = backend.try_admit() else {
            if tried > site.retry.attempts + 3 {
                return None;
            }
            continue;
        };
        match upstream::connect_tcp(backend.addr, site.timeouts.connect).await {
            Ok(up) => return Some((up, backend, admission, in_flight)),
            Err(e) => {
                health::report(&site.pool, &backend, admission, false);
                backend.record_latency(site.timeouts.connect);
                tracing::debug!(backend = %backend.name, error = ?e, "cannot connect to backend");
                drop(in_flight);
                if tried > site.retry.attempts {
                    return None;
                }
            }
        }
    }
}
