//! Fulcrum: a layer 7 / layer 4 load balancer.
//!
//! The crate is cut by concern: `config` parses and validates the TOML file, `balance`
//! holds the selection algorithms and each backend's live state (including its circuit
//! breaker), `health` runs the active checks, `l7` is the HTTP proxy (our HTTP/1.1 engine
//! with retries, the overload queue and WebSocket tunnels; HTTP/2 and gRPC in `l7::http2`;
//! `splice` moves large bodies without copying them), `l4` relays TCP and UDP, `tls`
//! terminates and originates TLS,
//! `listener` accepts connections and runs the worker threads, `cli` and `demo` are the
//! command line.

pub mod accesslog;
pub mod admin;
pub mod balance;
pub mod cli;
pub mod config;
pub mod connect;
pub mod content;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod digits;
pub mod discovery;
pub mod etcd;
pub mod explain;
pub mod fuzzing;
pub mod headers;
pub mod health;
pub mod json_client;
pub mod l4;
pub mod l7;
pub mod lazy_tcp;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod relay;
pub mod routing;
pub mod runtime;
pub mod shared;
pub mod splice;
pub mod tls;
