//! The request pipeline: the phases every request goes through, whatever engine carries
//! it (the HTTP/1.1 engine, the HTTP/2 path, and for the phases that apply, the TCP and
//! UDP relays). The engines only move bytes; what happens to a request is decided here,
//! once:
//!
//! 1. **route** ([`route`]): the listener's route table picks a pool (with a split side
//!    and the route's fallback), or an answer of Fulcrum's own (redirect, fixed
//!    response, 404); the request's hash key is computed for the pool.
//! 2. **admit** ([`admit`]): the route's bounds on the request (method, target and body
//!    sizes) and the rate and concurrency limits of the listener and the route.
//! 3. **upstream** ([`upstream::Attempts`]): pick and admit a backend (the one the
//!    request's sticky cookie names first, see [`sticky`]), report each try to passive
//!    health, retry elsewhere within the attempts and the budget.
//! 4. **upstream request**: the route's path rewrite and request header rules
//!    ([`Forward::rewrite`], [`Forward::request_headers`]), applied by the engine while it
//!    writes the request for the backend.
//! 5. **response** ([`Forward::response_headers`], [`Forward::set_cookie`],
//!    [`upstream::Attempts::sticky_cookie`]): the route's response header rules, the
//!    split cookie and the pool's sticky cookie, applied while the engine writes the
//!    response head.
//! 6. **log** ([`log`]): one access log line per request or connection.
//!
//! Errors on the way are one type ([`error::Error`]) that says who failed, whether the
//! request may be retried and what the client gets ([`reply::Reply`]).
//!
//! A later policy (a rate limit, sticky sessions, a metric) is one more step in one of
//! these phases, written once here, not once per engine.

pub mod admit;
pub mod cache;
pub mod compress;
pub mod error;
pub mod log;
pub mod queue;
pub mod reply;
pub mod retry;
pub mod sticky;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use crate::routing::{HeaderRules, PathRewrite, RequestView, Route, Target, hash_key};
use crate::runtime::{Frontend, Pool};

/// What routing decided for a request.
#[derive(Debug)]
pub enum Decision {
    /// Forward it.
    Forward(Forward),
    /// Answer with route `route`'s redirect.
    Redirect {
        /// The route.
        route: usize,
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// Where to.
        location: String,
    },
    /// Answer with route `.0`'s fixed response.
    Respond(usize),
    /// Answer from route `route`'s cache ([`cache`]).
    Cached {
        /// The route.
        route: usize,
        /// The stored response.
        hit: Box<cache::Hit>,
    },
    /// Serve route `route`'s files: the answer is made once the request is admitted
    /// ([`files`]).
    Files {
        /// The route.
        route: usize,
        /// The answer.
        answer: Option<Box<crate::content::files::FileAnswer>>,
    },
    /// No route matched and there is no default pool: 404.
    NotFound,
    /// The route's auth service refused it: its answer is the client's.
    Denied {
        /// The route.
        route: Option<usize>,
        /// The service's answer.
        denied: Box<crate::policy::forward_auth::Denied>,
    },
    /// The admission phase refused it ([`admit`]).
    Refuse {
        /// The route that matched, if any.
        route: Option<usize>,
        /// Why.
        refusal: admit::Refusal,
    },
}

impl Decision {
    /// The route that decided, if any.
    pub fn route(&self) -> Option<usize> {
        match self {
            Decision::Forward(f) => f.route,
            Decision::Redirect { route, .. }
            | Decision::Respond(route)
            | Decision::Files { route, .. }
            | Decision::Cached { route, .. } => Some(*route),
            Decision::NotFound => None,
            Decision::Refuse { route, .. } | Decision::Denied { route, .. } => *route,
        }
    }
}

