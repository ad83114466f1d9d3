//! The per-connection request loop of the HTTP/1.1 engine: read and validate a head,
//! run the pipeline's route phase on it, then forward (see `exchange`) or answer, and
//! wait for the next request on the same connection.
//!
//! Per request on a kept-alive connection the fast path is one read from the client, one
//! write to the backend, one read from the backend and one write to the client, with no
//! allocation: buffers come from the worker's pools while a request is in flight and go
//! back after it, and requests that follow each other within [`WARM`] (a burst) are
//! served by one boxed state. Between two requests the connection checks whether a
//! reload happened and, if so, serves the next request with the new config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

mod head;
mod to_h2;

use super::buffers::Side;
use super::parked::Parked;
use super::request::{BodyFraming, RequestHead};
use super::upstream::Upstream;
use crate::balance::Backend;
use crate::pipeline::admit::{Admission, Verified};
use crate::pipeline::error::{self, Error, NO_ROUTE};
use crate::pipeline::reply::Reply;
use crate::pipeline::upstream::{Admitted, Attempts, Trail};
use crate::pipeline::{self, Decision};
use crate::runtime::{Connection, Frontend, Pool};
use crate::tls::Stream;

pub(super) const READ_CHUNK: usize = 64 * 1024;

/// How long, once a graceful stop begins, a kept-alive connection waiting for its next
/// request may still send it before it is closed.
const STOP_LINGER: Duration = Duration::from_secs(1);

/// How long a kept-alive connection stays ready to serve after a response, waiting for
/// the next request (its buffers are back in the worker's pools already). Requests that
/// follow each other closely are served by one boxed state, allocated once; a connection
/// quiet for longer parks (see `parked`) and frees it.
const WARM: Duration = Duration::from_millis(10);

/// One client connection while it serves requests, and the buffers it reuses for them.
pub(super) struct Conn {
    pub(super) client: Stream,
    pub(super) peer: SocketAddr,
    pub(super) live: Connection,
    pub(super) frontend: Arc<Frontend>,
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
    /// The pool and backend of the current (or last) try.
    pub(super) pool: Option<Arc<Pool>>,
    pub(super) backend: Option<Arc<Backend>>,
    pub(super) route: Option<usize>,
    /// Retries made for the current request.
    pub(super) retries: u32,
    /// Its timings and retry reasons, for the log.
    pub(super) trail: Trail,
    /// Its bytes from the client and to it.
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// The client sent the HTTP/2 preface: serve it as HTTP/2.
    h2_preface: bool,
    /// The current request is HTTP/1.0.
    http10: bool,
    /// The current request's client, when a trusted proxy in front named it.
    real_ip: Option<std::net::IpAddr>,
    /// On a cache miss, the response being kept to be stored (see `cached`).
    pub(super) keeping: Option<Box<super::cached::Keeping>>,
}

/// Serves one client connection until it closes, times out or errs.
///
/// The connection alternates between two states: parked (waiting for bytes, holding
/// only the socket, see `parked`) and serving (a burst of requests that follow each
/// other within [`WARM`], with its buffers and state boxed on the heap).
///
/// Not an `async fn`: the future keeps its arguments in place instead of a copy of
/// them, which is all an idle connection costs besides its socket.
pub fn serve(
    client: Stream,
    peer: SocketAddr,
    live: Connection,
    frontend: Arc<Frontend>,
) -> impl Future<Output = ()> + Send {
    let mut parked = Parked {
        client,
        peer,
        live,
        frontend,
    };
    async move {
        let mut first = true;
        loop {
            let timeouts = parked.frontend.timeouts;
            // After a request, the connection already waited `WARM` before parking.
            let limit = if first {
                timeouts.request_header
            } else {
                timeouts.idle.saturating_sub(WARM)
            };
            if !parked.readable(limit).await {
                return;
            }
            match Box::pin(burst(parked, first)).await {
                Some(again) => parked = again,
                None => return,
            }
            first = false;
        }
    }
}

