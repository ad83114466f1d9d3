//! The admission phase, between routing and the upstream: whether the request may go on
//! at all. In order: the route's bounds on the request (method: 405, target length:
//! 414, declared body size: 413), then the rate limits of the listener and of the route
//! (429 with `Retry-After` and the `RateLimit-*` headers, or a delay). Every engine
//! calls [`admit`] once per request, right after [`super::route`]; a request that passes
//! carries an [`Admission`]: the places it holds under concurrency limits (given back
//! when the request ends) and how long it must wait first.
//!
//! A listener and route without limits cost two emptiness checks: no clock read, no
//! lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Decision;
use super::error::Error;
use super::reply::{RateHeaders, Reply};
use crate::config::rate_limits::KeyPart;
use crate::policy::Octets;
use crate::policy::forward_auth::{Answer, ForwardAuth, Question};
use crate::policy::ratelimit::{Hold, Limiter, Verdict};
use crate::routing::{RequestView, Route, find_cookie};
use crate::runtime::Frontend;

/// Most concurrency limits one request is counted under (the config checks it).
const MOST: usize = crate::config::rate_limits::MAX_PER_REQUEST;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A rate limit (index into the frontend's limiters): too fast.
    Rate {
        /// The limit.
        limit: usize,
        /// When the key is under the limit again.
        retry_after: Duration,
    },
    /// A concurrency limit: too many of the key's requests in progress.
    Concurrency {
        /// The limit.
        limit: usize,
    },
    /// The route does not accept the method: 405.
    Method,
    /// The target is longer than the route accepts: 414.
    Uri,
    /// The declared body is larger than the route accepts: 413.
    Body,
    /// The client's address is not allowed (the route's lists, or the listener's for a
    /// client named by a trusted proxy): 403.
    Address,
    /// The route asks for credentials, and the request had none or wrong ones: 401.
    Auth,
    /// The route's auth service did not answer in time: 503.
    AuthUnavailable,
}

impl Refusal {
    /// The access log's field and value for it (`limited=rate`, `denied=method`...).
    pub fn log_field(self) -> (&'static str, &'static str) {
        match self {
            Refusal::Rate { .. } => ("limited", "rate"),
            Refusal::Concurrency { .. } => ("limited", "concurrency"),
            Refusal::Method => ("denied", "method"),
            Refusal::Uri => ("denied", "uri"),
            Refusal::Body => ("denied", "body"),
            Refusal::Address => ("denied", "ip"),
            Refusal::Auth | Refusal::AuthUnavailable => ("denied", "auth"),
        }
    }

    /// The status it gets.
    pub fn status(self, frontend: &Frontend) -> u16 {
        match self {
            Refusal::Rate { limit, .. } | Refusal::Concurrency { limit } => {
                frontend.limiters[limit].config.status
            }
            Refusal::Method => 405,
            Refusal::Uri => 414,
            Refusal::Body => 413,
            Refusal::Address => 403,
            Refusal::Auth => 401,
            Refusal::AuthUnavailable => 503,
        }
    }

    /// The one-line reason in its body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "too many requests; slow down and retry later",
            Refusal::Concurrency { .. } => "too many requests in progress at once",
            Refusal::Method => "this method is not allowed here",
            Refusal::Uri => "the request target is too long",
            Refusal::Body => "the request body is too large",
            Refusal::Address => "this client address is not allowed here",
            Refusal::Auth => "authentication required",
            Refusal::AuthUnavailable => "the authentication service did not answer",
        }
    }
}

/// A request let through: its places under concurrency limits (given back when it is
/// dropped, at the end of the request) and how long it waits before going on.
#[derive(Debug, Default)]
pub struct Admission {
    holds: [Option<Hold>; MOST],
    /// Wait this long first (a limit with `action = "delay"`).
    pub delay: Option<Duration>,
    /// Credentials to verify first (off the worker thread: see [`Admission::verified`]).
    check: Option<Box<Check>>,
}

/// What must be asked before the request goes on.
#[derive(Debug)]
enum Check {
    /// Basic credentials the cache did not know.
    Basic(crate::policy::auth::Pending),
    /// The route's auth service.
    Forward(Arc<ForwardAuth>, Question),
}

/// What verifying gave ([`Admission::verified`]).
#[derive(Debug)]
pub enum Verified {
    /// Go on, with these headers set on the request for the backend (`None`: removed).
    Pass(Vec<(http::HeaderName, Option<http::HeaderValue>)>),
    /// Answer this instead.
    Refused(Decision),
}

impl Admission {
    /// Whether the request waits for its credentials to be verified, or for the
    /// route's auth service ([`Admission::verified`]).
    #[inline]
    pub fn must_verify(&self) -> bool {
        self.check.is_some()
    }

