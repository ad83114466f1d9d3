//! One request on the hyper path (HTTP/2 clients, and every client of a pool that
//! speaks HTTP/2 to its backends): rewrite it for the backend, pick and admit a
//! backend as the HTTP/1.1 engine does, send it, return the response.
//!
//! The request body streams straight through, so a try is repeated only when nothing was
//! sent: the connection could not be made (another backend, within `retries.attempts`,
//! for any method, since nothing reached a backend), or a kept HTTP/1.1 connection turned
//! out closed before the request was written (once more, on a new connection). A
//! response is passed on whatever its status (`retries.on_status` applies to HTTP/1.1
//! clients of HTTP/1.1 pools only). The backend stays "in flight" until the response
//! body has been sent in full, as on the HTTP/1.1 path.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri, Version};

use super::grpc;
use super::senders::{self, Sender};
use crate::balance::backend::InFlight;
use crate::balance::{Backend, HashKey, Pool};
use crate::config::HttpVersion;
use crate::health;
use crate::l7::Site;
use crate::l7::errors::{self, ProxyError};
use crate::l7::request::{find_cookie, hash_ip};
use crate::l7::retry::{self, Tried};

/// A response body: the backend's, or Fulcrum's own error text.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that only concern one hop of an HTTP/1.1 connection.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// What the access log says about a request.
#[derive(Default)]
struct Trace {
    backend: Option<Arc<Backend>>,
    retries: u32,
}

/// hyper's service function: never fails, errors become responses.
pub(super) async fn forward(
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    site: Arc<Site>,
    conn: Arc<Activity>,
) -> Result<Response<Body>, Infallible> {
    let busy = Busy::new(conn);
    let started = Instant::now();
    let grpc = grpc::is_grpc(req.headers());
    let logged = site
        .access_log
        .then(|| (req.method().clone(), req.uri().path().to_owned()));
    let mut trace = Trace::default();
    let response = match send(req, peer, tls, &site, &mut trace, busy).await {
        Ok(response) => response,
        Err(e) => error_response(e, grpc, &site),
    };
    if let Some((method, path)) = logged {
        let backend = trace.backend.as_deref().map_or("-", |b| &b.name);
        tracing::info!(
            target: "fulcrum::access",
            listener = %site.name,
            client = %peer,
            method = %method,
            path = %path,
            backend = %backend,
            status = response.status().as_u16(),
            grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("-"),
            retries = trace.retries,
            ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        );
    }
    Ok(response)
}

async fn send(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    site: &Site,
    trace: &mut Trace,
    busy: Busy,
) -> Result<Response<Body>, ProxyError> {
    if req.method() == hyper::Method::CONNECT {
        return Err(ProxyError {
            status: 405,
            reason: "CONNECT is not supported",
        });
    }
    let key = hash_key(&req, peer.ip(), &site.pool);
    prepare(&mut req, peer.ip(), tls, site)?;
    site.retry.budget.record_request();
    let limit = match grpc::timeout(req.headers()) {
        Some(deadline) => deadline.min(site.timeouts.request),
        None => site.timeouts.request,
    };
    let mut tried = Tried::default();
    let mut backend = Arc::clone(site.queue.pick(&site.pool, key).await?);
    let mut refusals = 0;
    let mut fresh = false;
    loop {
        trace.backend = Some(Arc::clone(&backend));
        let Some((in_flight, admission)) = backend.try_admit() else {
            refusals += 1;
            if refusals > 3 {
                return Err(errors::NO_BACKEND);
            }
            backend = Arc::clone(site.queue.pick(&site.pool, key).await?);
            continue;
        };
        tried.add(&backend);
        let connect = site.timeouts.connect;
        let kept = if fresh {
            None
        } else {
            senders::take(backend.addr, site.http_version)
        };
        // Connecting is the rare path: boxed, so that its (large) state does not make
        // every request's future larger.
        let got = match kept {
            Some(sender) => Ok((sender, true)),
            None => {
                Box::pin(senders::connect(
                    backend.addr,
                    site.http_version,
                    connect,
                    site.backend_tls.as_ref(),
                ))
                .await
            }
        };
        let (mut sender, reused) = match got {
            Ok(got) => got,
            Err(e) => {
                health::report(&site.pool, &backend, admission, false);
                backend.record_latency(connect);
                let error = errors::cannot_connect(&backend, &e);
                // Nothing reached the backend: another one may take it (no budget).
                if trace.retries >= site.retry.attempts {
                    return Err(error);
                }
                let Some(next) = retry::pick_again(&site.pool, key, &tried) else {
                    return Err(error);
                };
                trace.retries += 1;
                backend = Arc::clone(next);
                continue;
            }
        };
        let sent = Instant::now();
        let result = match &mut sender {
            Sender::H1(s) => tokio::time::timeout(limit, s.try_send_request(req)).await,
            Sender::H2(s) => tokio::time::timeout(limit, s.try_send_request(req)).await,
        };
        let failure = match result {
            Ok(Ok(response)) => {
                let status = response.status();
                backend.record_latency(sent.elapsed());
                health::report(&site.pool, &backend, admission, status.as_u16() < 500);
                senders::put_back(backend.addr, sender);
                return Ok(finish(response, in_flight, busy));
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if reused => {
                    // A kept connection that had closed: again, on a new one.
                    backend.circuit.release(admission);
                    req = unsent;
                    fresh = true;
                    continue;
                }
                _ => {
                    tracing::debug!(backend = %backend.name, error = %e.error(), "backend exchange failed");
                    ProxyError::bad_gateway("the backend closed or reset the connection")
                }
            },
            Err(_) => ProxyError::gateway_timeout("the backend did not answer in time"),
        };
        if matches!(sender, Sender::H2(_)) {
            senders::forget_h2(backend.addr);
        }
        health::report(&site.pool, &backend, admission, false);
        backend.record_latency(sent.elapsed().max(connect));
        return Err(failure);
    }
}

