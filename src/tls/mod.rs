//! TLS, on rustls with ring's cryptography: termination on listeners (`server`, with
//! certificates chosen by SNI and reloaded when their files change), encryption to
//! backends (`client`), and the connection type
//! that is either plain TCP or TLS (`stream`). PEM files are read by `config::certs`, so
//! that `fulcrum check` reports their problems.

pub use crate::config::certs;
pub mod client;
pub mod server;
pub mod stream;

pub use stream::{Stream, TlsInfo, ack_promptly};
