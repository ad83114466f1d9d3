//! The per-connection request loop: read, validate, pick, forward, stream back.
//!
//! Per request on a kept-alive connection the fast path is one read from the client, one
//! write to the backend, one read from the backend and one write to the client; the
//! buffers live as long as the connection and are reused. Forwarding one request to the
//! backends, retries included, is in [`super::exchange`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::chunked::ChunkedDecoder;
use super::errors::{self, ProxyError};
use super::request::{self, Forwarding, HeadError, RequestHead};
use super::response::ResponseFraming;
use super::retry::RetryPolicy;
use super::upstream::{self, Upstream};
use crate::balance::{Backend, Pool};
use crate::config::{Limits, Timeouts};
use crate::tls::Stream;
use crate::tls::client::BackendConnector;

pub(super) const READ_CHUNK: usize = 64 * 1024;

/// Everything a listener's connections share: where to send traffic and the limits.
#[derive(Debug)]
pub struct Site {
    /// The listener's name, for logs.
    pub name: Box<str>,
    /// What the listener's clients speak.
    pub protocol: crate::config::Protocol,
    /// Connections start with a PROXY protocol header naming the real client.
    pub accept_proxy: bool,
    /// Send a PROXY protocol header to backends (TCP listeners).
    pub send_proxy: Option<crate::l4::proxy_protocol::Version>,
    /// TLS termination (HTTPS listeners).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS to the pool's backends.
    pub backend_tls: Option<BackendConnector>,
    /// The HTTP version spoken to the pool's backends.
    pub http_version: crate::config::HttpVersion,
    /// Relay with splice(2) (TCP listeners).
    pub splice: bool,
    /// TLS passthrough (TCP listeners): server-name patterns and where they go instead.
    pub sni_routes: Vec<(Box<str>, Arc<Site>)>,
    /// The pool requests go to.
    pub pool: Arc<Pool>,
    /// The pool's retry settings and budget (shared by every listener using the pool).
    pub retry: Arc<RetryPolicy>,
    /// Body of the 503 sent when the pool has no available backend, if not the default.
    pub unavailable_body: Option<Arc<str>>,
    /// The pool's queue for requests waiting for a backend with room.
    pub queue: Arc<super::queue::Queue>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// Log every request.
    pub access_log: bool,
}

/// How an exchange ended when it did not complete.
pub(super) enum Failure {
    /// Nothing was sent to the client yet: answer with this error, then close.
    Respond(ProxyError),
    /// The client is gone or the response was cut: just close.
    Abort,
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Self {
        Failure::Respond(e)
    }
}

/// One client connection and the buffers it reuses for every request.
pub(super) struct Conn {
    pub(super) client: Stream,
    pub(super) peer: SocketAddr,
    pub(super) site: Arc<Site>,
    /// Bytes read from the client, not yet forwarded.
    pub(super) cbuf: BytesMut,
    /// Bytes read from the backend, not yet forwarded.
    pub(super) ubuf: BytesMut,
    /// What is written next: the request for the backend (head and the body bytes that
    /// came with it, kept for retries), then the response head for the client.
    pub(super) out: Vec<u8>,
    /// The client head of the backend's response, written while the request stays in
    /// `out` (swapped into `out` once the response is kept).
    pub(super) rhead: Vec<u8>,
    method: String,
    target: String,
    pub(super) status: u16,
    /// The backend of the current (or last) try.
    pub(super) backend: Option<Arc<Backend>>,
    /// Retries made for the current request.
    pub(super) retries: u32,
    /// The client sent the HTTP/2 preface: serve it as HTTP/2.
    h2_preface: bool,
}

/// Serves one client connection until it closes, times out or errs.
pub async fn serve(client: Stream, peer: SocketAddr, site: Arc<Site>) {
    let mut conn = Conn {
        client,
        peer,
        site,
        cbuf: BytesMut::with_capacity(8 * 1024),
        ubuf: BytesMut::with_capacity(8 * 1024),
        out: Vec::with_capacity(4 * 1024),
        rhead: Vec::new(),
        method: String::new(),
        target: String::new(),
        status: 0,
        backend: None,
        retries: 0,
        h2_preface: false,
    };
    conn.run().await;
    if conn.h2_preface {
        let tls = conn.client.is_tls();
        let read = conn.cbuf.split().freeze();
        Box::pin(super::http2::serve_h2(
            conn.client,
            read,
            conn.peer,
            tls,
            conn.site,
        ))
        .await;
    }
}

