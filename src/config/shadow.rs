//! Finding routes that can never match: a route is shadowed when an earlier route of the
//! same listener matches every request it would match (routes are tried in order, and the
//! first match wins). The check is conservative: it reports only what it can prove, such
//! as a catch-all before other routes, a `path_prefix = "/api/"` before
//! `path_prefix = "/api/v2/"`, or `*.example.com` before `app.example.com`.

use std::ops::Range;

use super::error::{Problems, line_column};
use super::routes::{Cidr, Conditions, PathMatch, RouteConfig, ValueMatch};

/// Reports each route that an earlier one shadows; `spans[i]` is route `i`'s position.
pub(super) fn report_shadowed(
    routes: &[RouteConfig],
    spans: &[Range<usize>],
    problems: &mut Problems<'_>,
) {
    for (b, later) in routes.iter().enumerate() {
        let Some(a) = routes[..b]
            .iter()
            .position(|earlier| covers(&earlier.conditions, &later.conditions))
        else {
            continue;
        };
        let (line, _) = line_column(problems.source(), spans[a].start);
        problems.add(
            spans[b].clone(),
            format!(
                "route `{}` can never match: route `{}` (line {line}) comes first and matches every request it would",
                later.name, routes[a].name
            ),
            Some(format!(
                "routes are tried in order: move `{}` above `{}`, or narrow `{}`",
                later.name, routes[a].name, routes[a].name
            )),
        );
    }
}

/// Whether every request matching `b` also matches `a`.
pub(super) fn covers(a: &Conditions, b: &Conditions) -> bool {
    hosts_cover(&a.hosts, &b.hosts)
        && path_covers(a.path.as_ref(), b.path.as_ref())
        && (a.methods.is_empty()
            || (!b.methods.is_empty() && b.methods.iter().all(|m| a.methods.contains(m))))
        && values_cover(&a.headers, &b.headers)
        && values_cover(&a.cookies, &b.cookies)
        && values_cover(&a.query, &b.query)
        && (a.clients.is_empty()
            || (!b.clients.is_empty()
                && b.clients
                    .iter()
                    .all(|n| a.clients.iter().any(|w| net_covers(w, n)))))
}

fn hosts_cover(a: &[String], b: &[String]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|h| a.iter().any(|p| host_covers(p, h))))
}

/// Whether host pattern `a` matches every host that pattern `b` matches.
fn host_covers(a: &str, b: &str) -> bool {
    match a.strip_prefix('*') {
        // `*.example.com` covers `x.example.com` and `*.x.example.com`, not `example.com`.
        Some(suffix) => {
            let rest = b.strip_prefix('*').unwrap_or(b);
            rest.ends_with(suffix) && (b.starts_with('*') || b.len() > suffix.len())
        }
        None => a == b,
    }
}

fn path_covers(a: Option<&PathMatch>, b: Option<&PathMatch>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(PathMatch::Prefix(p)), Some(PathMatch::Prefix(q) | PathMatch::Exact(q))) => {
            q.starts_with(p.as_str())
        }
        (Some(x), Some(y)) => x == y,
        (Some(_), None) => false,
    }
}

fn values_cover(a: &[(String, ValueMatch)], b: &[(String, ValueMatch)]) -> bool {
    a.iter().all(|(name, want)| {
        b.iter().any(|(n, m)| {
            n == name && (m == want || (*want == ValueMatch::Present && *m != ValueMatch::Absent))
        })
    })
}

fn net_covers(wide: &Cidr, narrow: &Cidr) -> bool {
    wide.bits <= narrow.bits && wide.contains(narrow.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Conditions {
        Conditions {
            path: Some(PathMatch::Prefix(p.into())),
            ..Conditions::default()
        }
    }

    #[test]
    fn catch_all_covers_everything() {
        assert!(covers(&Conditions::default(), &prefix("/x")));
        assert!(!covers(&prefix("/x"), &Conditions::default()));
    }

    #[test]
    fn prefixes_and_hosts() {
        assert!(covers(&prefix("/api/"), &prefix("/api/v2/")));
        assert!(!covers(&prefix("/api/v2/"), &prefix("/api/")));
        let host = |h: &str| Conditions {
            hosts: vec![h.into()],
            ..Conditions::default()
        };
        assert!(covers(&host("*.example.com"), &host("app.example.com")));
        assert!(covers(&host("*.example.com"), &host("*.eu.example.com")));
        assert!(!covers(&host("*.example.com"), &host("example.com")));
        assert!(!covers(&host("app.example.com"), &host("*.example.com")));
    }

    #[test]
    fn narrower_conditions_are_not_covered_by_different_ones() {
        let get = Conditions {
            methods: vec!["GET".into()],
            ..prefix("/")
        };
        let post = Conditions {
            methods: vec!["POST".into()],
            ..prefix("/")
        };
        assert!(!covers(&get, &post));
        let canary = Conditions {
            headers: vec![("x-canary".into(), ValueMatch::Exact("1".into()))],
            ..Conditions::default()
        };
        let present = Conditions {
            headers: vec![("x-canary".into(), ValueMatch::Present)],
            ..Conditions::default()
        };
        assert!(covers(&present, &canary));
        assert!(!covers(&canary, &present));
    }
}
