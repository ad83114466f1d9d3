//! The cache phase (see `content::cache`): for a request of a route with a `cache`,
//! after admission, either an answer from the cache ([`Lookup::Hit`]) or a fetch whose
//! response is stored when it may be ([`Lookup::Miss`] carrying a [`Fill`]). Concurrent
//! misses of one key wait for the first one's fetch (up to the cache's `lock_timeout`),
//! then look again: N misses, one backend request. Requests with other methods pass by
//! (and invalidate what is stored for their URL, RFC 9111 4.4), as do ranges.
//!
//! The engines write hits ([`Hit::head`]) and, on a miss, hand the response head they
//! send and the body bytes they send to a [`Capture`], which stores the entry at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::content::cache::directives::{Directives, delta_seconds};
use crate::content::cache::freshness::{self, RequestFacts, ResponseFacts, Timing, Use};
use crate::content::cache::store::{Entry, Filling, Turn};
use crate::content::cache::{Cache, key, now};
use crate::content::files::conditional::{self, Conditions, Precondition};
use crate::routing::RequestView;

/// What the cache phase found.
#[derive(Debug)]
pub enum Lookup {
    /// Not for the cache.
    Bypass,
    /// Answered from the cache.
    Hit(Box<Hit>),
    /// Fetched from the backend, stored if it may be.
    Miss(Box<Fill>),
    /// Answered from the cache, stale, within `stale-while-revalidate`; with the fetch
    /// that refreshes it (none when another fetch of the key is under way).
    Stale(Box<Hit>, Option<Box<Fill>>),
}

/// An answer from the cache.
#[derive(Debug)]
pub struct Hit {
    /// The stored response.
    pub entry: Arc<Entry>,
    /// Its age now.
    pub age: u64,
    /// The status sent: the entry's, or 304 for a conditional request it satisfies.
    pub status: u16,
    /// Its `Cache-Status`.
    pub cache_status: String,
    /// Served stale (the log's `cache=stale`).
    pub stale: bool,
    /// The fetch that refreshes it in the background, for the engine to start.
    pub refresh: Option<Box<Refresh>>,
}

/// A stale response served under `stale-while-revalidate`, and the fetch that refreshes
/// it off the request's path (started by the engine: `l7::http2::refresh`).
#[derive(Debug)]
pub struct Refresh {
    /// The fetch: its response is stored, or a 304 to it refreshes the stored one.
    pub fill: Box<Fill>,
    /// Where it goes: the request's pool, as routed.
    pub fwd: super::Forward,
}

/// A miss on its way to the backend.
#[derive(Debug)]
pub struct Fill {
    cache: Arc<Cache>,
    hash: u64,
    key: Vec<u8>,
    request: RequestFacts,
    request_time: u64,
    /// The request's headers (names in lower case), for the variant's `Vary` values.
    headers: Vec<(Box<str>, Box<[u8]>)>,
    /// The stored response, stale (or `no-cache`), if any: revalidated, or served when
    /// the backends fail.
    stale: Option<Arc<Entry>>,
    /// The backend is asked whether `stale` is still good (its validators are sent).
    revalidating: bool,
    /// Other requests for the key wait on this one.
    _filling: Option<Filling>,
}

/// What the cache phase needs of a request, read from it at once: the lookup may
/// wait for another request's fetch, and the request's bytes are not kept meanwhile.
#[derive(Debug)]
pub struct Asking {
    cache: Arc<Cache>,
    key: Vec<u8>,
    hash: u64,
    request: RequestFacts,
    if_none_match: Option<Box<[u8]>>,
    if_modified_since: Option<Box<[u8]>>,
    /// The request's headers (names in lower case) a `Vary` may name.
    headers: Vec<(Box<str>, Box<[u8]>)>,
}

