//! Whether a response may be stored by a shared cache, how long it stays fresh, how old
//! a stored one is, and what a request may be given from it (RFC 9111 3, 4.2, 4.3, 5.2
//! and RFC 5861's `stale-while-revalidate` / `stale-if-error`).
//!
//! Beyond the RFC, as NGINX and Varnish do by default: a response that sets a cookie is
//! not stored (it is meant for one client), nor a 206 (ranges are cut from whole
//! responses). Times are Unix seconds.

use super::directives::Directives;

/// Statuses a cache may store without explicit freshness (RFC 9110 15.1), but 206.
const HEURISTIC: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Heuristic freshness is this share (per mille) of the time since `Last-Modified`.
const HEURISTIC_SHARE: u64 = 100;

/// What the cache knows of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts {
    /// GET (HEAD requests are answered from stored GETs; other methods pass by).
    pub get: bool,
    /// It carries `Authorization`.
    pub authorization: bool,
    /// Its `Cache-Control`.
    pub directives: Directives,
}

/// What the cache reads of a response head.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseFacts {
    /// The status.
    pub status: u16,
    /// Its `Cache-Control`.
    pub directives: Directives,
    /// `Date`.
    pub date: Option<u64>,
    /// `Expires`: `Some(None)` when present but not a date (already expired).
    pub expires: Option<Option<u64>>,
    /// `Last-Modified`.
    pub last_modified: Option<u64>,
    /// `Age`.
    pub age: Option<u64>,
    /// `ETag` or `Last-Modified` present: it can be revalidated.
    pub validator: bool,
    /// `Vary: *`.
    pub vary_any: bool,
    /// `Set-Cookie`.
    pub sets_cookie: bool,
}

/// The route's settings the decisions need.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Freshness given to heuristically cacheable responses without explicit freshness
    /// or `Last-Modified` (NGINX's `proxy_cache_valid`); 0: none.
    pub default_ttl: u64,
    /// The longest heuristic freshness.
    pub max_heuristic: u64,
}

/// Why a response is not stored (for `Cache-Status`' `detail`).
pub type NotStored = &'static str;

/// Whether a response to `req` may be stored, and for how long it is fresh then.
pub fn storable(
    req: &RequestFacts,
    resp: &ResponseFacts,
    limits: &Limits,
) -> Result<u64, NotStored> {
    let d = &resp.directives;
    if !req.get {
        return Err("method");
    }
    if req.directives.no_store || d.no_store {
        return Err("no-store");
    }
    if d.private {
        return Err("private");
    }
    if req.authorization && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err("authorization");
    }
    if resp.vary_any {
        return Err("vary-star");
    }
    if resp.sets_cookie {
        return Err("set-cookie");
    }
    if resp.status == 206 || !(200..600).contains(&resp.status) {
        return Err("status");
    }
    let explicit = explicit_lifetime(resp);
    let lifetime = match explicit {
        Some(l) => l,
        None if HEURISTIC.contains(&resp.status) || d.public => heuristic(resp, limits),
        None => return Err("status"),
    };
    if lifetime == 0 && !resp.validator && !d.no_cache {
        // Stale at once and nothing to revalidate with: of no use.
        return Err("stale");
    }
    Ok(lifetime)
}

/// The freshness lifetime the response states itself, if any.
fn explicit_lifetime(resp: &ResponseFacts) -> Option<u64> {
    let d = &resp.directives;
    if let Some(s) = d.s_maxage {
        return Some(s);
    }
    if let Some(m) = d.max_age {
        return Some(m);
    }
    match resp.expires? {
        None => Some(0),
        Some(expires) => Some(expires.saturating_sub(resp.date.unwrap_or(expires))),
    }
}

fn heuristic(resp: &ResponseFacts, limits: &Limits) -> u64 {
    match (resp.last_modified, resp.date) {
        (Some(modified), Some(date)) if date > modified => {
            ((date - modified) * HEURISTIC_SHARE / 1000).min(limits.max_heuristic)
        }
        _ => limits.default_ttl,
    }
}

/// When and how a stored response was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the request that fetched it was sent.
    pub request_time: u64,
    /// When its head arrived.
    pub response_time: u64,
    /// Its age then (RFC 9111 4.2.3's `corrected_initial_age`).
    pub initial_age: u64,
    /// How long it is fresh.
    pub lifetime: u64,
}