    /// Verifies the request's credentials (if the cache could not), or asks the route's
    /// auth service; the engines await it before going on.
    pub async fn verified(&mut self, decision: &Decision) -> Verified {
        let route = decision.route();
        let refused = |refusal| Verified::Refused(Decision::Refuse { route, refusal });
        let Some(check) = self.check.take() else {
            return Verified::Pass(Vec::new());
        };
        match *check {
            Check::Basic(pending) => {
                if pending.verify().await {
                    Verified::Pass(Vec::new())
                } else {
                    refused(Refusal::Auth)
                }
            }
            Check::Forward(service, question) => match service.ask(question).await {
                Answer::Pass(headers) => Verified::Pass(headers),
                Answer::Deny(denied) => Verified::Refused(Decision::Denied { route, denied }),
                Answer::Unavailable => refused(Refusal::AuthUnavailable),
            },
        }
    }
}

/// The admission phase for `decision` (see the module doc). `body`: the declared body
/// length, if any; `tls`: it came over TLS. A refused request's decision becomes
/// [`Decision::Refuse`].
#[inline]
pub fn admit<V: RequestView + ?Sized>(
    frontend: &Frontend,
    decision: Decision,
    req: &V,
    body: Option<u64>,
    tls: bool,
) -> (Decision, Admission) {
    let route = decision
        .route()
        .and_then(|i| frontend.routes.routes().get(i));
    let route_limits = route.map_or(&[][..], |r| &r.rate_limits);
    let bounded = route.is_some_and(|r| !r.request_limits.is_empty());
    let behind_proxies = frontend.config.real_ip.is_some();
    if frontend.rate_limits.is_empty() && route_limits.is_empty() && !bounded && !behind_proxies {
        return (decision, Admission::default());
    }
    let refuse = |refusal| Decision::Refuse {
        route: decision.route(),
        refusal,
    };
    // A client named by a trusted proxy is checked against the listener's lists here,
    // once its address is known.
    if behind_proxies && !frontend.access.admits(req.client_ip()) {
        return (refuse(Refusal::Address), Admission::default());
    }
    if let Some(r) = route.filter(|_| bounded)
        && let Some(refusal) = bounds(r, req, body)
    {
        return (refuse(refusal), Admission::default());
    }
    let mut admitted = Admission::default();
    if let Some(auth) = route.and_then(|r| r.basic_auth.as_ref()) {
        use crate::policy::auth::Credentials;
        match auth.check(req.header_values("authorization").next()) {
            Credentials::Known => {}
            Credentials::Verify(pending) => admitted.check = Some(Box::new(Check::Basic(pending))),
            Credentials::Missing => return (refuse(Refusal::Auth), Admission::default()),
        }
    } else if let Some(service) = route.and_then(|r| r.forward_auth.as_ref()) {
        let question = service.question(req, tls);
        admitted.check = Some(Box::new(Check::Forward(Arc::clone(service), question)));
    }
    let now = Instant::now();
    let route_name = route.map_or(&b""[..], |r| r.name.as_bytes());
    let ip = Octets::of(req.client_ip());
    let mut held = 0;
    for &i in frontend.rate_limits.iter().chain(route_limits) {
        let limiter = &frontend.limiters[i];
        let Some(key) = key_of(limiter, req, ip.bytes(), route_name) else {
            continue;
        };
        match limiter.check(key, now) {
            Verdict::Pass { .. } => {}
            Verdict::Delay(d) => admitted.delay = Some(admitted.delay.map_or(d, |w| w.max(d))),
            Verdict::Limited { retry_after } => {
                return (
                    refuse(Refusal::Rate {
                        limit: i,
                        retry_after,
                    }),
                    Admission::default(),
                );
            }
            Verdict::Busy => {
                return (
                    refuse(Refusal::Concurrency { limit: i }),
                    Admission::default(),
                );
            }
        }
        if let Some(h) = limiter.hold(key) {
            admitted.holds[held] = Some(h);
            held += 1;
        }
    }
    (decision, admitted)
}

/// The route's bounds on the request.
fn bounds<V: RequestView + ?Sized>(r: &Route, req: &V, body: Option<u64>) -> Option<Refusal> {
    let b = &r.request_limits;
    if b.clients
        .as_ref()
        .is_some_and(|c| !c.admits(req.client_ip()))
    {
        return Some(Refusal::Address);
    }
    if !b.allowed_methods.is_empty()
        && !b
            .allowed_methods
            .iter()
            .any(|m| m.as_bytes() == req.method())
    {
        return Some(Refusal::Method);
    }
    if let Some(max) = b.max_uri_length {
        let len = req.path().len() + req.query().map_or(0, |q| q.len() + 1);
        if len > max {
            return Some(Refusal::Uri);
        }
    }
    if let (Some(max), Some(len)) = (b.max_body_size, body)
        && len > max
    {
        return Some(Refusal::Body);
    }
    None
}