/// The first half of the cache phase, for a request to a route storing in `cache`: what
/// the lookup needs, or `None` when the request is not for the cache (another method,
/// a range, `no-store`).
pub fn ask<V: RequestView + ?Sized>(cache: &Arc<Cache>, req: &V) -> Option<Box<Asking>> {
    let method = req.method();
    let get = method == b"GET";
    let mut key = Vec::with_capacity(128);
    key::build(&cache.config.key, req, &mut key);
    if !get && method != b"HEAD" {
        if !matches!(method, b"OPTIONS" | b"TRACE") {
            // A change through this URL: what is stored for it is out of date.
            cache.store.remove(cache.hash(&key), &key);
        }
        return bypass(cache);
    }
    if req.header_values("range").next().is_some() {
        return bypass(cache);
    }
    let directives = Directives::parse(req.header_values("cache-control"));
    if directives.no_store {
        return bypass(cache);
    }
    let first = |name: &'static str| req.header_values(name).next().map(Box::<[u8]>::from);
    Some(Box::new(Asking {
        cache: Arc::clone(cache),
        hash: cache.hash(&key),
        key,
        request: RequestFacts {
            get,
            authorization: req.header_values("authorization").next().is_some(),
            directives,
        },
        if_none_match: first("if-none-match"),
        if_modified_since: first("if-modified-since"),
        headers: req_headers(req),
    }))
}

/// The second half: a hit, or a miss (after waiting for the fetch of the same key by
/// another request, if there is one).
pub async fn lookup(asking: Box<Asking>) -> Lookup {
    let Asking {
        cache,
        key,
        hash,
        request,
        if_none_match,
        if_modified_since,
        headers,
    } = *asking;
    let directives = request.directives;
    let conditional = if_none_match.is_some() || if_modified_since.is_some();
    let mut waited = false;
    loop {
        let stored = cache.store.get(hash, &key, |name, stored| {
            headers
                .iter()
                .find(|(n, _)| **n == *name)
                .map(|(_, v)| &v[..])
                == stored
        });
        let stale = stored.clone();
        if let Some(entry) = stored {
            let now = now();
            // The cache's own window for responses that name none.
            let mut said = entry.directives;
            let window = cache.config.stale_while_revalidate.as_secs();
            if said.stale_while_revalidate.is_none() && window > 0 {
                said.stale_while_revalidate = Some(window);
            }
            let usable = freshness::usable(&directives, &said, &entry.timing, now);
            if usable == Use::Fresh || usable == Use::StaleRevalidating {
                let status = conditional_status(
                    &entry,
                    if_none_match.as_deref(),
                    if_modified_since.as_deref(),
                );
                let age = entry.timing.age(now);
                let ttl = entry.timing.lifetime as i64 - age as i64;
                let fresh = usable == Use::Fresh;
                let mut hit = Box::new(Hit {
                    cache_status: format!("{}; hit; ttl={ttl}", cache.config.name),
                    age,
                    entry,
                    status,
                    stale: !fresh,
                    refresh: None,
                });
                if fresh {
                    cache.counts.hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Hit(hit);
                }
                cache.counts.stale.fetch_add(1, Ordering::Relaxed);
                hit.cache_status.push_str("; detail=stale-while-revalidate");
                // One refresh at a time: none when the key is being fetched already.
                let refresh = match cache.store.fill(hash) {
                    Turn::Fetch(filling) => {
                        cache.counts.refreshes.fetch_add(1, Ordering::Relaxed);
                        let entry = &hit.entry;
                        Some(Box::new(Fill {
                            revalidating: entry.header("etag").is_some()
                                || entry.header("last-modified").is_some(),
                            stale: Some(Arc::clone(entry)),
                            cache: Arc::clone(&cache),
                            hash,
                            key: key.clone(),
                            // The refresh is a GET, whatever the request was.
                            request: RequestFacts {
                                get: true,
                                ..request
                            },
                            request_time: now,
                            headers: headers.clone(),
                            _filling: Some(filling),
                        }))
                    }
                    Turn::Wait(_) => None,
                };
                return Lookup::Stale(hit, refresh);
            }
        }
        if !request.get {
            cache.counts.bypassed.fetch_add(1, Ordering::Relaxed);
            return Lookup::Bypass;
        }
        let filling = match cache.store.fill(hash) {
            Turn::Fetch(f) => Some(f),
            Turn::Wait(fill) if !waited => {
                cache.counts.coalesced.fetch_add(1, Ordering::Relaxed);
                waited = true;
                fill.wait(cache.config.lock_timeout).await;
                continue;
            }
            // Waited once already (the fetch was not stored, or took too long).
            Turn::Wait(_) => None,
        };
        cache.counts.misses.fetch_add(1, Ordering::Relaxed);
        return Lookup::Miss(Box::new(Fill {
            revalidating: stale.as_ref().is_some_and(|e| {
                !conditional && (e.header("etag").is_some() || e.header("last-modified").is_some())
            }),
            stale,
            cache,
            hash,
            key,
            request,
            request_time: now(),
            headers,
            _filling: filling,
        }));
    }
}

