//! UDP listeners: datagrams from each client address form a flow, sent to one backend
//! through a socket of its own, so that the backend's replies come back to the right
//! client. A flow ends after `timeouts.idle` without a datagram in either direction.
//!
//! A new flow goes through the pipeline like a TCP connection: the backend is picked and
//! admitted (its circuit, `max_in_flight` and the overload queue apply; a flow counts as
//! one request in flight for as long as it lasts, so `least_connections` balances flows),
//! the flow's end is reported to passive health (a backend whose port is closed fails
//! it), and it is logged. The listening socket is served by one task (on the first
//! worker). Not done here: per-datagram balancing (every datagram of a flow goes to the
//! same backend), and retries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::balance::backend::now_us;
use crate::pipeline::upstream::{Admitted, Attempts};
use crate::routing::hash_ip;
use crate::runtime::{Frontend, Live, Pool};

/// Largest datagram relayed.
const DATAGRAM: usize = 65_535;
/// Most flows at once per listener; datagrams opening more are dropped.
const MAX_FLOWS: usize = 65_536;

struct Flow {
    upstream: Arc<UdpSocket>,
    state: Arc<FlowState>,
    /// Its places under the listener's connection limits, given back when it ends.
    _holds: crate::pipeline::admit::ConnectionHolds,
}

/// What the listening side and the reply relay of a flow share.
#[derive(Debug)]
struct FlowState {
    /// When a datagram last passed, either way.
    last_us: AtomicU64,
    /// Bytes from the client.
    bytes_in: AtomicU64,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

/// Serves a UDP listening socket until the task is cancelled (the listener is removed).
pub async fn serve(socket: UdpSocket, live: Arc<Live>, mut frontend: Arc<Frontend>) {
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
            .map(|f| (Arc::clone(&f.upstream), Arc::clone(&f.state)));
        let (upstream, state) = match existing {
            Some(flow) => flow,
            None => {
                // A new flow follows the config in force.
                if let Some(newer) = live.refresh(&frontend) {
                    frontend = newer;
                }
                match open_flow(&socket, &frontend, &flows, client).await {
                    Some(flow) => flow,
                    None => continue,
                }
            }
        };
        state.last_us.store(now_us(), Ordering::Relaxed);
        state.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Picks a backend for a new client and starts relaying its replies.
async fn open_flow(
    socket: &Arc<UdpSocket>,
    frontend: &Arc<Frontend>,
    flows: &Flows,
    client: SocketAddr,
) -> Option<(Arc<UdpSocket>, Arc<FlowState>)> {
    if flows.lock().unwrap_or_else(|e| e.into_inner()).len() >= MAX_FLOWS {
        return None;
    }
    if !frontend.access.admits(client.ip()) {
        crate::metrics::counters::inc(&frontend.stats.connections.denied);
        return None;
    }
    let Ok(holds) = crate::pipeline::admit::connection(frontend, client.ip()) else {
        crate::metrics::counters::inc(&frontend.stats.connections.limited);
        return None;
    };
    let pool = Arc::clone(frontend.default_pool()?);
    let (sticky, key) = pool
        .sticky
        .as_ref()
        .map_or((None, None), |s| s.find_client(client.ip()));
    let mut attempts = Attempts::new(&pool, hash_ip(client.ip()), None).stick_to(sticky, key);
    let mut admitted = match attempts.first().await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(listener = %frontend.name, client = %client, reason = e.reason, "udp flow refused");
            crate::pipeline::log::unrelayed(frontend, &pool);
            return None;
        }
    };
    let addr = admitted.backend.addr;
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let upstream = match UdpSocket::bind((local, 0)).await {
        Ok(u) => u,
        Err(_) => return None,
    };
    if upstream.connect(addr).await.is_err() {
        attempts.report(&mut admitted, false);
        crate::pipeline::log::unrelayed(frontend, &pool);
        return None;
    }
    attempts.kept(&admitted);
    let upstream = Arc::new(upstream);
    let state = Arc::new(FlowState {
        last_us: AtomicU64::new(now_us()),
        bytes_in: AtomicU64::new(0),
    });
    flows.lock().unwrap_or_else(|e| e.into_inner()).insert(
        client,
        Flow {
            upstream: Arc::clone(&upstream),
            state: Arc::clone(&state),
            _holds: holds,
        },
    );
    let flow = FlowTask {
        socket: Arc::clone(socket),
        upstream: Arc::clone(&upstream),
        client,
        state: Arc::clone(&state),
        flows: Arc::clone(flows),
        frontend: Arc::clone(frontend),
        pool,
        admitted,
    };
    tokio::spawn(flow.relay_replies());
    Some((upstream, state))
}

/// One flow's reply relay, and what it reports when the flow ends.
struct FlowTask {
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<FlowState>,
    flows: Flows,
    frontend: Arc<Frontend>,
    pool: Arc<Pool>,
    admitted: Admitted,
}

impl FlowTask {
    /// Sends the backend's replies to the client until the flow has been idle long
    /// enough, or the backend's port turned out closed.
    async fn relay_replies(mut self) {
        let started = Instant::now();
        let idle_us = self.frontend.timeouts.idle.as_micros() as u64;
        let mut buf = vec![0u8; DATAGRAM];
        let mut bytes_out = 0u64;
        let healthy = loop {
            let quiet = now_us().saturating_sub(self.state.last_us.load(Ordering::Relaxed));
            if quiet >= idle_us {
                break true;
            }
            let wait = Duration::from_micros(idle_us - quiet);
            match tokio::time::timeout(wait, self.upstream.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    self.state.last_us.store(now_us(), Ordering::Relaxed);
                    bytes_out += n as u64;
                    let _ = self.socket.send_to(&buf[..n], self.client).await;
                }
                // The backend's port is closed (ICMP unreachable): end the flow.
                Ok(Err(_)) => break false,
                Err(_) => {}
            }
        };
        self.admitted.report(&self.pool.balancer, healthy);
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.client);
        crate::pipeline::log::relayed(
            true,
            &self.frontend,
            self.client,
            &self.pool,
            &self.admitted.backend,
            (self.state.bytes_in.load(Ordering::Relaxed), bytes_out),
            None,
            started,
        );
    }
}
