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

use crate::content::cache::directives::Directives;
use crate::content::cache::freshness::{self, RequestFacts, Use};
use crate::content::cache::store::{Entry, Filling, Turn};
use crate::content::cache::{Cache, key, now};
use crate::content::files::conditional::{self, Conditions, Precondition};
use crate::routing::RequestView;

mod fill;

pub use fill::Capture;

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
            cache.remove(cache.hash(&key), &key);
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
        let same = |name: &str, stored: Option<&[u8]>| {
            headers
                .iter()
                .find(|(n, _)| **n == *name)
                .map(|(_, v)| &v[..])
                == stored
        };
        let mut stored = cache.store.get(hash, &key, same);
        let mut from_disk = false;
        if stored.is_none()
            && let Some(disk) = &cache.disk
            && let Some(id) = disk.find(hash, &key, same)
            && let Some(entry) = Box::pin(disk.read(hash, id)).await
        {
            // Back in memory: the next requests find it there.
            let entry = Arc::new(entry);
            cache.insert(hash, Arc::clone(&entry));
            stored = Some(entry);
            from_disk = true;
        }
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
                if from_disk && fresh {
                    hit.cache_status.push_str("; detail=disk");
                }
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
                            revalidating: entry.has_validator(),
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
            revalidating: stale
                .as_ref()
                .is_some_and(|e| !conditional && e.has_validator()),
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
