//! What a route changes on the way: header rules (remove, set, add) for the request and
//! the response, the path rewrite (strip or replace a prefix), and the `Location` of a
//! redirect. Each works on bytes, so that both HTTP engines apply the same rules: the
//! HTTP/1.1 engine while it writes a head ([`HeaderRules::drops`] and
//! [`HeaderRules::appended`]), the HTTP/2 path on a `HeaderMap` ([`HeaderRules::apply`]).

use std::io::Write as _;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::RequestView;
use crate::config::routes::{HeaderRules as RulesConfig, Redirect};

/// One header line: name (lower case) and value.
type Line = (Box<[u8]>, Box<[u8]>);

/// Compiled header rules: names lower case, values as bytes.
#[derive(Debug, Default)]
pub struct HeaderRules {
    remove: Box<[Box<[u8]>]>,
    set: Box<[Line]>,
    add: Box<[Line]>,
    typed: Box<[(HeaderName, Option<HeaderValue>, bool)]>,
}

impl HeaderRules {
    /// Compiles validated rules.
    pub fn new(c: &RulesConfig) -> HeaderRules {
        let bytes = |list: &[(String, String)]| -> Box<[Line]> {
            list.iter()
                .map(|(n, v)| (n.as_bytes().into(), v.as_bytes().into()))
                .collect()
        };
        // The same rules for `HeaderMap`s: (name, value to set or add, append?).
        let mut typed = Vec::new();
        for name in &c.remove {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                typed.push((n, None, false));
            }
        }
        for (list, append) in [(&c.set, false), (&c.add, true)] {
            for (name, value) in list {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    typed.push((n, Some(v), append));
                }
            }
        }
        HeaderRules {
            remove: c.remove.iter().map(|n| n.as_bytes().into()).collect(),
            set: bytes(&c.set),
            add: bytes(&c.add),
            typed: typed.into_boxed_slice(),
        }
    }

    /// Whether the rules change nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.typed.is_empty()
    }

    /// Whether a header named `name` that came with the message is left out (removed, or
    /// replaced by a `set` rule).
    #[inline]
    pub fn drops(&self, name: &[u8]) -> bool {
        !self.is_empty()
            && (self.remove.iter().any(|n| name.eq_ignore_ascii_case(n))
                || self.set.iter().any(|(n, _)| name.eq_ignore_ascii_case(n)))
    }

    /// The headers written after the message's own: `set` ones, then `add` ones.
    pub fn appended(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.set
            .iter()
            .chain(self.add.iter())
            .map(|(n, v)| (&**n, &**v))
    }

    /// Applies the rules to a header map.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value, append) in self.typed.iter() {
            match (value, append) {
                (None, _) => {
                    headers.remove(name);
                }
                (Some(v), false) => {
                    headers.insert(name.clone(), v.clone());
                }
                (Some(v), true) => {
                    headers.append(name.clone(), v.clone());
                }
            }
        }
    }
}

/// How the path is changed before forwarding.
#[derive(Debug, Default)]
pub enum PathRewrite {
    /// Unchanged.
    #[default]
    None,
    /// This prefix is removed when the path starts with it (`/api/x` -> `/x`).
    Strip(Box<[u8]>),
    /// The matched prefix `.0` is replaced with `.1`.
    Replace(Box<[u8]>, Box<[u8]>),
}

impl PathRewrite {
    /// Writes `target` (path and query) into `out` as the rewrite says.
    pub fn write(&self, target: &[u8], out: &mut Vec<u8>) {
        let (from, to): (&[u8], &[u8]) = match self {
            PathRewrite::None => {
                out.extend_from_slice(target);
                return;
            }
            PathRewrite::Strip(prefix) => (prefix, b""),
            PathRewrite::Replace(prefix, with) => (prefix, with),
        };
        let Some(rest) = target.strip_prefix(from) else {
            out.extend_from_slice(target);
            return;
        };
        // `/api` stripped from `/api` or `/api?x` leaves `/`; from `/apix` it does not
        // apply (a prefix ends at a segment boundary unless it ends with `/`).
        let boundary =
            from.ends_with(b"/") || rest.is_empty() || rest[0] == b'/' || rest[0] == b'?';
        if !boundary {
            out.extend_from_slice(target);
            return;
        }
        // Everything stripped: the path is `/`.
        let to: &[u8] = if to.is_empty() { b"/" } else { to };
        out.extend_from_slice(to);
        let rest = if to.ends_with(b"/") {
            rest.strip_prefix(b"/").unwrap_or(rest)
        } else {
            if rest.first().is_some_and(|&b| b != b'/' && b != b'?') {
                out.push(b'/');
            }
            rest
        };
        out.extend_from_slice(rest);
    }

