//! The vocabulary of the config file that other modules act on: balancing algorithms,
//! hash keys, circuit-breaker policies, PROXY protocol versions and weights. Defined here
//! so that `config` depends on nothing above it; `balance`, `health` and the proxies
//! import these types from here.

/// Weight of a backend relative to the others of its pool (1..=1000).
pub const MAX_WEIGHT: u32 = 1000;

/// Which version of the PROXY protocol to send to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text form.
    V1,
    /// The binary form.
    V2,
}

/// The balancing algorithms, as named in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Uniform random among the available backends, in proportion to weight.
    Random,
    /// Two random backends; the one with fewer in-flight requests per weight wins.
    #[serde(alias = "p2c")]
    PowerOfTwo,
    /// Each backend in turn, ignoring weights.
    RoundRobin,
    /// Smooth weighted round robin (NGINX's interleaving).
    #[default]
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    #[serde(alias = "leastconn")]
    LeastConnections,
    /// Lowest (in-flight + 1) x EWMA of response time.
    LeastResponseTime,
    /// Hash of the request key modulo the total weight (NGINX `hash`).
    Hash,
    /// Hash ring with virtual nodes (ketama): removing one of N backends moves ~1/N keys.
    ConsistentHash,
    /// Two backends drawn by weight x capacity left (as their agents report it); the one
    /// with fewer in-flight requests per capacity wins.
    LeastLoad,
}

impl Algorithm {
    /// Every algorithm's config name, for help texts.
    pub const NAMES: &'static [&'static str] = &[
        "random",
        "power_of_two",
        "round_robin",
        "weighted_round_robin",
        "least_connections",
        "least_response_time",
        "hash",
        "consistent_hash",
        "least_load",
    ];

    /// The algorithm's config name (`least_connections`).
    pub fn name(self) -> &'static str {
        // NAMES lists the variants in declaration order.
        Self::NAMES[self as usize]
    }

    /// Whether the algorithm picks by the request's hash key.
    pub fn uses_key(self) -> bool {
        matches!(self, Algorithm::Hash | Algorithm::ConsistentHash)
    }

    /// Parses a config name (or alias) as written on the command line.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        use serde::Deserialize;
        use serde::de::value::{Error, StrDeserializer};
        Algorithm::deserialize(StrDeserializer::<Error>::new(name)).ok()
    }
}

/// The request property that `hash` and `consistent_hash` pools hash on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// The client's IP address (the default).
    #[default]
    SourceIp,
    /// The value of a request header (lower-case name). Missing: falls back to the source IP.
    Header(Box<str>),
    /// The value of a cookie. Missing: falls back to the source IP.
    Cookie(Box<str>),
    /// The request target (path and query).
    Uri,
}

impl std::fmt::Display for HashKey {
    /// The config form: `source_ip`, `uri`, `header:NAME` or `cookie:NAME`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::SourceIp => f.write_str("source_ip"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
            HashKey::Uri => f.write_str("uri"),
        }
    }
}

impl HashKey {
    /// Parses the config form: `source_ip`, `uri`, `header:NAME` or `cookie:NAME`.
    pub fn parse(s: &str) -> Option<HashKey> {
        match s {
            "source_ip" => Some(HashKey::SourceIp),
            "uri" => Some(HashKey::Uri),
            _ => {
                let (kind, name) = s.split_once(':')?;
                let name = name.trim();
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return None;
                }
                match kind {
                    "header" => Some(HashKey::Header(name.to_ascii_lowercase().into())),
                    "cookie" => Some(HashKey::Cookie(name.into())),
                    _ => None,
                }
            }
        }
    }
}

/// Whether `b` may appear in an HTTP token (RFC 9110 `tchar`).
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// When a circuit opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failures that open the circuit (0: never on that ground).
    pub failures: u32,
    /// Error percentage over `window_us` that opens the circuit (0: never on that ground).
    pub error_rate_percent: u32,
    /// Length of the error-rate window.
    pub window_us: u64,
    /// Requests needed in the window before the error rate counts.
    pub min_requests: u32,
    /// How long the first opening lasts; each consecutive one lasts twice as long...
    pub open_for_us: u64,
    /// ...up to this.
    pub max_open_for_us: u64,
    /// Probe requests admitted at once while half-open, and successes needed to close.
    pub probes: u32,
}

impl CircuitPolicy {
    /// A policy that never opens the circuit.
    pub const DISABLED: CircuitPolicy = CircuitPolicy {
        failures: 0,
        error_rate_percent: 0,
        window_us: 10_000_000,
        min_requests: 20,
        open_for_us: 10_000_000,
        max_open_for_us: 300_000_000,
        probes: 3,
    };

    /// Whether the circuit can open at all.
    pub fn enabled(&self) -> bool {
        self.failures > 0 || self.error_rate_percent > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_read_back_as_their_variant() {
        for name in Algorithm::NAMES {
            let parsed: Algorithm = toml::Value::String((*name).into()).try_into().unwrap();
            assert_eq!(parsed.name(), *name);
        }
    }
}
