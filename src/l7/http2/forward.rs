//! One request of an HTTP/2 client: the pipeline's phases as on the HTTP/1.1 engine
//! (route, admission, credentials, static files, cache, the request's rewrites, the log),
//! then [`upstream`]: the tries of the pool's backends with the engine's retry rules
//! (see `tries`), the response's rules, and the cache's turn. The HTTP/1.1 engine's
//! requests to pools speaking HTTP/2 join at [`upstream`] (see `bridge`). The backend
//! stays "in flight" until the response body has been sent in full, as on the engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;

pub use super::client_body::ClientBody;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};

use super::activity::{Activity, Busy};
use super::finish::Finish;
use super::grpc;
use super::prepare::{self, Rewrites, View};
use super::tries::{Upstream, tries};
use super::upload::{Oversize, Upload, drain};
use crate::balance::Backend;
use crate::content::coding::Coding;
use crate::pipeline::error::{Error, NO_ROUTE};
use crate::pipeline::reply::Reply;
use crate::pipeline::upstream::{Attempts, Trail};
use crate::pipeline::{self, Decision};
use crate::runtime::{Frontend, Live, Pool};
use crate::tls::TlsInfo;

/// A response body: the backend's, or Fulcrum's own.
pub type Body = BoxBody<Bytes, BodyError>;

/// A body's error: the backend's or the client's stream broke off.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// What the access log says about a request.
#[derive(Default)]
pub(super) struct Trace {
    /// A request stream to keep until the answer is sent (see `upload`).
    parked: Option<ClientBody>,
    route: Option<usize>,
    pool: Option<Arc<Pool>>,
    pub(super) backend: Option<Arc<Backend>>,
    pub(super) retries: u32,
    pub(super) trail: Trail,
}

