//! The tries of one request on the HTTP/2 path: the pipeline's upstream phase
//! ([`Attempts`]: pick and admit a backend, report each try to passive health, retry
//! elsewhere within the attempts and the budget), with the same rules as the HTTP/1.1
//! engine's loop (`l7::exchange`):
//!
//! - a try whose connection could not be made is repeated on another backend, whatever
//!   the request, since nothing reached a backend;
//! - a try that reached a backend and got nothing back, or whose status is one of the
//!   pool's `on_status`, is repeated only for an idempotent request whose body is in
//!   memory: none, or a declared length of at most [`WHOLE_BODY`] bytes, which is read
//!   before the first try (as NGINX's `proxy_request_buffering` does); a longer or
//!   undeclared body (gRPC streams, uploads) streams through and is sent once.
//!
//! HTTP/1.1 pools are tried over the HTTP/1.1 engine's connections ([`to_http1`]);
//! HTTP/2 pools over hyper's HTTP/2 client, one multiplexed connection per backend and
//! worker ([`senders`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use hyper::body::Body as _;
use hyper::header::HeaderValue;
use hyper::{Request, Response};

use super::activity::Busy;
use super::forward::{Body, Trace};
use super::respond::{Finish, Source};
use super::senders;
use super::to_http1::{self, Try};
use super::upload::Upload;
use crate::config::HttpVersion;
use crate::content::coding::Coding;
use crate::pipeline::Forward;
use crate::pipeline::cache::Fill;
use crate::pipeline::error::{self, Error, Retry};
use crate::pipeline::upstream::{Admitted, Attempts, Why};
use crate::runtime::Frontend;

/// The largest declared request body read into memory before the first try, so that
/// the request can be repeated.
pub const WHOLE_BODY: u64 = 64 * 1024;

/// The request body for the backends.
pub(super) enum Payload {
    /// All of it, in memory: every try sends it.
    Whole(Bytes),
    /// Streamed from the client by the first try that sends it.
    Stream(Option<Upload>),
}

impl Payload {
    /// The body of a request: in memory when it is empty, already read, or declared
    /// small (then read now, within `limit`).
    async fn of(mut upload: Upload, limit: Duration, grpc: bool) -> Result<Payload, Error> {
        if upload.is_end_stream() {
            return Ok(Payload::Whole(Bytes::new()));
        }
        if let Some(whole) = upload.take_whole() {
            return Ok(Payload::Whole(whole));
        }
        match upload.size_hint().exact() {
            Some(n) if n <= WHOLE_BODY && !grpc => {
                let whole = to_http1::collect(&mut upload, limit).await?;
                Ok(Payload::Whole(whole))
            }
            _ => Ok(Payload::Stream(Some(upload))),
        }
    }

    /// The body for a hyper request (one try).
    fn upload(&mut self) -> Upload {
        match self {
            Payload::Whole(b) => Upload::ready(b.clone()),
            Payload::Stream(s) => s.take().unwrap_or_else(|| Upload::ready(Bytes::new())),
        }
    }
}

/// Where a request goes and under which limits.
pub(super) struct Upstream<'a> {
    pub(super) fwd: &'a Forward,
    pub(super) frontend: &'a Frontend,
    pub(super) tls: bool,
    /// Connect, and the whole request.
    pub(super) timeouts: (Duration, Duration),
    /// Set when the request's body went past the route's `max_body_size`.
    pub(super) oversize: Option<&'a std::sync::atomic::AtomicBool>,
}

/// The tries of one request: the first backend, then others while the rules above let
/// a failed or refused try be repeated. The kept response goes through the response
/// phase ([`Finish`]).
pub(super) async fn tries(
    req: Request<Upload>,
    attempts: &mut Attempts<'_>,
    trace: &mut Trace,
    to: Upstream<'_>,
    busy: Busy,
    fill: &mut Option<Box<Fill>>,
) -> Result<Response<Body>, Error> {
    let (fwd, frontend, tls) = (to.fwd, to.frontend, to.tls);
    let (parts, upload) = req.into_parts();
    let grpc = super::grpc::is_grpc(&parts.headers);
    let body = Payload::of(upload, to.timeouts.1, grpc).await;
    let mut body = match body {
        Err(e) if is_oversize(&to) => return Err(too_large(e)),
        body => body?,
    };
    let idempotent = matches!(
        parts.method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    let repeatable = idempotent && matches!(body, Payload::Whole(_));
    let pool = attempts.pool();
    let mut out = HeadBuf(crate::l7::buffers::take_vec());
    if pool.http_version == HttpVersion::Http1 {
        to_http1::write_request(&parts, &body, &mut out.0);
    }
    let mut admitted = attempts.first().await?;
    loop {
        trace.backend = Some(Arc::clone(&admitted.backend));
        trace.retries = attempts.retries;
        let started = Instant::now();
        let result = match pool.http_version {
            HttpVersion::Http1 => {
                let t = Try {
                    out: &out.0,
                    is_head: parts.method == hyper::Method::HEAD,
                    timeouts: to.timeouts,
                    oversize: to.oversize,
                    idle: frontend.timeouts.idle,
                };
                to_http1::attempt(attempts, &admitted, &mut body, t).await
            }
            HttpVersion::Http2 => attempt_h2(attempts, &admitted, &parts, &mut body, &to).await,
        };
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // Passive health: every try's outcome feeds the backend's circuit.
                attempts.report(&mut admitted, status < 500);
                let retried = attempts
                    .retries_status(status)
                    .then(|| {
                        attempts.retry(&admitted, Retry::Budgeted, repeatable, Why::Status(status))
                    })
                    .flatten();
                if let Some(next) = retried {
                    if let Source::Origin(origin) = response.into_body() {
                        origin.discard();
                    }
                    admitted = next;
                    continue;
                }
                attempts.kept(&admitted);
                let finish = Finish {
                    in_flight: admitted.take_in_flight(),
                    busy,
                    rules: fwd.response_headers(frontend),
                    set_cookie: fwd
                        .set_cookie(frontend, tls)
                        .and_then(|c| HeaderValue::from_str(&c).ok()),
                    sticky_cookie: attempts
                        .sticky_cookie(&admitted, tls)
                        .and_then(|c| HeaderValue::from_str(c).ok()),
                    prefix_cookie: attempts.prefix_cookie(&admitted),
                    offer: fwd.offer(frontend),
                    fill: fill.take_if(|f| !f.wants(status)),
                };
                let (response, coding) = finish.apply(response);
                attempts.trail.compressed = coding.map(Coding::token);
                return Ok(response);
            }
            // The client left, or is at fault: no verdict on the backend.
            Err(e) if e.is_silent() || e.status < 500 => return Err(e),
            Err(e) => {
                attempts.failed(&mut admitted, started.elapsed(), to.timeouts.0);
                match attempts.retry(&admitted, e.retry, repeatable, Why::Failed(e.reason)) {
                    Some(next) => admitted = next,
                    None => return Err(e),
                }
            }
        }
    }
}

