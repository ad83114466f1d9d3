//! A request's access log line and request metrics, written when its response has
//! ended: by Fulcrum's HTTP/2 server when the stream closes (the bytes sent counted, the
//! gRPC status taken from the trailers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::header::HeaderMap;

use crate::balance::Backend;
use crate::pipeline;
use crate::pipeline::upstream::Trail;
use crate::runtime::{Frontend, Pool};
use crate::tls::TlsInfo;

/// Everything the line says; written once, when dropped.
pub struct Finish {
    pub frontend: Arc<Frontend>,
    pub client: SocketAddr,
    /// Method and target, kept only when the access log is on.
    pub logged: Option<(hyper::Method, String)>,
    pub route: Option<usize>,
    pub pool: Option<Arc<Pool>>,
    pub backend: Option<Arc<Backend>>,
    pub http: &'static str,
    pub tls: Option<TlsInfo>,
    pub status: u16,
    pub retries: u32,
    pub bytes_in: u64,
    /// Body bytes sent to the client so far.
    pub bytes_out: u64,
    pub trail: Trail,
    /// The `grpc-status` of the response's head or trailers.
    pub grpc_status: Option<hyper::header::HeaderValue>,
    pub started: Instant,
}

impl Finish {
    /// Takes the `grpc-status` of a head or of the trailers, if there is one.
    pub fn grpc_status_from(&mut self, fields: &HeaderMap) {
        if let Some(v) = fields.get("grpc-status") {
            self.grpc_status = Some(v.clone());
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        let (method, path) = self
            .logged
            .as_ref()
            .map_or(("", ""), |(m, p)| (m.as_str(), p.as_str()));
        pipeline::log::request(&pipeline::log::Request {
            frontend: &self.frontend,
            client: self.client,
            method,
            path,
            route: self.route,
            pool: self.pool.as_deref(),
            backend: self.backend.as_deref(),
            http: self.http,
            tls: self.tls.as_ref().map(|t| (t.version, t.sni.as_deref())),
            status: self.status,
            retries: self.retries,
            bytes: (self.bytes_in, self.bytes_out),
            trail: &self.trail,
            grpc_status: self.grpc_status.as_ref().and_then(|v| v.to_str().ok()),
            started: self.started,
        });
    }
}
