//! The cache phase's fetches (see the parent module): what a miss asks the backend (a
//! revalidation), what it makes of the answer (a 304 refreshing the stored response,
//! stale content when the backend fails), and the [`Capture`] that keeps a response as it
//! is sent and stores it at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Fill, Hit};
use crate::content::cache::directives::{Directives, delta_seconds};
use crate::content::cache::freshness::{self, ResponseFacts, Timing};
use crate::content::cache::now;
use crate::content::cache::store::Entry;
use crate::content::files::conditional;

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

    /// [`Fill::refreshed`] with the headers of a 304 received by hyper.
    pub fn refreshed_by(self: Box<Self>, headers: &http::HeaderMap) -> Option<Hit> {
        self.refreshed(
            headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        )
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
        let stored = fill.cache.insert(fill.hash, Arc::new(entry));
        if stored {
            fill.cache.counts.stored.fetch_add(1, Ordering::Relaxed);
        }
        stored
    }
}
