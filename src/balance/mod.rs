//! Backend selection. Every algorithm implements the one [`Selector`] trait, in a file of
//! its own; a [`Pool`] holds the backends of one named pool and applies its selector,
//! first to the primaries and, only when none of them is available, to the backups.
//!
//! Selectors never allocate or block when picking: they read the backends' atomic
//! counters and keep their own state in atomics (or, for smooth weighted round robin, in
//! one uncontended mutex, as NGINX keeps it in its worker).
//! What a request is hashed on ([`HashKey`]) is computed by the protocol layer; this module
//! only receives the resulting `u64`.

pub mod backend;
pub mod circuit;
pub mod consistent_hash;
pub mod hash;
pub mod key_hash;
pub mod least_connections;
pub mod least_load;
pub mod least_response_time;
pub mod pool;
pub mod power_of_two;
pub mod random;
pub mod round_robin;
#[cfg(test)]
mod tests;
pub mod turns;
pub mod weight_ranges;
pub mod weighted_round_robin;

use std::sync::Arc;

pub use backend::Backend;
pub use hash::HashKey;
pub use pool::Pool;

/// Chooses one backend among a tier's backends.
pub trait Selector: Send + Sync + std::fmt::Debug {
    /// Returns the index in `backends` of an available backend ([`Backend::is_available`]),
    /// or `None` when none is available. `key` is the request's hash key; selectors that
    /// do not hash ignore it. `backends` is always the slice the selector was built for.
    fn pick(&self, backends: &[Arc<Backend>], key: u64) -> Option<usize>;
}

pub use crate::config::Algorithm;

/// Builds an algorithm's selector: `Algorithm::build(backends)`.
pub trait BuildSelector {
    /// Builds this algorithm's selector for the given backends.
    fn build(self, backends: &[Arc<Backend>]) -> Box<dyn Selector>;
}

impl BuildSelector for Algorithm {
    fn build(self, backends: &[Arc<Backend>]) -> Box<dyn Selector> {
        match self {
            Algorithm::Random => Box::new(random::Random::new(backends)),
            Algorithm::PowerOfTwo => Box::new(power_of_two::PowerOfTwo::new()),
            Algorithm::RoundRobin => Box::new(round_robin::RoundRobin::new()),
            Algorithm::WeightedRoundRobin => {
                Box::new(weighted_round_robin::WeightedRoundRobin::new(backends))
            }
            Algorithm::LeastConnections => Box::new(least_connections::LeastConnections::new()),
            Algorithm::LeastResponseTime => Box::new(least_response_time::LeastResponseTime::new()),
            Algorithm::Hash => Box::new(key_hash::KeyHash::new(backends)),
            Algorithm::ConsistentHash => Box::new(consistent_hash::ConsistentHash::new(backends)),
            Algorithm::LeastLoad => Box::new(least_load::LeastLoad::new()),
        }
    }
}