/// The key of `req` under `limiter`; `None` when a part of it is missing (a header the
/// request does not have): the limit does not apply to the request.
fn key_of<'v, V: RequestView + ?Sized>(
    limiter: &Limiter,
    req: &'v V,
    ip: &'v [u8],
    route: &'v [u8],
) -> Option<u64> {
    let mut missing = false;
    let parts = limiter.config.key.iter().map(|part| {
        let value = match part {
            KeyPart::Ip => Some(ip),
            KeyPart::Header(name) => req.header_values(name).next(),
            KeyPart::Cookie(name) => req
                .header_values("cookie")
                .find_map(|h| find_cookie(h, name.as_bytes())),
            KeyPart::Route => Some(route),
            KeyPart::Host => req.host(),
        };
        value.unwrap_or_else(|| {
            missing = true;
            &[]
        })
    });
    let key = limiter.key(parts);
    (!missing).then_some(key)
}

/// The response to a refused request: the status and one-line reason, `Allow` for a
/// 405, `Retry-After` and the `RateLimit-*` headers for a limit. The connection stays
/// open (the engine closes it when the request has a body it did not read).
pub fn reply<'f>(frontend: &'f Frontend, route: Option<usize>, refusal: Refusal) -> Reply<'f> {
    let status = refusal.status(frontend);
    let mut r = Reply::error(&Error::client(status, refusal.reason()), None);
    r.retry_after = None;
    r.close = false;
    match refusal {
        Refusal::Rate { limit, retry_after } => {
            r.rate = Some(rate_headers(&frontend.limiters[limit], retry_after));
        }
        Refusal::Concurrency { limit } => {
            r.rate = Some(rate_headers(&frontend.limiters[limit], Duration::ZERO));
        }
        Refusal::Method => {
            if let Some(route) = route.and_then(|i| frontend.routes.routes().get(i)) {
                r.extra = Some(("Allow", &route.allow));
            }
        }
        Refusal::Auth => {
            if let Some(auth) = route
                .and_then(|i| frontend.routes.routes().get(i))
                .and_then(|r| r.basic_auth.as_ref())
            {
                r.extra = Some(("WWW-Authenticate", &auth.challenge));
            }
        }
        Refusal::Uri | Refusal::Body | Refusal::Address | Refusal::AuthUnavailable => {}
    }
    r
}

/// The `RateLimit-*` headers for `limiter` (draft-ietf-httpapi-ratelimit-headers): the
/// quota per window, what remains (0) and when a request would pass again.
fn rate_headers(limiter: &Limiter, retry_after: Duration) -> RateHeaders {
    let (quota, window) = limiter
        .config
        .rate
        .map_or((0, 0), |r| (r.count, r.per.as_secs().max(1)));
    RateHeaders {
        quota,
        window,
        burst: limiter.config.burst,
        reset: retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
    }
}

/// The places a connection holds under its listener's concurrency limits (boxed: most
/// listeners have none, and the idle connection's task stays small).
pub type ConnectionHolds = Option<Box<[Option<Hold>; crate::config::rate_limits::MAX_PER_REQUEST]>>;

/// The connection phase: whether a new connection from `ip` may open under the
/// listener's `connection_limits` (new connections per second, connections open at
/// once, per client address). `Err`: the limit that refused it.
#[inline]
pub fn connection(frontend: &Frontend, ip: std::net::IpAddr) -> Result<ConnectionHolds, Refusal> {
    if frontend.connection_limits.is_empty() {
        return Ok(None);
    }
    let ip = Octets::of(ip);
    let now = Instant::now();
    let mut holds: ConnectionHolds = None;
    for (slot, &i) in frontend.connection_limits.iter().enumerate() {
        let limiter = &frontend.limiters[i];
        let key = limiter.key([ip.bytes()]);
        match limiter.check(key, now) {
            Verdict::Pass { .. } | Verdict::Delay(_) => {}
            Verdict::Limited { retry_after } => {
                return Err(Refusal::Rate {
                    limit: i,
                    retry_after,
                });
            }
            Verdict::Busy => return Err(Refusal::Concurrency { limit: i }),
        }
        if let Some(h) = limiter.hold(key) {
            holds.get_or_insert_with(Default::default)[slot] = Some(h);
        }
    }
    Ok(holds)
}
