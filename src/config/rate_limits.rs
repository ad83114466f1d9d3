//! `[rate_limits.NAME]`: named limits on how fast and how many at once a key (a client
//! address, an API key header, a cookie, the route...) may send, as NGINX's
//! `limit_req_zone` / `limit_conn_zone` and HAProxy's stick-table rates. Listeners and
//! routes name the limits that apply to them (`rate_limits = ["api"]`), listeners also
//! the ones that apply to connections (`connection_limits = ["per-ip"]`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{Problems, closest};
use super::fields::{duration, integer};
use super::routes::OneOrMany;

/// `[rate_limits.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub key: Option<Spanned<OneOrMany>>,
    pub rate: Option<Spanned<String>>,
    pub burst: Option<Spanned<i64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub action: Option<Spanned<String>>,
    pub max_delay: Option<Spanned<String>>,
    pub status: Option<Spanned<i64>>,
    pub max_keys: Option<Spanned<i64>>,
}

/// What a limit counts separately: one part of a request's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client's address.
    Ip,
    /// A request header's first value (name in lower case).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The route that matched.
    Route,
    /// The request's host.
    Host,
}

/// `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: u32,
    /// In how long.
    pub per: Duration,
}

/// A validated limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Its name.
    pub name: String,
    /// What is counted separately (all parts together make the key).
    pub key: Vec<KeyPart>,
    /// The steady rate per key, if limited.
    pub rate: Option<Rate>,
    /// Requests a key may send at once beyond the steady rate.
    pub burst: u32,
    /// Requests (or connections) of a key in progress at once, if limited.
    pub concurrency: Option<u32>,
    /// `action = "delay"`: a request over the rate waits up to this long instead of
    /// being refused.
    pub delay: Option<Duration>,
    /// The status of a refused request (429).
    pub status: u16,
    /// Most keys tracked at once (the memory bound).
    pub max_keys: usize,
    /// Shared with other instances (`[shared]`): the seed of the key hashes they agree
    /// on.
    pub shared: Option<u64>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            name: String::new(),
            key: vec![KeyPart::Ip],
            rate: None,
            burst: 0,
            concurrency: None,
            delay: None,
            status: 429,
            max_keys: DEFAULT_MAX_KEYS,
            shared: None,
        }
    }
}

impl RateLimitConfig {
    /// Whether the key is the client's address alone (all a connection has).
    pub fn keyed_by_ip(&self) -> bool {
        self.key == [KeyPart::Ip]
    }
}

/// Default of `max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

const KEYS: &str = "\"ip\", \"header:NAME\", \"cookie:NAME\", \"route\", \"host\"";

/// Validates every `[rate_limits.NAME]`.
pub(super) fn check(
    raw: &std::collections::BTreeMap<Spanned<String>, RawRateLimit>,
    problems: &mut Problems<'_>,
) -> Vec<RateLimitConfig> {
    raw.iter()
        .map(|(name, r)| check_one(name, r, problems))
        .collect()
}

fn check_one(
    name: &Spanned<String>,
    r: &RawRateLimit,
    problems: &mut Problems<'_>,
) -> RateLimitConfig {
    let mut out = RateLimitConfig {
        name: name.get_ref().clone(),
        ..RateLimitConfig::default()
    };
    if let Some(key) = &r.key {
        out.key = key
            .get_ref()
            .items()
            .iter()
            .filter_map(|part| match key_part(part) {
                Some(p) => Some(p),
                None => {
                    problems.add(
                        key.span(),
                        format!("`{part}` is not a rate limit key"),
                        Some(format!("keys: {KEYS}")),
                    );
                    None
                }
            })
            .collect();
        if out.key.is_empty() {
            out.key = vec![KeyPart::Ip];
        }
    }
    out.rate = r
        .rate
        .as_ref()
        .and_then(|rate| match parse_rate(rate.get_ref()) {
            Some(parsed) => Some(parsed),
            None => {
                problems.add(
                    rate.span(),
                    format!("`{}` is not a rate", rate.get_ref()),
                    Some("write a count per unit: \"100/s\", \"600/m\", \"10000/h\"".into()),
                );
                None
            }
        });
    out.burst = integer(&r.burst, "burst", 0..=1_000_000, 0, problems) as u32;
    out.concurrency = r
        .concurrency
        .as_ref()
        .map(|_| integer(&r.concurrency, "concurrency", 1..=1_000_000, 1, problems) as u32);
    if r.rate.is_none() && r.concurrency.is_none() {
        problems.add(
            name.span(),
            format!("rate limit `{}` limits nothing", name.get_ref()),
            Some("give it a `rate = \"100/s\"`, a `concurrency = 10`, or both".into()),
        );
    }
    if r.burst.is_some() && r.rate.is_none() {
        problems.add(
            r.burst.as_ref().map_or(name.span(), |b| b.span()),
            "`burst` without a `rate`",
            Some("the burst is how far a key may get ahead of its rate: add `rate`".into()),
        );
    }
    match r.action.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("reject") => {
            if let Some(d) = &r.max_delay {
                problems.add(
                    d.span(),
                    "`max_delay` applies only with `action = \"delay\"`",
                    None,
                );
            }
        }
        Some("delay") => {
            if r.rate.is_none() {
                problems.add(
                    r.action.as_ref().map_or(name.span(), |a| a.span()),
                    "`action = \"delay\"` needs a `rate`",
                    Some("requests are spaced out to the rate; a concurrency limit refuses".into()),
                );
            }
            out.delay = Some(duration(
                &r.max_delay,
                "max_delay",
                Duration::from_secs(1),
                problems,
            ));
        }
        Some(other) => {
            let action = r.action.as_ref().expect("matched Some");
            let hint = match closest(other, ["reject", "delay"]) {
                Some(best) => format!("did you mean `{best}`?"),
                None => {
                    "use \"reject\" (answer at once) or \"delay\" (wait up to max_delay)".into()
                }
            };
            problems.add(
                action.span(),
                format!("unknown action `{other}`"),
                Some(hint),
            );
        }
    }
    out.status = integer(&r.status, "status", 400..=599, 429, problems) as u16;
    out.max_keys = integer(
        &r.max_keys,
        "max_keys",
        1..=100_000_000,
        DEFAULT_MAX_KEYS as i64,
        problems,
    ) as usize;
    out
}