/// A request on its way to a pool.
#[derive(Debug)]
pub struct Forward {
    /// The pool (the route's fallback when the route's own pool has no backend up).
    pub pool: Arc<Pool>,
    /// The route that matched (`None`: the listener's default pool).
    pub route: Option<usize>,
    /// The request's hash key, for pools that hash.
    pub key: u64,
    /// The split side the client was just given (the response sets its cookie).
    pub new_side: Option<usize>,
    /// The backend the request's sticky cookie or stick table entry names (see
    /// [`sticky`]), if any.
    pub sticky: Option<u32>,
    /// The request's stick table key, if its pool keeps a table.
    pub stick_key: Option<u64>,
    /// What the client takes, when the route compresses responses (see [`compress`]).
    pub accepted: Option<compress::Accepted>,
    /// The request body is compressed with this coding and the route decodes it
    /// (`decompress_requests`; see [`Forward::decoding`]).
    pub decode: Option<crate::content::coding::Coding>,
    /// What the cache phase read of the request, until it looks it up ([`cache`]).
    pub asking: Option<Box<cache::Asking>>,
    /// A miss of the route's cache: the response is stored if it may be ([`cache`]).
    pub fill: Option<Box<cache::Fill>>,
}

/// The files phase, after admission: a request for a `files` route gets its answer
/// (the file opened, its headers decided; see `content::files`).
pub fn files<V: RequestView + ?Sized>(frontend: &Frontend, decision: &mut Decision, req: &V) {
    if let Decision::Files { route, answer } = decision
        && let Some((config, strip)) = frontend.routes.routes()[*route].files()
    {
        *answer = Some(Box::new(crate::content::files::answer(config, strip, req)));
    }
}

/// The cache phase's first half, after admission: a request forwarded on a route with
/// a `cache` is read for it (see [`cache::ask`]); the lookup itself is
/// [`cache_lookup`]'s.
pub fn cache<V: RequestView + ?Sized>(frontend: &Frontend, decision: &mut Decision, req: &V) {
    let Decision::Forward(fwd) = decision else {
        return;
    };
    let Some(route) = fwd.route else {
        return;
    };
    let Some(cache) = frontend.routes.routes()[route]
        .cache
        .and_then(|i| frontend.caches.get(i))
    else {
        return;
    };
    fwd.asking = cache::ask(cache, req);
}

/// The cache phase's second half: the request is answered from the cache, or marked as
/// a miss whose response is stored. `None` when there is nothing to look up.
pub fn cache_lookup(decision: &mut Decision) -> Option<impl Future<Output = ()> + '_> {
    let Decision::Forward(fwd) = decision else {
        return None;
    };
    let asking = fwd.asking.take()?;
    let route = fwd.route?;
    Some(async move {
        match cache::lookup(asking).await {
            cache::Lookup::Bypass => {}
            cache::Lookup::Hit(hit) => *decision = Decision::Cached { route, hit },
            cache::Lookup::Stale(mut hit, fill) => {
                // The refresh goes where the request would have gone.
                let forward = std::mem::replace(decision, Decision::NotFound);
                if let (Some(fill), Decision::Forward(mut fwd)) = (fill, forward) {
                    // Its response sets no split cookie: it is for the cache.
                    fwd.new_side = None;
                    hit.refresh = Some(Box::new(cache::Refresh { fill, fwd }));
                }
                *decision = Decision::Cached { route, hit };
            }
            cache::Lookup::Miss(fill) => {
                if let Decision::Forward(fwd) = decision {
                    fwd.fill = Some(fill);
                }
            }
        }
    })
}

/// The route phase: where `req` goes on `frontend` (`tls`: it came over TLS).
#[inline]
pub fn route<V: RequestView + ?Sized>(frontend: &Frontend, req: &V, tls: bool) -> Decision {
    let selected = frontend.routes.select(req, tls);
    match selected.target {
        Target::Pool { pool, new_side } => {
            let route = selected.route.map(|i| &frontend.routes.routes()[i]);
            let mut chosen = &frontend.pools[pool];
            if let Some(fallback) = route.and_then(|r| r.fallback)
                && !chosen.has_backend_up()
            {
                chosen = &frontend.pools[fallback];
            }
            let key = if chosen.balancer.uses_key() {
                hash_key(req, &chosen.balancer.hash_key)
            } else {
                0
            };
            let (sticky, stick_key) = chosen.sticky.as_ref().map_or((None, None), |s| s.find(req));
            let compression = match route {
                Some(r) => r.compression.as_ref(),
                None => frontend.config.compression.as_ref(),
            };
            Decision::Forward(Forward {
                pool: Arc::clone(chosen),
                route: selected.route,
                key,
                new_side,
                sticky,
                stick_key,
                accepted: compress::accepted(compression, req),
                decode: route
                    .and_then(|r| r.decompress_requests)
                    .and_then(|_| compress::request_coding(req)),
                asking: None,
                fill: None,
            })
        }
        Target::Redirect { status, location } => Decision::Redirect {
            route: selected.route.unwrap_or(0),
            status,
            location,
        },
        Target::Respond => Decision::Respond(selected.route.unwrap_or(0)),
        Target::Files => Decision::Files {
            route: selected.route.unwrap_or(0),
            answer: None,
        },
        Target::NotFound => Decision::NotFound,
    }
}