/// The response to a request, and its access log line to be written when the response
/// has ended (when the [`Finish`] is dropped). Never fails: errors become responses.
pub(super) async fn respond(
    req: Request<ClientBody>,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    live: Arc<Live>,
    frontend: Arc<Frontend>,
    conn: Arc<Activity>,
) -> (Response<Body>, Finish) {
    // A reload since the connection started: this request runs on the new config.
    let frontend = live.refresh(&frontend).unwrap_or(frontend);
    let busy = Busy::new(conn);
    let started = Instant::now();
    let grpc = grpc::is_grpc(req.headers());
    let logged = frontend.access_log.then(|| {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        (req.method().clone(), target.to_owned())
    });
    let version = match req.version() {
        hyper::Version::HTTP_2 => "2",
        hyper::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    if version == "2" {
        crate::metrics::counters::inc(&frontend.stats.connections.h2_streams);
    }
    let bytes_in = req.body().size_hint().exact().unwrap_or(0);
    // Behind trusted proxies, the client is who their header names.
    let client = match &frontend.config.real_ip {
        Some(real) => {
            let values = req.headers().get_all(real.header.as_str()).iter();
            SocketAddr::new(
                real.client(peer.ip(), values.map(|v| v.as_bytes())),
                peer.port(),
            )
        }
        None => peer,
    };
    let mut trace = Trace::default();
    let to = (peer, client.ip());
    // Boxed: the request's whole state (its tries, the backend exchange) is large, and
    // hyper moves the stream's future several times (into its task, and at each poll of
    // the task's stage); moving a pointer instead saved 3,800 instructions of memcpy per
    // request (bench/instructions, h2).
    let handled = Box::pin(handle(req, to, tls.is_some(), &frontend, &mut trace, busy));
    let response = match handled.await {
        Ok(response) => response,
        Err(e) => error_response(e, grpc, trace.pool.as_deref()),
    };
    if let Some(parked) = trace.parked.take() {
        tokio::spawn(drain(parked));
    }
    let mut finish = Finish {
        frontend,
        client,
        logged,
        route: trace.route,
        pool: trace.pool,
        backend: trace.backend,
        http: version,
        tls,
        status: response.status().as_u16(),
        retries: trace.retries,
        // The request body's declared length (it streams).
        bytes_in,
        bytes_out: 0,
        trail: trace.trail,
        grpc_status: None,
        started,
    };
    finish.grpc_status_from(response.headers());
    (response, finish)
}

/// `(peer, client)`: the connection's peer, and the client (the one a trusted proxy named).
async fn handle(
    mut req: Request<ClientBody>,
    (peer, client): (SocketAddr, std::net::IpAddr),
    tls: bool,
    frontend: &Arc<Frontend>,
    trace: &mut Trace,
    busy: Busy,
) -> Result<Response<Body>, Error> {
    let refused = if req.method() == hyper::Method::CONNECT {
        Err(Error::client(405, "CONNECT is not supported"))
    } else {
        prepare::check_host(&req)
    };
    if let Err(e) = refused {
        frontend.begin(None);
        park(trace, req);
        return Err(e);
    }
    let view = View::new(&req, client);
    let decision = pipeline::route(frontend, &view, tls);
    let (mut decision, mut admitted) =
        pipeline::admit::admit(frontend, decision, &view, declared_length(&req), tls);
    pipeline::files(frontend, &mut decision, &view);
    pipeline::cache(frontend, &mut decision, &view);
    // Credentials the cache did not know are verified off the worker thread, or the
    // route's auth service is asked.
    if admitted.must_verify() {
        match admitted.verified(&decision).await {
            pipeline::admit::Verified::Pass(headers) => {
                for (name, value) in headers {
                    // The client's own is removed either way.
                    req.headers_mut().remove(&name);
                    if let Some(value) = value {
                        req.headers_mut().insert(name, value);
                    }
                }
            }
            pipeline::admit::Verified::Refused(refused) => decision = refused,
        }
    }
    frontend.begin(decision.route());
    if let Some(lookup) = pipeline::cache_lookup(&mut decision) {
        // Boxed: only requests of routes with a cache wait here.
        Box::pin(lookup).await;
    }
    let mut fwd = match decision {
        Decision::Forward(fwd) => fwd,
        answered => {
            // Fulcrum answers itself: the request's body, if any, is read to its end
            // while the answer is sent, else HTTP/2 resets the stream under the answer.
            let (parts, body) = req.into_parts();
            let head = Request::from_parts(parts, ());
            park(trace, Request::new(body));
            return answer(answered, &head, (peer, tls), frontend, trace);
        }
    };
    if let Some(wait) = admitted.delay {
        tokio::time::sleep(wait).await;
    }
    trace.route = fwd.route;
    trace.pool = Some(Arc::clone(&fwd.pool));
    let outcome = fwd.cache_outcome(frontend);
    let fill = fwd.fill.take();
    let rewrites = Rewrites {
        path: fwd.rewrite(frontend),
        headers: fwd.request_headers(frontend),
    };
    prepare::prepare(&mut req, peer.ip(), tls, &fwd.pool, &rewrites)?;
    if let Some(f) = &fill {
        // A stale stored response: the backend is asked whether it is still good.
        for (name, value) in f.revalidation() {
            if let Some(value) = value {
                req.headers_mut().insert(name, value);
            }
        }
    }
    // Sticky `prefix`: the backend sees its own cookie value.
    if let Some(name) = fwd.pool.sticky.as_ref().and_then(|s| s.prefixes()) {
        crate::pipeline::sticky::strip_prefixes(req.headers_mut(), name);
    }
    let result = upstream(req, &fwd, (frontend, tls), trace, busy, (fill, outcome)).await;
    // Its places under concurrency limits are given back with the response head.
    drop(admitted);
    result
}

/// The upstream phase of a request ready for `fwd`'s pool (its head rewritten for it):
/// its tries, then the cache's turn (`fill`, and the lookup's `outcome` for the log).
/// Also the way of the HTTP/1.1 engine's requests to pools speaking HTTP/2.
pub(super) async fn upstream(
    req: Request<ClientBody>,
    fwd: &pipeline::Forward,
    (frontend, tls): (&Arc<Frontend>, bool),
    trace: &mut Trace,
    busy: Busy,
    (mut fill, outcome): (Option<Box<pipeline::cache::Fill>>, Option<&'static str>),
) -> Result<Response<Body>, Error> {
    let head_only = req.method() == hyper::Method::HEAD;
    let (connect_timeout, request_timeout) = fwd.timeouts(frontend);
    let limit = match grpc::timeout(req.headers()) {
        Some(deadline) => deadline.min(request_timeout),
        None => request_timeout,
    };
    let mut attempts = Attempts::new(&fwd.pool, fwd.key, fwd.retries(frontend))
        .stick_to(fwd.sticky, fwd.stick_key);
    // A body streamed without a declared length is counted against the route's bound.
    let max_body = fwd
        .route
        .and_then(|i| frontend.routes.routes().get(i))
        .and_then(|r| r.request_limits.max_body_size);
    let (req, oversize) = match fwd.decoding(frontend) {
        // The route decodes compressed request bodies: read, decoded, then sent whole.
        Some((coding, max)) => (decode_body(req, coding, max, trace).await?, None),
        None => match max_body {
            Some(max) => {
                let over = Arc::new(Oversize::default());
                let shared = Arc::clone(&over);
                (req.map(|b| Upload::bounded(b, max, shared)), Some(over))
            }
            None => (req.map(Upload::new), None),
        },
    };
    let to = Upstream {
        fwd,
        frontend,
        tls,
        timeouts: (connect_timeout, limit),
        oversize: oversize.as_ref().map(|o| &o.passed),
    };
    let result = tries(req, &mut attempts, trace, to, busy, &mut fill).await;
    if result.as_ref().is_err_and(|e| e.status == 413) {
        trace.trail.refused = Some(("denied", "body"));
        // The client's stream stays open until the 413 is sent.
        trace.parked = oversize.and_then(|o| o.parked.lock().ok()?.take());
    }
    trace.trail = std::mem::take(&mut attempts.trail);
    trace.trail.cache = outcome;
    // The cache phase's turn: a 304 to its revalidation, or a failure with a stale
    // response that may be served instead.
    if let Some(f) = fill {
        let hit = match &result {
            Ok(r) if r.status() == 304 && f.revalidating() => {
                trace.trail.cache = Some("revalidated");
                f.refreshed_by(r.headers())
            }
            Ok(r) => f.stale_on_error(r.status().as_u16()),
            Err(e) => f.stale_on_error(e.status),
        };
        if let Some(hit) = hit {
            if trace.trail.cache != Some("revalidated") {
                trace.trail.cache = Some("stale");
            }
            return Ok(cached(&hit, head_only));
        }
        if trace.trail.cache == Some("revalidated") {
            // The client did not ask conditionally: a 304 is not its answer.
            return Err(Error::bad_gateway(
                "the revalidated response could not be kept",
            ));
        }
    }
    result
}

/// Fulcrum's own answer to a request routing did not forward.
fn answer(
    decision: Decision,
    req: &Request<()>,
    (peer, tls): (SocketAddr, bool),
    frontend: &Arc<Frontend>,
    trace: &mut Trace,
) -> Result<Response<Body>, Error> {
    match decision {
        // Forwarded requests are not answered here.
        Decision::Forward(_) => Err(NO_ROUTE),
        Decision::Redirect {
            route,
            status,
            location,
        } => {
            trace.route = Some(route);
            Ok(reply(&Reply::redirect(status, &location)))
        }
        Decision::Respond(route) => {
            trace.route = Some(route);
            Ok(match frontend.routes.routes()[route].fixed_response() {
                Some(f) => reply(&Reply::fixed(f.status, &f.body, &f.content_type)),
                None => reply(&Reply::error(&NO_ROUTE, None)),
            })
        }
        Decision::Cached { route, mut hit } => {
            trace.route = Some(route);
            trace.trail.cache = Some(if hit.stale { "stale" } else { "hit" });
            if let Some(refresh) = hit.refresh.take()
                && let Some(fetch) =
                    super::refresh::from_request(req, &refresh, frontend, peer.ip(), tls)
            {
                super::refresh::spawn(Arc::clone(frontend), refresh, fetch);
            }
            Ok(cached(&hit, req.method() == hyper::Method::HEAD))
        }
        Decision::Files { route, answer } => {
            trace.route = Some(route);
            Ok(match answer {
                Some(answer) => {
                    super::files::response(*answer, req.method() == hyper::Method::HEAD)
                }
                None => reply(&Reply::error(&NO_ROUTE, None)),
            })
        }
        Decision::NotFound => Err(NO_ROUTE),
        Decision::Denied { route, denied } => {
            trace.route = route;
            trace.trail.refused = Some(("denied", "auth"));
            Ok(denied.to_http().map(|b| {
                http_body_util::Full::new(b)
                    .map_err(|never| match never {})
                    .boxed()
            }))
        }
        Decision::Refuse { route, refusal } => {
            trace.route = route;
            trace.trail.refused = Some(refusal.log_field());
            Ok(reply(&pipeline::admit::reply(frontend, route, refusal)))
        }
    }
}

/// Keeps the request's body (unless it has ended) to be read while the answer is sent.
fn park(trace: &mut Trace, req: Request<ClientBody>) {
    let body = req.into_body();
    if !body.is_end_stream() {
        trace.parked = Some(body);
    }
}

/// `req` with its body read (at most `max` bytes), decoded from `coding` (at most `max`
/// bytes) and its headers saying so.
async fn decode_body(
    req: Request<ClientBody>,
    coding: Coding,
    max: u64,
    trace: &mut Trace,
) -> Result<Request<Upload>, Error> {
    let too_large = || {
        Error::client(
            413,
            "the request body decodes to more than the route allows",
        )
    };
    let (mut parts, mut body) = req.into_parts();
    let mut encoded = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Error::client_gone());
        };
        if let Some(data) = frame.data_ref() {
            encoded.extend_from_slice(data);
        }
        if encoded.len() as u64 > max {
            trace.trail.refused = Some(("denied", "body"));
            // The client's stream is read to its end while the 413 is sent.
            trace.parked = Some(body);
            return Err(too_large());
        }
    }
    let plain = crate::content::decoder::decode(coding, &encoded, max).map_err(|e| match e {
        crate::content::decoder::DecodeError::TooLarge => too_large(),
        crate::content::decoder::DecodeError::Invalid => {
            Error::bad_request("the request body is not valid in its Content-Encoding")
        }
    })?;
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(plain.len()));
    Ok(Request::from_parts(
        parts,
        Upload::ready(Bytes::from(plain)),
    ))
}