fn key_part(text: &str) -> Option<KeyPart> {
    let text = text.trim();
    let named = |prefix: &str| {
        text.strip_prefix(prefix)
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.bytes().all(super::is_token_byte))
    };
    Some(match text {
        "ip" | "source_ip" => KeyPart::Ip,
        "route" => KeyPart::Route,
        "host" => KeyPart::Host,
        _ => {
            if let Some(name) = named("header:") {
                KeyPart::Header(name.to_ascii_lowercase())
            } else if let Some(name) = named("cookie:") {
                KeyPart::Cookie(name.to_owned())
            } else {
                return None;
            }
        }
    })
}

/// Parses "100/s", "600/m", "5/min", "10000/h", "10/2s".
pub fn parse_rate(text: &str) -> Option<Rate> {
    let (count, per) = text.split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|&c| c > 0)?;
    let per = per.trim();
    let per = match per {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => super::units::parse_duration(per).filter(|d| !d.is_zero())?,
    };
    Some(Rate { count, per })
}

/// Resolves a listener's or route's list of limit names to indices into `limits`,
/// reporting unknown names (`ip_only`: connections, which have only an address).
pub(super) fn refer(
    names: Option<&Spanned<Vec<Spanned<String>>>>,
    limits: &[RateLimitConfig],
    ip_only: bool,
    problems: &mut Problems<'_>,
) -> Vec<usize> {
    let mut out = Vec::new();
    for n in names.map(|n| n.get_ref().as_slice()).unwrap_or_default() {
        match limits.iter().position(|l| &l.name == n.get_ref()) {
            Some(i) if ip_only && !limits[i].keyed_by_ip() => problems.add(
                n.span(),
                format!(
                    "rate limit `{}` is keyed by more than the client address",
                    n.get_ref()
                ),
                Some(
                    "a connection has only its client's address: use a limit with key = \"ip\""
                        .into(),
                ),
            ),
            Some(i) if ip_only && limits[i].delay.is_some() => problems.add(
                n.span(),
                format!(
                    "rate limit `{}` delays; connections over a limit are refused",
                    n.get_ref()
                ),
                Some("use a limit with action = \"reject\" for connections".into()),
            ),
            Some(i) if out.contains(&i) => {}
            Some(i) => out.push(i),
            None => {
                let hint = match closest(n.get_ref(), limits.iter().map(|l| l.name.as_str())) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => {
                        "define it as [rate_limits.NAME] with a `rate` or a `concurrency`".into()
                    }
                };
                problems.add(
                    n.span(),
                    format!("rate limit `{}` is not defined", n.get_ref()),
                    Some(hint),
                );
            }
        }
    }
    if out.len() > MAX_PER_REQUEST {
        problems.add(
            names.map_or(0..0, |n| n.span()),
            format!("more than {MAX_PER_REQUEST} rate limits in one list"),
            Some("combine key parts into one limit: key = [\"ip\", \"header:X-Api-Key\"]".into()),
        );
        out.truncate(MAX_PER_REQUEST);
    }
    out
}

/// Most limits one list may name (a request is checked against its listener's and its
/// route's lists).
pub const MAX_PER_REQUEST: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r = |count, secs| {
            Some(Rate {
                count,
                per: Duration::from_secs(secs),
            })
        };
        assert_eq!(parse_rate("100/s"), r(100, 1));
        assert_eq!(parse_rate("600 / m"), r(600, 60));
        assert_eq!(parse_rate("5/min"), r(5, 60));
        assert_eq!(parse_rate("10000/h"), r(10000, 3600));
        assert_eq!(parse_rate("10/2s"), r(10, 2));
        assert_eq!(parse_rate("0/s"), None);
        assert_eq!(parse_rate("10"), None);
        assert_eq!(parse_rate("10/fortnight"), None);
    }

    #[test]
    fn keys() {
        assert_eq!(key_part("ip"), Some(KeyPart::Ip));
        assert_eq!(
            key_part("header:X-Api-Key"),
            Some(KeyPart::Header("x-api-key".into()))
        );
        assert_eq!(
            key_part("cookie:session"),
            Some(KeyPart::Cookie("session".into()))
        );
        assert_eq!(key_part("header:"), None);
        assert_eq!(key_part("user"), None);
    }
}
