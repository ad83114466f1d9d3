//! This Fulcrum as a node of a highly available pair or fleet: whether it should take
//! traffic, for a VRRP daemon's check (keepalived's `track_script` runs `fulcrum ctl
//! health`) or another load balancer's (`GET /health` on the admin listener).
//!
//! A node is **ready**, **draining** (stopping, `shutdown_delay` included, or drained by an operator with `fulcrum
//! ctl node drain`, so that a standby takes the address while requests in progress
//! finish), or **unhealthy**: no pool has a backend up, or its config is stale (the file
//! changed and the last reload was refused, so it runs an older config than its peers).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Live;

/// What an operator and the reloads said of this node.
#[derive(Debug, Default)]
pub struct Node {
    drained: AtomicBool,
    /// A graceful stop has begun and waits `shutdown_delay` before closing listeners.
    leaving: AtomicBool,
    /// Why the last reload was refused, until one succeeds.
    stale: Mutex<Option<String>>,
}

/// Whether the node should take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// It should.
    Ready,
    /// It is giving its traffic up (stopping, or drained).
    Draining,
    /// It should not (see the reasons).
    Unhealthy,
}

impl Readiness {
    /// Its name in the API (`ready`, `draining`, `unhealthy`).
    pub fn name(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
            Readiness::Unhealthy => "unhealthy",
        }
    }
}

impl Node {
    /// Drains the node (`true`) or makes it ready again; whether that changed anything.
    pub fn drain(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::AcqRel) != drained
    }

    /// Marks the node as about to stop (`shutdown_delay` running).
    pub fn leaving(&self, leaving: bool) {
        self.leaving.store(leaving, Ordering::Release);
    }

    /// Records the outcome of a reload: `Some(why)` it was refused, `None` it worked.
    pub fn reloaded(&self, refused: Option<String>) {
        *self.stale.lock().unwrap_or_else(|p| p.into_inner()) = refused;
    }

    /// Whether it should take traffic, and why not.
    pub fn readiness(&self, live: &Live) -> (Readiness, Vec<String>) {
        let mut reasons = Vec::new();
        if live.is_stopping() || self.leaving.load(Ordering::Acquire) {
            reasons.push("stopping".to_owned());
        }
        if self.drained.load(Ordering::Acquire) {
            reasons.push("drained by an operator (fulcrum ctl node ready undoes it)".to_owned());
        }
        if !reasons.is_empty() {
            return (Readiness::Draining, reasons);
        }
        if let Some(why) = &*self.stale.lock().unwrap_or_else(|p| p.into_inner()) {
            reasons.push(format!("config stale: the last reload was refused: {why}"));
        }
        let snapshot = live.snapshot();
        if !snapshot.pools.is_empty() && !snapshot.pools.iter().any(|p| p.has_backend_up()) {
            reasons.push("no pool has a backend up".to_owned());
        }
        if reasons.is_empty() {
            (Readiness::Ready, reasons)
        } else {
            (Readiness::Unhealthy, reasons)
        }
    }
}