/// Serves requests while they keep coming. `Some`: the connection went quiet and parks
/// (its buffers are back in the worker's pools); `None`: it is closed, or was served
/// as HTTP/2 to its end.
async fn burst(parked: Parked, first: bool) -> Option<Parked> {
    let mut conn = Conn {
        client: parked.client,
        peer: parked.peer,
        live: parked.live,
        frontend: parked.frontend,
        cbuf: BytesMut::new(),
        ubuf: BytesMut::new(),
        out: Vec::new(),
        rhead: Vec::new(),
        method: String::new(),
        target: String::new(),
        status: 0,
        pool: None,
        backend: None,
        route: None,
        retries: 0,
        trail: Trail::default(),
        bytes_in: 0,
        bytes_out: 0,
        h2_preface: false,
        http10: false,
        real_ip: None,
        keeping: None,
    };
    let quiet = conn.run(first).await;
    conn.release_buffers();
    if conn.h2_preface {
        let tls = conn.client.tls_owned();
        // The whole buffer goes with the bytes (a split would leave its allocation
        // held by `conn` for as long as the HTTP/2 connection lasts).
        let read = std::mem::take(&mut conn.cbuf).freeze();
        let h2 = super::http2::serve_h2(
            conn.client,
            read,
            conn.peer,
            tls,
            Arc::clone(conn.live.live()),
            conn.frontend,
        );
        let live = conn.live;
        // A task of its own: this one's state (sized for an HTTP/1.1 exchange) is not
        // kept for as long as the HTTP/2 connection lasts.
        tokio::spawn(async move {
            h2.await;
            // Counted until HTTP/2 is done with it.
            drop(live);
        });
        return None;
    }
    quiet.then_some(Parked {
        client: conn.client,
        peer: conn.peer,
        live: conn.live,
        frontend: conn.frontend,
    })
}

/// What the connection does after a request.
enum Next {
    /// Wait for the next request.
    Continue,
    /// No request came within [`WARM`]: park.
    Quiet,
    /// Close the connection (after the response, politely).
    Close,
    /// Stop at once (the client left, or the handover to HTTP/2).
    Done,
    /// Send this error, then close.
    Fail(Error),
}

/// What reading the next request head gave: returned once per request and taken apart
/// at once, so the size of its large variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Read {
    /// A request, where it goes, and its admission (places held under limits).
    Request(RequestHead, Decision, Admission),
    /// No request came within [`WARM`] (nothing was read).
    Quiet,
    /// The client left, stayed silent too long, or is handed over to HTTP/2.
    Closed,
}

impl Conn {
    /// Serves requests until the connection closes (`false`) or goes quiet (`true`).
    async fn run(&mut self, mut first: bool) -> bool {
        loop {
            // A reload since the last request: this one runs on the new config.
            if let Some(frontend) = self.live.refresh(&self.frontend) {
                self.frontend = frontend;
            }
            match self.serve_one(first).await {
                Next::Continue => {
                    // Buffers are held only while bytes are in flight.
                    self.release_buffers();
                    first = false;
                }
                Next::Quiet => return true,
                Next::Close => {
                    let _ = self.client.shutdown().await;
                    return false;
                }
                Next::Done => return false,
                // Boxed: a rare path.
                Next::Fail(e) => {
                    Box::pin(self.fail(e)).await;
                    return false;
                }
            }
        }
    }

