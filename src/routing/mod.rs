//! Routing: which pool (or which answer) a request gets.
//!
//! A listener's [`RouteTable`] is an ordered list of [`Route`]s; the first whose
//! conditions all hold decides ([`RouteTable::select`]). A route forwards to a pool, splits
//! between pools by weight (a client keeps its side: a cookie Fulcrum sets, or a hash of a
//! key), redirects, or answers with a fixed response. Requests that match no route go to
//! the listener's default pool, or get 404.
//!
//! Routing sees a request only through [`RequestView`], which both HTTP engines implement
//! over what they parsed, so that the same table gives the same answer whatever the
//! protocol. Pools are named by their index in the snapshot; this module holds no
//! connection, backend or pool state, and never allocates on the forward path.

pub mod matcher;
pub mod rules;

use std::net::IpAddr;
use std::time::Duration;

use crate::balance::hash::{hash_bytes, mix};
use crate::config::routes::{
    FixedResponse, Redirect, RouteAction, RouteConfig, RouteRetries, SplitKey,
};
use crate::config::{HashKey, ListenerConfig, PoolConfig};

pub use matcher::{Matcher, host_name};
pub use rules::{HeaderRules, PathRewrite};

/// What routing (and every other phase) may read of a request, whatever its protocol.
pub trait RequestView {
    /// The method, as sent (`GET`).
    fn method(&self) -> &[u8];
    /// The host the backend will see: the target's authority for absolute-form and
    /// HTTP/2 requests, else the `Host` header (port included, as sent).
    fn host(&self) -> Option<&[u8]>;
    /// The path, without the query.
    fn path(&self) -> &[u8];
    /// The query, without the `?`.
    fn query(&self) -> Option<&[u8]>;
    /// Every value of header `name` (given in lower case), in order.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
    /// The client's address.
    fn client_ip(&self) -> IpAddr;
}

/// A listener's routes and default pool.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Box<[Route]>,
    default: Option<usize>,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// Its name, for logs.
    pub name: Box<str>,
    matcher: Matcher,
    action: Action,
    /// The matched `path_prefix`, for prefix rewrites and redirects.
    prefix: Option<Box<str>>,
    /// How the path changes before forwarding.
    pub rewrite: PathRewrite,
    /// Changes to the request headers.
    pub request_headers: HeaderRules,
    /// Changes to the response headers.
    pub response_headers: HeaderRules,
    /// Route-specific connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Route-specific request timeout.
    pub request_timeout: Option<Duration>,
    /// Route-specific retry settings.
    pub retries: Option<RouteRetries>,
    /// Pool used while the route's pool has no backend up.
    pub fallback: Option<usize>,
    /// Rate limits checked on each request (indices into the snapshot's limiters).
    pub rate_limits: Box<[usize]>,
    /// Bounds on the request (methods, body and URI sizes).
    pub request_limits: crate::config::routes::RequestLimits,
    /// The `Allow` header of its 405s.
    pub allow: Box<str>,
    /// Its users, when it asks for basic authentication.
    pub basic_auth: Option<std::sync::Arc<crate::policy::auth::BasicAuth>>,
    /// Its auth service, when it asks one about every request.
    pub forward_auth: Option<std::sync::Arc<crate::policy::forward_auth::ForwardAuth>>,
    /// Its response compression (its own, else its listener's).
    pub compression: Option<crate::config::compression::Compression>,
    /// Request bodies sent compressed are decoded, up to this many bytes.
    pub decompress_requests: Option<u64>,
    /// The cache its responses are stored in (index into the snapshot's caches).
    pub cache: Option<usize>,
}

#[derive(Debug)]
enum Action {
    Pool(usize),
    Split(Split),
    Redirect(Redirect),
    Respond(FixedResponse),
    Files(crate::content::files::Files),
}

#[derive(Debug)]
struct Split {
    /// Pool index, weight, pool name (the cookie's value).
    sides: Box<[(usize, u32, Box<str>)]>,
    total: u32,
    key: SplitBy,
}

#[derive(Debug)]
enum SplitBy {
    Cookie(Box<str>),
    Hash(HashKey),
}

/// Routing's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The index of the route that matched (`None`: the listener's default).
    pub route: Option<usize>,
    /// What to do.
    pub target: Target,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Forward it to this pool; when the client was just given a side of a split, the
    /// response sets the split cookie for that side.
    Pool {
        /// Index of the pool in the snapshot.
        pool: usize,
        /// The side of the route's split to remember in a cookie.
        new_side: Option<usize>,
    },
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// Where to.
        location: String,
    },
    /// Answer with the route's fixed response.
    Respond,
    /// Serve the route's files.
    Files,
    /// No route matched and the listener has no default pool: 404.
    NotFound,
}

