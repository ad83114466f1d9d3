//! The HTTP reverse proxy (layer 7): our HTTP/1.1 engine, and HTTP/2 on hyper.
//!
//! One task per client connection runs [`proxy::serve`]: read a request head, validate
//! it, run the pipeline's route phase, forward the request (`exchange`, with the
//! pipeline's upstream phase: pick, admit, retry) and stream the response back, then
//! wait for the next request on the same connection. Parsing (`request`, `response`,
//! `chunked`) is synchronous and separate from I/O (`proxy`, `exchange`, `upstream`), so
//! the rules can be tested without sockets. What happens to a request (routing, retries,
//! header rules, the log) is decided by `crate::pipeline`, shared with `http2`.

mod body;
mod buffers;
mod cached;
pub mod chunked;
mod encoded;
mod exchange;
mod files;
pub mod http2;
mod parked;
pub mod proxy;
pub mod request;
pub mod response;
pub mod upstream;

pub use proxy::serve;
