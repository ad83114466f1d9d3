//! Validating a listener's routes: every condition, action and modifier, each problem
//! with its position and a hint, then the routes an earlier one makes unreachable
//! (`shadow`), when the routes are otherwise valid.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::error::{Problems, closest};
use super::fields::duration;
use super::routes::{
    Cidr, Conditions, HeaderRules, PathMatch, RawHeaderRules, RawRoute, RawRouteRetries,
    RawSplitSide, RawValueMatch, RouteAction, RouteConfig, RouteRetries, SplitKey, ValueMatch,
};
use super::{HashKey, PoolConfig};

/// What routes may name, defined elsewhere in the config.
pub(super) struct Named<'a> {
    /// The pools.
    pub pools: &'a [PoolConfig],
    /// The rate limits.
    pub rate_limits: &'a [super::rate_limits::RateLimitConfig],
    /// The caches.
    pub caches: &'a [super::caches::CacheConfig],
}

/// Validates a listener's routes against what is defined (`compression`: the
/// listener's, for routes without their own).
pub(super) fn check_routes(
    raw: &[Spanned<RawRoute>],
    listener: &str,
    named: &Named<'_>,
    compression: Option<&super::compression::Compression>,
    base: &std::path::Path,
    problems: &mut Problems<'_>,
) -> Vec<RouteConfig> {
    let (pools, rate_limits, caches) = (named.pools, named.rate_limits, named.caches);
    let found_before = problems.len();
    let mut out: Vec<RouteConfig> = Vec::with_capacity(raw.len());
    let mut spans = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.iter().enumerate() {
        let r = spanned.get_ref();
        let name = r
            .name
            .as_ref()
            .map_or_else(|| format!("route{}", i + 1), |n| n.get_ref().clone());
        let span = route_span(spanned);
        let checker = RouteCheck {
            listener,
            route: &name,
            pools,
            base,
        };
        let conditions = checker.conditions(r, problems);
        let Some(action) = checker.action(r, span.clone(), problems) else {
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            problems.add(
                span.clone(),
                format!("two routes of listener `{listener}` are named `{name}`"),
                Some("give each route a distinct `name`".into()),
            );
        }
        if matches!(
            action,
            RouteAction::Redirect(_) | RouteAction::Respond(_) | RouteAction::Files(_)
        ) {
            let useless = [
                (
                    "request_headers",
                    r.request_headers.as_ref().map(|x| x.span()),
                ),
                (
                    "response_headers",
                    r.response_headers.as_ref().map(|x| x.span()),
                ),
                ("fallback", r.fallback.as_ref().map(|x| x.span())),
                ("timeouts", r.timeouts.as_ref().map(|_| span.clone())),
                ("retries", r.retries.as_ref().map(|_| span.clone())),
            ];
            for (key, at) in useless {
                if let Some(at) = at {
                    problems.add(
                        at,
                        format!("`{key}` has no effect on route `{name}`, which answers by itself"),
                        Some("it applies to requests forwarded to a pool; remove it".into()),
                    );
                }
            }
        }
        let route = RouteConfig {
            strip_prefix: checker.strip_prefix(r, problems),
            rewrite_prefix: checker.rewrite_prefix(r, &conditions, problems),
            request_headers: checker.header_rules(r.request_headers.as_ref(), problems),
            response_headers: checker.header_rules(r.response_headers.as_ref(), problems),
            connect_timeout: r.timeouts.as_ref().and_then(|t| {
                t.connect.as_ref().map(|_| {
                    duration(
                        &t.connect,
                        "routes.timeouts.connect",
                        Duration::ZERO,
                        problems,
                    )
                })
            }),
            request_timeout: r.timeouts.as_ref().and_then(|t| {
                t.request.as_ref().map(|_| {
                    duration(
                        &t.request,
                        "routes.timeouts.request",
                        Duration::ZERO,
                        problems,
                    )
                })
            }),
            retries: r.retries.as_ref().map(|x| checker.retries(x, problems)),
            fallback: r.fallback.as_ref().and_then(|f| checker.pool(f, problems)),
            rate_limits: super::rate_limits::refer(
                r.rate_limits.as_ref(),
                rate_limits,
                false,
                problems,
            ),
            request_limits: super::request_limits::check(r, base, problems),
            cache: r.cache.as_ref().and_then(|c| {
                checker.forwards(r, c.span(), "cache", problems);
                let found = caches.iter().position(|x| x.name == *c.get_ref());
                if found.is_none() {
                    problems.add(
                        c.span(),
                        format!("there is no cache `{}`", c.get_ref()),
                        Some("define it in a [caches.NAME] table".into()),
                    );
                }
                found
            }),
            decompress_requests: r.decompress_requests.as_ref().and_then(|d| {
                use super::routes::RawDecompress;
                match d.get_ref() {
                    RawDecompress::On(false) => None,
                    RawDecompress::On(true) => Some(super::routes::DEFAULT_DECOMPRESSED_MAX),
                    RawDecompress::Bounded { max_size } => {
                        let bytes = max_size.bytes();
                        if bytes.is_none_or(|b| b == 0) {
                            problems.add(
                                d.span(),
                                "`decompress_requests.max_size` is not a size",
                                Some("write bytes or a size with a unit: \"16m\"".into()),
                            );
                        }
                        bytes
                    }
                }
            }),
            compression: match &r.compression {
                Some(own) => super::compression::check(Some(own), problems),
                None => compression.cloned(),
            },
            name,
            conditions,
            action,
        };
        if let Some(fallback) = route.fallback
            && route.action == RouteAction::Pool(fallback)
        {
            problems.add(
                r.fallback.as_ref().map_or(span.clone(), |f| f.span()),
                format!("route `{}` falls back to its own pool", route.name),
                Some("name another pool, one that stays up when this one is down".into()),
            );
        }
        out.push(route);
        spans.push(span);
    }
    // A route with a bad condition was checked without it: only valid routes are
    // compared, so that no route is wrongly reported unreachable.
    if problems.len() == found_before {
        super::shadow::report_shadowed(&out, &spans, problems);
    }
    out
}

