//! A listener's `[[listeners.routes]]`: what each route matches (host, path, method,
//! headers, cookies, query parameters, client address), what it does (send to a pool,
//! split between pools, redirect, answer by itself) and how it changes the request and
//! the response on the way (path prefix, header rules, timeouts, retries, fallback pool).
//!
//! The raw tables as written, and the validated types; the checks are in `route_check`
//! (and `route_actions`), and routes that can never match are found by `shadow`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::HashKey;

/// One `[[listeners.routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Spanned<String>>,
    pub host: Option<Spanned<OneOrMany>>,
    pub path: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<String>>,
    pub method: Option<Spanned<OneOrMany>>,
    pub headers: Option<Spanned<BTreeMap<String, RawValueMatch>>>,
    pub cookies: Option<Spanned<BTreeMap<String, RawValueMatch>>>,
    pub query: Option<Spanned<BTreeMap<String, RawValueMatch>>>,
    pub client: Option<Spanned<OneOrMany>>,
    pub pool: Option<Spanned<String>>,
    pub split: Option<Spanned<Vec<RawSplitSide>>>,
    pub split_key: Option<Spanned<String>>,
    pub redirect: Option<Spanned<RawRedirect>>,
    pub respond: Option<Spanned<RawRespond>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite_prefix: Option<Spanned<String>>,
    pub request_headers: Option<Spanned<RawHeaderRules>>,
    pub response_headers: Option<Spanned<RawHeaderRules>>,
    pub timeouts: Option<RawRouteTimeouts>,
    pub retries: Option<RawRouteRetries>,
    pub fallback: Option<Spanned<String>>,
    pub rate_limits: Option<Spanned<Vec<Spanned<String>>>>,
    pub allowed_methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub max_body_size: Option<Spanned<super::raw::RawSize>>,
    pub max_uri_length: Option<Spanned<i64>>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub deny: Option<Vec<Spanned<String>>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub forward_auth: Option<Spanned<RawForwardAuth>>,
    pub compression: Option<Spanned<super::compression::RawCompression>>,
    pub files: Option<Spanned<RawFiles>>,
    pub decompress_requests: Option<Spanned<RawDecompress>>,
    pub cache: Option<Spanned<String>>,
}

/// A route's `decompress_requests` as written: `true`, or `{ max_size = SIZE }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawDecompress {
    On(bool),
    Bounded { max_size: super::raw::RawSize },
}

/// Decoded request bodies are at most this large unless a route says otherwise.
pub const DEFAULT_DECOMPRESSED_MAX: u64 = 16 << 20;

/// A route's `files` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    pub root: Spanned<String>,
    pub index: Option<OneOrMany>,
    pub listing: Option<bool>,
    pub precompressed: Option<bool>,
    pub hidden: Option<bool>,
    pub cache_control: Option<Spanned<String>>,
}

/// A route's `forward_auth` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub url: Spanned<String>,
    pub send: Option<Vec<Spanned<String>>>,
    pub copy: Option<Vec<Spanned<String>>>,
    pub timeout: Option<Spanned<String>>,
}

/// A route's forward authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The auth service (`http://HOST:PORT/PATH`).
    pub url: String,
    /// Request headers sent to it (lower case).
    pub send: Vec<String>,
    /// Headers of its 2xx answers added to the request (lower case).
    pub copy: Vec<String>,
    /// How long it may take.
    pub timeout: std::time::Duration,
}

/// A route's `basic_auth` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub file: Spanned<String>,
    pub realm: Option<String>,
}

