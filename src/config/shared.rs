//! `[shared]`: state that several Fulcrum instances in front of the same pools share
//! through Redis (active-active), as HAProxy's `peers` section shares stick tables: the
//! stick tables of pools with `sticky` mode `table` or `learn`, and the rate limits.
//!
//! ```toml
//! [shared]
//! redis = "redis://127.0.0.1:6379/0"   # or, with Sentinel:
//! # sentinels = ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]
//! # master = "mymaster"
//! prefix = "fulcrum"        # Redis key and channel prefix: one per fleet
//! interval = "20ms"         # how often changes are sent, batched
//! timeout = "500ms"         # a slower Redis is treated as down
//! stick_tables = true
//! rate_limits = true
//! secret = "..."            # seeds the key hashes (default: derived from the prefix)
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;
use super::fields::duration;

/// `[shared]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    pub redis: Option<Spanned<String>>,
    pub sentinels: Option<Spanned<Vec<Spanned<String>>>>,
    pub master: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub stick_tables: Option<bool>,
    pub rate_limits: Option<bool>,
    pub secret: Option<Spanned<String>>,
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAt {
    /// One server (`redis://[user:password@]host:port[/db]`).
    Server(String),
    /// The master Sentinel names, asked of the sentinels again at each reconnection.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The master's name in Sentinel.
        master: String,
    },
}

/// `[shared]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// Where Redis is.
    pub redis: RedisAt,
    /// The prefix of Fulcrum's keys and channel in Redis (instances with the same prefix
    /// share).
    pub prefix: String,
    /// How often changes are sent.
    pub interval: Duration,
    /// A connection or command slower than this counts as Redis down.
    pub timeout: Duration,
    /// Whether stick tables are shared.
    pub stick_tables: bool,
    /// Whether rate limits are shared.
    pub rate_limits: bool,
    /// The seed of the key hashes every instance must agree on.
    pub seed: u64,
}

/// Validates `[shared]`.
pub(super) fn check(raw: &Spanned<RawShared>, problems: &mut Problems<'_>) -> Option<SharedConfig> {
    let s = raw.get_ref();
    let url = |u: &Spanned<String>, problems: &mut Problems<'_>| {
        match redis::IntoConnectionInfo::into_connection_info(u.get_ref().as_str()) {
            Ok(_) => Some(u.get_ref().clone()),
            Err(e) => {
                problems.add(
                    u.span(),
                    format!("`{}` is not a Redis URL: {e}", u.get_ref()),
                    Some("write redis://HOST:PORT[/DB], with user:password@ before the host if Redis asks for them".into()),
                );
                None
            }
        }
    };
    let redis = match (&s.redis, &s.sentinels, &s.master) {
        (Some(r), None, None) => RedisAt::Server(url(r, problems)?),
        (None, Some(list), Some(master)) if !list.get_ref().is_empty() => RedisAt::Sentinel {
            sentinels: list
                .get_ref()
                .iter()
                .map(|u| url(u, problems))
                .collect::<Option<Vec<_>>>()?,
            master: master.get_ref().clone(),
        },
        _ => {
            problems.add(
                raw.span(),
                "`[shared]` needs either `redis` or both `sentinels` and `master`",
                Some("e.g. redis = \"redis://127.0.0.1:6379\", or sentinels = [\"redis://10.0.0.1:26379\"] with master = \"mymaster\"".into()),
            );
            return None;
        }
    };
    let prefix = match &s.prefix {
        None => "fulcrum".to_owned(),
        Some(p)
            if !p.get_ref().is_empty()
                && p.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*') =>
        {
            p.get_ref().clone()
        }
        Some(p) => {
            problems.add(
                p.span(),
                "`shared.prefix` must be printable, without spaces or `*`",
                Some("e.g. \"fulcrum\", or one name per fleet: \"edge-eu\"".into()),
            );
            return None;
        }
    };
    let interval = duration(
        &s.interval,
        "shared.interval",
        Duration::from_millis(20),
        problems,
    );
    let timeout = duration(
        &s.timeout,
        "shared.timeout",
        Duration::from_millis(500),
        problems,
    );
    let seed_text = s.secret.as_ref().map_or(prefix.as_str(), |s| s.get_ref());
    Some(SharedConfig {
        redis,
        seed: crate::balance::hash::hash_parts(&[b"fulcrum-shared:", seed_text.as_bytes()]),
        prefix,
        interval,
        timeout,
        stick_tables: s.stick_tables.unwrap_or(true),
        rate_limits: s.rate_limits.unwrap_or(true),
    })
}
