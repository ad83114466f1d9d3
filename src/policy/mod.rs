//! Traffic policy: which client addresses a listener accepts ([`Access`], checked on
//! the accepted socket's peer address, or the client a PROXY protocol header names,
//! before any byte of the client is read), and the per-key rate and concurrency limits
//! ([`ratelimit`]) that the pipeline's admission phase and the listeners apply.

pub mod ipset;
pub mod ratelimit;
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