impl Timing {
    /// The timing of a response received at `response_time` to a request sent at
    /// `request_time`, fresh for `lifetime`.
    pub fn new(
        resp: &ResponseFacts,
        request_time: u64,
        response_time: u64,
        lifetime: u64,
    ) -> Timing {
        let apparent = resp.date.map_or(0, |d| response_time.saturating_sub(d));
        let delay = response_time.saturating_sub(request_time);
        let corrected = resp.age.unwrap_or(0) + delay;
        Timing {
            request_time,
            response_time,
            initial_age: apparent.max(corrected),
            lifetime,
        }
    }

    /// Its age at `now` (the `Age` header sent with it).
    pub fn age(&self, now: u64) -> u64 {
        self.initial_age + now.saturating_sub(self.response_time)
    }
}

/// What a request may be given from a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// It is fresh (for this request): serve it.
    Fresh,
    /// Stale, but within `stale-while-revalidate`: serve it and revalidate behind.
    StaleRevalidating,
    /// Ask the backend first (conditionally when it has a validator); `on_error`: it may
    /// be served if the backend fails or answers 5xx (`stale-if-error`, or a stale
    /// response that does not forbid it).
    Revalidate {
        /// Usable when the backend fails.
        on_error: bool,
    },
}

/// What a request with `req` directives may be given from a response stored with
/// `resp` directives and `timing`, at `now`.
pub fn usable(req: &Directives, resp: &Directives, timing: &Timing, now: u64) -> Use {
    let age = timing.age(now);
    let strict = resp.must_revalidate || resp.proxy_revalidate || resp.s_maxage.is_some();
    let stale_by = age.saturating_sub(timing.lifetime);
    let fresh = age < timing.lifetime
        && req.max_age.is_none_or(|m| age <= m)
        && req.min_fresh.is_none_or(|m| timing.lifetime - age >= m);
    let within = |window: Option<u64>| window.is_some_and(|w| stale_by <= w);
    let on_error = !strict && (within(resp.stale_if_error) || within(req.stale_if_error));
    if resp.no_cache || req.no_cache {
        return Use::Revalidate { on_error };
    }
    if fresh {
        return Use::Fresh;
    }
    if strict {
        return Use::Revalidate { on_error: false };
    }
    // The client accepts this much staleness.
    if age >= timing.lifetime
        && let Some(max_stale) = req.max_stale
        && max_stale.is_none_or(|m| stale_by <= m)
    {
        return Use::Fresh;
    }
    if age >= timing.lifetime && within(resp.stale_while_revalidate) {
        return Use::StaleRevalidating;
    }
    Use::Revalidate { on_error }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        default_ttl: 0,
        max_heuristic: 86_400,
    };

    fn d(v: &str) -> Directives {
        Directives::parse(std::iter::once(v.as_bytes()))
    }

    fn resp(status: u16, cc: &str) -> ResponseFacts {
        ResponseFacts {
            status,
            directives: d(cc),
            date: Some(1_000_000),
            ..ResponseFacts::default()
        }
    }

    const GET: RequestFacts = RequestFacts {
        get: true,
        authorization: false,
        directives: NONE,
    };

    const NONE: Directives = Directives {
        no_store: false,
        no_cache: false,
        private: false,
        public: false,
        must_revalidate: false,
        proxy_revalidate: false,
        no_transform: false,
        only_if_cached: false,
        max_age: None,
        s_maxage: None,
        max_stale: None,
        min_fresh: None,
        stale_while_revalidate: None,
        stale_if_error: None,
    };

    #[test]
    fn what_a_shared_cache_stores() {
        assert_eq!(storable(&GET, &resp(200, "max-age=60"), &LIMITS), Ok(60));
        assert_eq!(
            storable(&GET, &resp(200, "max-age=60, s-maxage=10"), &LIMITS),
            Ok(10)
        );
        assert_eq!(
            storable(&GET, &resp(200, "no-store"), &LIMITS),
            Err("no-store")
        );
        assert_eq!(
            storable(&GET, &resp(200, "private, max-age=60"), &LIMITS),
            Err("private")
        );
        assert_eq!(
            storable(&GET, &resp(206, "max-age=60"), &LIMITS),
            Err("status")
        );
        // A 302 needs explicit freshness; a 200 without any is of no use.
        assert_eq!(storable(&GET, &resp(302, ""), &LIMITS), Err("status"));
        assert_eq!(storable(&GET, &resp(302, "max-age=5"), &LIMITS), Ok(5));
        assert_eq!(storable(&GET, &resp(200, ""), &LIMITS), Err("stale"));
        // no-cache is stored, to be revalidated every time.
        let mut r = resp(200, "no-cache");
        r.validator = true;
        assert_eq!(storable(&GET, &r, &LIMITS), Ok(0));
        let mut post = GET;
        post.get = false;
        assert_eq!(
            storable(&post, &resp(200, "max-age=60"), &LIMITS),
            Err("method")
        );
        let mut auth = GET;
        auth.authorization = true;
        assert_eq!(
            storable(&auth, &resp(200, "max-age=60"), &LIMITS),
            Err("authorization")
        );
        assert_eq!(
            storable(&auth, &resp(200, "public, max-age=60"), &LIMITS),
            Ok(60)
        );
        let mut cookie = resp(200, "max-age=60");
        cookie.sets_cookie = true;
        assert_eq!(storable(&GET, &cookie, &LIMITS), Err("set-cookie"));
        let mut star = resp(200, "max-age=60");
        star.vary_any = true;
        assert_eq!(storable(&GET, &star, &LIMITS), Err("vary-star"));
    }

    #[test]
    fn expires_and_heuristics() {
        let mut r = resp(200, "");
        r.expires = Some(Some(1_000_300));
        assert_eq!(storable(&GET, &r, &LIMITS), Ok(300));
        r.expires = Some(None);
        r.validator = true;
        assert_eq!(storable(&GET, &r, &LIMITS), Ok(0));
        // 10% of the time since Last-Modified, for heuristically cacheable statuses only.
        let mut r = resp(200, "");
        r.last_modified = Some(1_000_000 - 10_000);
        r.validator = true;
        assert_eq!(storable(&GET, &r, &LIMITS), Ok(1000));
        r.status = 500;
        assert_eq!(storable(&GET, &r, &LIMITS), Err("status"));
        let ttl = Limits {
            default_ttl: 30,
            ..LIMITS
        };
        assert_eq!(storable(&GET, &resp(404, ""), &ttl), Ok(30));
    }

    #[test]
    fn age_counts_the_trip_and_the_stay() {
        let mut r = resp(200, "max-age=60");
        r.age = Some(5);
        r.date = Some(100);
        let t = Timing::new(&r, 101, 103, 60);
        // Apparent age 3, corrected Age 5 + 2 of delay: 7.
        assert_eq!(t.age(103), 7);
        assert_eq!(t.age(113), 17);
    }

    #[test]
    fn fresh_stale_and_revalidation() {
        let t = Timing {
            request_time: 0,
            response_time: 0,
            initial_age: 0,
            lifetime: 60,
        };
        let none = Directives::default();
        assert_eq!(usable(&none, &none, &t, 30), Use::Fresh);
        assert_eq!(
            usable(&none, &none, &t, 60),
            Use::Revalidate { on_error: false }
        );
        assert_eq!(
            usable(&d("max-age=10"), &none, &t, 30),
            Use::Revalidate { on_error: false }
        );
        assert_eq!(
            usable(&d("min-fresh=40"), &none, &t, 30),
            Use::Revalidate { on_error: false }
        );
        assert_eq!(
            usable(&d("no-cache"), &none, &t, 1),
            Use::Revalidate { on_error: false }
        );
        assert_eq!(
            usable(&none, &d("no-cache"), &t, 1),
            Use::Revalidate { on_error: false }
        );
        assert_eq!(usable(&d("max-stale=30"), &none, &t, 80), Use::Fresh);
        assert_eq!(
            usable(&d("max-stale=10"), &none, &t, 80),
            Use::Revalidate { on_error: false }
        );
        let swr = d("stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(usable(&none, &swr, &t, 80), Use::StaleRevalidating);
        assert_eq!(
            usable(&none, &swr, &t, 100),
            Use::Revalidate { on_error: true }
        );
        assert_eq!(
            usable(&none, &swr, &t, 700),
            Use::Revalidate { on_error: false }
        );
        // must-revalidate forbids serving stale, even on errors.
        let strict = d("must-revalidate, stale-if-error=600, max-age=60");
        assert_eq!(
            usable(&d("max-stale"), &strict, &t, 80),
            Use::Revalidate { on_error: false }
        );
    }
}
