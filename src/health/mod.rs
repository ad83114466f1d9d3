//! Active health checks: every backend of a pool with a `[pools.NAME.health]` section is
//! checked on its own schedule (TCP connect or HTTP request), and its availability follows
//! the rise/fall rule. Every change of state is logged with the reason.
//!
//! Checks run on one dedicated thread with its own event loop, so they never compete
//! with the workers' request handling, and a slow check delays nothing but itself. The
//! set of checks follows the live config ([`Checker::follow`]): a reload starts, stops
//! or restarts them.
//! This module decides nothing about individual requests: the selectors read the verdict
//! through [`Backend::is_available`](crate::balance::Backend::is_available).

pub mod agent;
pub mod check;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use crate::balance::backend::now_us;
use crate::balance::circuit::{Admission, CircuitChange};
use crate::balance::{Backend, Pool};
use crate::config::HealthCheck;
use crate::tls::client::BackendConnector;

pub use check::Outcome;
use state::{RiseFall, Transition};

/// Passive health: feeds one request's (or connection's) outcome to the backend's circuit
/// breaker, and logs the change of state it causes, if any.
pub fn report(pool: &Pool, backend: &Backend, admission: Admission, success: bool) {
    match backend.circuit.record(admission, success, now_us()) {
        Some(CircuitChange::Opened { for_us, why }) => {
            tracing::warn!(
                pool = %pool.name,
                backend = %backend.name,
                reason = %why,
                open_ms = for_us / 1000,
                "circuit OPEN: backend ejected"
            );
            crate::metrics::events::record(
                &pool.name,
                &backend.name,
                "circuit_open",
                format!("{why}; open for {} ms", for_us / 1000),
            );
        }
        Some(CircuitChange::Closed) => {
            backend.start_ramp();
            crate::metrics::events::record(
                &pool.name,
                &backend.name,
                "circuit_closed",
                "probe passed",
            );
            tracing::info!(
                pool = %pool.name,
                backend = %backend.name,
                "circuit CLOSED: backend back in rotation"
            );
        }
        None => {}
    }
}

/// The health-check thread, following the live snapshot: each (pool, backend) with checks
/// has one task; a reload starts the tasks of new backends, stops those of removed ones,
/// and restarts those whose check settings changed.
#[derive(Debug)]
pub struct Checker {
    orders: tokio::sync::mpsc::UnboundedSender<Vec<Target>>,
}

/// One backend to check, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pool's name, for logs.
    pub pool: Arc<str>,
    /// The backend.
    pub backend: Arc<Backend>,
    /// What is asked.
    pub probe: Probe,
}

/// What the checker asks a backend.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A health check (with its TLS settings, for TLS pools).
    Health(Arc<HealthCheck>, Option<Arc<BackendConnector>>),
    /// Its agent, for its load and wishes ([`agent`]).
    Agent(Arc<crate::config::AgentCheck>),
}

impl Probe {
    fn same(&self, other: &Probe) -> bool {
        match (self, other) {
            (Probe::Health(a, ta), Probe::Health(b, tb)) => {
                a == b && ta.as_ref().map(|t| t.key) == tb.as_ref().map(|t| t.key)
            }
            (Probe::Agent(a), Probe::Agent(b)) => a == b,
            _ => false,
        }
    }
}

impl Checker {
    /// Starts the (idle) health-check thread.
    pub fn start() -> std::io::Result<Checker> {
        let (orders, mut incoming) = tokio::sync::mpsc::unbounded_channel::<Vec<Target>>();
        std::thread::Builder::new()
            .name("fulcrum-health".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot start the health-check event loop");
                runtime.block_on(async move {
                    let mut running: Vec<(Target, tokio::task::JoinHandle<()>)> = Vec::new();
                    while let Some(targets) = incoming.recv().await {
                        running = reconcile(running, targets);
                    }
                    for (_, task) in running {
                        task.abort();
                    }
                });
            })?;
        Ok(Checker { orders })
    }

    /// Checks exactly `targets` from now on.
    pub fn follow(&self, targets: Vec<Target>) {
        let _ = self.orders.send(targets);
    }
}

/// Keeps the tasks of targets that did not change, stops the others, starts new ones.
fn reconcile(
    running: Vec<(Target, tokio::task::JoinHandle<()>)>,
    targets: Vec<Target>,
) -> Vec<(Target, tokio::task::JoinHandle<()>)> {
    let same = |a: &Target, b: &Target| {
        Arc::ptr_eq(&a.backend, &b.backend) && a.pool == b.pool && a.probe.same(&b.probe)
    };
    let mut kept = Vec::with_capacity(targets.len());
    let mut old = running;
    for target in targets {
        match old.iter().position(|(t, _)| same(t, &target)) {
            Some(i) => kept.push(old.swap_remove(i)),
            None => {
                let task = tokio::spawn(watch(target.clone()));
                kept.push((target, task));
            }
        }
    }
    for (target, task) in old {
        task.abort();
        // A backend no longer checked (checks or agent removed from its pool) is not
        // held down by its last verdict or report.
        let still = |health: bool| {
            kept.iter().any(|(t, _)| {
                Arc::ptr_eq(&t.backend, &target.backend)
                    && matches!(t.probe, Probe::Health(..)) == health
            })
        };
        match target.probe {
            Probe::Health(..) if !still(true) => target.backend.set_healthy(true),
            Probe::Agent(_) if !still(false) => {
                target.backend.set_headroom(1000);
                target
                    .backend
                    .set_agent_state(crate::balance::backend::AgentState::Up);
            }
            _ => {}
        }
    }
    kept
}

/// Asks one backend for ever.
async fn watch(target: Target) {
    let Target {
        pool,
        backend,
        probe,
    } = target;
    match probe {
        Probe::Health(check, tls) => watch_health(pool, backend, check, tls).await,
        Probe::Agent(agent) => agent::watch(pool, backend, agent).await,
    }
}

/// Checks one backend's health for ever.
async fn watch_health(
    pool: Arc<str>,
    backend: Arc<Backend>,
    check: Arc<HealthCheck>,
    tls: Option<Arc<BackendConnector>>,
) {
    let mut state = RiseFall::new(check.rise, check.fall);
    if !backend.is_healthy() {
        // Checks restarted on a backend that was down: it stays down until it rises.
        state = RiseFall::down(check.rise, check.fall);
    }
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
                crate::metrics::events::record(&pool, &backend.name, "down", outcome.to_string());
                tracing::warn!(
                    pool = %pool,
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
                crate::metrics::events::record(
                    &pool,
                    &backend.name,
                    "up",
                    format!("{} checks passed", check.rise),
                );
                tracing::info!(
                    pool = %pool,
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
