//! TLS, on rustls with ring's cryptography: termination on listeners (`server`, with
//! certificates chosen by SNI and reloaded when their files change), encryption to
//! backends (`client`), PEM loading with clear errors (`certs`), and the connection type
//! that is either plain TCP or TLS (`stream`).

pub mod certs;
pub mod client;
pub mod server;
pub mod stream;

pub use stream::Stream;
