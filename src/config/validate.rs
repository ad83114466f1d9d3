//! Turns the raw file into a [`Config`], collecting every problem with its position and a
//! hint instead of stopping at the first one.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use toml::Spanned;

use super::error::{ConfigError, Problems, closest};
use super::fields::{duration, duration_or_zero, integer};
use super::raw::{RawBackend, RawConfig, RawPool};
use super::resilience;
use super::{Algorithm, CircuitPolicy, HashKey, MAX_WEIGHT, ProxyVersion};
use super::{BackendConfig, Config, HttpVersion, Limits, PoolConfig, Timeouts};
use crate::discovery::Discovered;

pub(super) fn validate(path: &Path, source: &str) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(source);
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(first) => {
            // The parser stops at the first problem. A value of the wrong type is blanked
            // out (same length, so positions hold) and the file parsed again, to report
            // every such value at once, in file order.
            let mut text = source.to_owned();
            let mut error = first;
            for _ in 0..32 {
                let span = error.span().unwrap_or(0..0);
                let message = error.message();
                let (said, hint) = super::explain::toml_error(message, &text, span.clone());
                problems.add(span.clone(), said, hint);
                let Some((range, stand_in)) = super::explain::wrong_value(message, &text, span)
                else {
                    break;
                };
                text.replace_range(range, &stand_in);
                match toml::from_str::<RawConfig>(&text) {
                    Ok(_) => break,
                    Err(next) => error = next,
                }
            }
            return Err(problems.into_error(path));
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let config = check(&raw, base, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.into_error(path))
    }
}

fn check(raw: &RawConfig, base: &Path, problems: &mut Problems<'_>) -> Config {
    let threads = match &raw.threads {
        None => super::default_threads(),
        Some(t) => match *t.get_ref() {
            0 => super::default_threads(),
            n @ 1..=1024 => n as usize,
            _ => {
                problems.add(
                    t.span(),
                    "`threads` must be between 0 and 1024",
                    Some("0 means one worker thread per CPU core".into()),
                );
                1
            }
        },
    };
    let timeouts = check_timeouts(raw, problems);
    let limits = check_limits(raw, problems);
    let resolver = super::discovery::check_resolver(raw.resolver.as_ref(), problems);
    let pools: Vec<PoolConfig> = raw
        .pools
        .iter()
        .map(|(name, pool)| check_pool(name, pool, base, &resolver, problems))
        .collect();
    let rate_limits = super::rate_limits::check(&raw.rate_limits, problems);
    let caches = super::caches::check(&raw.caches, base, problems);
    let listeners = super::listeners::check_listeners(
        raw,
        &pools,
        &rate_limits,
        &caches,
        limits,
        base,
        problems,
    );
    let shared = raw
        .shared
        .as_ref()
        .and_then(|s| super::shared::check(s, problems));
    let mut pools = pools;
    let mut rate_limits = rate_limits;
    if let Some(s) = &shared {
        for p in &mut pools {
            if let Some(sticky) = &mut p.sticky {
                sticky.shared = s.stick_tables && sticky.uses_table();
            }
        }
        for r in &mut rate_limits {
            r.shared = s.rate_limits.then_some(s.seed);
        }
    }
    Config {
        threads,
        access_log: super::logging::check(raw.access_log.as_ref(), base, problems),
        shutdown_grace: duration_or_zero(&raw.shutdown_grace, "shutdown_grace", problems).max(
            if raw.shutdown_grace.is_some() {
                std::time::Duration::ZERO
            } else {
                super::DEFAULT_SHUTDOWN_GRACE
            },
        ),
        shutdown_delay: duration_or_zero(&raw.shutdown_delay, "shutdown_delay", problems),
        control_socket: raw.control_socket.as_ref().map(|s| base.join(s.get_ref())),
        admin: raw
            .admin
            .as_ref()
            .and_then(|a| check_admin(a, base, problems)),
        resolver,
        timeouts,
        limits,
        listeners,
        pools,
        rate_limits,
        caches,
        shared,
    }
}