impl Conn {
    async fn run(&mut self) {
        let mut first = true;
        loop {
            let head = match self.read_head(first).await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(e) => return self.fail(e).await,
            };
            first = false;
            let started = Instant::now();
            self.status = 0;
            self.backend = None;
            self.retries = 0;
            let result = self.exchange(head).await;
            if let Err(Failure::Respond(e)) = &result {
                self.status = e.status;
                if let (502 | 504, Some(backend)) = (e.status, &self.backend) {
                    // A backend that fails counts as at least as slow as the connect
                    // timeout, so that response-time balancing moves away from it.
                    backend.record_latency(started.elapsed().max(self.site.timeouts.connect));
                }
            }
            self.log(started);
            match result {
                Ok(true) => continue,
                Ok(false) => {
                    let _ = self.client.shutdown().await;
                    return;
                }
                Err(Failure::Abort) => return,
                Err(Failure::Respond(e)) => return self.fail(e).await,
            }
        }
    }

    /// Reads until a complete request head is parsed. `Ok(None)`: the client left (or
    /// stayed idle too long) between requests.
    async fn read_head(&mut self, first: bool) -> Result<Option<RequestHead>, ProxyError> {
        let limits = self.site.limits;
        let timeouts = self.site.timeouts;
        let mut deadline = None;
        loop {
            let preface = &super::http2::PREFACE;
            let n = self.cbuf.len().min(preface.len());
            if first && n > 0 && self.cbuf[..n] == preface[..n] {
                // HTTP/2 with prior knowledge: hand the connection over once the whole
                // preface is here.
                if n == preface.len() {
                    self.h2_preface = true;
                    return Ok(None);
                }
            } else if !self.cbuf.is_empty() {
                let fwd = Forwarding {
                    client_ip: self.peer.ip(),
                    proto: if self.client.is_tls() {
                        "https"
                    } else {
                        "http"
                    },
                    hash_key: self
                        .site
                        .pool
                        .uses_key()
                        .then_some(&self.site.pool.hash_key),
                    max_headers: limits.max_headers,
                };
                self.out.clear();
                match request::parse(
                    &self.cbuf,
                    &fwd,
                    &mut self.out,
                    &mut self.method,
                    &mut self.target,
                ) {
                    Ok(head) if head.head_len > limits.max_header_size => {
                        return Err(too_large());
                    }
                    Ok(head) => {
                        if head.missing_host {
                            self.add_host();
                        }
                        return Ok(Some(head));
                    }
                    Err(HeadError::Partial) if self.cbuf.len() > limits.max_header_size => {
                        return Err(too_large());
                    }
                    Err(HeadError::Partial) => {}
                    Err(HeadError::TooManyHeaders) => return Err(too_large()),
                    Err(HeadError::Bad(reason)) => return Err(ProxyError::bad_request(reason)),
                    Err(HeadError::NotImplemented(reason)) => {
                        return Err(ProxyError {
                            status: 501,
                            reason,
                        });
                    }
                    Err(HeadError::ExpectationFailed) => {
                        return Err(ProxyError {
                            status: 417,
                            reason: "only Expect: 100-continue is supported",
                        });
                    }
                    Err(HeadError::MethodNotAllowed) => {
                        return Err(ProxyError {
                            status: 405,
                            reason: "CONNECT is not supported",
                        });
                    }
                }
            }
            // Between requests the idle timeout applies; once a request has started,
            // the whole head must arrive within the request-header timeout.
            let wait = match deadline {
                Some(d) => d,
                None if self.cbuf.is_empty() && !first => Instant::now() + timeouts.idle,
                None => Instant::now() + timeouts.request_header,
            };
            self.cbuf.reserve(8 * 1024);
            let read = tokio::time::timeout_at(wait.into(), self.client.read_buf(&mut self.cbuf));
            match read.await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + timeouts.request_header);
                    }
                }
                Err(_) if self.cbuf.is_empty() => return Ok(None),
                Err(_) => {
                    return Err(ProxyError {
                        status: 408,
                        reason: "the request head did not arrive in time",
                    });
                }
            }
        }
    }

    /// Adds `Host: <the address the client connected to>` to the backend head in `out`
    /// (which ends with the blank line), for HTTP/1.0 requests that had none.
    fn add_host(&mut self) {
        use std::io::Write as _;
        let Ok(local) = self.client.tcp().local_addr() else {
            return;
        };
        self.out.truncate(self.out.len() - 2);
        let _ = write!(self.out, "Host: {local}\r\n\r\n");
    }

    /// Streams the rest of the request body from the client to the backend.
    pub(super) async fn stream_request_body(
        &mut self,
        to: &mut Stream,
        mut remaining: u64,
        mut decoder: Option<ChunkedDecoder>,
    ) -> Result<(), Failure> {
        let idle = self.site.timeouts.idle;
        loop {
            self.cbuf.reserve(READ_CHUNK);
            match timeout(idle, self.client.read_buf(&mut self.cbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(Failure::Abort),
                Err(_) => {
                    return Err(Failure::Respond(ProxyError {
                        status: 408,
                        reason: "the request body stalled",
                    }));
                }
            }
            let done = if let Some(d) = decoder.as_mut() {
                self.out.clear();
                let used = d
                    .feed(&self.cbuf, &mut self.out)
                    .map_err(|_| ProxyError::bad_request("invalid chunked body"))?;
                self.cbuf.advance(used);
                write_timed(to, &self.out, idle)
                    .await
                    .map_err(backend_broke)?;
                d.is_done()
            } else {
                let take = (self.cbuf.len() as u64).min(remaining) as usize;
                write_timed(to, &self.cbuf[..take], idle)
                    .await
                    .map_err(backend_broke)?;
                self.cbuf.advance(take);
                remaining -= take as u64;
                remaining == 0
            };
            if done {
                return Ok(());
            }
        }
    }

    /// Sends the response head in `out` with the body bytes already read, then streams
    /// the rest. Returns whether the body ended where its framing said.
    pub(super) async fn stream_response_body(
        &mut self,
        from: &mut Stream,
        framing: ResponseFraming,
        http10: bool,
    ) -> Result<bool, Failure> {
        let idle = self.site.timeouts.idle;
        let mut remaining = match framing {
            ResponseFraming::Length(n) => n,
            _ => u64::MAX,
        };
        let mut decoder =
            (framing == ResponseFraming::Chunked).then(|| ChunkedDecoder::new(!http10));
        let mut pending = std::mem::take(&mut self.out);
        let result = async {
            if framing == ResponseFraming::Empty {
                self.write_client(&pending).await?;
                return Ok(true);
            }
            loop {
                // Move what was read into `pending` (bounded by the framing), write it.
                if let Some(d) = decoder.as_mut() {
                    let used = d
                        .feed(&self.ubuf, &mut pending)
                        .map_err(|_| Failure::Abort)?;
                    self.ubuf.advance(used);
                } else {
                    let take = (self.ubuf.len() as u64).min(remaining) as usize;
                    if pending.is_empty() {
                        write_timed(&mut self.client, &self.ubuf[..take], idle).await?;
                    } else {
                        pending.extend_from_slice(&self.ubuf[..take]);
                    }
                    self.ubuf.advance(take);
                    if remaining != u64::MAX {
                        remaining -= take as u64;
                    }
                }
                if !pending.is_empty() {
                    self.write_client(&pending).await?;
                    pending.clear();
                }
                let done = match &decoder {
                    Some(d) => d.is_done(),
                    None => remaining == 0,
                };
                if done {
                    return Ok(true);
                }
                self.ubuf.reserve(READ_CHUNK);
                match timeout(idle, from.read_buf(&mut self.ubuf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(Ok(_)) if framing == ResponseFraming::UntilClose => return Ok(false),
                    _ => return Err(Failure::Abort),
                }
            }
        }
        .await;
        pending.clear();
        self.out = pending;
        result
    }

    /// After a 101 (WebSocket and other upgrades): sends the backend's head to the
    /// client, then relays bytes both ways until both sides close or the connection stays
    /// idle for `timeouts.idle`. The client connection ends with the tunnel.
    /// `head_len`: the length of the 101's head at the start of `ubuf` (copied in `rhead`).
    pub(super) async fn tunnel(
        &mut self,
        mut up: Upstream,
        head_len: usize,
    ) -> Result<bool, Failure> {
        let head = std::mem::take(&mut self.rhead);
        let written = self.write_client(&head).await;
        self.rhead = head;
        written?;
        // Bytes that came with the 101 belong to the new protocol.
        let early = self.ubuf.split_off(head_len);
        self.ubuf.clear();
        if !early.is_empty() {
            self.write_client(&early).await?;
        }
        if !self.cbuf.is_empty() {
            write_timed(&mut up.stream, &self.cbuf, self.site.timeouts.idle).await?;
            self.cbuf.clear();
        }
        let idle = self.site.timeouts.idle;
        match crate::l4::relay::relay(&mut self.client, &mut up.stream, idle).await {
            Ok((sent, received)) => {
                tracing::debug!(client = %self.peer, sent, received, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(client = %self.peer, error = %e, "upgraded connection ended"),
        }
        Err(Failure::Abort)
    }

    pub(super) async fn write_client(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        write_timed(&mut self.client, bytes, self.site.timeouts.idle).await
    }

    /// Sends an error response, then closes gracefully so that the client reads it.
    async fn fail(&mut self, e: ProxyError) {
        self.status = e.status;
        if e.status == 400 || e.status == 431 || e.status == 408 || e.status >= 500 {
            tracing::debug!(client = %self.peer, status = e.status, reason = e.reason, "request refused");
        }
        self.out.clear();
        match &self.site.unavailable_body {
            Some(body) if e == errors::NO_BACKEND => e.write_with_body(body, &mut self.out),
            _ => e.write(&mut self.out),
        }
        let out = std::mem::take(&mut self.out);
        if write_timed(&mut self.client, &out, Duration::from_secs(5))
            .await
            .is_ok()
        {
            let _ = self.client.shutdown().await;
            // Drain briefly so that closing with unread input does not reset the
            // connection before the client has read the response.
            let mut sink = [0u8; 4096];
            let drain = async {
                let mut total = 0;
                while let Ok(n) = self.client.read(&mut sink).await {
                    total += n;
                    if n == 0 || total > 1 << 20 {
                        break;
                    }
                }
            };
            let _ = timeout(Duration::from_secs(1), drain).await;
        }
    }

    fn log(&self, started: Instant) {
        if !self.site.access_log {
            return;
        }
        let backend = self.backend.as_deref().map_or("-", |b| &b.name);
        tracing::info!(
            target: "fulcrum::access",
            listener = %self.site.name,
            client = %self.peer,
            method = %self.method,
            path = %self.target,
            backend = %backend,
            status = self.status,
            retries = self.retries,
            ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        );
    }
}

fn too_large() -> ProxyError {
    ProxyError {
        status: 431,
        reason: "the request head is too large",
    }
}

/// A failed write to the backend while the request body streams: nothing has been sent
/// to the client yet, so it gets a 502.
fn backend_broke(_: Failure) -> Failure {
    Failure::Respond(ProxyError::bad_gateway(
        "the backend closed the connection during the request body",
    ))
}

/// Opens a new connection to `backend`; the error is what the client gets if the request
/// is not retried elsewhere.
pub(super) async fn connect(
    backend: &Backend,
    limit: Duration,
    tls: Option<&BackendConnector>,
) -> Result<Upstream, ProxyError> {
    upstream::connect(backend.addr, limit, tls)
        .await
        .map_err(|e| errors::cannot_connect(backend, &e))
}

async fn write_timed<S: AsyncWrite + Unpin>(
    to: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), Failure> {
    match timeout(limit, to.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Failure::Abort),
    }
}
