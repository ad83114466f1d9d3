//! Traffic policy: which client addresses a listener accepts ([`Access`], checked on
//! the accepted socket's peer address, or the client a PROXY protocol header names,
//! before any byte of the client is read), and the per-key rate and concurrency limits
//! ([`ratelimit`]) that the pipeline's admission phase and the listeners apply.

pub mod auth;
pub mod forward_auth;
pub mod ipset;
pub mod lists;
pub mod ratelimit;
pub mod shards;
pub mod stick_table;

use std::net::IpAddr;

pub use ipset::IpSet;

/// A listener's allow and deny lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// When set, only these addresses are accepted.
    pub allow: Option<IpSet>,
    /// Never accepted (wins over `allow`).
    pub deny: IpSet,
}

impl Access {
    /// Whether a client at `ip` may connect.
    #[inline]
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allow.as_ref().is_none_or(|a| a.contains(ip)) && !self.deny.contains(ip)
    }
}

/// An address's bytes, without allocating: 4 for IPv4 (also when seen as
/// `::ffff:a.b.c.d`), 16 for IPv6. What rate limits and stick tables key on.
#[derive(Debug, Clone, Copy)]
pub struct Octets([u8; 16], usize);

impl Octets {
    /// The bytes of `ip`.
    #[inline]
    pub fn of(ip: IpAddr) -> Octets {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mut b = [0; 16];
                b[..4].copy_from_slice(&v4.octets());
                Octets(b, 4)
            }
            IpAddr::V6(v6) => Octets(v6.octets(), 16),
        }
    }

    /// Them.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// Where a listener's client address comes from when trusted proxies are in front
/// (NGINX's `set_real_ip_from` + `real_ip_header`, HAProxy's `hdr_ip(x-forwarded-for)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIp {
    /// The proxies whose header is believed.
    pub trusted: IpSet,
    /// The header naming the client (lower case), `x-forwarded-for` by default.
    pub header: String,
    /// Take the address this many from the right (`None`: the first, from the right,
    /// that is not a trusted proxy).
    pub hops: Option<usize>,
}

/// Most addresses of a header looked at (the last ones).
const MOST_HOPS: usize = 16;

impl RealIp {
    /// The client behind `peer`, given the values of the header: `peer` itself unless it
    /// is a trusted proxy; else, from the right of the header's list, the first address
    /// that is not a trusted proxy (or the `hops`-th one), or the leftmost if all are
    /// trusted. Values that are not addresses end the walk.
    pub fn client<'v>(&self, peer: IpAddr, values: impl Iterator<Item = &'v [u8]>) -> IpAddr {
        if !self.trusted.contains(peer) {
            return peer;
        }
        // The last MOST_HOPS addresses, in order, without allocating.
        let mut last = [None::<IpAddr>; MOST_HOPS];
        let mut n = 0usize;
        for value in values {
            for part in value.split(|&b| b == b',') {
                let ip = std::str::from_utf8(part)
                    .ok()
                    .map(str::trim)
                    .and_then(|t| t.parse::<IpAddr>().ok());
                last[n % MOST_HOPS] = ip;
                n += 1;
            }
        }
        let seen = n.min(MOST_HOPS);
        let from_right = |k: usize| last[(n - 1 - k) % MOST_HOPS];
        if let Some(hops) = self.hops {
            return if hops <= seen {
                from_right(hops - 1).unwrap_or(peer)
            } else {
                peer
            };
        }
        let mut client = peer;
        for k in 0..seen {
            match from_right(k) {
                Some(ip) => {
                    client = ip;
                    if !self.trusted.contains(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(hops: Option<usize>) -> RealIp {
        let blocks = [ipset::parse_block("10.0.0.0/8").unwrap()];
        RealIp {
            trusted: IpSet::new(&blocks),
            header: "x-forwarded-for".into(),
            hops,
        }
    }

    fn client(r: &RealIp, peer: &str, values: &[&str]) -> String {
        r.client(peer.parse().unwrap(), values.iter().map(|v| v.as_bytes()))
            .to_string()
    }

    #[test]
    fn the_client_behind_trusted_proxies() {
        let r = real(None);
        // An untrusted peer's header is ignored.
        assert_eq!(client(&r, "203.0.113.9", &["198.51.100.1"]), "203.0.113.9");
        // A trusted peer: the first untrusted from the right.
        assert_eq!(
            client(&r, "10.0.0.1", &["198.51.100.1, 10.0.0.2"]),
            "198.51.100.1"
        );
        assert_eq!(
            client(&r, "10.0.0.1", &["1.1.1.1, 198.51.100.1", "10.0.0.3"]),
            "198.51.100.1"
        );
        // All trusted: the leftmost; nothing usable: the peer.
        assert_eq!(client(&r, "10.0.0.1", &["10.0.0.7, 10.0.0.2"]), "10.0.0.7");
        assert_eq!(client(&r, "10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(client(&r, "10.0.0.1", &["unknown"]), "10.0.0.1");
        // A hop count: exactly that many from the right.
        let r = real(Some(2));
        assert_eq!(
            client(&r, "10.0.0.1", &["1.1.1.1, 2.2.2.2, 3.3.3.3"]),
            "2.2.2.2"
        );
        assert_eq!(client(&r, "10.0.0.1", &["3.3.3.3"]), "10.0.0.1");
    }
}