/// The request head for HTTP/1.1 backends, in a buffer of the worker's pool (given back
/// when the request is done).
struct HeadBuf(Vec<u8>);

impl Drop for HeadBuf {
    fn drop(&mut self) {
        crate::l7::buffers::give_vec(std::mem::take(&mut self.0));
    }
}

fn is_oversize(to: &Upstream<'_>) -> bool {
    to.oversize
        .is_some_and(|o| o.load(std::sync::atomic::Ordering::Relaxed))
}

/// The 413 of a body that went past the route's bound (`e` was its symptom).
fn too_large(_e: Error) -> Error {
    Error::client(413, "the request body is too large")
}

/// One try at an HTTP/2 backend, over the worker's connection to it (a new one if there
/// is none, or if the kept one turns out closed before the request went out).
async fn attempt_h2(
    attempts: &mut Attempts<'_>,
    admitted: &Admitted,
    parts: &Parts,
    body: &mut Payload,
    to: &Upstream<'_>,
) -> Result<Response<Source>, Error> {
    let pool = attempts.pool();
    let key = pool.conn_key(&admitted.backend);
    let (connect_timeout, limit) = to.timeouts;
    let mut req = None;
    let mut fresh = false;
    loop {
        let kept = if fresh { None } else { senders::take(key) };
        let (mut sender, reused) = match kept {
            Some(sender) => (sender, true),
            None => {
                let started = Instant::now();
                // Connecting is the rare path: boxed, so that its (large) state does not
                // make every request's future larger.
                let connected =
                    Box::pin(senders::connect(key, connect_timeout, pool.tls.as_ref())).await;
                let sender = connected.map_err(|e| error::cannot_connect(&admitted.backend, &e))?;
                attempts.connected(admitted, started.elapsed());
                (sender, false)
            }
        };
        let request = req.take().unwrap_or_else(|| {
            let mut r = Request::new(body.upload());
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = parts.uri.clone();
            *r.version_mut() = parts.version;
            *r.headers_mut() = parts.headers.clone();
            r
        });
        let sent = Instant::now();
        let failure = match tokio::time::timeout(limit, sender.try_send_request(request)).await {
            Ok(Ok(response)) => {
                attempts.answered(admitted, sent.elapsed());
                if let Some(load) = attempts
                    .load_header()
                    .and_then(|name| response.headers().get(name))
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::health::agent::parse_load)
                {
                    attempts.reported(admitted, load);
                }
                if let Some(cookie) = attempts.learns() {
                    for v in response.headers().get_all(http::header::SET_COOKIE) {
                        if let Some(value) =
                            crate::pipeline::sticky::set_cookie_value(v.as_bytes(), cookie)
                        {
                            attempts.learned(admitted, crate::pipeline::sticky::key_of(value));
                        }
                    }
                }
                return Ok(response.map(Source::Hyper));
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if reused => {
                    // A kept connection that had closed: again, on a new one.
                    req = Some(unsent);
                    fresh = true;
                    continue;
                }
                _ if is_oversize(to) => {
                    // The client's body went past the bound: no fault of the backend.
                    return Err(Error::client(413, "the request body is too large"));
                }
                _ => {
                    tracing::debug!(backend = %admitted.backend.name, error = %e.error(), "backend exchange failed");
                    Error::no_response(502, "the backend closed or reset the connection")
                }
            },
            Err(_) => Error::gateway_timeout("the backend did not answer in time"),
        };
        drop(sender);
        senders::forget(key);
        return Err(failure);
    }
}
