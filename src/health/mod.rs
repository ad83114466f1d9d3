//! Active health checks: every backend of a pool with a `[pools.NAME.health]` section is
//! checked on its own schedule (TCP connect or HTTP request), and its availability follows
//! the rise/fall rule. Every change of state is logged with the reason.
//!
//! Checks run on one dedicated thread with its own event loop, so they never compete
//! with the workers' request handling, and a slow check delays nothing but itself.
//! This module decides nothing about individual requests: the selectors read the verdict
//! through [`Backend::is_available`](crate::balance::Backend::is_available).

pub mod check;
pub mod state;

use std::sync::Arc;

use crate::tls::client::BackendConnector;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::balance::backend::now_us;
use crate::balance::circuit::{Admission, CircuitChange};
use crate::balance::{Backend, Pool};
use crate::config::HealthCheck;

pub use check::Outcome;
use state::{RiseFall, Transition};

/// Passive health: feeds one request's (or connection's) outcome to the backend's circuit
/// breaker, and logs the change of state it causes, if any.
pub fn report(pool: &Pool, backend: &Backend, admission: Admission, success: bool) {
    match backend.circuit.record(admission, success, now_us()) {
        Some(CircuitChange::Opened { for_us, why }) => tracing::warn!(
            pool = %pool.name,
            backend = %backend.name,
            reason = %why,
            open_ms = for_us / 1000,
            "circuit OPEN: backend ejected"
        ),
        Some(CircuitChange::Closed) => {
            backend.start_ramp();
            tracing::info!(
                pool = %pool.name,
                backend = %backend.name,
                "circuit CLOSED: backend back in rotation"
            );
        }
        None => {}
    }
}

/// Starts checking every backend of the given pools; `None` when no pool has checks.
/// A pool's checks use `BackendConnector` when the pool speaks TLS to its backends.
pub fn start(
    pools: Vec<(Arc<Pool>, HealthCheck, Option<BackendConnector>)>,
) -> Option<JoinHandle<()>> {
    if pools.is_empty() {
        return None;
    }
    let handle = std::thread::Builder::new()
        .name("fulcrum-health".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot start the health-check event loop");
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (pool, check, tls) in pools {
                    let check = Arc::new(check);
                    let tls = tls.map(Arc::new);
                    for backend in pool.backends() {
                        tasks.push(tokio::spawn(watch(
                            Arc::clone(&pool),
                            Arc::clone(backend),
                            Arc::clone(&check),
                            tls.clone(),
                        )));
                    }
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
        .expect("cannot start the health-check thread");
    Some(handle)
}

/// Checks one backend for ever.
async fn watch(
    pool: Arc<Pool>,
    backend: Arc<Backend>,
    check: Arc<HealthCheck>,
    tls: Option<Arc<BackendConnector>>,
) {
    let mut state = RiseFall::new(check.rise, check.fall);
    // Spread the first checks of all backends over a tenth of the interval.
    tokio::time::sleep(check.interval.mul_f64(fastrand::f64() * 0.1)).await;
    loop {
        let started = tokio::time::Instant::now();
        let outcome = check::run(&check.kind, backend.addr, check.timeout, tls.as_deref()).await;
        backend.set_check_code(outcome.encode());
        if outcome.passed() {
            backend.circuit.check_passed();
        }
        match state.record(outcome.passed()) {
            Transition::Down => {
                backend.set_healthy(false);
                tracing::warn!(
                    pool = %pool.name,
                    backend = %backend.name,
                    addr = %backend.addr,
                    reason = %outcome,
                    fall = check.fall,
                    "backend is DOWN"
                );
            }
            Transition::Up => {
                backend.set_healthy(true);
                backend.start_ramp();
                tracing::info!(
                    pool = %pool.name,
                    backend = %backend.name,
                    addr = %backend.addr,
                    rise = check.rise,
                    "backend is UP"
                );
            }
            Transition::None => {}
        }
        tokio::time::sleep_until(started + next_wait(&check)).await;
    }
}

/// The time from one check's start to the next: the interval, shortened at random by up
/// to `jitter_percent` (never lengthened, so detection stays within interval x fall +
/// timeout).
fn next_wait(check: &HealthCheck) -> Duration {
    let jitter = f64::from(check.jitter_percent) / 100.0;
    check.interval.mul_f64(1.0 - jitter * fastrand::f64())
}
