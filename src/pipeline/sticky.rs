//! Session persistence, a step of the route, upstream and response phases. The route
//! phase finds the backend the client was kept on ([`Sticky::find`]): the one its
//! inserted cookie names (`insert`), or the one a stick table remembers for its key
//! (`table`: its address, a header or a cookie; `learn`: the application's session
//! cookie). The upstream phase tries that backend first while it is up and has room.
//! The response phase remembers who served: it sets the cookie (`insert`, when the
//! request had none or was served elsewhere), or stores the key in the table (`table`;
//! `learn`: also the session cookie a response sets).
//!
//! Cookie values are opaque (a keyed hash of pool, backend name and address:
//! `StickyConfig::value_for`), computed when the pool is built, with both `Set-Cookie`
//! values (clear text and TLS), so that the request path only compares and copies.
//! Tables hold the same identities, so entries stay right across reloads; the table
//! itself is carried over a reload while its settings stay the same.

use std::sync::Arc;

use crate::balance::Backend;
use crate::balance::hash::hash_parts;
use crate::config::rate_limits::KeyPart;
use crate::config::{StickyConfig, StickyMode};
use crate::policy::stick_table::StickTable;
use crate::routing::{RequestView, find_cookie};

/// A pool's persistence: its settings, table, and what each backend is called.
#[derive(Debug)]
pub struct Sticky {
    backends: Box<[Entry]>,
    table: Option<Arc<StickTable>>,
    /// Its settings (the table is carried over reloads while they stay the same).
    config: StickyConfig,
}

#[derive(Debug)]
struct Entry {
    backend: Arc<Backend>,
    /// Its stable identity (what tables hold).
    id: u64,
    value: Box<str>,
    /// `Set-Cookie` values: over clear text, over TLS.
    set_cookie: [Box<str>; 2],
}

