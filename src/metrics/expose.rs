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

use super::counters::get;
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
        in_flight(&mut e, &listeners, &routes, &pools, &snapshot)?;
        upstream(&mut e, &pools, &labelled)?;
        queue(&mut e, &pools, &snapshot)?;
        super::connections::encode(&mut e, &snapshot)?;
        super::limits::encode(&mut e, &snapshot)?;
        super::content::encode(&mut e)?;
        super::content::caches(&mut e, &snapshot)?;

        let now = now_us();
        let gauges: [(&str, &str, BackendGauge); 6] = [
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
            (
                "backend_reported_load_permille",
                "The load the backend's agent or load header last reported, in thousandths (0 without reports)",
                |b| i64::from(1000 - b.headroom()),
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
    let l4: Vec<_> = l4_listeners(snapshot)
        .into_iter()
        .map(|(labels, f)| (labels, &*f.stats))
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

/// Requests in flight per listener, route and pool.
fn in_flight(
    e: &mut DescriptorEncoder<'_>,
    listeners: &[(Labels<'_>, &Stats)],
    routes: &[(Labels<'_>, &Stats)],
    pools: &[(Labels<'_>, &Stats)],
    snapshot: &crate::runtime::Snapshot,
) -> Result<(), Error> {
    for (level, series) in [("listener", listeners), ("route", routes)] {
        gauge(
            e,
            &format!("{level}_requests_in_flight"),
            "Requests received and not yet answered in full",
            &values(series, Stats::in_flight),
        )?;
    }
    let values: Vec<_> = pools
        .iter()
        .zip(snapshot.pools.iter())
        .map(|((l, _), p)| {
            let n: u64 = p
                .balancer
                .backends()
                .map(|b| u64::from(b.in_flight()))
                .sum();
            (l.clone(), n)
        })
        .collect();
    gauge(
        e,
        "pool_requests_in_flight",
        "Requests in progress on the pool's backends (queued ones not included)",
        &values,
    )
}

/// Connect and first-byte times, retries, per pool and backend.
fn upstream(
    e: &mut DescriptorEncoder<'_>,
    pools: &[(Labels<'_>, &Stats)],
    backends: &[(Labels<'_>, &Stats)],
) -> Result<(), Error> {
    for (level, series) in [("pool", pools), ("backend", backends)] {
        let name = format!("{level}_connect_duration_seconds");
        histogram(
            e,
            &name,
            "Time to open a new connection to a backend (TLS handshake included)",
            series,
            |s| &s.upstream.connect,
        )?;
        let name = format!("{level}_first_byte_duration_seconds");
        histogram(
            e,
            &name,
            "Time from the request sent in full to the backend's response head",
            series,
            |s| &s.upstream.first_byte,
        )?;
    }
    counter(
        e,
        "pool_retries",
        "Retries made: requests sent again to another backend",
        &values(pools, |s| get(&s.upstream.retries)),
    )?;
    counter(
        e,
        "pool_retry_budget_refusals",
        "Retries refused because the pool's retry budget was spent",
        &values(pools, |s| get(&s.upstream.budget_refusals)),
    )?;
    let mut m = e.encode_descriptor(
        "pool_sticky_responses",
        "Responses of pools with session persistence, by `outcome`: hit (served where the client's cookie or stick table entry said), new (none: one set or stored), moved (its backend could not take the request: the new one set or stored)",
        None,
        MetricType::Counter,
    )?;
    for (labels, s) in pools {
        for (outcome, n) in crate::pipeline::upstream::STICKY
            .iter()
            .zip(&s.upstream.sticky)
        {
            let mut with = labels.clone();
            with.push(("outcome", outcome));
            m.encode_family(&with.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&get(n), None)?;
        }
    }
    counter(
        e,
        "backend_retries",
        "Tries on the backend that failed (or got a retried status) and were retried on another",
        &values(backends, |s| get(&s.upstream.retries)),
    )
}

/// Each series' value of `f`.
fn values<'a>(series: &[(Labels<'a>, &Stats)], f: fn(&Stats) -> u64) -> Vec<(Labels<'a>, u64)> {
    series.iter().map(|(l, s)| (l.clone(), f(s))).collect()
}

/// The overload queue of each pool (`pools`: the labelled stats of `snapshot`'s pools).
fn queue(
    e: &mut DescriptorEncoder<'_>,
    pools: &[(Labels<'_>, &Stats)],
    snapshot: &crate::runtime::Snapshot,
) -> Result<(), Error> {
    let depth: Vec<_> = pools
        .iter()
        .zip(snapshot.pools.iter())
        .map(|((l, _), p)| (l.clone(), u64::from(p.queue.waiting())))
        .collect();
    gauge(
        e,
        "pool_queue_depth",
        "Requests waiting now for a backend with room (every usable one at max_in_flight)",
        &depth,
    )?;
    histogram(
        e,
        "pool_queue_wait_seconds",
        "How long requests that queued waited before getting a backend",
        pools,
        |s| &s.queue.wait,
    )?;
    let mut m = e.encode_descriptor(
        "pool_queue_refusals",
        "Requests refused with 503 by the queue: `reason` full or timeout",
        None,
        MetricType::Counter,
    )?;
    for (labels, s) in pools {
        for (reason, n) in [
            ("full", get(&s.queue.full)),
            ("timeout", get(&s.queue.timed_out)),
        ] {
            let mut with = labels.clone();
            with.push(("reason", reason));
            m.encode_family(&with.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
    }
    Ok(())
}

/// One counter family with a value per series.
pub(super) fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, u64)],
) -> Result<(), Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in series {
        m.encode_family(&labels.as_slice())?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

/// One gauge family with a value per series.
pub(super) fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, u64)],
) -> Result<(), Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, n) in series {
        m.encode_family(&labels.as_slice())?
            .encode_gauge(&i64::try_from(*n).unwrap_or(i64::MAX))?;
    }
    Ok(())
}

/// One histogram family, the histogram of each series' stats picked by `pick`.
fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, &Stats)],
    pick: fn(&Stats) -> &super::Histogram,
) -> Result<(), Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, s) in series {
        let (sum, count, buckets) = pick(s).read();
        m.encode_family(&labels.as_slice())?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// The TCP and UDP listeners, labelled with their name and protocol.
pub(super) fn l4_listeners(
    snapshot: &crate::runtime::Snapshot,
) -> Vec<(Labels<'_>, &crate::runtime::Frontend)> {
    use crate::config::Protocol;
    snapshot
        .frontends
        .iter()
        .filter(|f| f.protocol != Protocol::Http)
        .map(|f| {
            let proto = if f.protocol == Protocol::Udp {
                "udp"
            } else {
                "tcp"
            };
            (vec![("listener", &*f.name), ("protocol", proto)], &**f)
        })
        .collect()
}

/// A backend gauge's value.
type BackendGauge = fn(&Backend) -> i64;

/// Labels of one series: (name, value) pairs.
pub(super) type Labels<'a> = Vec<(&'a str, &'a str)>;

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
    let name = format!("{level}_request_bytes");
    let mut m = e.encode_descriptor(
        &name,
        &format!("{help}: their bytes, `direction` in (requests, from clients) or out (responses, to clients)"),
        None,
        MetricType::Counter,
    )?;
    for (labels, s) in stats {
        let (bytes_in, bytes_out) = s.bytes();
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            let mut with = labels.clone();
            with.push(("direction", direction));
            m.encode_family(&with.as_slice())?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
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
