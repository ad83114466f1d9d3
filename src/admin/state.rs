//! `GET /api/state`: every listener (with its routes) and every pool (with its
//! backends) as the running process sees them, as JSON; and the requests-per-second
//! figures, sampled once a second on the admin thread.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::balance::Backend;
use crate::balance::backend::now_us;
use crate::balance::circuit::CircuitState;
use crate::health::check::Outcome;
use crate::metrics::{CLASSES, Stats};
use crate::runtime::{Live, Snapshot};

/// Figures over the last second, sampled once a second: requests per second of each
/// backend (`pool/backend`) and each pool, and each pool's p99 over that second.
#[derive(Debug, Default)]
pub struct Rates(Mutex<Samples>);

#[derive(Debug, Default)]
struct Samples {
    /// Backend: (requests so far, requests in the last second).
    backends: HashMap<String, (u64, f64)>,
    /// Pool: (latency buckets so far, requests in the last second, p99 over it).
    pools: HashMap<String, PoolSample>,
}

/// A pool's latency buckets so far, requests in the last second, and p99 over it.
type PoolSample = (Vec<(f64, u64)>, f64, Option<f64>);

impl Rates {
    /// Takes a sample: what was counted since the previous one.
    pub fn sample(&self, snapshot: &Snapshot) {
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut backends = HashMap::with_capacity(samples.backends.len());
        let mut pools = HashMap::with_capacity(samples.pools.len());
        for pool in snapshot.pools.iter() {
            for b in pool.balancer.backends() {
                let key = format!("{}/{}", pool.name, b.name);
                let total = total(&b.stats);
                let rate = match samples.backends.get(&key) {
                    Some(&(before, _)) => total.saturating_sub(before) as f64,
                    None => 0.0,
                };
                backends.insert(key, (total, rate));
            }
            let (_, _, now) = pool.stats.duration.read();
            let window: Vec<(f64, u64)> = match samples.pools.get(&*pool.name) {
                Some((before, _, _)) if before.len() == now.len() => now
                    .iter()
                    .zip(before)
                    .map(|(n, b)| (n.0, n.1.saturating_sub(b.1)))
                    .collect(),
                _ => now.iter().map(|n| (n.0, 0)).collect(),
            };
            let rate = window.iter().map(|b| b.1).sum::<u64>() as f64;
            let p99 = crate::metrics::counters::quantile(&window, 0.99);
            pools.insert(pool.name.to_string(), (now, rate, p99));
        }
        *samples = Samples { backends, pools };
    }

    fn of(&self, pool: &str, backend: &str) -> f64 {
        let samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .backends
            .get(&format!("{pool}/{backend}"))
            .map_or(0.0, |r| r.1)
    }

    /// A pool's requests per second and p99 (seconds) over the last second.
    fn pool(&self, pool: &str) -> (f64, Option<f64>) {
        let samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        samples.pools.get(pool).map_or((0.0, None), |p| (p.1, p.2))
    }
}

fn total(stats: &Stats) -> u64 {
    (0..CLASSES.len()).map(|i| stats.requests(i)).sum()
}

/// Requests by status class, as a JSON object.
fn requests(stats: &Stats) -> Value {
    let by_class: serde_json::Map<String, Value> = CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| ((*c).to_owned(), json!(stats.requests(i))))
        .collect();
    json!({
        "total": total(stats),
        "by_class": by_class,
        "p50_ms": stats.duration.quantile(0.5).map(|s| s * 1000.0),
        "p99_ms": stats.duration.quantile(0.99).map(|s| s * 1000.0),
    })
}

/// What a backend is doing, in one word: the first of `disabled`, `draining`, `down`
/// (active checks fail), `agent-out` (its agent said drain or down, or 0 %), `open`
/// (circuit open), `half-open`, `full` (at
/// `max_in_flight`), `up`.
pub fn status(b: &Backend) -> &'static str {
    if !b.is_enabled() {
        "disabled"
    } else if b.is_draining() {
        "draining"
    } else if !b.is_healthy() {
        "down"
    } else if b.agent_state() != crate::balance::backend::AgentState::Up || b.headroom() == 0 {
        "agent-out"
    } else {
        match b.circuit.state(now_us()) {
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
            CircuitState::Closed if !b.has_room() => "full",
            CircuitState::Closed => "up",
        }
    }
}

/// The whole state.
pub fn state(live: &Live, rates: &Rates) -> Value {
    let snapshot = live.snapshot();
    let listeners: Vec<Value> = snapshot
        .frontends
        .iter()
        .map(|f| {
            let routes: Vec<Value> = f
                .routes
                .routes()
                .iter()
                .zip(f.route_stats.iter())
                .map(|(r, s)| json!({ "name": &*r.name, "requests": requests(s) }))
                .collect();
            json!({
                "name": &*f.name,
                "bind": f.bind.to_string(),
                "protocol": format!("{:?}", f.protocol).to_lowercase(),
                "routes": routes,
                "requests": requests(&f.stats),
            })
        })
        .collect();
    let pools: Vec<Value> = snapshot
        .pools
        .iter()
        .map(|p| {
            let backends: Vec<Value> = p
                .balancer
                .backends()
                .map(|b| {
                    let check = Outcome::decode(b.check_code());
                    json!({
                        "name": &*b.name,
                        "address": b.addr.to_string(),
                        "status": status(b),
                        "weight": b.weight(),
                        "effective_weight": f64::from(b.effective_weight())
                            / f64::from(crate::balance::backend::WEIGHT_SCALE),
                        "backup": b.is_backup(),
                        "healthy": b.is_healthy(),
                        "last_check": check.map(|c| c.to_string()),
                        "circuit": match b.circuit.state(now_us()) {
                            CircuitState::Closed => "closed",
                            CircuitState::Open => "open",
                            CircuitState::HalfOpen => "half-open",
                        },
                        "draining": b.is_draining(),
                        "enabled": b.is_enabled(),
                        "agent": match b.agent_state() {
                            crate::balance::backend::AgentState::Up => "up",
                            crate::balance::backend::AgentState::Drain => "drain",
                            crate::balance::backend::AgentState::Down => "down",
                        },
                        "reported_load": f64::from(1000 - b.headroom()) / 1000.0,
                        "in_flight": b.in_flight(),
                        "requests_per_second": rates.of(&p.name, &b.name),
                        "requests": requests(&b.stats),
                    })
                })
                .collect();
            let (rate, p99) = rates.pool(&p.name);
            json!({
                "name": &*p.name,
                "algorithm": p.config.algorithm.name(),
                "backends": backends,
                "requests": requests(&p.stats),
                "last_second": { "requests": rate, "p99_ms": p99.map(|s| s * 1000.0) },
            })
        })
        .collect();
    json!({
        "generation": snapshot.generation,
        "connections_open": live.connections(),
        "listeners": listeners,
        "pools": pools,
        "events": crate::metrics::events::recent(20),
    })
}
