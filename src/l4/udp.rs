//! UDP listeners: datagrams from each client address form a flow, sent to one backend
//! through a socket of its own, so that the backend's replies come back to the right
//! client. A flow ends after `timeouts.idle` without a datagram in either direction.
//!
//! The listening socket is served by one task (on the first worker); each flow has a
//! task relaying replies. Flows count as in-flight on their backend, so
//! `least_connections` balances flows. Not done here: per-datagram balancing (every
//! datagram of a flow goes to the same backend), and retries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::balance::Backend;
use crate::balance::backend::now_us;
use crate::l7::Site;
use crate::l7::request::hash_ip;

/// Largest datagram relayed.
const DATAGRAM: usize = 65_535;
/// Most flows at once per listener; datagrams opening more are dropped.
const MAX_FLOWS: usize = 65_536;

struct Flow {
    upstream: Arc<UdpSocket>,
    last_us: Arc<AtomicU64>,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

/// Serves a UDP listening socket for ever.
pub async fn serve(socket: UdpSocket, site: Arc<Site>) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let existing = flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .map(|f| (Arc::clone(&f.upstream), Arc::clone(&f.last_us)));
        let (upstream, last_us) = match existing {
            Some(flow) => flow,
            None => match open_flow(&socket, &site, &flows, client).await {
                Some(flow) => flow,
                None => continue,
            },
        };
        last_us.store(now_us(), Ordering::Relaxed);
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Picks a backend for a new client and starts relaying its replies.
async fn open_flow(
    socket: &Arc<UdpSocket>,
    site: &Arc<Site>,
    flows: &Flows,
    client: SocketAddr,
) -> Option<(Arc<UdpSocket>, Arc<AtomicU64>)> {
    if flows.lock().unwrap_or_else(|e| e.into_inner()).len() >= MAX_FLOWS {
        return None;
    }
    let backend = Arc::clone(site.pool.pick(hash_ip(client.ip()))?);
    let local: IpAddr = match backend.addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let upstream = UdpSocket::bind((local, 0)).await.ok()?;
    upstream.connect(backend.addr).await.ok()?;
    let upstream = Arc::new(upstream);
    let last_us = Arc::new(AtomicU64::new(now_us()));
    flows.lock().unwrap_or_else(|e| e.into_inner()).insert(
        client,
        Flow {
            upstream: Arc::clone(&upstream),
            last_us: Arc::clone(&last_us),
        },
    );
    tokio::spawn(relay_replies(
        Arc::clone(socket),
        Arc::clone(&upstream),
        client,
        Arc::clone(&last_us),
        Arc::clone(flows),
        backend,
        site.timeouts.idle,
    ));
    Some((upstream, last_us))
}

/// Sends the backend's replies to the client until the flow has been idle long enough.
async fn relay_replies(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last_us: Arc<AtomicU64>,
    flows: Flows,
    backend: Arc<Backend>,
    idle: Duration,
) {
    let _flow = backend.begin();
    let idle_us = idle.as_micros() as u64;
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let quiet = now_us().saturating_sub(last_us.load(Ordering::Relaxed));
        if quiet >= idle_us {
            break;
        }
        let wait = Duration::from_micros(idle_us - quiet);
        match tokio::time::timeout(wait, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                last_us.store(now_us(), Ordering::Relaxed);
                let _ = socket.send_to(&buf[..n], client).await;
            }
            // The backend's port is closed (ICMP unreachable): end the flow.
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    flows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&client);
}
