//! `Cache-Control` (RFC 9111 5.2) as a shared cache reads it, from a request or a
//! response: every directive this cache acts on, parsed once from the header values in
//! place. Unknown directives are ignored (as the RFC asks); a malformed number makes its
//! directive count as absent, except `max-age` / `s-maxage`, which then count as 0
//! (stale at once: the safe reading of a broken freshness).

/// The directives of one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (on a response: with or without field names, stored but revalidated).
    pub no_cache: bool,
    /// `private` (a shared cache does not store it).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `only-if-cached` (requests).
    pub only_if_cached: bool,
    /// `max-age=N`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage=N`, seconds (responses, shared caches).
    pub s_maxage: Option<u64>,
    /// `max-stale` (requests): `Some(None)` any staleness, `Some(Some(N))` up to N.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh=N` (requests).
    pub min_fresh: Option<u64>,
    /// `stale-while-revalidate=N` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861).
    pub stale_if_error: Option<u64>,
}

impl Directives {
    /// The directives of every value of a `Cache-Control` header, in order.
    pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> Directives {
        let mut d = Directives::default();
        for value in values {
            for item in split_list(value) {
                let (name, arg) = match item.iter().position(|&b| b == b'=') {
                    Some(i) => (
                        item[..i].trim_ascii(),
                        Some(unquote(item[i + 1..].trim_ascii())),
                    ),
                    None => (item, None),
                };
                let seconds = || arg.and_then(delta_seconds);
                match name.to_ascii_lowercase().as_slice() {
                    b"no-store" => d.no_store = true,
                    b"no-cache" => d.no_cache = true,
                    b"private" => d.private = true,
                    b"public" => d.public = true,
                    b"must-revalidate" => d.must_revalidate = true,
                    b"proxy-revalidate" => d.proxy_revalidate = true,
                    b"no-transform" => d.no_transform = true,
                    b"only-if-cached" => d.only_if_cached = true,
                    b"max-age" => d.max_age = Some(seconds().unwrap_or(0)),
                    b"s-maxage" => d.s_maxage = Some(seconds().unwrap_or(0)),
                    b"max-stale" => d.max_stale = Some(seconds()),
                    b"min-fresh" => d.min_fresh = seconds(),
                    b"stale-while-revalidate" => d.stale_while_revalidate = seconds(),
                    b"stale-if-error" => d.stale_if_error = seconds(),
                    _ => {}
                }
            }
        }
        d
    }
}

/// The items of a comma-separated list, trimmed, skipping commas inside quotes.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut quoted = false;
            let mut end = rest.len();
            for (i, &b) in rest.iter().enumerate() {
                match b {
                    b'"' => quoted = !quoted,
                    b',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let item = rest[..end].trim_ascii();
            rest = if end < rest.len() {
                &rest[end + 1..]
            } else {
                &[]
            };
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

/// A delta-seconds value; too large saturates (RFC 9111 1.2.2: 2^31 is "infinity").
pub fn delta_seconds(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(n.min(1 << 31))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Directives {
        Directives::parse(std::iter::once(v.as_bytes()))
    }

    #[test]
    fn directives_of_a_response() {
        let d = parse("public, max-age=60, s-maxage=\"120\", stale-while-revalidate=30");
        assert!(d.public && !d.private);
        assert_eq!((d.max_age, d.s_maxage), (Some(60), Some(120)));
        assert_eq!(d.stale_while_revalidate, Some(30));
        let d = parse("No-Cache=\"Set-Cookie, X-Foo\", Private, must-revalidate");
        assert!(d.no_cache && d.private && d.must_revalidate);
        assert_eq!(parse("max-age=abc").max_age, Some(0));
        assert_eq!(parse("max-age=99999999999999999999").max_age, Some(1 << 31));
        assert!(parse(",, no-store ,").no_store);
        assert!(parse("x-unknown=1, no-transform").no_transform);
    }

    #[test]
    fn directives_of_a_request() {
        let d = parse("max-stale, min-fresh=5, only-if-cached");
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(5));
        assert!(d.only_if_cached);
        assert_eq!(parse("max-stale=10").max_stale, Some(Some(10)));
        let two = [&b"no-cache"[..], b"max-age=0"];
        let d = Directives::parse(two.into_iter());
        assert!(d.no_cache);
        assert_eq!(d.max_age, Some(0));
    }
}