fn bypass(cache: &Cache) -> Option<Box<Asking>> {
    cache.counts.bypassed.fetch_add(1, Ordering::Relaxed);
    None
}

/// The request's headers that a `Vary` may name (all but the few no response varies on).
fn req_headers<V: RequestView + ?Sized>(req: &V) -> Vec<(Box<str>, Box<[u8]>)> {
    const NAMES: [&str; 12] = [
        "accept",
        "accept-encoding",
        "accept-language",
        "origin",
        "user-agent",
        "cookie",
        "authorization",
        "x-requested-with",
        "accept-charset",
        "sec-ch-ua-mobile",
        "x-forwarded-proto",
        "device-memory",
    ];
    NAMES
        .iter()
        .filter_map(|n| req.header_values(n).next().map(|v| ((*n).into(), v.into())))
        .collect()
}

/// 304 when the request's own conditions are met by `entry` (a 200), else its status.
fn conditional_status(
    entry: &Entry,
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
) -> u16 {
    if entry.status != 200 {
        return entry.status;
    }
    let conditions = Conditions {
        if_none_match,
        if_modified_since,
        ..Conditions::default()
    };
    if conditions.if_none_match.is_none() && conditions.if_modified_since.is_none() {
        return 200;
    }
    let etag = entry
        .header("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("\"\"");
    let modified = entry
        .header("last-modified")
        .and_then(|v| conditional::parse_date(v.as_bytes()))
        .unwrap_or(u64::MAX);
    match conditional::evaluate(&conditions, etag, modified) {
        Precondition::NotModified => 304,
        _ => 200,
    }
}

impl Hit {
    /// The head of the answer: the stored headers, `Age` and `Cache-Status`, each given
    /// to `put` (the length is the engine's).
    pub fn head(&self, mut put: impl FnMut(&str, &[u8])) {
        for (name, value) in self.entry.headers.iter() {
            put(name.as_str(), value.as_bytes());
        }
        put("age", crate::digits::Digits::decimal(self.age).as_bytes());
        put("cache-status", self.cache_status.as_bytes());
    }

    /// Whether a body is sent (not for 304s, nor HEAD requests: `head_only`).
    pub fn body(&self, head_only: bool) -> Option<&Bytes> {
        (!head_only && self.status != 304 && self.status != 204).then_some(&self.entry.body)
    }
}

/// A response being sent to the client on a miss, its body kept to be stored.
#[derive(Debug)]
pub struct Capture {
    fill: Box<Fill>,
    facts: ResponseFacts,
    lifetime: u64,
    response_time: u64,
    status: u16,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    vary: Vec<Box<str>>,
    body: Vec<u8>,
    max: usize,
    /// Past `max`: nothing is stored.
    over: bool,
}

