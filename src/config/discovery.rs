//! `[resolver]`, the name servers and TTL bounds of DNS service discovery, and the
//! backends it fills: `{ name, address = "HOST:PORT", resolve = true }` (A and AAAA
//! records) and `{ name, srv = "_service._proto.name" }` (SRV records). Each is resolved
//! here, once, so that a name that does not resolve is a config error with its
//! position; `crate::discovery` follows it afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::fields::duration;
use super::raw::{RawBackend, RawResolver};
use super::{BackendConfig, MAX_WEIGHT};
use crate::discovery::{Discovered, Target};

/// `[resolver]`: where and how discovered backends are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Name servers, asked in turn (default: those of /etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// A name is resolved again no sooner than this after the last time...
    pub min_ttl: Duration,
    /// ...and no later than this, whatever its records' TTL.
    pub max_ttl: Duration,
    /// How long each name server has to answer.
    pub timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: system_nameservers(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The `nameserver` lines of /etc/resolv.conf (port 53); 127.0.0.1:53 without any.
pub fn system_nameservers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if found.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 53))]
    } else {
        found
    }
}

/// Validates `[resolver]`.
pub(super) fn check_resolver(
    raw: Option<&RawResolver>,
    problems: &mut Problems<'_>,
) -> ResolverConfig {
    let defaults = ResolverConfig::default();
    let Some(raw) = raw else {
        return defaults;
    };
    let nameservers = match &raw.nameservers {
        None => defaults.nameservers,
        Some(list) => list
            .iter()
            .filter_map(|s| {
                let text = s.get_ref().trim();
                let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
                    text.parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, 53))
                });
                if parsed.is_none() {
                    problems.add(
                        s.span(),
                        format!("`{text}` is not a name server address"),
                        Some("write an IP address, with a port if it is not 53: \"10.0.0.2\", \"127.0.0.1:5353\"".into()),
                    );
                }
                parsed
            })
            .collect(),
    };
    let min_ttl = duration(&raw.min_ttl, "resolver.min_ttl", defaults.min_ttl, problems);
    let max_ttl = duration(&raw.max_ttl, "resolver.max_ttl", defaults.max_ttl, problems);
    if let Some(span) = raw.max_ttl.as_ref().map(Spanned::span)
        && max_ttl < min_ttl
    {
        problems.add(
            span,
            "`resolver.max_ttl` is shorter than `min_ttl`",
            Some("make max_ttl at least min_ttl (defaults: 1s and 5m)".into()),
        );
    }
    ResolverConfig {
        nameservers,
        min_ttl,
        max_ttl,
        timeout: duration(&raw.timeout, "resolver.timeout", defaults.timeout, problems),
    }
}

/// A backend with `resolve = true` or `srv`: what it asks DNS for, and the backends
/// it gives now (`source`: its index among the pool's discovered backends). `None`
/// after reporting a problem.
pub(super) fn check_discovered(
    raw: &RawBackend,
    weight: u32,
    source: usize,
    resolver: &ResolverConfig,
    problems: &mut Problems<'_>,
) -> Option<(Discovered, Vec<BackendConfig>)> {
    let (target, span, default_name) = match (&raw.srv, &raw.address) {
        (Some(srv), None) => (
            Target::Srv(srv.get_ref().trim().to_owned()),
            srv.span(),
            srv.get_ref().clone(),
        ),
        (None, Some(address)) => {
            let text = address.get_ref().trim();
            let parsed = text
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
                .filter(|(host, port)| !host.is_empty() && *port > 0);
            let Some((host, port)) = parsed else {
                problems.add(
                    address.span(),
                    format!("`{text}` is not HOST:PORT"),
                    Some("a backend with `resolve = true` is a name and a port: \"api.internal:8080\"".into()),
                );
                return None;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let target = Target::Host {
                host: host.to_owned(),
                port,
            };
            (target, address.span(), text.to_owned())
        }
        (Some(srv), Some(_)) => {
            problems.add(
                srv.span(),
                "a backend has either `address` or `srv`, not both",
                Some("an SRV record gives the port: drop `address`".into()),
            );
            return None;
        }
        (None, None) => unreachable!("only called with `resolve` or `srv`"),
    };
    let name = raw
        .name
        .as_ref()
        .map_or(default_name, |n| n.get_ref().clone());
    let entry = Discovered {
        name,
        target,
        weight: weight.min(MAX_WEIGHT),
        backup: raw.backup,
    };
    match crate::discovery::resolve(&entry, source, resolver) {
        Ok((backends, _)) => Some((entry, backends)),
        Err(why) => {
            problems.add(
                span,
                format!("{} did not resolve: {why}", entry.target),
                Some(format!(
                    "check the name and the name servers ({}), set in [resolver] nameservers",
                    resolver
                        .nameservers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            None
        }
    }
}
