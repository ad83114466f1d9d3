//! The config file exactly as written: serde structures that keep the position of every
//! value (`Spanned`) so that validation can point at the offending line and column.
//! Nothing here is checked beyond TOML types and key names; see `validate`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub threads: Option<Spanned<i64>>,
    pub access_log: Option<super::logging::RawAccessLog>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub shutdown_delay: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub admin: Option<RawAdmin>,
    pub resolver: Option<RawResolver>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub pools: BTreeMap<Spanned<String>, RawPool>,
    #[serde(default)]
    pub rate_limits: BTreeMap<Spanned<String>, super::rate_limits::RawRateLimit>,
    #[serde(default)]
    pub caches: BTreeMap<Spanned<String>, super::caches::RawCache>,
    pub shared: Option<Spanned<super::shared::RawShared>>,
}

/// `[admin]`: the admin listener (metrics).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: Spanned<String>,
    pub token_file: Option<Spanned<String>>,
}

/// `[timeouts]`: each a duration string such as "5s", "250ms", "2m".
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Spanned<String>>,
    pub request_header: Option<Spanned<String>>,
    pub idle: Option<Spanned<String>>,
    pub request: Option<Spanned<String>>,
}

/// `[limits]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_size: Option<Spanned<RawSize>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_concurrent_streams: Option<Spanned<i64>>,
}

/// A size: a number of bytes, or a string with a unit ("16k", "1m").
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

impl RawSize {
    /// The bytes it says, if it is a size (not negative, a known unit).
    pub fn bytes(&self) -> Option<u64> {
        match self {
            RawSize::Bytes(n) => u64::try_from(*n).ok(),
            RawSize::Text(t) => super::units::parse_size(t),
        }
    }
}

/// One `[[listeners]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<Spanned<String>>,
    pub bind: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    pub pool: Option<Spanned<String>>,
    #[serde(default)]
    pub routes: Vec<Spanned<super::routes::RawRoute>>,
    pub max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    pub accept_proxy: bool,
    pub splice: Option<Spanned<bool>>,
    /// Bind even if the address is not on this host yet (a floating address).
    #[serde(default)]
    pub freebind: bool,
    /// Accept a connection only once its first bytes arrive (TCP_DEFER_ACCEPT).
    pub defer_accept: Option<Spanned<bool>>,
    pub sni_routes: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub tls: Option<super::tls::RawListenerTls>,
    /// Client addresses accepted (CIDR blocks); none: all.
    pub allow: Option<Vec<Spanned<String>>>,
    /// Client addresses refused (CIDR blocks).
    pub deny: Option<Vec<Spanned<String>>>,
    /// A file of client addresses accepted.
    pub allow_file: Option<Spanned<String>>,
    /// A file of client addresses refused.
    pub deny_file: Option<Spanned<String>>,
    /// Proxies in front whose client address header is believed.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// That header (default `X-Forwarded-For`).
    pub client_ip_header: Option<Spanned<String>>,
    /// Take the address this many hops from the right instead of the first untrusted.
    pub trusted_hops: Option<Spanned<i64>>,
    /// Limits on every request (HTTP listeners).
    pub rate_limits: Option<Spanned<Vec<Spanned<String>>>>,
    /// Limits on each client's connections.
    pub connection_limits: Option<Spanned<Vec<Spanned<String>>>>,
    /// Response compression for the default pool and routes without their own.
    pub compression: Option<Spanned<super::compression::RawCompression>>,
}

/// One `[pools.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub algorithm: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub backends: Option<Spanned<Vec<RawBackend>>>,
    pub health: Option<super::resilience::RawHealth>,
    pub retries: Option<super::resilience::RawRetries>,
    pub breaker: Option<super::resilience::RawBreaker>,
    pub slow_start: Option<Spanned<String>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub queue: Option<Spanned<i64>>,
    pub queue_timeout: Option<Spanned<String>>,
    pub send_proxy: Option<Spanned<String>>,
    pub unavailable_body: Option<String>,
    pub http_version: Option<Spanned<String>>,
    pub tls: Option<super::tls::RawPoolTls>,
    pub sticky: Option<super::sticky::RawSticky>,
    pub agent: Option<super::agent::RawAgent>,
}

/// One backend of a pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    #[serde(default)]
    pub backup: bool,
    /// Follow the host name's A and AAAA records.
    #[serde(default)]
    pub resolve: bool,
    /// Follow this SRV name instead of an address.
    pub srv: Option<Spanned<String>>,
}

/// `[resolver]`: DNS service discovery.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    pub nameservers: Option<Vec<Spanned<String>>>,
    pub min_ttl: Option<Spanned<String>>,
    pub max_ttl: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}