impl Fill {
    /// The headers that ask the backend whether the stale response is still good
    /// (`If-None-Match`, `If-Modified-Since`), in the form the engines add headers.
    pub fn revalidation(&self) -> Vec<(http::HeaderName, Option<http::HeaderValue>)> {
        let Some(entry) = self.stale.as_ref().filter(|_| self.revalidating) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(tag) = entry.header("etag") {
            out.push((http::header::IF_NONE_MATCH, Some(tag.clone())));
        }
        if let Some(date) = entry.header("last-modified") {
            out.push((http::header::IF_MODIFIED_SINCE, Some(date.clone())));
        }
        out
    }

    /// Whether a response of `status` is for the cache phase rather than the client: a
    /// 304 to a revalidation, or a failure with a stale response at hand.
    pub fn wants(&self, status: u16) -> bool {
        (status == 304 && self.revalidating) || (status >= 500 && self.stale.is_some())
    }

    /// Whether the backend is asked to revalidate a stored response.
    pub fn revalidating(&self) -> bool {
        self.revalidating
    }

    /// After a 304 to a revalidation: the stored response refreshed with the 304's
    /// headers (`headers`, as received), stored again, and served.
    pub fn refreshed<'h>(
        self: Box<Self>,
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Option<Hit> {
        let old = self.stale.clone()?;
        let mut merged: Vec<(http::HeaderName, http::HeaderValue)> = old.headers.to_vec();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_slice(),
                b"content-length" | b"transfer-encoding" | b"connection" | b"keep-alive" | b"age"
            ) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(&lower),
                http::HeaderValue::from_bytes(value),
            ) {
                merged.retain(|(m, _)| *m != n);
                merged.push((n, v));
            }
        }
        let status = old.status;
        let name = self.cache.config.name.clone();
        let cache = Arc::clone(&self.cache);
        let list: Vec<(&[u8], &[u8])> = merged
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            .collect();
        let mut capture = match self.capture(status, list.into_iter()) {
            Ok(c) => c,
            // No longer storable: served once as it is now.
            Err(_) => {
                return Some(Hit {
                    entry: old,
                    age: 0,
                    status,
                    cache_status: format!("{name}; fwd=stale; fwd-status=304"),
                    stale: false,
                    refresh: None,
                });
            }
        };
        capture.replace_body(old.body.to_vec());
        capture.store();
        let entry = cache
            .store
            .get(cache.hash(&old.key), &old.key, |n, value| {
                old.vary
                    .iter()
                    .find(|(m, _)| **m == *n)
                    .is_some_and(|(_, v)| v.as_deref() == value)
            })?;
        Some(Hit {
            age: entry.timing.age(now()),
            entry,
            status,
            cache_status: format!("{name}; fwd=stale; fwd-status=304; stored"),
            stale: false,
            refresh: None,
        })
    }

    /// When the fetch failed with `status` (an error of Fulcrum's or the backend's
    /// 5xx): the stale response to serve instead, if it may be (`stale-if-error` of the
    /// response or the request, or the cache's `stale_if_error`; never past
    /// `must-revalidate`).
    pub fn stale_on_error(&self, status: u16) -> Option<Hit> {
        let entry = self.stale.as_ref()?;
        let d = &entry.directives;
        if d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache {
            return None;
        }
        let age = entry.timing.age(now());
        let stale_by = age.saturating_sub(entry.timing.lifetime);
        let window = d
            .stale_if_error
            .unwrap_or(0)
            .max(self.request.directives.stale_if_error.unwrap_or(0))
            .max(self.cache.config.stale_if_error.as_secs());
        if window == 0 || stale_by > window {
            return None;
        }
        self.cache.counts.stale.fetch_add(1, Ordering::Relaxed);
        Some(Hit {
            entry: Arc::clone(entry),
            age,
            status: entry.status,
            cache_status: format!(
                "{}; hit; fwd=stale; fwd-status={status}; detail=stale-if-error",
                self.cache.config.name
            ),
            stale: true,
            refresh: None,
        })
    }

    /// The `Cache-Status` of a response fetched on this miss.
    pub fn status_line(&self, stored: bool) -> String {
        let name = &self.cache.config.name;
        if stored {
            format!("{name}; fwd=miss; stored")
        } else {
            format!("{name}; fwd=miss")
        }
    }

    /// Begins keeping a response whose status and headers (as sent to the client) are
    /// given, if it may be stored; else gives the fill back (dropped at the end of the
    /// exchange, which wakes the requests waiting for it).
    pub fn capture<'h>(
        self: Box<Self>,
        status: u16,
        headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Result<Box<Capture>, Box<Fill>> {
        let mut facts = ResponseFacts {
            status,
            ..ResponseFacts::default()
        };
        let mut kept = Vec::new();
        let mut vary = Vec::new();
        let mut cache_control = Vec::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            match lower.as_slice() {
                b"cache-control" => cache_control.push(value.to_vec()),
                b"date" => facts.date = conditional::parse_date(value),
                b"expires" => facts.expires = Some(conditional::parse_date(value)),
                b"last-modified" => {
                    facts.last_modified = conditional::parse_date(value);
                    facts.validator = true;
                }
                b"etag" => facts.validator = true,
                b"age" => facts.age = delta_seconds(value.trim_ascii()),
                b"set-cookie" => facts.sets_cookie = true,
                b"vary" => {
                    for v in value.split(|&b| b == b',') {
                        let v = v.trim_ascii();
                        if v == b"*" {
                            facts.vary_any = true;
                        } else if !v.is_empty() {
                            vary.push(String::from_utf8_lossy(v).to_ascii_lowercase().into());
                        }
                    }
                }
                _ => {}
            }
            if matches!(
                lower.as_slice(),
                b"age"
                    | b"connection"
                    | b"keep-alive"
                    | b"transfer-encoding"
                    | b"content-length"
                    | b"cache-status"
            ) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(&lower),
                http::HeaderValue::from_bytes(value),
            ) {
                kept.push((n, v));
            }
        }
        facts.directives = Directives::parse(cache_control.iter().map(Vec::as_slice));
        let lifetime = match freshness::storable(&self.request, &facts, &self.cache.limits()) {
            Ok(l) => l,
            Err(_) => return Err(self),
        };
        let max = self.cache.max_object();
        Ok(Box::new(Capture {
            response_time: now(),
            max,
            fill: self,
            facts,
            lifetime,
            status,
            headers: kept,
            vary,
            body: Vec::new(),
            over: false,
        }))
    }
}