/// A route's basic authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthConfig {
    /// The htpasswd file (bcrypt).
    pub file: std::path::PathBuf,
    /// The realm browsers show.
    pub realm: String,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// How a header, cookie or query parameter value is matched, as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawValueMatch {
    Exact(String),
    Rule {
        regex: Option<String>,
        prefix: Option<String>,
        present: Option<bool>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitSide {
    pub pool: Spanned<String>,
    pub weight: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub status: Option<Spanned<i64>>,
    pub location: Option<String>,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    #[serde(default)]
    pub drop_query: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: Option<Spanned<i64>>,
    pub body: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRules {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTimeouts {
    pub connect: Option<Spanned<String>>,
    pub request: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteRetries {
    pub attempts: Option<Spanned<i64>>,
    pub on_status: Option<Spanned<Vec<i64>>>,
}

/// A validated route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Name for logs (defaults to `routeN`, counted from 1 in the listener).
    pub name: String,
    /// What a request must look like (every condition given).
    pub conditions: Conditions,
    /// What happens to a matching request.
    pub action: RouteAction,
    /// Removed from the start of the path before forwarding, when present.
    pub strip_prefix: Option<String>,
    /// Replaces the matched `path_prefix` before forwarding.
    pub rewrite_prefix: Option<String>,
    /// Changes to the request headers sent to the backend.
    pub request_headers: HeaderRules,
    /// Changes to the response headers sent to the client.
    pub response_headers: HeaderRules,
    /// Overrides of the global timeouts for this route.
    pub connect_timeout: Option<Duration>,
    /// See [`RouteConfig::connect_timeout`].
    pub request_timeout: Option<Duration>,
    /// Overrides the pool's retry attempts and statuses for this route.
    pub retries: Option<RouteRetries>,
    /// Pool used while the route's pool has no backend up.
    pub fallback: Option<usize>,
    /// Limits checked on each request (indices into `Config::rate_limits`).
    pub rate_limits: Vec<usize>,
    /// What a request may be before it is forwarded: methods, body and URI sizes.
    pub request_limits: RequestLimits,
    /// Response compression (its own, else the listener's; `None`: none).
    pub compression: Option<super::compression::Compression>,
    /// Request bodies sent compressed are decoded, up to this many bytes.
    pub decompress_requests: Option<u64>,
    /// The cache its responses are stored in (index into `Config::caches`).
    pub cache: Option<usize>,
}

/// A route's bounds on the request itself, checked once the head is read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestLimits {
    /// The only methods accepted (upper case; empty: any); others get 405.
    pub allowed_methods: Vec<String>,
    /// Largest request body; a larger `Content-Length` gets 413 before the body is read.
    pub max_body_size: Option<u64>,
    /// Longest request target (path and query); longer gets 414.
    pub max_uri_length: Option<usize>,
    /// Which clients may use the route (`allow`, `deny`); others get 403.
    pub clients: Option<crate::policy::Access>,
    /// Users who may use the route (others get 401).
    pub basic_auth: Option<BasicAuthConfig>,
    /// An auth service asked about every request.
    pub forward_auth: Option<ForwardAuthConfig>,
}

impl RequestLimits {
    /// Whether the route bounds anything.
    pub fn is_empty(&self) -> bool {
        *self == RequestLimits::default()
    }
}

/// The conditions of a route; an empty one matches every request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conditions {
    /// Any of these hosts (lower case, no port): exact names or `*.suffix`.
    pub hosts: Vec<String>,
    /// The path, without the query.
    pub path: Option<PathMatch>,
    /// Any of these methods (upper case).
    pub methods: Vec<String>,
    /// Each of these headers (lower-case names).
    pub headers: Vec<(String, ValueMatch)>,
    /// Each of these cookies.
    pub cookies: Vec<(String, ValueMatch)>,
    /// Each of these query parameters.
    pub query: Vec<(String, ValueMatch)>,
    /// The client's address in any of these networks.
    pub clients: Vec<Cidr>,
}

impl Conditions {
    /// Whether the route matches every request.
    pub fn is_catch_all(&self) -> bool {
        *self == Conditions::default()
    }
}

/// How the path is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Exactly this path.
    Exact(String),
    /// Any path starting with this.
    Prefix(String),
    /// A regular expression (checked at load time) anywhere in the path.
    Regex(String),
}

/// How one header, cookie or query value is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// Exactly this value.
    Exact(String),
    /// A value starting with this.
    Prefix(String),
    /// A regular expression (checked at load time).
    Regex(String),
    /// Present, whatever its value.
    Present,
    /// Absent.
    Absent,
}

/// An IP network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Bits of the prefix.
    pub bits: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a single address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
            None => {
                let a = text.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { addr, bits })
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What a route does with a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    /// Forward to this pool (index into [`super::Config::pools`]).
    Pool(usize),
    /// Forward to one of several pools, in proportion to their weights; a client keeps
    /// its side on later requests.
    Split {
        /// Pools and weights (weights 0..=1000, not all 0).
        sides: Vec<(usize, u32)>,
        /// What keeps a client on its side.
        key: SplitKey,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Respond(FixedResponse),
    /// Serve files from a directory.
    Files(crate::content::files::FilesConfig),
}

/// What keeps a client on its side of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitKey {
    /// A cookie Fulcrum sets on the first response (named `fulcrum_split_<route>` unless
    /// given).
    Cookie(String),
    /// A hash of a request property (source IP, header, cookie or URI).
    Hash(HashKey),
}

/// Where a redirect sends the client; unset parts keep the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// A whole URL, used as is (then the other fields are unset).
    pub location: Option<String>,
    /// New scheme (`https`).
    pub scheme: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path (replaces the whole path).
    pub path: Option<String>,
    /// Replaces the matched `path_prefix`.
    pub prefix: Option<String>,
    /// Leave the query out.
    pub drop_query: bool,
}

/// A response Fulcrum gives by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    /// Status code (200-599).
    pub status: u16,
    /// Body, sent as is.
    pub body: String,
    /// `Content-Type` of the body.
    pub content_type: String,
}

/// Changes to a set of headers, applied in this order: remove, set, add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    /// Names to remove (lower case).
    pub remove: Vec<String>,
    /// Headers to replace (or add if absent).
    pub set: Vec<(String, String)>,
    /// Headers to add beside any already there.
    pub add: Vec<(String, String)>,
}

impl HeaderRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// A route's own retry settings (the pool's budget still applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRetries {
    /// Retries after the first try.
    pub attempts: u32,
    /// Statuses retried.
    pub on_status: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let any = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }
}
