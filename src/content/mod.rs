//! Content duties: what Fulcrum does to response bodies themselves, as opposed to where
//! requests go. Today: compression ([`coding`] negotiates a content coding from the
//! client's `Accept-Encoding`, [`encoder`] streams a body through it). The decision of
//! whether a response is compressed is a pipeline phase (`pipeline::compress`); the
//! engines only feed bytes through the encoder it hands them.

pub mod coding;
pub mod encoder;
pub mod files;
mod gzip;