impl Capture {
    /// The `Cache-Status` of the response being kept.
    pub fn status_line(&self) -> String {
        self.fill.status_line(true)
    }

    /// Keeps `bytes` of the body (as sent: decoded from the backend's framing).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.over {
            return;
        }
        if self.body.len() + bytes.len() > self.max {
            self.over = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    /// Runs `f` on the body kept so far.
    pub fn with_body<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        f(&self.body)
    }

    /// Replaces the body kept (the same bytes, de-framed).
    pub fn replace_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }

    /// Stores the response, whose body ended where its framing said.
    pub fn store(self: Box<Self>) -> bool {
        if self.over {
            return false;
        }
        let fill = &self.fill;
        let vary = self
            .vary
            .iter()
            .map(|name| {
                let value = fill
                    .headers
                    .iter()
                    .find(|(n, _)| **n == **name)
                    .map(|(_, v)| v.clone());
                (name.clone(), value)
            })
            .collect();
        let timing = Timing::new(
            &self.facts,
            fill.request_time,
            self.response_time,
            self.lifetime,
        );
        let entry = Entry::new(
            fill.key.clone().into_boxed_slice(),
            vary,
            self.status,
            self.headers.into_boxed_slice(),
            Bytes::from(self.body),
            self.facts.directives,
            timing,
        );
        let stored = fill.cache.store.insert(fill.hash, entry);
        if stored {
            fill.cache.counts.stored.fetch_add(1, Ordering::Relaxed);
        }
        stored
    }
}