impl Forward {
    fn route<'f>(&self, frontend: &'f Frontend) -> Option<&'f Route> {
        self.route.map(|i| &frontend.routes.routes()[i])
    }

    /// The route's name, for the log.
    pub fn route_name<'f>(&self, frontend: &'f Frontend) -> Option<&'f str> {
        self.route(frontend).map(|r| &*r.name)
    }

    /// How the path changes before forwarding.
    pub fn rewrite<'f>(&self, frontend: &'f Frontend) -> &'f PathRewrite {
        static NONE: PathRewrite = PathRewrite::None;
        self.route(frontend).map_or(&NONE, |r| &r.rewrite)
    }

    /// The route's request header rules.
    pub fn request_headers<'f>(&self, frontend: &'f Frontend) -> Option<&'f HeaderRules> {
        self.route(frontend)
            .map(|r| &r.request_headers)
            .filter(|r| !r.is_empty())
    }

    /// The compression offer for the response: the settings and the client's coding.
    pub fn offer<'f>(&self, frontend: &'f Frontend) -> Option<compress::Offer<'f>> {
        let accepted = self.accepted?;
        let config = match self.route(frontend) {
            Some(r) => r.compression.as_ref(),
            None => frontend.config.compression.as_ref(),
        }?;
        Some(compress::Offer {
            config,
            coding: accepted.0,
        })
    }

    /// What the cache phase did with it, for the log: `miss` (fetched, stored if it may
    /// be), `bypass` (the route caches, this request passes by), or nothing.
    pub fn cache_outcome(&self, frontend: &Frontend) -> Option<&'static str> {
        if self.fill.is_some() {
            Some("miss")
        } else {
            self.route(frontend)?.cache.map(|_| "bypass")
        }
    }

    /// The coding of a request body the route decodes, and the most it may decode to.
    pub fn decoding(&self, frontend: &Frontend) -> Option<(crate::content::coding::Coding, u64)> {
        Some((self.decode?, self.route(frontend)?.decompress_requests?))
    }

    /// The route's response header rules.
    pub fn response_headers<'f>(&self, frontend: &'f Frontend) -> Option<&'f HeaderRules> {
        self.route(frontend)
            .map(|r| &r.response_headers)
            .filter(|r| !r.is_empty())
    }

    /// The `Set-Cookie` value that keeps the client on the split side it was given
    /// (`tls`: it came over TLS, the cookie is `Secure`).
    pub fn set_cookie(&self, frontend: &Frontend, tls: bool) -> Option<String> {
        let side = self.new_side?;
        self.route(frontend)?.split_cookie(side, tls)
    }

    /// The connect and request timeouts (the route's, else the listener's).
    pub fn timeouts(&self, frontend: &Frontend) -> (Duration, Duration) {
        let t = frontend.timeouts;
        match self.route(frontend) {
            Some(r) => (
                r.connect_timeout.unwrap_or(t.connect),
                r.request_timeout.unwrap_or(t.request),
            ),
            None => (t.connect, t.request),
        }
    }

    /// The route's retry settings (attempts and statuses), if it has its own.
    pub fn retries<'f>(&self, frontend: &'f Frontend) -> Option<(u32, &'f [u16])> {
        self.route(frontend)?
            .retries
            .as_ref()
            .map(|r| (r.attempts, r.on_status.as_slice()))
    }
}
