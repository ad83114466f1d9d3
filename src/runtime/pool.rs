//! A pool as the request path uses it: its backends and algorithm (`balance::Pool`), its
//! retry policy and budget, its overload queue, how its backends are reached (TLS, HTTP
//! version, PROXY protocol) and its health-check settings.
//!
//! Pools are rebuilt by every reload; the backends inside them are not when they stay the
//! same (same pool, same name and address): the new pool holds the very same
//! `Arc<Backend>`, reconfigured in place, so health, circuit, in-flight counts, response
//! times and slow start carry over.

use std::sync::Arc;
use std::time::Duration;

use crate::balance::{self, Backend};
use crate::config::{HealthCheck, HttpVersion, PoolConfig, ProxyVersion};
use crate::connect::ConnKey;
use crate::metrics::Stats;
use crate::pipeline::error::{Error, NO_BACKEND};
use crate::pipeline::queue::Queue;
use crate::pipeline::retry::RetryPolicy;
use crate::pipeline::sticky::Sticky;
use crate::tls::client::BackendConnector;

/// One named pool of the running config.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: Box<str>,
    /// Its backends and selector.
    pub balancer: balance::Pool,
    /// Retry settings and budget.
    pub retry: RetryPolicy,
    /// Requests waiting for a backend with room.
    pub queue: Queue,
    /// Body of the 503 sent when no backend is available.
    pub unavailable_body: Option<Box<str>>,
    /// PROXY protocol header sent to backends (TCP listeners).
    pub send_proxy: Option<ProxyVersion>,
    /// TLS to the backends.
    pub tls: Option<BackendConnector>,
    /// The HTTP version spoken to the backends.
    pub http_version: HttpVersion,
    /// Active health checks, and the TLS settings they use.
    pub health: Option<(HealthCheck, Option<BackendConnector>)>,
    /// The config it was built from.
    pub config: PoolConfig,
    /// Requests sent to the pool (carried over reloads).
    pub stats: Arc<Stats>,
    /// Session persistence by cookie, if configured.
    pub sticky: Option<Sticky>,
}

impl Pool {
    /// Builds `c`, reusing the backends (and queue signal) of `previous`, the pool of the
    /// same name in the running config, if any. `tls` and `check_tls` are built by the
    /// caller (they read files).
    pub fn build(
        c: &PoolConfig,
        previous: Option<&Pool>,
        tls: Option<BackendConnector>,
        check_tls: Option<BackendConnector>,
    ) -> Pool {
        let released = previous.map(|p| Arc::clone(&p.queue.released));
        let queue = Queue::new(c.queue, c.queue_timeout, released);
        let backends = c
            .backends
            .iter()
            .map(|b| {
                let kept = previous.and_then(|p| {
                    p.balancer
                        .backends()
                        .find(|o| o.addr == b.address && *o.name == *b.name)
                });
                match kept {
                    Some(backend) => {
                        backend.reconfigure(
                            b.weight,
                            b.backup,
                            c.max_in_flight,
                            c.slow_start,
                            c.breaker,
                        );
                        Arc::clone(backend)
                    }
                    None => {
                        let backend = Backend::new(b.name.as_str(), b.address, b.weight, b.backup)
                            .with_circuit(c.breaker)
                            .with_slow_start(c.slow_start)
                            .with_max_in_flight(c.max_in_flight, Arc::clone(&queue.released));
                        // A backend added to a running pool ramps up like one coming back.
                        if previous.is_some() {
                            backend.start_ramp();
                        }
                        Arc::new(backend)
                    }
                }
            })
            .collect::<Vec<_>>();
        let sticky = c.sticky.as_ref().map(|s| {
            Sticky::new(
                s,
                &c.name,
                backends.iter(),
                previous.and_then(|p| p.sticky.as_ref()),
            )
        });
        Pool {
            sticky,
            name: c.name.as_str().into(),
            balancer: balance::Pool::new(
                c.name.as_str(),
                c.algorithm,
                c.hash_key.clone(),
                backends,
            ),
            retry: RetryPolicy::new(&c.retries),
            queue,
            unavailable_body: c.unavailable_body.as_deref().map(Into::into),
            send_proxy: c.send_proxy,
            tls,
            http_version: c.http_version,
            health: c.health.clone().map(|h| (h, check_tls)),
            config: c.clone(),
            stats: previous.map_or_else(Arc::default, |p| Arc::clone(&p.stats)),
        }
    }

    /// What identifies a kept connection to `backend` of this pool.
    #[inline]
    pub fn conn_key(&self, backend: &Backend) -> ConnKey {
        ConnKey::new(backend.addr, self.tls.as_ref())
    }

    /// The 503 for "no backend is available", with a `Retry-After` that says when one
    /// may be again: the soonest end of an open circuit's backoff, or the health checks'
    /// interval, or 1 s.
    pub fn no_backend(&self) -> Error {
        let now = crate::balance::backend::now_us();
        let circuit = self
            .balancer
            .backends()
            .filter_map(|b| b.circuit.open_until_us())
            .map(|until| Duration::from_micros(until.saturating_sub(now)))
            .min();
        let wait = circuit
            .or_else(|| self.health.as_ref().map(|(h, _)| h.interval))
            .unwrap_or(Duration::from_secs(1));
        NO_BACKEND.come_back_in(wait)
    }

    /// Whether some backend (primary or backup) could take a request now or soon: up,
    /// whether or not it has room.
    pub fn has_backend_up(&self) -> bool {
        self.balancer.backends().any(|b| b.is_up())
    }
}
