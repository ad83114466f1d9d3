//! Layer 4: TCP connections relayed byte for byte to a backend, balanced by the same
//! pools, algorithms, health checks, circuit breakers and queues as HTTP.

pub mod tcp;
