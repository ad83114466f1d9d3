//! Content duties: what Fulcrum does to response bodies themselves, as opposed to where
//! requests go:
//! - compression: [`coding`] negotiates a content coding from the client's
//!   `Accept-Encoding`, [`encoder`] streams a body through it. Whether a response is
//!   compressed is a pipeline phase (`pipeline::compress`); the engines only feed bytes
//!   through the encoder it hands them;
//! - static files ([`files`]): a route that answers from a directory;
//! - the response cache ([`cache`]): RFC 9111's rules so far, the store and its
//!   pipeline phase to come.

pub mod cache;
pub mod coding;
pub mod decoder;
pub mod encoder;
pub mod files;
mod gzip;
