//! The HTTP/1.1 reverse proxy (layer 7).
//!
//! One task per client connection runs [`proxy::serve`]: read a request head, validate
//! it, pick a backend from the listener's pool, forward the request and stream the
//! response back, then wait for the next request on the same connection.
//! `exchange` forwards one request, trying another backend of the pool when a try fails
//! in a way that is safe to repeat, within the pool's `retry` policy and budget.
//! Parsing (`request`, `response`, `chunked`) is synchronous and separate from I/O
//! (`proxy`, `exchange`, `upstream`), so the rules can be tested without sockets.

pub mod chunked;
pub mod errors;
mod exchange;
pub mod headers;
pub mod http2;
pub mod proxy;
pub mod queue;
pub mod request;
pub mod response;
pub mod retry;
pub mod upstream;

pub use proxy::{Site, serve};
