//! The response cache (RFC 9111, a shared cache): what may be stored and for how long
//! ([`freshness`]), read from `Cache-Control` ([`directives`]). The store, request
//! coalescing and the pipeline phase that serves hits build on these.

pub mod directives;
pub mod freshness;
pub mod key;
pub mod store;
