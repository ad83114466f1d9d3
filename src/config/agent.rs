//! `[pools.NAME.agent]`: backend-reported load, as HAProxy's `agent-check`: an agent
//! port on each backend's address that Fulcrum asks every interval, and/or a response
//! header carrying the backend's load (what the reports do is in the health checker's
//! agent module).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;
use super::fields::duration;

/// `[pools.NAME.agent]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub port: Option<Spanned<i64>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub send: Option<String>,
    pub header: Option<Spanned<String>>,
}

/// Where a pool's backends report their load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCheck {
    /// The agent's TCP port, on each backend's address (none: header reports only).
    pub port: Option<u16>,
    /// Time between two questions to one agent.
    pub interval: Duration,
    /// How long an agent may take to answer.
    pub timeout: Duration,
    /// Sent to the agent on connecting (HAProxy's `agent-send`), if anything.
    pub send: Option<String>,
    /// A response header carrying the backend's load (lower case), if any.
    pub header: Option<String>,
}

/// Validates `[pools.NAME.agent]`.
pub(super) fn check(
    raw: &RawAgent,
    pool: &Spanned<String>,
    problems: &mut Problems<'_>,
) -> AgentCheck {
    let port = raw
        .port
        .as_ref()
        .and_then(|p| match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                problems.add(
                    p.span(),
                    format!("agent port {} is not a port", p.get_ref()),
                    Some("a TCP port, 1-65535, on each backend's address".into()),
                );
                None
            }
        });
    let header = raw.header.as_ref().and_then(|h| {
        let name = h.get_ref().trim();
        if !name.is_empty() && name.bytes().all(super::is_token_byte) {
            Some(name.to_ascii_lowercase())
        } else {
            problems.add(
                h.span(),
                format!("`{name}` is not a header name"),
                Some("e.g. header = \"X-Backend-Load\"".into()),
            );
            None
        }
    });
    if raw.port.is_none() && raw.header.is_none() {
        problems.add(
            pool.span(),
            format!(
                "pool `{}` has an agent with neither `port` nor `header`",
                pool.get_ref()
            ),
            Some(
                "give `port = 9999` (an agent on each backend) or `header = \"X-Backend-Load\"`"
                    .into(),
            ),
        );
    }
    let interval = duration(
        &raw.interval,
        "agent.interval",
        Duration::from_secs(2),
        problems,
    );
    let timeout = duration(
        &raw.timeout,
        "agent.timeout",
        Duration::from_secs(1),
        problems,
    );
    AgentCheck {
        port,
        interval,
        timeout: timeout.min(interval),
        send: raw.send.clone(),
        header,
    }
}