    /// Reads, routes and serves one request.
    async fn serve_one(&mut self, first: bool) -> Next {
        let (head, mut decision, mut admitted) = match self.read_head(first).await {
            Ok(Read::Request(head, decision, admitted)) => (head, decision, admitted),
            Ok(Read::Quiet) => return Next::Quiet,
            Ok(Read::Closed) => return Next::Done,
            Err(e) => {
                self.refused(&e);
                return Next::Fail(e);
            }
        };
        self.begin(decision.route(), head.head_len as u64);
        let started = Instant::now();
        // Credentials the cache did not know are verified off the worker thread, or the
        // route's auth service is asked. Boxed: a rarer path.
        if admitted.must_verify() {
            match Box::pin(admitted.verified(&decision)).await {
                Verified::Pass(headers) => self.add_headers(&headers),
                Verified::Refused(refused) => decision = refused,
            }
        }
        if let Some(lookup) = pipeline::cache_lookup(&mut decision) {
            // Boxed: only requests of routes with a cache wait here.
            Box::pin(lookup).await;
        }
        self.http10 = head.http10;
        let result = match decision {
            Decision::Forward(mut fwd) => {
                let outcome = fwd.cache_outcome(&self.frontend);
                let fill = fwd.fill.take();
                self.pool = Some(Arc::clone(&fwd.pool));
                if let Some(wait) = admitted.delay {
                    // Boxed: a rare path.
                    Box::pin(tokio::time::sleep(wait)).await;
                }
                let result = if fwd.pool.http_version == crate::config::HttpVersion::Http2 {
                    // Boxed: a rarer path, whose state would make every request's larger.
                    Box::pin(self.exchange_h2(head, &fwd, fill)).await
                } else {
                    self.exchange(head, &fwd, fill).await
                };
                self.trail.cache = self.trail.cache.or(outcome);
                result
            }
            other => self.answer(head, other).await,
        };
        // A response kept for the cache but not finished is not stored.
        self.keeping = None;
        if let Err(e) = &result
            && !e.is_silent()
        {
            self.status = e.status;
        }
        self.log(started);
        // Its places under concurrency limits are given back.
        drop(admitted);
        match result {
            // Even when stopping: the response promised to keep the connection, so the
            // next request is read (and answered with `Connection: close`).
            Ok(true) => Next::Continue,
            Ok(false) => Next::Close,
            Err(e) if e.is_silent() => Next::Done,
            Err(e) => Next::Fail(e),
        }
    }

    /// Gives the buffers back to the worker's pool if nothing is in them (no pipelined
    /// request waiting).
    pub(super) fn release_buffers(&mut self) {
        if self.cbuf.is_empty() && self.cbuf.capacity() > 0 {
            super::buffers::give_bytes(Side::Client, std::mem::take(&mut self.cbuf));
        }
        if self.ubuf.is_empty() && self.ubuf.capacity() > 0 {
            super::buffers::give_bytes(Side::Backend, std::mem::take(&mut self.ubuf));
        }
        if self.out.capacity() > 0 {
            super::buffers::give_vec(std::mem::take(&mut self.out));
        }
        if self.rhead.capacity() > 0 {
            super::buffers::give_vec(std::mem::take(&mut self.rhead));
        }
    }

