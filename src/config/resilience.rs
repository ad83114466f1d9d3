//! The `[pools.NAME.health]` and `[pools.NAME.retries]` sections: their raw form, their
//! validated form and the checks between the two.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::CircuitPolicy;
use super::error::Problems;
use super::fields::{duration, integer};

/// `[pools.NAME.health]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub check: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub jitter: Option<Spanned<i64>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<String>>,
    pub expect_body: Option<String>,
}

/// `[pools.NAME.retries]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub attempts: Option<Spanned<i64>>,
    pub on_status: Option<Spanned<Vec<Spanned<i64>>>>,
    pub budget: Option<Spanned<i64>>,
    pub min_per_second: Option<Spanned<i64>>,
}

/// `[pools.NAME.breaker]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failures: Option<Spanned<i64>>,
    pub error_rate: Option<Spanned<i64>>,
    pub window: Option<Spanned<String>>,
    pub min_requests: Option<Spanned<i64>>,
    pub open_for: Option<Spanned<String>>,
    pub max_open_for: Option<Spanned<String>>,
    pub probes: Option<Spanned<i64>>,
}

/// Validates a breaker section into the policy every backend of the pool gets.
pub fn check_breaker(raw: &RawBreaker, pool: &str, problems: &mut Problems<'_>) -> CircuitPolicy {
    let key = |k: &str| format!("pools.{pool}.breaker.{k}");
    let d = Duration::from_secs;
    let us = |t: Duration| t.as_micros() as u64;
    let open_for = duration(&raw.open_for, &key("open_for"), d(10), problems);
    let max_open_for = duration(&raw.max_open_for, &key("max_open_for"), d(300), problems);
    if let Some(m) = &raw.max_open_for
        && max_open_for < open_for
    {
        problems.add(
            m.span(),
            format!("`{}` is shorter than `open_for`", key("max_open_for")),
            Some("the backoff starts at open_for and doubles up to max_open_for".into()),
        );
    }
    CircuitPolicy {
        failures: integer(&raw.failures, &key("failures"), 0..=1000, 5, problems) as u32,
        error_rate_percent: integer(&raw.error_rate, &key("error_rate"), 0..=100, 0, problems)
            as u32,
        window_us: us(duration(&raw.window, &key("window"), d(10), problems)),
        min_requests: integer(
            &raw.min_requests,
            &key("min_requests"),
            1..=100_000,
            20,
            problems,
        ) as u32,
        open_for_us: us(open_for),
        max_open_for_us: us(max_open_for.max(open_for)),
        probes: integer(&raw.probes, &key("probes"), 1..=100, 3, problems) as u32,
    }
}

/// Active health checks of every backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What a check does.
    pub kind: CheckKind,
    /// Time between the starts of two checks of one backend.
    pub interval: Duration,
    /// How long one check may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
    /// Each wait between checks is shortened or lengthened at random by up to this
    /// percentage of the interval, so that checks of many backends do not align.
    pub jitter_percent: u32,
}

/// The kind of active check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// The backend accepts a TCP connection.
    Tcp,
    /// The backend answers an HTTP request as expected.
    Http(HttpCheck),
}

/// An HTTP health check request and what counts as healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Request method.
    pub method: String,
    /// Request target.
    pub path: String,
    /// `Host` header; `None` sends the backend's address.
    pub host: Option<String>,
    /// Accepted status codes, inclusive.
    pub expect_status: (u16, u16),
    /// Text the response body must contain, if set.
    pub expect_body: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Http(HttpCheck {
                method: "GET".into(),
                path: "/".into(),
                host: None,
                expect_status: (200, 399),
                expect_body: None,
            }),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            jitter_percent: 10,
        }
    }
}

/// Retrying failed requests on another backend of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// Retries after the first try (0 disables retrying).
    pub attempts: u32,
    /// Response statuses that are retried (besides connection failures and resets).
    pub on_status: Vec<u16>,
    /// Retries may add at most this percentage of the pool's live requests...
    pub budget_percent: u32,
    /// ...plus this many retries per second in any case.
    pub min_per_second: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 2,
            on_status: Vec::new(),
            budget_percent: 20,
            min_per_second: 10,
        }
    }
}