impl Sticky {
    /// For `backends` of pool `pool` with `config`; `previous` is the pool's persistence
    /// in the running config, whose table is kept when the settings did not change.
    pub fn new<'b>(
        config: &StickyConfig,
        pool: &str,
        backends: impl Iterator<Item = &'b Arc<Backend>>,
        previous: Option<&Sticky>,
    ) -> Sticky {
        let backends = backends
            .map(|b| {
                let address = b.addr.to_string();
                let value = config.value_for(pool, &b.name, &address);
                Entry {
                    set_cookie: [
                        config.set_cookie(&value, false).into(),
                        config.set_cookie(&value, true).into(),
                    ],
                    id: config.id_for(pool, &b.name, &address),
                    value: value.into(),
                    backend: Arc::clone(b),
                }
            })
            .collect();
        let table = config.uses_table().then(|| {
            let same = |p: &&Sticky| {
                p.config.mode == config.mode
                    && p.config.cookie == config.cookie
                    && p.config.size == config.size
                    && p.config.expire == config.expire
                    && p.config.shared == config.shared
            };
            match previous.filter(same).and_then(|p| p.table.clone()) {
                Some(table) => table,
                None => Arc::new(StickTable::new(
                    config.size,
                    config.expire,
                    config.shared.then(|| crate::shared::id_of("stick", pool)),
                )),
            }
        });
        Sticky {
            backends,
            table,
            config: config.clone(),
        }
    }

    /// Where the client was kept: the backend (an index for [`Sticky::backend`]) if it
    /// is one of this pool's, and the request's table key (`table`, `learn`), if it has
    /// one.
    #[inline]
    pub fn find<V: RequestView + ?Sized>(&self, req: &V) -> (Option<u32>, Option<u64>) {
        let cookie = |name: &str| {
            req.header_values("cookie")
                .find_map(|v| find_cookie(v, name.as_bytes()))
        };
        let key = match &self.config.mode {
            StickyMode::Insert => {
                let found = cookie(&self.config.cookie).and_then(|value| {
                    self.backends
                        .iter()
                        .position(|e| e.value.as_bytes() == value)
                });
                return (found.and_then(|i| u32::try_from(i).ok()), None);
            }
            StickyMode::Prefix => {
                let found = cookie(&self.config.cookie)
                    .and_then(|value| split_prefix(value).map(|(p, _)| p))
                    .and_then(|prefix| {
                        self.backends
                            .iter()
                            .position(|e| e.value.as_bytes() == prefix)
                    });
                return (found.and_then(|i| u32::try_from(i).ok()), None);
            }
            StickyMode::Learn => cookie(&self.config.cookie).map(key_of),
            StickyMode::Table(KeyPart::Ip) => Some(ip_key(req.client_ip())),
            StickyMode::Table(KeyPart::Header(name)) => req.header_values(name).next().map(key_of),
            StickyMode::Table(KeyPart::Cookie(name)) => cookie(name).map(key_of),
            StickyMode::Table(_) => None,
        };
        (self.look_up(key), key)
    }

    /// [`Sticky::find`] for a TCP connection or UDP flow from `ip`: only a table keyed
    /// by the source address applies.
    pub fn find_client(&self, ip: std::net::IpAddr) -> (Option<u32>, Option<u64>) {
        if self.config.mode != StickyMode::Table(KeyPart::Ip) {
            return (None, None);
        }
        let key = Some(ip_key(ip));
        (self.look_up(key), key)
    }

    fn look_up(&self, key: Option<u64>) -> Option<u32> {
        key.and_then(|k| self.table.as_ref()?.get(k))
            .and_then(|id| self.backends.iter().position(|e| e.id == id))
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Backend `i` of [`Sticky::find`].
    pub fn backend(&self, i: u32) -> Option<&Arc<Backend>> {
        self.backends.get(i as usize).map(|e| &e.backend)
    }

    /// The `Set-Cookie` value that keeps a client on `backend` (`tls`: it came over
    /// TLS, the cookie is `Secure`); only in `insert` mode.
    pub fn set_cookie(&self, backend: &Arc<Backend>, tls: bool) -> Option<&str> {
        if self.config.mode != StickyMode::Insert {
            return None;
        }
        self.backends
            .iter()
            .find(|e| Arc::ptr_eq(&e.backend, backend))
            .map(|e| &*e.set_cookie[usize::from(tls)])
    }

    /// Remembers that `key` is served by `backend` (`table` and `learn` modes).
    pub fn remember(&self, key: u64, backend: &Arc<Backend>) {
        if let (Some(table), Some(e)) = (
            &self.table,
            self.backends
                .iter()
                .find(|e| Arc::ptr_eq(&e.backend, backend)),
        ) {
            table.put(key, e.id);
        }
    }

    /// The application's session cookie whose values carry the backend's prefix
    /// (`prefix` mode only).
    pub fn prefixes(&self) -> Option<&str> {
        (self.config.mode == StickyMode::Prefix).then_some(self.config.cookie.as_str())
    }

    /// The prefix naming `backend` in `prefix` mode (its opaque value).
    pub fn prefix_of(&self, backend: &Arc<Backend>) -> Option<&str> {
        self.backends
            .iter()
            .find(|e| Arc::ptr_eq(&e.backend, backend))
            .map(|e| &*e.value)
    }

    /// The application's session cookie a response sets, to learn (`learn` mode only).
    pub fn learns(&self) -> Option<&str> {
        (self.config.mode == StickyMode::Learn).then_some(self.config.cookie.as_str())
    }

    /// Whether the pool keeps a stick table (`table`, `learn`).
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The stick table, if the pool keeps one.
    pub fn table(&self) -> Option<&Arc<StickTable>> {
        self.table.as_ref()
    }

    /// Entries in the stick table (0 without one).
    pub fn table_entries(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.len())
    }
}

/// The table key of a cookie or header value, or of an address: a stable hash (the
/// same on every instance).
#[inline]
pub fn key_of(value: &[u8]) -> u64 {
    hash_parts(&[value])
}

/// Length of the prefix Fulcrum puts before an application cookie's value: 16 hex
/// digits and `~`.
pub const PREFIX_LEN: usize = 17;

/// A prefixed cookie value split into its prefix (16 hex digits) and the application's
/// value, if it has the form.
pub fn split_prefix(value: &[u8]) -> Option<(&[u8], &[u8])> {
    (value.len() >= PREFIX_LEN
        && value[16] == b'~'
        && value[..16].iter().all(u8::is_ascii_hexdigit))
    .then(|| (&value[..16], &value[PREFIX_LEN..]))
}

/// Strips Fulcrum's prefix from the value of cookie `name` in a `Cookie` header value
/// (`None`: nothing to strip).
pub fn strip_cookie_prefix(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    let mut changed = false;
    for (i, pair) in header.split(|&b| b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let trimmed = pair.trim_ascii_start();
        let lead = pair.len() - trimmed.len();
        if let Some(value) = trimmed
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            && let Some((_, app)) = split_prefix(value)
        {
            out.extend_from_slice(&pair[..lead]);
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(app);
            changed = true;
        } else {
            out.extend_from_slice(pair);
        }
    }
    changed.then_some(out)
}