    /// Sets `headers` (from a route's auth service) in the backend head in `out` (which
    /// ends with the blank line): the client's own lines of those names are removed,
    /// then the service's values added.
    pub(super) fn add_headers(
        &mut self,
        headers: &[(http::HeaderName, Option<http::HeaderValue>)],
    ) {
        if headers.is_empty() || !self.out.ends_with(b"\r\n\r\n") {
            return;
        }
        for (name, _) in headers {
            crate::headers::remove_lines(&mut self.out, name.as_str().as_bytes());
        }
        self.out.truncate(self.out.len() - 2);
        for (name, value) in headers {
            if let Some(value) = value {
                self.out.extend_from_slice(name.as_str().as_bytes());
                self.out.extend_from_slice(b": ");
                self.out.extend_from_slice(value.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Answers a request that routing does not forward: a redirect, a route's fixed
    /// response, or 404. The connection stays open unless the request has a body (which
    /// is not read) or the client asked to close.
    async fn answer(&mut self, head: RequestHead, mut decision: Decision) -> Result<bool, Error> {
        self.cbuf.advance(head.head_len);
        let keep = head.keep_alive
            && head.body == BodyFraming::Empty
            && !head.http10
            && !self.live.is_stopping();
        let frontend = Arc::clone(&self.frontend);
        if let Decision::Denied { denied, .. } = &decision {
            // The route's auth service said no: its answer is the client's.
            self.trail.refused = Some(("denied", "auth"));
            self.status = denied.status;
            self.out.clear();
            denied.write_h1(&mut self.out, head.is_head, !keep);
            let out = std::mem::take(&mut self.out);
            let written = self.write_client(&out).await;
            self.out = out;
            written?;
            return Ok(keep);
        }
        if let Decision::Files {
            answer: Some(answer),
            ..
        } = &decision
        {
            self.send_file(answer, head.is_head, keep).await?;
            return Ok(keep);
        }
        if let Decision::Cached { hit, .. } = &mut decision {
            self.trail.cache = Some(if hit.stale { "stale" } else { "hit" });
            if let Some(refresh) = hit.refresh.take() {
                self.refresh(refresh);
            }
            self.send_cached(hit, head.is_head, keep).await?;
            return Ok(keep);
        }
        let mut reply = match &decision {
            Decision::Redirect {
                status, location, ..
            } => Reply::redirect(*status, location),
            Decision::Respond(route) => match frontend.routes.routes()[*route].fixed_response() {
                Some(f) => Reply::fixed(f.status, &f.body, &f.content_type),
                None => Reply::error(&NO_ROUTE, None),
            },
            Decision::Refuse { route, refusal } => {
                self.trail.refused = Some(refusal.log_field());
                pipeline::admit::reply(&frontend, *route, *refusal)
            }
            _ => Reply::error(&NO_ROUTE, None),
        };
        reply.close = !keep;
        self.status = reply.status;
        self.out.clear();
        reply.write_h1(&mut self.out, head.is_head);
        let out = std::mem::take(&mut self.out);
        let written = self.write_client(&out).await;
        self.out = out;
        written?;
        Ok(keep)
    }

    /// Writes `bytes` to the client (counted as the request's bytes out).
    pub(super) async fn write_client(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.bytes_out += bytes.len() as u64;
        super::cached::keep(&mut self.keeping, bytes);
        write_timed(&mut self.client, bytes, self.frontend.timeouts.idle).await
    }

    /// Sends an error response, then closes gracefully so that the client reads it.
    async fn fail(&mut self, e: Error) {
        self.status = e.status;
        if e.status == 400 || e.status == 431 || e.status == 408 || e.status >= 500 {
            tracing::debug!(client = %self.peer, status = e.status, reason = e.reason, "request refused");
        }
        self.out.clear();
        let body = match &self.pool {
            Some(pool) if e.is_no_backend() => pool.unavailable_body.as_deref(),
            _ => None,
        };
        if e.reason == head::NOT_HTTP1 {
            self.out.extend_from_slice(super::http2::BAD_PREFACE_GOAWAY);
        } else {
            Reply::error(&e, body).write_h1(&mut self.out, false);
        }
        let out = std::mem::take(&mut self.out);
        if write_timed(&mut self.client, &out, Duration::from_secs(5))
            .await
            .is_ok()
        {
            let _ = self.client.shutdown().await;
            // Drain briefly so that closing with unread input does not reset the
            // connection before the client has read the response.
            // On the heap: this rare path must not make every connection's task larger.
            let mut sink = vec![0u8; 4096];
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

    /// Counts and logs a request refused before it was routed (a bad or too large head,
    /// a head that did not arrive in time).
    #[cold]
    fn refused(&mut self, e: &Error) {
        if e.is_silent() {
            return;
        }
        self.begin(None, self.cbuf.len() as u64);
        self.status = e.status;
        self.method.clear();
        self.target.clear();
        self.log(Instant::now());
    }

    /// A request begins (routed to `route`, `bytes_in` of it read): it counts as in
    /// flight, and what the last one left for the log is cleared.
    fn begin(&mut self, route: Option<usize>, bytes_in: u64) {
        self.frontend.begin(route);
        self.route = route;
        self.pool = None;
        self.status = 0;
        self.backend = None;
        self.retries = 0;
        self.trail.clear();
        self.bytes_in = bytes_in;
        self.bytes_out = 0;
    }

    fn log(&self, started: Instant) {
        pipeline::log::request(&pipeline::log::Request {
            frontend: &self.frontend,
            client: self
                .real_ip
                .map_or(self.peer, |ip| SocketAddr::new(ip, self.peer.port())),
            method: &self.method,
            path: &self.target,
            route: self.route,
            pool: self.pool.as_deref(),
            backend: self.backend.as_deref(),
            http: if self.http10 { "1.0" } else { "1.1" },
            tls: self.client.tls_info(),
            status: self.status,
            retries: self.retries,
            grpc_status: None,
            bytes: (self.bytes_in, self.bytes_out),
            trail: &self.trail,
            started,
        });
    }
}

/// Polls `f` once: its output if it is ready now, else `None` (its waker is registered,
/// so it can be awaited on).
pub(super) async fn poll_once<F: Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Reads more of a request head into `cbuf`. A connection holding no buffer first waits
/// for its socket to be readable, then takes one from the pool, so that an idle
/// connection costs no buffer (TLS connections take one at once: rustls may already hold
/// decrypted bytes).
async fn read_more(client: &mut Stream, cbuf: &mut BytesMut) -> std::io::Result<usize> {
    if cbuf.capacity() == 0 {
        if matches!(client, Stream::Tcp(tcp) if tcp.is_fresh()) {
            // A new connection's request is usually there already: read it without
            // registering the connection (see `LazyTcp`). If it is not, the read
            // registers it and the wait below goes on without the buffer.
            let mut buf = super::buffers::take_bytes(Side::Client);
            let read = poll_once(std::pin::pin!(client.read_buf(&mut buf))).await;
            match read {
                Some(read) => {
                    *cbuf = buf;
                    return read;
                }
                None => super::buffers::give_bytes(Side::Client, buf),
            }
        }
        if let Stream::Tcp(tcp) = client {
            let tcp = tcp.polled()?;
            std::future::poll_fn(|cx| tcp.poll_read_ready(cx)).await?;
        }
        *cbuf = super::buffers::take_bytes(Side::Client);
    }
    cbuf.reserve(1024);
    client.read_buf(cbuf).await
}

/// A failed write to the backend while the request body streams: nothing has been sent
/// to the client yet, so it gets a 502.
pub(super) fn backend_broke(_: Error) -> Error {
    Error::bad_gateway("the backend closed the connection during the request body")
}

/// Opens a new connection to the backend `admitted` for a try (counted in the
/// metrics); the error is what the client gets if the request is not retried elsewhere.
pub(super) async fn connect(
    attempts: &mut Attempts<'_>,
    admitted: &Admitted,
    limit: Duration,
) -> Result<Upstream, Error> {
    let backend = &admitted.backend;
    let started = Instant::now();
    let stream = crate::connect::connect(backend.addr, limit, attempts.pool().tls.as_ref())
        .await
        .map_err(|e| error::cannot_connect(backend, &e))?;
    attempts.connected(admitted, started.elapsed());
    Ok(Upstream {
        stream,
        reused: false,
    })
}

/// Writes all of `bytes` within `limit`. The socket usually takes them at once: the
/// timer is armed (and the clock read) only when it does not.
pub(super) async fn write_timed<S: AsyncWrite + Unpin>(
    to: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), Error> {
    match within(limit, to.write_all(bytes)).await {
        Some(Ok(())) => Ok(()),
        _ => Err(Error::client_gone()),
    }
}

/// `f`'s output, or `None` if it takes longer than `limit`. What is ready at once (a
/// write the socket takes, bytes already there) costs no timer.
pub(super) async fn within<F: Future>(limit: Duration, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match poll_once(f.as_mut()).await {
        Some(out) => Some(out),
        None => timeout(limit, f).await.ok(),
    }
}