impl RouteTable {
    /// Compiles a listener's routes; pool indexes are those of `pools`.
    pub fn new(l: &ListenerConfig, pools: &[PoolConfig]) -> RouteTable {
        RouteTable {
            routes: l.routes.iter().map(|r| Route::new(r, pools)).collect(),
            default: l.pool,
        }
    }

    /// The table of a listener with no routes, sending everything to `pool`.
    pub fn single(pool: usize) -> RouteTable {
        RouteTable {
            routes: Box::new([]),
            default: Some(pool),
        }
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every pool this table can send to (default, routes, splits, fallbacks).
    pub fn pools(&self) -> impl Iterator<Item = usize> + '_ {
        self.default
            .into_iter()
            .chain(self.routes.iter().flat_map(|r| {
                let own: Box<dyn Iterator<Item = usize>> = match &r.action {
                    Action::Pool(p) => Box::new(std::iter::once(*p)),
                    Action::Split(s) => Box::new(s.sides.iter().map(|(p, _, _)| *p)),
                    _ => Box::new(std::iter::empty()),
                };
                own.chain(r.fallback)
            }))
    }

    /// Routes `req` (which came over TLS when `tls`).
    #[inline]
    pub fn select<V: RequestView + ?Sized>(&self, req: &V, tls: bool) -> Selected {
        let mut seen = matcher::Seen::default();
        for (i, route) in self.routes.iter().enumerate() {
            if route.matcher.matches(req, &mut seen) {
                return Selected {
                    route: Some(i),
                    target: route.target(req, tls),
                };
            }
        }
        Selected {
            route: None,
            target: match self.default {
                Some(pool) => Target::Pool {
                    pool,
                    new_side: None,
                },
                None => Target::NotFound,
            },
        }
    }
}

impl Route {
    fn new(c: &RouteConfig, pools: &[PoolConfig]) -> Route {
        use crate::config::routes::PathMatch;
        let prefix = match &c.conditions.path {
            Some(PathMatch::Prefix(p)) => Some(Box::<str>::from(p.as_str())),
            _ => None,
        };
        let rewrite = match (&c.strip_prefix, &c.rewrite_prefix, &prefix) {
            (Some(strip), _, _) => PathRewrite::Strip(strip.as_bytes().into()),
            (None, Some(with), Some(prefix)) => {
                PathRewrite::Replace(prefix.as_bytes().into(), with.as_bytes().into())
            }
            _ => PathRewrite::None,
        };
        let action = match &c.action {
            RouteAction::Pool(p) => Action::Pool(*p),
            RouteAction::Split { sides, key } => Action::Split(Split {
                sides: sides
                    .iter()
                    .map(|&(p, w)| {
                        let name = pools
                            .get(p)
                            .map_or_else(|| p.to_string(), |c| c.name.clone());
                        (p, w, name.into())
                    })
                    .collect(),
                total: sides.iter().map(|(_, w)| w).sum(),
                key: match key {
                    SplitKey::Cookie(name) => SplitBy::Cookie(name.as_str().into()),
                    SplitKey::Hash(h) => SplitBy::Hash(h.clone()),
                },
            }),
            RouteAction::Redirect(r) => Action::Redirect(r.clone()),
            RouteAction::Respond(f) => Action::Respond(f.clone()),
            RouteAction::Files(f) => Action::Files(crate::content::files::Files::new(f)),
        };
        Route {
            name: c.name.as_str().into(),
            matcher: Matcher::new(&c.conditions),
            action,
            prefix,
            rewrite,
            request_headers: HeaderRules::new(&c.request_headers),
            response_headers: HeaderRules::new(&c.response_headers),
            connect_timeout: c.connect_timeout,
            request_timeout: c.request_timeout,
            retries: c.retries.clone(),
            fallback: c.fallback,
            rate_limits: c.rate_limits.as_slice().into(),
            request_limits: c.request_limits.clone(),
            allow: c.request_limits.allowed_methods.join(", ").into(),
            basic_auth: c
                .request_limits
                .basic_auth
                .as_ref()
                .map(|a| crate::policy::auth::BasicAuth::new(&a.file, &a.realm)),
            forward_auth: c.request_limits.forward_auth.as_ref().and_then(|a| {
                crate::policy::forward_auth::ForwardAuth::new(&a.url, &a.send, &a.copy, a.timeout)
                    .map(std::sync::Arc::new)
            }),
            compression: c.compression.clone(),
            decompress_requests: c.decompress_requests,
            cache: c.cache,
        }
    }