fn check_admin(
    a: &super::raw::RawAdmin,
    base: &Path,
    problems: &mut Problems<'_>,
) -> Option<super::AdminConfig> {
    let bind = parse_address(&a.bind, true, problems);
    let token_file = a.token_file.as_ref().and_then(|t| {
        let path = base.join(t.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => Some(path),
            Ok(_) => {
                problems.add(
                    t.span(),
                    format!("the token file `{}` is empty", path.display()),
                    Some("write a long random token in it, e.g. `openssl rand -hex 32 > FILE`".into()),
                );
                None
            }
            Err(e) => {
                problems.add(
                    t.span(),
                    format!("cannot read the token file `{}`: {e}", path.display()),
                    Some("create it with a long random token, e.g. `openssl rand -hex 32 > FILE`, readable by Fulcrum only".into()),
                );
                None
            }
        }
    });
    Some(super::AdminConfig {
        bind: bind?,
        token_file,
    })
}

fn check_timeouts(raw: &RawConfig, problems: &mut Problems<'_>) -> Timeouts {
    let d = Timeouts::default();
    let t = &raw.timeouts;
    Timeouts {
        connect: duration(&t.connect, "timeouts.connect", d.connect, problems),
        request_header: duration(
            &t.request_header,
            "timeouts.request_header",
            d.request_header,
            problems,
        ),
        idle: duration(&t.idle, "timeouts.idle", d.idle, problems),
        request: duration(&t.request, "timeouts.request", d.request, problems),
    }
}

fn check_limits(raw: &RawConfig, problems: &mut Problems<'_>) -> Limits {
    let d = Limits::default();
    let l = &raw.limits;
    let max_header_size = match &l.max_header_size {
        None => d.max_header_size,
        Some(v) => {
            let bytes = v.get_ref().bytes();
            match bytes {
                Some(b @ 1024..=1_048_576) => b as usize,
                _ => {
                    problems.add(
                        v.span(),
                        "`limits.max_header_size` must be between 1k and 1m",
                        Some("write bytes or a size with a unit, e.g. 16384 or \"16k\"".into()),
                    );
                    d.max_header_size
                }
            }
        }
    };
    Limits {
        max_header_size,
        max_headers: integer(
            &l.max_headers,
            "limits.max_headers",
            1..=256,
            d.max_headers as i64,
            problems,
        ) as usize,
        max_connections: integer(
            &l.max_connections,
            "limits.max_connections",
            1..=10_000_000,
            d.max_connections as i64,
            problems,
        ) as usize,
        max_concurrent_streams: integer(
            &l.max_concurrent_streams,
            "limits.max_concurrent_streams",
            1..=10_000,
            i64::from(d.max_concurrent_streams),
            problems,
        ) as u32,
    }
}