/// Validates a health section (`pool` names it in messages).
pub fn check_health(raw: &RawHealth, pool: &str, problems: &mut Problems<'_>) -> HealthCheck {
    let d = HealthCheck::default();
    let key = |k: &str| format!("pools.{pool}.health.{k}");
    let interval = duration(&raw.interval, &key("interval"), d.interval, problems);
    let timeout = duration(&raw.timeout, &key("timeout"), d.timeout, problems);
    if let Some(t) = &raw.timeout
        && timeout > interval
    {
        problems.add(
            t.span(),
            format!("`{}` is longer than the interval", key("timeout")),
            Some(
                "a check must finish before the next one starts: lower it or raise `interval`"
                    .into(),
            ),
        );
    }
    let rise = integer(&raw.rise, &key("rise"), 1..=100, d.rise.into(), problems) as u32;
    let fall = integer(&raw.fall, &key("fall"), 1..=100, d.fall.into(), problems) as u32;
    let jitter_percent = integer(
        &raw.jitter,
        &key("jitter"),
        0..=50,
        d.jitter_percent.into(),
        problems,
    ) as u32;
    let kind = match raw.check.as_ref().map(|c| c.get_ref().as_str()) {
        None | Some("http") => CheckKind::Http(check_http(raw, &key, problems)),
        Some("tcp") => {
            for (name, present) in [
                ("method", raw.method.is_some()),
                ("path", raw.path.is_some()),
                ("host", raw.host.is_some()),
                ("expect_status", raw.expect_status.is_some()),
                ("expect_body", raw.expect_body.is_some()),
            ] {
                if present && let Some(c) = &raw.check {
                    problems.add(
                        c.span(),
                        format!("`{}` has no effect with check = \"tcp\"", key(name)),
                        Some("use check = \"http\", or remove it".into()),
                    );
                }
            }
            CheckKind::Tcp
        }
        Some(other) => {
            let span = raw.check.as_ref().map(|c| c.span()).unwrap_or(0..0);
            problems.add(
                span,
                format!("unknown health check `{other}`"),
                Some("checks: http, tcp".into()),
            );
            CheckKind::Tcp
        }
    };
    HealthCheck {
        kind,
        interval,
        timeout,
        rise,
        fall,
        jitter_percent,
    }
}

fn check_http(
    raw: &RawHealth,
    key: &dyn Fn(&str) -> String,
    problems: &mut Problems<'_>,
) -> HttpCheck {
    let method = match &raw.method {
        None => "GET".to_owned(),
        Some(m)
            if !m.get_ref().is_empty() && m.get_ref().bytes().all(|b| b.is_ascii_uppercase()) =>
        {
            m.get_ref().clone()
        }
        Some(m) => {
            problems.add(
                m.span(),
                format!("bad `{}` {:?}", key("method"), m.get_ref()),
                Some("an upper-case method such as \"GET\", \"HEAD\" or \"OPTIONS\"".into()),
            );
            "GET".to_owned()
        }
    };
    let path = match &raw.path {
        None => "/".to_owned(),
        Some(p) if p.get_ref().starts_with('/') && !p.get_ref().bytes().any(|b| b <= b' ') => {
            p.get_ref().clone()
        }
        Some(p) => {
            problems.add(
                p.span(),
                format!("bad `{}` {:?}", key("path"), p.get_ref()),
                Some("a path starting with `/`, without spaces, e.g. \"/healthz\"".into()),
            );
            "/".to_owned()
        }
    };
    let host = raw.host.as_ref().and_then(|h| {
        let ok = !h.get_ref().is_empty() && h.get_ref().bytes().all(|b| b > b' ' && b < 0x7f);
        if !ok {
            problems.add(
                h.span(),
                format!("bad `{}` {:?}", key("host"), h.get_ref()),
                None,
            );
        }
        ok.then(|| h.get_ref().clone())
    });
    let expect_status = match &raw.expect_status {
        None => (200, 399),
        Some(s) => parse_status_range(s.get_ref()).unwrap_or_else(|| {
            problems.add(
                s.span(),
                format!("bad `{}` {:?}", key("expect_status"), s.get_ref()),
                Some("a status or an inclusive range: \"200\", \"200-299\"".into()),
            );
            (200, 399)
        }),
    };
    HttpCheck {
        method,
        path,
        host,
        expect_status,
        expect_body: raw.expect_body.clone(),
    }
}

/// "200" or "200-299".
fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let status = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    match text.split_once('-') {
        None => status(text).map(|c| (c, c)),
        Some((a, b)) => {
            let (a, b) = (status(a)?, status(b)?);
            (a <= b).then_some((a, b))
        }
    }
}

/// Validates a retries section.
pub fn check_retries(raw: &RawRetries, pool: &str, problems: &mut Problems<'_>) -> Retries {
    let d = Retries::default();
    let key = |k: &str| format!("pools.{pool}.retries.{k}");
    let mut on_status = Vec::new();
    for s in raw.on_status.iter().flat_map(|l| l.get_ref().iter()) {
        match u16::try_from(*s.get_ref()) {
            Ok(code @ 500..=599) => on_status.push(code),
            _ => problems.add(
                s.span(),
                format!(
                    "`{}` lists {}, which is not a 5xx status",
                    key("on_status"),
                    s.get_ref()
                ),
                Some("only server errors (500-599) can be retried".into()),
            ),
        }
    }
    Retries {
        attempts: integer(
            &raw.attempts,
            &key("attempts"),
            0..=10,
            d.attempts.into(),
            problems,
        ) as u32,
        on_status,
        budget_percent: integer(
            &raw.budget,
            &key("budget"),
            0..=100,
            d.budget_percent.into(),
            problems,
        ) as u32,
        min_per_second: integer(
            &raw.min_per_second,
            &key("min_per_second"),
            0..=10_000,
            d.min_per_second.into(),
            problems,
        ) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200"), Some((200, 200)));
        assert_eq!(parse_status_range("200-399"), Some((200, 399)));
        assert_eq!(parse_status_range("399-200"), None);
        assert_eq!(parse_status_range("2xx"), None);
        assert_eq!(parse_status_range("700"), None);
    }
}