    fn target<V: RequestView + ?Sized>(&self, req: &V, tls: bool) -> Target {
        match &self.action {
            Action::Pool(pool) => Target::Pool {
                pool: *pool,
                new_side: None,
            },
            Action::Split(split) => split.choose(req),
            Action::Redirect(r) => Target::Redirect {
                status: r.status,
                location: rules::location(r, self.prefix.as_deref(), req, tls),
            },
            Action::Respond(_) => Target::Respond,
            Action::Files(_) => Target::Files,
        }
    }

    /// Its conditions.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Whether it splits traffic between pools.
    pub fn is_split(&self) -> bool {
        matches!(self.action, Action::Split(_))
    }

    /// The files of a `files` route, and the prefix removed from paths before they
    /// are looked up (`strip_prefix`).
    pub fn files(&self) -> Option<(&crate::content::files::Files, Option<&[u8]>)> {
        match &self.action {
            Action::Files(f) => Some((
                f,
                match &self.rewrite {
                    PathRewrite::Strip(p) => Some(&p[..]),
                    _ => None,
                },
            )),
            _ => None,
        }
    }

    /// The fixed response of a `respond` route.
    pub fn fixed_response(&self) -> Option<&FixedResponse> {
        match &self.action {
            Action::Respond(f) => Some(f),
            _ => None,
        }
    }

    /// The `Set-Cookie` value that keeps a client on side `side` of the route's split
    /// (`Secure` when the client came over TLS).
    pub fn split_cookie(&self, side: usize, tls: bool) -> Option<String> {
        let Action::Split(split) = &self.action else {
            return None;
        };
        let SplitBy::Cookie(name) = &split.key else {
            return None;
        };
        let (_, _, value) = split.sides.get(side)?;
        let secure = if tls { "; Secure" } else { "" };
        Some(format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"
        ))
    }
}

impl Split {
    fn choose<V: RequestView + ?Sized>(&self, req: &V) -> Target {
        let point = match &self.key {
            SplitBy::Cookie(name) => {
                let kept = req
                    .header_values("cookie")
                    .find_map(|v| find_cookie(v, name.as_bytes()))
                    .and_then(|v| {
                        self.sides
                            .iter()
                            .position(|(_, w, n)| *w > 0 && v == n.as_bytes())
                    });
                if let Some(side) = kept {
                    return Target::Pool {
                        pool: self.sides[side].0,
                        new_side: None,
                    };
                }
                let side = self.side_at(fastrand::u32(..self.total));
                return Target::Pool {
                    pool: self.sides[side].0,
                    new_side: Some(side),
                };
            }
            SplitBy::Hash(key) => (hash_key(req, key) % u64::from(self.total)) as u32,
        };
        Target::Pool {
            pool: self.sides[self.side_at(point)].0,
            new_side: None,
        }
    }

    /// The side owning point `p` of `0..total`.
    fn side_at(&self, mut p: u32) -> usize {
        for (i, (_, w, _)) in self.sides.iter().enumerate() {
            if p < *w {
                return i;
            }
            p -= w;
        }
        self.sides.len() - 1
    }
}

/// The hash of what `key` names in `req`: a missing header or cookie falls back to the
/// client's address.
pub fn hash_key<V: RequestView + ?Sized>(req: &V, key: &HashKey) -> u64 {
    let value = match key {
        HashKey::SourceIp => None,
        HashKey::Uri => {
            // The whole target, query included, as both engines received it.
            return match req.query() {
                None => hash_bytes(req.path()),
                Some(q) => hash_target(req.path(), q),
            };
        }
        HashKey::Header(name) => req.header_values(name).next(),
        HashKey::Cookie(name) => req
            .header_values("cookie")
            .find_map(|v| find_cookie(v, name.as_bytes())),
    };
    value.map_or_else(|| hash_ip(req.client_ip()), hash_bytes)
}

/// `hash_bytes(path + "?" + query)` without building the string.
fn hash_target(path: &[u8], query: &[u8]) -> u64 {
    crate::balance::hash::hash_parts(&[path, b"?", query])
}

/// Hash of a client address.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => mix(u64::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            mix((n as u64) ^ mix((n >> 64) as u64))
        }
    }
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn find_cookie<'v>(header: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| &pair[eq + 1..])
    })
}

#[cfg(test)]
mod tests;
