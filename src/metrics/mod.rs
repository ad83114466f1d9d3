//! What Fulcrum counts, and how it is shown to Prometheus.
//!
//! Counting happens on the request path, in the pipeline's last phase
//! (`pipeline::log`), as relaxed atomic adds into [`Stats`] values owned by the
//! runtime: one per listener, route, pool and backend. They are reached through the
//! `Arc`s a request already holds, so nothing is looked up, locked or allocated per
//! request. A reload carries them over by name (the same backend in the same pool keeps
//! its very `Backend`; listeners, routes and pools hand their `Stats` to the new
//! snapshot), so counters never go back to zero while the process runs.
//!
//! Exposition ([`expose`]) walks the live snapshot at scrape time and writes the
//! Prometheus text format (0.0.4) with the `prometheus-client` crate's encoder.

mod connections;
mod content;
pub mod counters;
pub mod events;
pub mod expose;
mod limits;

pub use content::compressed;
pub use counters::{CLASSES, Histogram, Stats};