/// The position of a route in the file: the start of its table.
fn route_span(r: &Spanned<RawRoute>) -> std::ops::Range<usize> {
    r.span()
}

/// Checks one route, naming it in messages.
struct RouteCheck<'a> {
    listener: &'a str,
    route: &'a str,
    pools: &'a [PoolConfig],
    /// The config file's directory (relative paths start there).
    base: &'a std::path::Path,
}

impl RouteCheck<'_> {
    fn conditions(&self, r: &RawRoute, problems: &mut Problems<'_>) -> Conditions {
        let mut c = Conditions::default();
        if let Some(hosts) = &r.host {
            for h in hosts.get_ref().items() {
                let h = h.trim().to_ascii_lowercase();
                let name = h.strip_prefix("*.").unwrap_or(&h);
                let valid = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if valid {
                    c.hosts.push(h);
                } else {
                    problems.add(
                        hosts.span(),
                        format!("bad host `{h}` in route `{}`", self.route),
                        Some("a host name without port, optionally starting with `*.` (any subdomain)".into()),
                    );
                }
            }
        }
        let paths = [
            r.path.as_ref().map(|p| (p, 0)),
            r.path_prefix.as_ref().map(|p| (p, 1)),
            r.path_regex.as_ref().map(|p| (p, 2)),
        ];
        let mut given = paths.iter().flatten();
        if let Some((p, kind)) = given.next() {
            let text = p.get_ref().clone();
            c.path = match kind {
                0 | 1 if !text.starts_with('/') => {
                    problems.add(
                        p.span(),
                        format!("path `{text}` does not start with `/`"),
                        Some("paths are matched from their first `/`, e.g. \"/api/\"".into()),
                    );
                    None
                }
                0 => Some(PathMatch::Exact(text)),
                1 => Some(PathMatch::Prefix(text)),
                _ => self.regex(&text, p.span(), problems).map(PathMatch::Regex),
            };
            if let Some((extra, _)) = given.next() {
                problems.add(
                    extra.span(),
                    format!("route `{}` matches the path twice", self.route),
                    Some("use one of `path`, `path_prefix` and `path_regex`".into()),
                );
            }
        }
        if let Some(methods) = &r.method {
            for m in methods.get_ref().items() {
                let upper = m.trim().to_ascii_uppercase();
                if upper.is_empty() || !upper.bytes().all(crate::config::is_token_byte) {
                    problems.add(
                        methods.span(),
                        format!("bad method `{m}`"),
                        Some("e.g. method = [\"GET\", \"HEAD\"]".into()),
                    );
                } else {
                    c.methods.push(upper);
                }
            }
        }
        c.headers = self.values(&r.headers, "header", true, problems);
        c.cookies = self.values(&r.cookies, "cookie", false, problems);
        c.query = self.values(&r.query, "query parameter", false, problems);
        if let Some(clients) = &r.client {
            for net in clients.get_ref().items() {
                match Cidr::parse(net) {
                    Some(cidr) => c.clients.push(cidr),
                    None => problems.add(
                        clients.span(),
                        format!("bad network `{net}` in route `{}`", self.route),
                        Some(
                            "write an address or a CIDR, e.g. \"10.0.0.0/8\" or \"::1/128\"".into(),
                        ),
                    ),
                }
            }
        }
        c
    }

    fn values(
        &self,
        raw: &Option<Spanned<BTreeMap<String, RawValueMatch>>>,
        what: &str,
        lower: bool,
        problems: &mut Problems<'_>,
    ) -> Vec<(String, ValueMatch)> {
        let Some(map) = raw else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, m) in map.get_ref() {
            let key = if lower {
                name.to_ascii_lowercase()
            } else {
                name.clone()
            };
            if key.is_empty() || !key.bytes().all(crate::config::is_token_byte) {
                problems.add(map.span(), format!("bad {what} name `{name}`"), None);
                continue;
            }
            let matcher = match m {
                RawValueMatch::Exact(v) => Some(ValueMatch::Exact(v.clone())),
                RawValueMatch::Rule {
                    regex: Some(re),
                    prefix: None,
                    present: None,
                } => self.regex(re, map.span(), problems).map(ValueMatch::Regex),
                RawValueMatch::Rule {
                    regex: None,
                    prefix: Some(p),
                    present: None,
                } => Some(ValueMatch::Prefix(p.clone())),
                RawValueMatch::Rule {
                    regex: None,
                    prefix: None,
                    present: Some(present),
                } => Some(if *present {
                    ValueMatch::Present
                } else {
                    ValueMatch::Absent
                }),
                RawValueMatch::Rule { .. } => {
                    problems.add(
                        map.span(),
                        format!("{what} `{name}`: give one of `regex`, `prefix` or `present`"),
                        Some(format!(
                            "e.g. {{ \"{name}\" = \"exact value\" }}, {{ \"{name}\" = {{ regex = \"^v[0-9]+$\" }} }} or {{ \"{name}\" = {{ present = true }} }}"
                        )),
                    );
                    None
                }
            };
            if let Some(m) = matcher {
                out.push((key, m));
            }
        }
        out
    }

    fn regex(
        &self,
        text: &str,
        span: std::ops::Range<usize>,
        problems: &mut Problems<'_>,
    ) -> Option<String> {
        match regex::bytes::Regex::new(text) {
            Ok(_) => Some(text.to_owned()),
            Err(e) => {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("").trim().to_owned();
                problems.add(
                    span,
                    format!("bad regular expression `{text}` in route `{}`: {last}", self.route),
                    Some("the syntax is Rust's regex crate (like RE2): no look-around or backreferences".into()),
                );
                None
            }
        }
    }

    fn pool(&self, name: &Spanned<String>, problems: &mut Problems<'_>) -> Option<usize> {
        let found = self.pools.iter().position(|p| &p.name == name.get_ref());
        if found.is_none() {
            let hint = match closest(name.get_ref(), self.pools.iter().map(|p| p.name.as_str())) {
                Some(best) => format!("did you mean `{best}`?"),
                None => "define it as [pools.NAME] with backends".into(),
            };
            problems.add(
                name.span(),
                format!(
                    "route `{}` of listener `{}` uses pool `{}`, which is not defined",
                    self.route,
                    self.listener,
                    name.get_ref()
                ),
                Some(hint),
            );
        }
        found
    }

    fn action(
        &self,
        r: &RawRoute,
        span: std::ops::Range<usize>,
        problems: &mut Problems<'_>,
    ) -> Option<RouteAction> {
        let given = [
            r.pool.is_some(),
            r.split.is_some(),
            r.redirect.is_some(),
            r.respond.is_some(),
            r.files.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => {
                problems.add(
                    span,
                    format!("route `{}` does nothing", self.route),
                    Some("give it one of `pool`, `split`, `redirect`, `respond` or `files`".into()),
                );
                return None;
            }
            1 => {}
            _ => {
                problems.add(
                    span,
                    format!("route `{}` has more than one action", self.route),
                    Some(
                        "a route does one of `pool`, `split`, `redirect`, `respond` or `files`"
                            .into(),
                    ),
                );
                return None;
            }
        }
        if r.split_key.is_some() && r.split.is_none() {
            problems.add(
                r.split_key.as_ref().map_or(span.clone(), |k| k.span()),
                "`split_key` without `split`",
                Some("remove it, or split the route between pools with `split`".into()),
            );
        }
        if let Some(pool) = &r.pool {
            return self.pool(pool, problems).map(RouteAction::Pool);
        }
        if let Some(split) = &r.split {
            return self.split(r, split, problems);
        }
        if let Some(redirect) = &r.redirect {
            return super::route_actions::redirect(redirect, r, self.route, problems)
                .map(RouteAction::Redirect);
        }
        if let Some(files) = &r.files {
            return super::route_actions::files(files, self.base, problems).map(RouteAction::Files);
        }
        r.respond.as_ref().and_then(|respond| {
            super::route_actions::respond(respond, problems).map(RouteAction::Respond)
        })
    }

    fn split(
        &self,
        r: &RawRoute,
        split: &Spanned<Vec<RawSplitSide>>,
        problems: &mut Problems<'_>,
    ) -> Option<RouteAction> {
        let mut sides = Vec::new();
        for side in split.get_ref() {
            let weight = match *side.weight.get_ref() {
                w @ 0..=1000 => w as u32,
                w => {
                    problems.add(
                        side.weight.span(),
                        format!("split weight must be between 0 and 1000, not {w}"),
                        Some("weights are relative: 95 and 5 send 95 % and 5 %".into()),
                    );
                    0
                }
            };
            if let Some(pool) = self.pool(&side.pool, problems) {
                if sides.iter().any(|(p, _)| *p == pool) {
                    problems.add(
                        side.pool.span(),
                        format!("pool `{}` appears twice in the split", side.pool.get_ref()),
                        Some("list each pool once and add up its weights".into()),
                    );
                }
                sides.push((pool, weight));
            }
        }
        if split.get_ref().len() < 2 {
            problems.add(
                split.span(),
                format!("route `{}` splits between fewer than two pools", self.route),
                Some("use `pool = \"NAME\"` to send everything to one pool".into()),
            );
            return None;
        }
        if sides.iter().all(|(_, w)| *w == 0) && sides.len() == split.get_ref().len() {
            problems.add(
                split.span(),
                format!("every weight of route `{}`'s split is 0", self.route),
                Some("give at least one pool a weight above 0".into()),
            );
            return None;
        }
        let key = match &r.split_key {
            None => SplitKey::Cookie(format!("fulcrum_split_{}", cookie_safe(self.route))),
            Some(k) => match k.get_ref().as_str() {
                "cookie" => SplitKey::Cookie(format!("fulcrum_split_{}", cookie_safe(self.route))),
                text => match text.strip_prefix("set_cookie:") {
                    Some(name)
                        if !name.is_empty() && name.bytes().all(crate::config::is_token_byte) =>
                    {
                        SplitKey::Cookie(name.to_owned())
                    }
                    _ => match HashKey::parse(text) {
                        Some(h) => SplitKey::Hash(h),
                        None => {
                            problems.add(
                                k.span(),
                                format!("bad split_key `{text}`"),
                                Some("use \"cookie\" (the default: Fulcrum sets one), \"set_cookie:NAME\", \"source_ip\", \"header:NAME\", \"cookie:NAME\" or \"uri\"".into()),
                            );
                            SplitKey::Hash(HashKey::SourceIp)
                        }
                    },
                },
            },
        };
        (sides.len() == split.get_ref().len()).then_some(RouteAction::Split { sides, key })
    }

    fn strip_prefix(&self, r: &RawRoute, problems: &mut Problems<'_>) -> Option<String> {
        let p = r.strip_prefix.as_ref()?;
        if !p.get_ref().starts_with('/') || p.get_ref().len() < 2 {
            problems.add(
                p.span(),
                format!(
                    "`strip_prefix` `{}` must start with `/` and not be `/` alone",
                    p.get_ref()
                ),
                Some("e.g. strip_prefix = \"/api\" sends /api/users as /users".into()),
            );
            return None;
        }
        // A files route looks paths up without the prefix.
        if r.files.is_none() {
            self.forwards(r, p.span(), "strip_prefix", problems);
        }
        Some(p.get_ref().clone())
    }

    fn rewrite_prefix(
        &self,
        r: &RawRoute,
        conditions: &Conditions,
        problems: &mut Problems<'_>,
    ) -> Option<String> {
        let p = r.rewrite_prefix.as_ref()?;
        if !matches!(conditions.path, Some(PathMatch::Prefix(_))) {
            problems.add(
                p.span(),
                "`rewrite_prefix` replaces the matched `path_prefix`, and this route has none",
                Some("add path_prefix = \"/old/\", or use strip_prefix".into()),
            );
            return None;
        }
        if r.strip_prefix.is_some() {
            problems.add(
                p.span(),
                "`rewrite_prefix` and `strip_prefix` on the same route",
                Some("use one: rewrite_prefix = \"/\" strips the matched prefix".into()),
            );
            return None;
        }
        if !p.get_ref().starts_with('/') {
            problems.add(
                p.span(),
                format!("`rewrite_prefix` `{}` must start with `/`", p.get_ref()),
                None,
            );
            return None;
        }
        self.forwards(r, p.span(), "rewrite_prefix", problems);
        Some(p.get_ref().clone())
    }

    /// Reports `key` on a route that answers by itself (it only changes forwarded requests).
    fn forwards(
        &self,
        r: &RawRoute,
        span: std::ops::Range<usize>,
        key: &str,
        problems: &mut Problems<'_>,
    ) {
        if r.redirect.is_some() || r.respond.is_some() || r.files.is_some() {
            problems.add(
                span,
                format!("`{key}` has no effect on a route that answers by itself"),
                Some("it changes requests forwarded to a pool; remove it".into()),
            );
        }
    }

    fn header_rules(
        &self,
        raw: Option<&Spanned<RawHeaderRules>>,
        problems: &mut Problems<'_>,
    ) -> HeaderRules {
        super::route_actions::header_rules(raw, self.route, problems)
    }

    fn retries(&self, raw: &RawRouteRetries, problems: &mut Problems<'_>) -> RouteRetries {
        let attempts = super::fields::integer(
            &raw.attempts,
            "routes.retries.attempts",
            0..=10,
            2,
            problems,
        ) as u32;
        let mut on_status = Vec::new();
        if let Some(list) = &raw.on_status {
            for s in list.get_ref() {
                match u16::try_from(*s) {
                    Ok(code @ 500..=599) => on_status.push(code),
                    _ => problems.add(
                        list.span(),
                        format!(
                            "route `{}` retries on {s}, which is not a 5xx status",
                            self.route
                        ),
                        Some("only server errors (500-599) can be retried".into()),
                    ),
                }
            }
        }
        RouteRetries {
            attempts,
            on_status,
        }
    }
}

/// `name` with everything but letters, digits, `-` and `_` replaced by `_`.
fn cookie_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