fn check_pool(
    name: &Spanned<String>,
    pool: &RawPool,
    base: &Path,
    resolver: &super::ResolverConfig,
    problems: &mut Problems<'_>,
) -> PoolConfig {
    let algorithm = match &pool.algorithm {
        None => Algorithm::default(),
        Some(a) => Algorithm::from_name(a.get_ref()).unwrap_or_else(|| {
            let hint = match closest(a.get_ref(), Algorithm::NAMES.iter().copied()) {
                Some(best) => format!(
                    "did you mean `{best}`? algorithms: {}",
                    Algorithm::NAMES.join(", ")
                ),
                None => format!("algorithms: {}", Algorithm::NAMES.join(", ")),
            };
            problems.add(
                a.span(),
                format!("unknown algorithm `{}`", a.get_ref()),
                Some(hint),
            );
            Algorithm::default()
        }),
    };
    let hash_key = match &pool.hash_key {
        None => HashKey::default(),
        Some(k) => {
            if !algorithm.uses_key() {
                problems.add(
                    k.span(),
                    format!(
                        "`hash_key` has no effect with algorithm `{}`",
                        algorithm_name(algorithm)
                    ),
                    Some(
                        "use algorithm = \"hash\" or \"consistent_hash\", or remove `hash_key`"
                            .into(),
                    ),
                );
            }
            if let Some(HashKey::Header(name)) = HashKey::parse(k.get_ref())
                && (crate::headers::is_hop_by_hop(name.as_bytes())
                    || matches!(&*name, "expect" | "x-forwarded-proto"))
            {
                problems.add(
                    k.span(),
                    format!("`{name}` is a header Fulcrum handles itself; it cannot be hashed on"),
                    Some("hash on an end-to-end header, a cookie, \"uri\" or \"source_ip\"".into()),
                );
            }
            HashKey::parse(k.get_ref()).unwrap_or_else(|| {
                problems.add(
                    k.span(),
                    format!("bad hash_key `{}`", k.get_ref()),
                    Some("use \"source_ip\", \"uri\", \"header:NAME\" or \"cookie:NAME\"".into()),
                );
                HashKey::default()
            })
        }
    };
    let (backends, discovery) = match &pool.backends {
        Some(list) if !list.get_ref().is_empty() => {
            check_backends(list.get_ref(), resolver, problems)
        }
        other => {
            let span = other.as_ref().map_or(name.span(), |l| l.span());
            problems.add(
                span,
                format!("pool `{}` has no backends", name.get_ref()),
                Some("add at least one: backends = [{ address = \"127.0.0.1:9000\" }]".into()),
            );
            (Vec::new(), Vec::new())
        }
    };
    if !backends.is_empty() && backends.iter().all(|b| b.backup) {
        problems.add(
            name.span(),
            format!("every backend of pool `{}` is a backup", name.get_ref()),
            Some("backups only serve while no primary is available: make at least one `backup = false`".into()),
        );
    }
    let health = pool
        .health
        .as_ref()
        .map(|h| resilience::check_health(h, name.get_ref(), problems));
    let retries = pool
        .retries
        .as_ref()
        .map(|r| resilience::check_retries(r, name.get_ref(), problems))
        .unwrap_or_default();
    PoolConfig {
        name: name.get_ref().clone(),
        algorithm,
        hash_key,
        backends,
        discovery,
        agent: pool
            .agent
            .as_ref()
            .map(|a| super::agent::check(a, name, problems)),
        sticky: pool
            .sticky
            .as_ref()
            .map(|s| super::sticky::check_sticky(s, name.get_ref(), problems)),
        health,
        retries,
        unavailable_body: pool.unavailable_body.clone(),
        breaker: pool.breaker.as_ref().map_or(CircuitPolicy::DISABLED, |b| {
            resilience::check_breaker(b, name.get_ref(), problems)
        }),
        slow_start: duration_or_zero(
            &pool.slow_start,
            &format!("pools.{}.slow_start", name.get_ref()),
            problems,
        ),
        max_in_flight: integer(
            &pool.max_in_flight,
            &format!("pools.{}.max_in_flight", name.get_ref()),
            0..=1_000_000,
            0,
            problems,
        ) as u32,
        queue: integer(
            &pool.queue,
            &format!("pools.{}.queue", name.get_ref()),
            0..=1_000_000,
            1000,
            problems,
        ) as u32,
        send_proxy: match &pool.send_proxy {
            None => None,
            Some(v) if v.get_ref() == "v1" => Some(ProxyVersion::V1),
            Some(v) if v.get_ref() == "v2" => Some(ProxyVersion::V2),
            Some(v) => {
                problems.add(
                    v.span(),
                    format!("unknown PROXY protocol version `{}`", v.get_ref()),
                    Some("use \"v1\" or \"v2\"".into()),
                );
                None
            }
        },
        http_version: match &pool.http_version {
            None => HttpVersion::Http1,
            Some(v) if v.get_ref() == "1.1" => HttpVersion::Http1,
            Some(v) if v.get_ref() == "2" => HttpVersion::Http2,
            Some(v) => {
                problems.add(
                    v.span(),
                    format!("unknown HTTP version `{}`", v.get_ref()),
                    Some("use \"1.1\" (the default) or \"2\"".into()),
                );
                HttpVersion::Http1
            }
        },
        tls: pool
            .tls
            .as_ref()
            .map(|t| super::tls::check_pool_tls(t, name, base, problems)),
        queue_timeout: duration(
            &pool.queue_timeout,
            &format!("pools.{}.queue_timeout", name.get_ref()),
            std::time::Duration::from_secs(5),
            problems,
        ),
    }
}

fn algorithm_name(a: Algorithm) -> &'static str {
    Algorithm::NAMES
        .iter()
        .copied()
        .find(|n| Algorithm::from_name(n) == Some(a))
        .unwrap_or("?")
}

