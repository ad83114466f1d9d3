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
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{proxy_protocol, sni};
use crate::balance::Backend;
use crate::balance::circuit::Admission;
use crate::health;
use crate::l7::Site;
use crate::l7::request::hash_ip;
use crate::l7::upstream;

const BUFFER: usize = 16 * 1024;

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
    let outcome = relay(&mut client, &mut upstream, site.timeouts.idle).await;
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

/// Copies both ways with half-close; returns the bytes sent to the backend and back to
/// the client, or an error if a side failed or the connection stayed idle too long.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
) -> std::io::Result<(u64, u64)> {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let mut to_backend = vec![0u8; BUFFER];
    let mut to_client = vec![0u8; BUFFER];
    let (mut up_open, mut down_open) = (true, true);
    let (mut up, mut down) = (0u64, 0u64);
    let mut deadline = Instant::now() + idle;
    while up_open || down_open {
        tokio::select! {
            read = cr.read(&mut to_backend), if up_open => {
                let n = read?;
                if n == 0 {
                    up_open = false;
                    let _ = uw.shutdown().await;
                } else {
                    uw.write_all(&to_backend[..n]).await?;
                    up += n as u64;
                }
            }
            read = ur.read(&mut to_client), if down_open => {
                let n = read?;
                if n == 0 {
                    down_open = false;
                    let _ = cw.shutdown().await;
                } else {
                    cw.write_all(&to_client[..n]).await?;
                    down += n as u64;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout"));
            }
        }
        deadline = Instant::now() + idle;
    }
    Ok((up, down))
}
