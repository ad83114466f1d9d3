//! The Prometheus exposition: at each scrape, one pass over the live snapshot writes
//! every family in the text format (0.0.4), through `prometheus-client`'s encoder (a
//! [`Collector`], so that the values are read where they live instead of being copied
//! into a registry as they change).
//!
//! Names follow Prometheus's conventions: the `fulcrum_` prefix, `_total` on counters
//! (added by the encoder), base units (`_seconds`). Every family is listed, with its
//! labels, in docs/metrics.md.

use std::fmt::Error;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{CLASSES, Stats};
use crate::balance::Backend;
use crate::balance::backend::now_us;
use crate::balance::circuit::CircuitState;
use crate::runtime::Live;

/// The text of one scrape of `live`.
pub fn render(live: &Arc<Live>) -> String {
    let mut registry = Registry::with_prefix("fulcrum");
    registry.register_collector(Box::new(Scrape(Arc::clone(live))));
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug)]
struct Scrape(Arc<Live>);

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), Error> {
        let snapshot = self.0.snapshot();
        let listeners: Vec<_> = snapshot
            .frontends
            .iter()
            .map(|f| (vec![("listener", &*f.name)], &*f.stats))
            .collect();
        requests(
            &mut e,
            "listener",
            "Requests received by each listener",
            &listeners,
        )?;
        let mut routes = Vec::new();
        for f in snapshot.frontends.iter() {
            for (route, stats) in f.routes.routes().iter().zip(f.route_stats.iter()) {
                routes.push((
                    vec![("listener", &*f.name), ("route", &*route.name)],
                    &**stats,
                ));
            }
        }
        requests(&mut e, "route", "Requests that matched each route", &routes)?;
        let pools: Vec<_> = snapshot
            .pools
            .iter()
            .map(|p| (vec![("pool", &*p.name)], &*p.stats))
            .collect();
        requests(&mut e, "pool", "Requests sent to each pool", &pools)?;
        let backends: Vec<_> = snapshot
            .pools
            .iter()
            .flat_map(|p| p.balancer.backends().map(move |b| (p, b)))
            .collect();
        let labelled: Vec<_> = backends
            .iter()
            .map(|(p, b)| (vec![("pool", &*p.name), ("backend", &*b.name)], &b.stats))
            .collect();
        requests(
            &mut e,
            "backend",
            "Requests whose last try went to each backend",
            &labelled,
        )?;

        relayed(&mut e, &snapshot)?;

        let now = now_us();
        let gauges: [(&str, &str, BackendGauge); 5] = [
            (
                "backend_up",
                "1 while the backend may be picked: enabled, healthy, circuit not open, not drained",
                |b| i64::from(b.is_up()),
            ),
            (
                "backend_healthy",
                "1 while active health checks pass (1 when there are none)",
                |b| i64::from(b.is_healthy()),
            ),
            ("backend_draining", "1 while the backend is drained", |b| {
                i64::from(b.is_draining())
            }),
            ("backend_weight", "The backend's configured weight", |b| {
                i64::from(b.weight())
            }),
            (
                "backend_in_flight",
                "Requests in progress on the backend",
                |b| i64::from(b.in_flight()),
            ),
        ];
        for (name, help, value) in gauges {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, (_, b)) in labelled.iter().zip(&backends) {
                m.encode_family(&labels.0.as_slice())?
                    .encode_gauge(&value(b))?;
            }
        }
        let mut m = e.encode_descriptor(
            "backend_circuit_state",
            "The backend's circuit breaker: 1 for its current state, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for (labels, (_, b)) in labelled.iter().zip(&backends) {
            let state = b.circuit.state(now);
            for (name, s) in [
                ("closed", CircuitState::Closed),
                ("open", CircuitState::Open),
                ("half_open", CircuitState::HalfOpen),
            ] {
                let mut with_state = labels.0.clone();
                with_state.push(("state", name));
                m.encode_family(&with_state.as_slice())?
                    .encode_gauge(&i64::from(state == s))?;
            }
        }

        let mut m = e.encode_descriptor(
            "backend_state_changes",
            "Backend state changes, by kind (health checks, circuit breaker, admin actions)",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in super::events::KINDS.iter().zip(super::events::counts()) {
            m.encode_family(&[("kind", *kind)].as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        let mut m = e.encode_descriptor(
            "access_log_dropped_lines",
            "Access log lines dropped because the writer could not keep up",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&crate::accesslog::writer::dropped(), None)?;
        let mut m = e.encode_descriptor(
            "connections_open",
            "Client connections open now, on every listener",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(self.0.connections() as i64))?;
        let mut m = e.encode_descriptor(
            "config_generation",
            "The running config: 1 at start, one more at each successful reload",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(snapshot.generation as i64))?;
        Ok(())
    }
}

/// Layer 4 traffic per listener and per backend.
fn relayed(
    e: &mut DescriptorEncoder<'_>,
    snapshot: &crate::runtime::Snapshot,
) -> Result<(), Error> {
    use crate::config::Protocol;
    let l4: Vec<_> = snapshot
        .frontends
        .iter()
        .filter(|f| f.protocol != Protocol::Http)
        .map(|f| {
            let proto = if f.protocol == Protocol::Udp {
                "udp"
            } else {
                "tcp"
            };
            (vec![("listener", &*f.name), ("protocol", proto)], &*f.stats)
        })
        .collect();
    let backends: Vec<_> = snapshot
        .pools
        .iter()
        .flat_map(|p| p.balancer.backends().map(move |b| (p, b)))
        .filter(|(_, b)| b.stats.relayed.read().0 > 0)
        .map(|(p, b)| (vec![("pool", &*p.name), ("backend", &*b.name)], &b.stats))
        .collect();
    for (level, series) in [("listener", &l4), ("backend", &backends)] {
        let name = format!("{level}_relayed_connections");
        let mut m = e.encode_descriptor(
            &name,
            "TCP connections and UDP flows relayed to a backend (counted when they end)",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in series.iter() {
            m.encode_family(&labels.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&s.relayed.read().0, None)?;
        }
        let name = format!("{level}_relayed_bytes");
        let mut m = e.encode_descriptor(
            &name,
            "Bytes relayed by TCP connections and UDP flows: `direction` in (from clients) or out (to clients)",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in series.iter() {
            let (_, bytes_in, bytes_out) = s.relayed.read();
            for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
                let mut with = labels.clone();
                with.push(("direction", direction));
                m.encode_family(&with.as_slice())?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
    }
    Ok(())
}

/// A backend gauge's value.
type BackendGauge = fn(&Backend) -> i64;

/// Labels of one series: (name, value) pairs.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// `<level>_requests_total{..., class}` and `<level>_request_duration_seconds{...}` for
/// each labelled [`Stats`].
fn requests(
    e: &mut DescriptorEncoder<'_>,
    level: &str,
    help: &str,
    stats: &[(Labels<'_>, &Stats)],
) -> Result<(), Error> {
    let name = format!("{level}_requests");
    let mut m = e.encode_descriptor(
        &name,
        &format!("{help}, by status class (none: no response was sent)"),
        None,
        MetricType::Counter,
    )?;
    for (labels, s) in stats {
        for (i, class) in CLASSES.iter().enumerate() {
            let mut with_class = labels.clone();
            with_class.push(("class", class));
            m.encode_family(&with_class.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&s.requests(i), None)?;
        }
    }
    let name = format!("{level}_request_duration_seconds");
    let mut m = e.encode_descriptor(
        &name,
        &format!("{help}: time from the request head to the end of the exchange"),
        None,
        MetricType::Histogram,
    )?;
    for (labels, s) in stats {
        let (sum, count, buckets) = s.duration.read();
        m.encode_family(&labels.as_slice())?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}