    /// The rewritten target as a string (for the HTTP/2 path).
    pub fn rewrite(&self, target: &str) -> String {
        let mut out = Vec::with_capacity(target.len());
        self.write(target.as_bytes(), &mut out);
        String::from_utf8(out).unwrap_or_else(|_| target.to_owned())
    }
}

/// The `Location` of a redirect for `req`, which came over TLS when `tls`.
pub fn location<V: RequestView + ?Sized>(
    r: &Redirect,
    matched_prefix: Option<&str>,
    req: &V,
    tls: bool,
) -> String {
    if let Some(location) = &r.location {
        return location.clone();
    }
    let mut out = Vec::with_capacity(128);
    let scheme = r
        .scheme
        .as_deref()
        .unwrap_or(if tls { "https" } else { "http" });
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"://");
    let authority = req.host().unwrap_or(b"");
    let host = match &r.host {
        Some(h) => h.as_bytes(),
        None => super::matcher::host_name(authority),
    };
    out.extend_from_slice(host);
    match r.port {
        Some(port) => {
            let _ = write!(out, ":{port}");
        }
        // Keep the request's port, unless the scheme changes (then its default port).
        None if r.host.is_none() && r.scheme.is_none() => {
            let rest = &authority[super::matcher::host_name(authority)
                .len()
                .min(authority.len())..];
            if rest.starts_with(b":") {
                out.extend_from_slice(rest);
            }
        }
        None => {}
    }
    match (&r.path, &r.prefix, matched_prefix) {
        (Some(path), _, _) => out.extend_from_slice(path.as_bytes()),
        (None, Some(with), Some(prefix)) => {
            let rewrite = PathRewrite::Replace(prefix.as_bytes().into(), with.as_bytes().into());
            rewrite.write(req.path(), &mut out);
        }
        _ => out.extend_from_slice(req.path()),
    }
    if !r.drop_query
        && let Some(q) = req.query()
    {
        out.push(b'?');
        out.extend_from_slice(q);
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(r: &PathRewrite, target: &str) -> String {
        r.rewrite(target)
    }

    #[test]
    fn strip_prefix_keeps_a_path() {
        let strip = PathRewrite::Strip(b"/api"[..].into());
        assert_eq!(rewrite(&strip, "/api/users?id=1"), "/users?id=1");
        assert_eq!(rewrite(&strip, "/api"), "/");
        assert_eq!(rewrite(&strip, "/api?x=1"), "/?x=1");
        assert_eq!(
            rewrite(&strip, "/apix"),
            "/apix",
            "not at a segment boundary"
        );
        assert_eq!(rewrite(&strip, "/other"), "/other");
        let slash = PathRewrite::Strip(b"/api/"[..].into());
        assert_eq!(rewrite(&slash, "/api/users"), "/users");
    }

    #[test]
    fn replace_prefix() {
        let r = PathRewrite::Replace(b"/v1/"[..].into(), b"/v2/"[..].into());
        assert_eq!(rewrite(&r, "/v1/items/3"), "/v2/items/3");
        let root = PathRewrite::Replace(b"/old/"[..].into(), b"/"[..].into());
        assert_eq!(rewrite(&root, "/old/a"), "/a");
        let deeper = PathRewrite::Replace(b"/app"[..].into(), b"/srv/app"[..].into());
        assert_eq!(rewrite(&deeper, "/app/x"), "/srv/app/x");
        assert_eq!(rewrite(&deeper, "/app"), "/srv/app");
        assert_eq!(rewrite(&deeper, "/app?q"), "/srv/app?q");
        let bare = PathRewrite::Replace(b"/v1/"[..].into(), b"/v2"[..].into());
        assert_eq!(rewrite(&bare, "/v1/items"), "/v2/items");
    }

    #[test]
    fn header_rules_on_bytes() {
        let rules = HeaderRules::new(&RulesConfig {
            remove: vec!["x-secret".into()],
            set: vec![("x-env".into(), "prod".into())],
            add: vec![("x-tag".into(), "a".into())],
        });
        assert!(rules.drops(b"X-Secret"));
        assert!(rules.drops(b"x-env"));
        assert!(!rules.drops(b"x-tag"));
        let appended: Vec<_> = rules.appended().collect();
        assert_eq!(
            appended,
            vec![(&b"x-env"[..], &b"prod"[..]), (b"x-tag", b"a")]
        );
        let mut map = HeaderMap::new();
        map.insert("x-secret", HeaderValue::from_static("1"));
        map.insert("x-env", HeaderValue::from_static("dev"));
        map.insert("x-tag", HeaderValue::from_static("z"));
        rules.apply(&mut map);
        assert!(map.get("x-secret").is_none());
        assert_eq!(map["x-env"], "prod");
        assert_eq!(map.get_all("x-tag").iter().count(), 2);
    }
}