/// A `Set-Cookie` value for cookie `name` with `prefix~` before its value (`None`: it
/// sets another cookie, or an empty value).
pub fn prefix_set_cookie(header: &[u8], name: &str, prefix: &str) -> Option<Vec<u8>> {
    let value = set_cookie_value(header, name)?;
    let at = value.as_ptr() as usize - header.as_ptr() as usize;
    let mut out = Vec::with_capacity(header.len() + PREFIX_LEN);
    out.extend_from_slice(&header[..at]);
    out.extend_from_slice(prefix.as_bytes());
    out.push(b'~');
    out.extend_from_slice(&header[at..]);
    Some(out)
}

/// [`strip_cookie_prefix`] on every `Cookie` value of an HTTP/2 request.
pub fn strip_prefixes(headers: &mut http::HeaderMap, name: &str) {
    rewrite(headers, http::header::COOKIE, |v| {
        strip_cookie_prefix(v, name)
    });
}

/// [`prefix_set_cookie`] on every `Set-Cookie` value of a response for hyper.
pub fn prefix_set_cookies(headers: &mut http::HeaderMap, name: &str, prefix: &str) {
    rewrite(headers, http::header::SET_COOKIE, |v| {
        prefix_set_cookie(v, name, prefix)
    });
}

/// Replaces the values of header `name` that `f` changes, keeping their order.
fn rewrite(
    headers: &mut http::HeaderMap,
    name: http::HeaderName,
    f: impl Fn(&[u8]) -> Option<Vec<u8>>,
) {
    if !headers
        .get_all(&name)
        .iter()
        .any(|v| f(v.as_bytes()).is_some())
    {
        return;
    }
    let values: Vec<http::HeaderValue> = headers
        .get_all(&name)
        .iter()
        .map(|v| {
            f(v.as_bytes())
                .and_then(|new| http::HeaderValue::from_bytes(&new).ok())
                .unwrap_or_else(|| v.clone())
        })
        .collect();
    headers.remove(&name);
    for v in values {
        headers.append(&name, v);
    }
}

/// The table key of a client address (IPv4 clients seen as `::ffff:a.b.c.d` count as
/// IPv4).
fn ip_key(ip: std::net::IpAddr) -> u64 {
    key_of(crate::policy::Octets::of(ip).bytes())
}

/// The value of cookie `name` a `Set-Cookie` header value sets, if it sets that one.
pub fn set_cookie_value<'v>(header: &'v [u8], name: &str) -> Option<&'v [u8]> {
    let pair = header.split(|&b| b == b';').next()?;
    let eq = pair.iter().position(|&b| b == b'=')?;
    let (n, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
    (n == name.as_bytes() && !v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_cookies() {
        let p = "0123456789abcdef";
        assert_eq!(
            prefix_set_cookie(b"JSESSIONID=abc; Path=/", "JSESSIONID", p).unwrap(),
            b"JSESSIONID=0123456789abcdef~abc; Path=/"
        );
        assert_eq!(prefix_set_cookie(b"other=1", "JSESSIONID", p), None);
        assert_eq!(
            strip_cookie_prefix(b"a=1; JSESSIONID=0123456789abcdef~abc; b=2", "JSESSIONID")
                .unwrap(),
            b"a=1; JSESSIONID=abc; b=2"
        );
        assert_eq!(strip_cookie_prefix(b"JSESSIONID=abc", "JSESSIONID"), None);
        assert_eq!(
            split_prefix(b"0123456789abcdef~x"),
            Some((&b"0123456789abcdef"[..], &b"x"[..]))
        );
    }

    #[test]
    fn set_cookie_values() {
        assert_eq!(
            set_cookie_value(b"JSESSIONID=abc123; Path=/; HttpOnly", "JSESSIONID"),
            Some(&b"abc123"[..])
        );
        assert_eq!(set_cookie_value(b"other=1", "JSESSIONID"), None);
        assert_eq!(
            set_cookie_value(b"JSESSIONID=; Max-Age=0", "JSESSIONID"),
            None
        );
        assert_eq!(
            set_cookie_value(b" JSESSIONID = x ", "JSESSIONID"),
            Some(&b"x"[..])
        );
    }
}
