//! A route's conditions, compiled: host patterns, path, methods, header / cookie / query
//! matchers and client networks, checked against any [`RequestView`].
//!
//! Matching never allocates: hosts are compared case-insensitively in place, regular
//! expressions run on the bytes as received.

use regex::bytes::Regex;

use super::RequestView;
use crate::config::routes::{Cidr, Conditions, PathMatch, ValueMatch};

/// A compiled set of conditions; all must hold.
#[derive(Debug)]
pub struct Matcher {
    hosts: Box<[HostPattern]>,
    path: Option<PathRule>,
    methods: Box<[Box<[u8]>]>,
    headers: Box<[(Box<str>, ValueRule)]>,
    cookies: Box<[(Box<[u8]>, ValueRule)]>,
    query: Box<[(Box<[u8]>, ValueRule)]>,
    clients: Box<[Cidr]>,
}

#[derive(Debug)]
enum HostPattern {
    Exact(Box<[u8]>),
    /// `*.example.com`, kept as `.example.com`.
    Suffix(Box<[u8]>),
}

#[derive(Debug)]
enum PathRule {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Regex(Regex),
}

#[derive(Debug)]
enum ValueRule {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Regex(Regex),
    Present,
    Absent,
}

impl ValueRule {
    fn new(m: &ValueMatch) -> ValueRule {
        match m {
            ValueMatch::Exact(v) => ValueRule::Exact(v.as_bytes().into()),
            ValueMatch::Prefix(v) => ValueRule::Prefix(v.as_bytes().into()),
            ValueMatch::Regex(r) => ValueRule::Regex(compile(r)),
            ValueMatch::Present => ValueRule::Present,
            ValueMatch::Absent => ValueRule::Absent,
        }
    }

    /// The rule in words: "= `v`", "starting with `v`", "present"...
    fn describe(&self) -> String {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            ValueRule::Exact(v) => format!("= `{}`", text(v)),
            ValueRule::Prefix(v) => format!("starting with `{}`", text(v)),
            ValueRule::Regex(re) => format!("matching `{}`", re.as_str()),
            ValueRule::Present => "present".into(),
            ValueRule::Absent => "absent".into(),
        }
    }

    /// Whether the values found (`None`: the field is absent) satisfy the rule.
    fn holds<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            ValueRule::Absent => values.next().is_none(),
            ValueRule::Present => values.next().is_some(),
            ValueRule::Exact(want) => values.any(|v| v == &**want),
            ValueRule::Prefix(want) => values.any(|v| v.starts_with(want)),
            ValueRule::Regex(re) => values.any(|v| re.is_match(v)),
        }
    }
}

/// Compiles a pattern that validation already accepted.
fn compile(pattern: &str) -> Regex {
    // Validation compiled it already; a pattern that fails now matches nothing.
    Regex::new(pattern).unwrap_or_else(|_| Regex::new("[^\\s\\S]").expect("a valid pattern"))
}

