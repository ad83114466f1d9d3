//! Layer 4: TCP connections relayed byte for byte, and UDP flows relayed datagram by
//! datagram, to backends balanced by the same pools, algorithms and health checks as HTTP.

pub mod proxy_protocol;
pub mod sni;
pub mod tcp;
pub mod udp;