/// The pool's backends (those found through DNS in place of their entry), and the
/// entries DNS fills.
fn check_backends(
    list: &[RawBackend],
    resolver: &super::ResolverConfig,
    problems: &mut Problems<'_>,
) -> (Vec<BackendConfig>, Vec<Discovered>) {
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    let mut discovery = Vec::new();
    for raw in list {
        let weight = match &raw.weight {
            None => 1,
            Some(w) if (1..=i64::from(MAX_WEIGHT)).contains(w.get_ref()) => *w.get_ref() as u32,
            Some(w) => {
                problems.add(
                    w.span(),
                    format!("weight must be between 1 and {MAX_WEIGHT}, not {}", w.get_ref()),
                    Some("to stop sending traffic to a backend, remove it or mark it `backup = true`".into()),
                );
                1
            }
        };
        if raw.resolve || raw.srv.is_some() {
            let source = discovery.len();
            if let Some((entry, found)) =
                super::discovery::check_discovered(raw, weight, source, resolver, problems)
            {
                if !names.insert(entry.name.clone()) {
                    let span = raw.name.as_ref().map_or(0..0, |n| n.span());
                    problems.add(
                        span,
                        format!("duplicate backend name `{}` in this pool", entry.name),
                        Some("give each backend a distinct `name`".into()),
                    );
                }
                discovery.push(entry);
                out.extend(found);
            }
            continue;
        }
        let Some(raw_address) = &raw.address else {
            let span = raw.name.as_ref().map_or(0..0, |n| n.span());
            problems.add(
                span,
                "a backend needs an `address`",
                Some("address = \"10.0.0.5:8080\" (or a name with resolve = true, or srv = \"_http._tcp.NAME\")".into()),
            );
            continue;
        };
        let Some(address) = parse_address(raw_address, false, problems) else {
            continue;
        };
        if !addresses.insert(address) {
            problems.add(
                raw_address.span(),
                format!("duplicate backend address {address} in this pool"),
                Some("list each backend once; use `weight` to give it a larger share".into()),
            );
        }
        let name = raw
            .name
            .as_ref()
            .map_or_else(|| raw_address.get_ref().clone(), |n| n.get_ref().clone());
        if !names.insert(name.clone()) {
            let span = raw.name.as_ref().map_or(raw_address.span(), |n| n.span());
            problems.add(
                span,
                format!("duplicate backend name `{name}` in this pool"),
                Some("give each backend a distinct `name`".into()),
            );
        }
        out.push(BackendConfig {
            name,
            address,
            weight,
            backup: raw.backup,
            source: None,
        });
    }
    (out, discovery)
}

/// Whether `HOST:PORT` names are resolved while validating (the fuzz target turns it
/// off: no DNS query for made-up names).
pub static RESOLVE_NAMES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Parses `IP:PORT` (or `HOST:PORT`, resolved now); a listener may use port 0.
pub(super) fn parse_address(
    text: &Spanned<String>,
    is_bind: bool,
    problems: &mut Problems<'_>,
) -> Option<SocketAddr> {
    let s = text.get_ref().trim();
    let resolved = match s.parse::<SocketAddr>() {
        Ok(a) => Ok(Some(a)),
        Err(_) if !RESOLVE_NAMES.load(std::sync::atomic::Ordering::Relaxed) => Ok(None),
        Err(_) => s.to_socket_addrs().map(|mut a| a.next()),
    };
    // HOST:PORT with a name that does not resolve: say so, not "bad address".
    if let (Err(_) | Ok(None), Some((host, port))) = (&resolved, s.rsplit_once(':'))
        && port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host.parse::<std::net::IpAddr>().is_err()
        && !host.starts_with('[')
    {
        problems.add(
            text.span(),
            format!("the host name `{host}` did not resolve"),
            Some("check the name and this machine's DNS, or write the address as IP:PORT".into()),
        );
        return None;
    }
    let parsed = resolved.ok().flatten();
    match parsed {
        Some(a) if a.port() == 0 && !is_bind => {
            problems.add(
                text.span(),
                format!("backend address `{s}` has port 0"),
                Some("give the port the backend listens on, e.g. 127.0.0.1:8080".into()),
            );
            None
        }
        Some(a) => Some(a),
        None => {
            problems.add(
                text.span(),
                format!("bad address `{s}`"),
                Some("write IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080".into()),
            );
            None
        }
    }
}
