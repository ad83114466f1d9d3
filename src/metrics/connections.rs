//! The listener families of the exposition: client connections open, TLS handshakes
//! by version and their failures, HTTP/2 streams, and layer 4 connections or flows that
//! reached no backend.

use std::fmt::Error;

use prometheus_client::encoding::DescriptorEncoder;

use super::counters::get;
use super::expose::{Labels, counter, gauge};
use crate::config::Protocol;
use crate::runtime::Snapshot;

/// Writes the listener families of `snapshot`.
pub(super) fn encode(e: &mut DescriptorEncoder<'_>, snapshot: &Snapshot) -> Result<(), Error> {
    let listeners = || snapshot.frontends.iter();
    let open: Vec<(Labels<'_>, u64)> = listeners()
        .map(|f| {
            let n = get(&f.stats.connections.open);
            (vec![("listener", &*f.name)], n)
        })
        .collect();
    gauge(
        e,
        "listener_connections_open",
        "Client connections open now on the listener",
        &open,
    )?;
    let tls: Vec<_> = listeners().filter(|f| f.server_tls().is_some()).collect();
    let mut handshakes = Vec::new();
    let mut failures = Vec::new();
    for f in &tls {
        let c = &f.stats.connections;
        for (version, n) in ["TLSv1.2", "TLSv1.3"].into_iter().zip(&c.tls) {
            handshakes.push((vec![("listener", &*f.name), ("version", version)], get(n)));
        }
        for (reason, n) in ["error", "timeout"].into_iter().zip(&c.tls_failed) {
            failures.push((vec![("listener", &*f.name), ("reason", reason)], get(n)));
        }
    }
    counter(
        e,
        "listener_tls_handshakes",
        "TLS handshakes completed with clients, by protocol version",
        &handshakes,
    )?;
    counter(
        e,
        "listener_tls_handshake_failures",
        "TLS handshakes with clients that failed (`error`: refused, bad certificate, not TLS) or did not finish in time (`timeout`)",
        &failures,
    )?;
    let http: Vec<_> = listeners()
        .filter(|f| f.protocol == Protocol::Http)
        .map(|f| {
            let n = get(&f.stats.connections.h2_streams);
            (vec![("listener", &*f.name)], n)
        })
        .collect();
    counter(
        e,
        "listener_http2_streams",
        "HTTP/2 streams (requests) received from clients",
        &http,
    )?;
    let denied: Vec<_> = listeners()
        .map(|f| {
            let n = get(&f.stats.connections.denied);
            (vec![("listener", &*f.name)], n)
        })
        .collect();
    counter(
        e,
        "listener_denied_connections",
        "Connections refused (UDP: datagrams dropped) because the client's address is not in the listener's `allow` list or is in its `deny` list",
        &denied,
    )?;
    let unrelayed: Vec<_> = super::expose::l4_listeners(snapshot)
        .into_iter()
        .map(|(labels, f)| (labels, get(&f.stats.relayed.failed)))
        .collect();
    counter(
        e,
        "listener_unrelayed_connections",
        "TCP connections and UDP flows that reached no backend (none up, or none could be connected) and were closed or dropped",
        &unrelayed,
    )
}
