//! The `[[listeners]]` entries: address, protocol, pool, limits, TLS passthrough routes
//! and TLS termination.

use std::collections::HashSet;
use std::path::Path;

use super::HashKey;
use super::error::{Problems, closest};
use super::raw::RawConfig;
use super::validate::parse_address;
use super::{HttpVersion, Limits, ListenerConfig, PoolConfig, Protocol};

const PROTOCOLS: &[&str] = &["http", "tcp", "udp"];

pub(super) fn check_listeners(
    raw: &RawConfig,
    pools: &[PoolConfig],
    rate_limits: &[super::rate_limits::RateLimitConfig],
    caches: &[super::caches::CacheConfig],
    limits: Limits,
    base: &Path,
    problems: &mut Problems<'_>,
) -> Vec<ListenerConfig> {
    if raw.listeners.is_empty() {
        problems.add(
            0..0,
            "no listeners: Fulcrum would accept no traffic",
            Some("add [[listeners]] with `bind = \"127.0.0.1:8080\"` and `pool = \"NAME\"`".into()),
        );
    }
    let mut binds = HashSet::new();
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for l in &raw.listeners {
        let bind = parse_address(&l.bind, true, problems);
        // TCP and UDP ports are separate: a DNS balancer binds port 53 for both.
        let udp = l.protocol.as_ref().is_some_and(|p| p.get_ref() == "udp");
        if let Some(b) = bind
            && b.port() != 0
            && !binds.insert((b, udp))
        {
            problems.add(
                l.bind.span(),
                format!("two listeners bind {b}"),
                Some("each listener needs its own address or port".into()),
            );
        }
        let name = l
            .name
            .as_ref()
            .map_or_else(|| l.bind.get_ref().clone(), |n| n.get_ref().clone());
        if !names.insert(name.clone()) {
            let span = l.name.as_ref().map_or(l.bind.span(), |n| n.span());
            problems.add(
                span,
                format!("duplicate listener name `{name}`"),
                Some("give each listener a distinct `name`".into()),
            );
        }
        let protocol = match &l.protocol {
            None => Protocol::Http,
            Some(p) if p.get_ref() == "http" => Protocol::Http,
            Some(p) if p.get_ref() == "tcp" || p.get_ref() == "udp" => {
                // A TCP listener sees no headers, cookies or URI: only the source IP.
                if let Some(pool) = pools
                    .iter()
                    .find(|x| l.pool.as_ref().is_some_and(|n| &x.name == n.get_ref()))
                    && pool.algorithm.uses_key()
                    && pool.hash_key != HashKey::SourceIp
                {
                    problems.add(
                        p.span(),
                        format!(
                            "pool `{}` hashes on a request property, which a {} listener does not see",
                            pool.name,
                            p.get_ref().to_uppercase()
                        ),
                        Some("use hash_key = \"source_ip\" for pools behind TCP and UDP listeners".into()),
                    );
                }
                if p.get_ref() == "tcp" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                }
            }
            Some(p) => {
                problems.add(
                    p.span(),
                    format!("unknown protocol `{}`", p.get_ref()),
                    Some(format!("protocols: {}", PROTOCOLS.join(", "))),
                );
                Protocol::Http
            }
        };
        let pool = match &l.pool {
            Some(name) => {
                let found = pools.iter().position(|p| &p.name == name.get_ref());
                if found.is_none() {
                    let names = pools.iter().map(|p| p.name.as_str());
                    let hint = match closest(name.get_ref(), names) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => "define it as [pools.NAME] with backends".into(),
                    };
                    problems.add(
                        name.span(),
                        format!(
                            "listener uses pool `{}`, which is not defined",
                            name.get_ref()
                        ),
                        Some(hint),
                    );
                }
                found
            }
            None if protocol == Protocol::Http && !l.routes.is_empty() => None,
            None => {
                problems.add(
                    l.bind.span(),
                    format!("listener `{name}` sends traffic nowhere"),
                    Some(if protocol == Protocol::Http {
                        "add `pool = \"NAME\"`, or [[listeners.routes]] that send to pools".into()
                    } else {
                        "add `pool = \"NAME\"`".into()
                    }),
                );
                None
            }
        };
        let compression = super::compression::check(l.compression.as_ref(), problems);
        if let Some(c) = &l.compression
            && protocol != Protocol::Http
        {
            problems.add(
                c.span(),
                format!("listener `{name}` is not HTTP: there are no responses to compress"),
                Some("remove `compression`, or use protocol = \"http\"".into()),
            );
        }
        let routes = if l.routes.is_empty() {
            Vec::new()
        } else if protocol != Protocol::Http {
            problems.add(
                l.bind.span(),
                format!("listener `{name}` has routes, which need protocol = \"http\""),
                Some("TCP and UDP listeners see no hosts or paths; route TLS by name with `sni_routes`".into()),
            );
            Vec::new()
        } else {
            super::route_check::check_routes(
                &l.routes,
                &name,
                &super::route_check::Named {
                    pools,
                    rate_limits,
                    caches,
                },
                compression.as_ref(),
                base,
                problems,
            )
        };
        let max_connections = match &l.max_connections {
            None => limits.max_connections,
            Some(m) if (1..=10_000_000).contains(m.get_ref()) => *m.get_ref() as usize,
            Some(m) => {
                problems.add(
                    m.span(),
                    "`max_connections` must be between 1 and 10000000",
                    None,
                );
                limits.max_connections
            }
        };
        let pool_span = l.pool.as_ref().map_or(l.bind.span(), |p| p.span());
        if let Some(p) = pool
            && protocol != Protocol::Http
            && (pools[p].tls.is_some() || pools[p].http_version != HttpVersion::Http1)
        {
            problems.add(
                pool_span.clone(),
                format!(
                    "pool `{}` speaks TLS or HTTP/2 to its backends, which a {} listener does not",
                    pools[p].name,
                    if protocol == Protocol::Tcp { "TCP" } else { "UDP" }
                ),
                Some(
                    "layer 4 listeners relay bytes as they are; use the pool from an HTTP listener, or remove `tls`/`http_version` from it".into(),
                ),
            );
        }
        if let Some(p) = pool
            && pools[p].send_proxy.is_some()
            && protocol != Protocol::Tcp
        {
            problems.add(
                pool_span.clone(),
                format!(
                    "pool `{}` sends the PROXY protocol, which only TCP listeners support",
                    pools[p].name
                ),
                Some(
                    "use this pool from a listener with protocol = \"tcp\", or remove `send_proxy`"
                        .into(),
                ),
            );
        }
        let sends = pool.is_some() || !routes.is_empty();
        if let (Some(bind), true) = (bind, sends) {
            let tls = check_tls(l, &name, protocol, base, problems);
            let splice = match &l.splice {
                Some(s) if *s.get_ref() && protocol != Protocol::Tcp => {
                    problems.add(
                        s.span(),
                        "`splice` needs protocol = \"tcp\"",
                        Some("HTTP listeners parse what they relay; remove `splice`".into()),
                    );
                    false
                }
                Some(s) => *s.get_ref(),
                None => false,
            };
            let defer_accept = match &l.defer_accept {
                Some(d) if *d.get_ref() && protocol == Protocol::Udp => {
                    problems.add(
                        d.span(),
                        "`defer_accept` needs a TCP-based listener (protocol \"http\" or \"tcp\")",
                        Some("UDP has no connections to accept; remove `defer_accept`".into()),
                    );
                    false
                }
                Some(d) => *d.get_ref(),
                // HTTP clients speak first; a TCP relay may carry a protocol whose server
                // does (SMTP, MySQL), so it is not deferred unless asked.
                None => protocol == Protocol::Http,
            };
            let request_limits = if protocol == Protocol::Http {
                super::rate_limits::refer(l.rate_limits.as_ref(), rate_limits, false, problems)
            } else {
                if let Some(r) = &l.rate_limits {
                    problems.add(
                        r.span(),
                        format!("listener `{name}` is not HTTP: it has connections, not requests"),
                        Some("limit its connections with `connection_limits`".into()),
                    );
                }
                Vec::new()
            };
            // A request holds a place under each concurrency limit of its listener and
            // route: a bounded number, kept without allocating.
            let counting = |list: &[usize]| {
                list.iter()
                    .filter(|&&i| rate_limits[i].concurrency.is_some())
                    .count()
            };
            if routes.iter().any(|r| {
                counting(&request_limits) + counting(&r.rate_limits)
                    > super::rate_limits::MAX_PER_REQUEST
            }) {
                problems.add(
                    l.bind.span(),
                    format!(
                        "a request of listener `{name}` would be under more than {} concurrency limits",
                        super::rate_limits::MAX_PER_REQUEST
                    ),
                    Some("combine key parts into one limit: key = [\"ip\", \"header:X-Api-Key\"]".into()),
                );
            }
            let (access, access_sources) = super::access::listener(l, base, problems);
            out.push(ListenerConfig {
                name,
                bind,
                protocol,
                pool,
                routes,
                max_connections,
                accept_proxy: l.accept_proxy,
                splice,
                freebind: l.freebind,
                defer_accept,
                sni_routes: check_sni_routes(l, protocol, pools, problems),
                tls,
                access,
                access_sources,
                real_ip: super::access::real_ip(l, problems),
                rate_limits: request_limits,
                compression,
                connection_limits: super::rate_limits::refer(
                    l.connection_limits.as_ref(),
                    rate_limits,
                    true,
                    problems,
                ),
            });
        }
    }
    out
}