impl Matcher {
    /// Compiles validated conditions.
    pub fn new(c: &Conditions) -> Matcher {
        Matcher {
            hosts: c
                .hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Suffix(suffix.as_bytes().into()),
                    None => HostPattern::Exact(h.as_bytes().into()),
                })
                .collect(),
            path: c.path.as_ref().map(|p| match p {
                PathMatch::Exact(p) => PathRule::Exact(p.as_bytes().into()),
                PathMatch::Prefix(p) => PathRule::Prefix(p.as_bytes().into()),
                PathMatch::Regex(r) => PathRule::Regex(compile(r)),
            }),
            methods: c.methods.iter().map(|m| m.as_bytes().into()).collect(),
            headers: c
                .headers
                .iter()
                .map(|(n, m)| (n.as_str().into(), ValueRule::new(m)))
                .collect(),
            cookies: c
                .cookies
                .iter()
                .map(|(n, m)| (n.as_bytes().into(), ValueRule::new(m)))
                .collect(),
            query: c
                .query
                .iter()
                .map(|(n, m)| (n.as_bytes().into(), ValueRule::new(m)))
                .collect(),
            clients: c.clients.clone().into_boxed_slice(),
        }
    }

    /// Whether `req` meets every condition (`seen` keeps what was found of `req` for
    /// the next route's conditions).
    #[inline]
    pub fn matches<'r, V: RequestView + ?Sized>(&self, req: &'r V, seen: &mut Seen<'r>) -> bool {
        self.unmet(req, seen).is_none()
    }

    /// The first condition `req` does not meet, if any.
    #[inline]
    pub fn unmet<'r, V: RequestView + ?Sized>(
        &self,
        req: &'r V,
        seen: &mut Seen<'r>,
    ) -> Option<Unmet> {
        if !self.hosts.is_empty() {
            let host = seen.host(req);
            if !host.is_some_and(|host| self.hosts.iter().any(|p| p.matches(host))) {
                return Some(Unmet::Host);
            }
        }
        if let Some(path) = &self.path {
            let p = req.path();
            let ok = match path {
                PathRule::Exact(want) => p == &**want,
                PathRule::Prefix(want) => p.starts_with(want),
                PathRule::Regex(re) => re.is_match(p),
            };
            if !ok {
                return Some(Unmet::Path);
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| **m == *req.method()) {
            return Some(Unmet::Method);
        }
        if let Some(i) = self
            .headers
            .iter()
            .position(|(name, rule)| !rule.holds(req.header_values(name)))
        {
            return Some(Unmet::Header(i));
        }
        if let Some(i) = self.cookies.iter().position(|(name, rule)| {
            !rule.holds(
                req.header_values("cookie")
                    .filter_map(|v| super::find_cookie(v, name)),
            )
        }) {
            return Some(Unmet::Cookie(i));
        }
        if let Some(i) = self.query.iter().position(|(name, rule)| {
            !rule.holds(req.query().into_iter().flat_map(|q| query_values(q, name)))
        }) {
            return Some(Unmet::Query(i));
        }
        if self.clients.is_empty() || self.clients.iter().any(|n| n.contains(req.client_ip())) {
            None
        } else {
            Some(Unmet::Client)
        }
    }

    /// What condition `unmet` asked for, in words (for `fulcrum explain`).
    pub fn describe(&self, unmet: Unmet) -> String {
        let list = |items: Vec<String>| items.join(" or ");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match unmet {
            Unmet::Host => format!(
                "host {}",
                list(
                    self.hosts
                        .iter()
                        .map(|h| match h {
                            HostPattern::Exact(h) => format!("`{}`", text(h)),
                            HostPattern::Suffix(s) => format!("`*{}`", text(s)),
                        })
                        .collect()
                )
            ),
            Unmet::Path => match &self.path {
                Some(PathRule::Exact(p)) => format!("path `{}`", text(p)),
                Some(PathRule::Prefix(p)) => format!("path starting with `{}`", text(p)),
                Some(PathRule::Regex(re)) => format!("path matching `{}`", re.as_str()),
                None => "any path".into(),
            },
            Unmet::Method => format!(
                "method {}",
                list(self.methods.iter().map(|m| text(m)).collect())
            ),
            Unmet::Header(i) => {
                let (name, rule) = &self.headers[i];
                format!("header `{name}` {}", rule.describe())
            }
            Unmet::Cookie(i) => {
                let (name, rule) = &self.cookies[i];
                format!("cookie `{}` {}", text(name), rule.describe())
            }
            Unmet::Query(i) => {
                let (name, rule) = &self.query[i];
                format!("query parameter `{}` {}", text(name), rule.describe())
            }
            Unmet::Client => format!(
                "client address in {}",
                list(
                    self.clients
                        .iter()
                        .map(|c| format!("{}/{}", c.addr, c.bits))
                        .collect()
                )
            ),
        }
    }
}

/// A route condition that a request did not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// Its host.
    Host,
    /// Its path.
    Path,
    /// Its method.
    Method,
    /// The header condition at this index.
    Header(usize),
    /// The cookie condition at this index.
    Cookie(usize),
    /// The query condition at this index.
    Query(usize),
    /// Its client address.
    Client,
}

/// What matching found of one request, kept while it goes down the route table so that
/// twenty host routes look for the host name once.
#[derive(Debug, Default)]
pub struct Seen<'r> {
    host: Option<Option<&'r [u8]>>,
}

impl<'r> Seen<'r> {
    /// The request's host name (see [`host_name`]).
    fn host<V: RequestView + ?Sized>(&mut self, req: &'r V) -> Option<&'r [u8]> {
        *self.host.get_or_insert_with(|| req.host().map(host_name))
    }
}

impl HostPattern {
    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(want) => host.eq_ignore_ascii_case(want),
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// The host name of a `Host` value or authority: without port, user info or trailing dot.
pub fn host_name(authority: &[u8]) -> &[u8] {
    let host = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = if host.first() == Some(&b'[') {
        // [v6]:port
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// The values of query parameter `name` in a query string (`a=1&b=2`), as written.
pub fn query_values<'q>(query: &'q [u8], name: &'q [u8]) -> impl Iterator<Item = &'q [u8]> + 'q {
    query.split(|&b| b == b'&').filter_map(move |pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name(b"Example.com:8080"), b"Example.com");
        assert_eq!(host_name(b"example.com."), b"example.com");
        assert_eq!(host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(host_name(b"user@h:1"), b"h");
        let wild = HostPattern::Suffix(b".example.com"[..].into());
        assert!(wild.matches(b"a.EXAMPLE.com"));
        assert!(wild.matches(b"a.b.example.com"));
        assert!(!wild.matches(b"example.com"));
        assert!(!wild.matches(b"badexample.com"));
    }

    #[test]
    fn query_parameters() {
        let q = b"a=1&b=two&a=3&flag";
        let a: Vec<_> = query_values(q, b"a").collect();
        assert_eq!(a, vec![&b"1"[..], b"3"]);
        assert_eq!(query_values(q, b"flag").next(), Some(&b""[..]));
        assert_eq!(query_values(q, b"c").next(), None);
    }
}