/// The request's hash key, for pools that hash (as the HTTP/1.1 engine computes it).
fn hash_key(req: &Request<Incoming>, ip: IpAddr, pool: &Pool) -> u64 {
    if !pool.uses_key() {
        return 0;
    }
    let value = match &pool.hash_key {
        HashKey::SourceIp => None,
        HashKey::Uri => {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            return crate::balance::hash::hash_bytes(target.as_bytes());
        }
        HashKey::Header(name) => req.headers().get(&**name).map(|v| v.as_bytes()),
        HashKey::Cookie(name) => req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .find_map(|v| find_cookie(v.as_bytes(), name.as_bytes())),
    };
    value.map_or_else(|| hash_ip(ip), crate::balance::hash::hash_bytes)
}

/// Rewrites the request for the backend: hop-by-hop headers out, forwarding headers in,
/// the target in the form the backend's HTTP version needs.
fn prepare(
    req: &mut Request<Incoming>,
    ip: IpAddr,
    tls: bool,
    site: &Site,
) -> Result<(), ProxyError> {
    let h2_backend = site.http_version == HttpVersion::Http2;
    let authority = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
    };
    let via = if req.version() == Version::HTTP_2 {
        "2 fulcrum"
    } else {
        "1.1 fulcrum"
    };
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // HTTP/2 clients may split cookies over several fields; HTTP/1.1 wants one line
    // (RFC 9113 8.2.3).
    if !h2_backend && headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        let joined = join(headers, &header::COOKIE, "; ");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
    // gRPC needs `te: trailers` to reach an HTTP/2 backend; HTTP/1.1 backends get no TE.
    if !h2_backend || headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    append(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &ip.to_string(),
    );
    let forwarded = match ip {
        IpAddr::V4(ip) => format!("for={ip};proto={proto}"),
        IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto={proto}"),
    };
    append(headers, header::FORWARDED, &forwarded);
    append(headers, header::VIA, via);

    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = if h2_backend {
        // HTTP/2 carries the authority in its own field.
        req.headers_mut().remove(header::HOST);
        let scheme = if site.backend_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let authority = authority.as_deref().unwrap_or("backend");
        *req.version_mut() = Version::HTTP_2;
        format!("{scheme}://{authority}{path}")
    } else {
        if let Some(a) = &authority
            && !req.headers().contains_key(header::HOST)
        {
            let host = HeaderValue::from_str(a)
                .map_err(|_| ProxyError::bad_request("invalid authority"))?;
            req.headers_mut().insert(header::HOST, host);
        }
        *req.version_mut() = Version::HTTP_11;
        path
    };
    *req.uri_mut() = uri
        .parse::<Uri>()
        .map_err(|_| ProxyError::bad_request("invalid request target"))?;
    Ok(())
}

/// Removes hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The values of every `name` field, joined with `separator`.
fn join(headers: &HeaderMap, name: &HeaderName, separator: &str) -> String {
    let mut joined = String::new();
    for v in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        if !joined.is_empty() {
            joined.push_str(separator);
        }
        joined.push_str(v);
    }
    joined
}

/// Adds `value` to a list header (one line, comma-separated).
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let joined = match join(headers, &name, ", ") {
        prior if prior.is_empty() => value.to_owned(),
        prior => format!("{prior}, {value}"),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// The backend's response for the client: hop-by-hop headers out, the body kept "in
/// flight" until it has been sent.
fn finish(response: Response<Incoming>, in_flight: InFlight, busy: Busy) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Guarded {
        inner: body,
        _in_flight: in_flight,
        _busy: busy,
    };
    Response::from_parts(parts, body.boxed())
}

/// Fulcrum's own response: a gRPC status for gRPC calls, else the HTTP error.
fn error_response(e: ProxyError, grpc: bool, site: &Site) -> Response<Body> {
    if grpc {
        let mut r = Response::new(empty());
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
        r
    } else {
        let body = match &site.unavailable_body {
            Some(body) if e == errors::NO_BACKEND => body.to_string(),
            _ => format!("{}: {}\n", errors::status_title(e.status), e.reason),
        };
        let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
        *r.status_mut() =
            hyper::StatusCode::from_u16(e.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if e.status == 503 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|n| match n {}).boxed()
}

/// A backend's response body that keeps the request counted in flight (at the backend,
/// and on the client connection) until it ends.
struct Guarded {
    inner: Incoming,
    _in_flight: InFlight,
    _busy: Busy,
}

/// When a client connection last had nothing to do, for its idle timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    active: AtomicUsize,
    idle_since_us: AtomicU64,
    served: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_us: AtomicU64::new(0),
            served: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    /// How long the connection has had no request in progress (zero while it has one),
    /// and whether it has had any request yet.
    pub fn idle_for(&self) -> (Duration, bool) {
        let served = self.served.load(Ordering::Relaxed) > 0;
        if self.active.load(Ordering::Acquire) > 0 {
            return (Duration::ZERO, served);
        }
        let since = Duration::from_micros(self.idle_since_us.load(Ordering::Relaxed));
        (self.start.elapsed().saturating_sub(since), served)
    }
}

/// One request in progress on a client connection.
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    fn new(conn: Arc<Activity>) -> Busy {
        conn.active.fetch_add(1, Ordering::AcqRel);
        conn.served.fetch_add(1, Ordering::Relaxed);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.start.elapsed().as_micros() as u64;
        self.0.idle_since_us.store(now, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