/// The body length a request declares (`Content-Length`), if any.
fn declared_length(req: &Request<ClientBody>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| hyper::body::Body::size_hint(req.body()).exact())
        .filter(|&n| n > 0)
}

/// An answer from the cache as a hyper response.
fn cached(hit: &pipeline::cache::Hit, head_only: bool) -> Response<Body> {
    let body = hit.body(head_only).cloned().unwrap_or_default();
    let length = hit.entry.body.len();
    let mut r = Response::new(Full::new(body).map_err(|n| match n {}).boxed());
    *r.status_mut() = http::StatusCode::from_u16(hit.status).unwrap_or(http::StatusCode::OK);
    let h = r.headers_mut();
    hit.head(|name, value| {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            h.append(n, v);
        }
    });
    if hit.status != 304 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    r
}

/// A reply of Fulcrum's own as a hyper response.
fn reply(r: &Reply<'_>) -> Response<Body> {
    r.to_http()
        .map(|b| Full::new(b).map_err(|n| match n {}).boxed())
}

/// Fulcrum's own error response: a gRPC status for gRPC calls, else the HTTP error.
fn error_response(e: Error, grpc: bool, pool: Option<&Pool>) -> Response<Body> {
    if grpc {
        let mut r = Response::new(Full::new(Bytes::new()).map_err(|n| match n {}).boxed());
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(grpc::status_for(e.status))),
        );
        if let Ok(message) = HeaderValue::from_str(e.reason) {
            h.insert("grpc-message", message);
        }
        return r;
    }
    let body = match pool {
        Some(p) if e.is_no_backend() => p.unavailable_body.as_deref(),
        _ => None,
    };
    let mut r = Reply::error(&e, body);
    // hyper manages the connection; an error ends only this request.
    r.close = false;
    reply(&r)
}