/// Checks a listener's `sni_routes`: TCP listeners only, valid names, defined pools.
fn check_sni_routes(
    l: &super::raw::RawListener,
    protocol: Protocol,
    pools: &[PoolConfig],
    problems: &mut Problems<'_>,
) -> Vec<(String, usize)> {
    let Some(routes) = &l.sni_routes else {
        return Vec::new();
    };
    if protocol != Protocol::Tcp {
        problems.add(
            routes.span(),
            "`sni_routes` needs protocol = \"tcp\" (TLS passthrough)",
            Some(
                "route TLS by server name on a TCP listener; HTTP listeners do not see TLS".into(),
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (pattern, pool) in routes.get_ref() {
        let name = pattern.strip_prefix("*.").unwrap_or(pattern);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            problems.add(
                routes.span(),
                format!("bad server name pattern `{pattern}` in `sni_routes`"),
                Some("lower-case host names, optionally starting with `*.`".into()),
            );
        }
        match pools.iter().position(|p| &p.name == pool.get_ref()) {
            Some(index) => out.push((pattern.clone(), index)),
            None => problems.add(
                pool.span(),
                format!(
                    "`sni_routes` sends `{pattern}` to pool `{}`, which is not defined",
                    pool.get_ref()
                ),
                closest(pool.get_ref(), pools.iter().map(|p| p.name.as_str()))
                    .map(|best| format!("did you mean `{best}`?")),
            ),
        }
    }
    // Exact names first, then wildcards from the most specific.
    out.sort_by_key(|(p, _)| (p.starts_with("*."), std::cmp::Reverse(p.len())));
    out
}

/// Checks a listener's TLS termination (HTTP listeners only).
fn check_tls(
    l: &super::raw::RawListener,
    name: &str,
    protocol: Protocol,
    base: &Path,
    problems: &mut Problems<'_>,
) -> Option<super::tls::ListenerTls> {
    let tls = l.tls.as_ref()?;
    if protocol != Protocol::Http {
        problems.add(
            tls.certificates.span(),
            "TLS termination needs protocol = \"http\"",
            Some("for TLS passthrough on a TCP listener, route by name with `sni_routes`".into()),
        );
        return None;
    }
    Some(super::tls::check_listener_tls(tls, name, base, problems))
}
