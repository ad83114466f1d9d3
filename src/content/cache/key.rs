//! Cache keys: what makes two requests the same stored response. The primary key is
//! built from the parts a cache names (`key = ["host", "path", "query",
//! "header:NAME"]`, NGINX's `proxy_cache_key`), each part tagged and separated by a NUL
//! byte, so `host` + `path` is a prefix of the key: a purge by prefix names a host and
//! the start of a path. HEAD requests share GET's key. Variants under one key are told
//! apart by the request headers their response's `Vary` names (see `store::Entry`).

use crate::routing::RequestView;

/// One part of a cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The request's host, lower case, without a default port.
    Host,
    /// The path.
    Path,
    /// The query string (after `?`), as sent.
    Query,
    /// A request header's values (name in lower case), joined by `, `.
    Header(String),
}

impl Part {
    /// The part a config string names.
    pub fn parse(text: &str) -> Option<Part> {
        match text {
            "host" => Some(Part::Host),
            "path" => Some(Part::Path),
            "query" => Some(Part::Query),
            _ => {
                let name = text.strip_prefix("header:")?.trim();
                (!name.is_empty() && name.bytes().all(crate::config::is_token_byte))
                    .then(|| Part::Header(name.to_ascii_lowercase()))
            }
        }
    }
}

/// The default key: host, path and query.
pub fn default_parts() -> Vec<Part> {
    vec![Part::Host, Part::Path, Part::Query]
}

/// The primary key of `req` under `parts`, written into `out` (cleared first).
pub fn build<V: RequestView + ?Sized>(parts: &[Part], req: &V, out: &mut Vec<u8>) {
    out.clear();
    for part in parts {
        match part {
            Part::Host => {
                let host = req.host().unwrap_or_default();
                let host = host
                    .strip_suffix(b":80")
                    .or_else(|| host.strip_suffix(b":443"))
                    .unwrap_or(host);
                out.extend(host.iter().map(u8::to_ascii_lowercase));
            }
            Part::Path => out.extend_from_slice(req.path()),
            Part::Query => {
                if let Some(q) = req.query() {
                    out.push(b'?');
                    out.extend_from_slice(q);
                }
            }
            Part::Header(name) => {
                for (i, v) in req.header_values(name).enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(v);
                }
            }
        }
        out.push(0);
    }
}

/// The primary key a purge request names: `host` and the start of a path, as
/// [`build`] writes them with the default parts (a whole key, or a prefix of one).
pub fn of_url(host: &str, path: &str) -> Vec<u8> {
    let mut out = host.to_ascii_lowercase().into_bytes();
    out.push(0);
    out.extend_from_slice(path.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    struct Req {
        host: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl RequestView for Req {
        fn method(&self) -> &[u8] {
            b"GET"
        }
        fn host(&self) -> Option<&[u8]> {
            Some(self.host.as_bytes())
        }
        fn path(&self) -> &[u8] {
            self.path.as_bytes()
        }
        fn query(&self) -> Option<&[u8]> {
            self.query.map(str::as_bytes)
        }
        fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
            self.headers
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
        fn client_ip(&self) -> IpAddr {
            IpAddr::from([127, 0, 0, 1])
        }
    }

    #[test]
    fn keys_name_host_path_query_and_headers() {
        let req = Req {
            host: "Example.COM:80",
            path: "/a/b",
            query: Some("x=1"),
            headers: vec![("X-Tenant", "t1"), ("x-tenant", "t2")],
        };
        let mut key = Vec::new();
        build(&default_parts(), &req, &mut key);
        assert_eq!(key, b"example.com\0/a/b\0?x=1\0");
        assert!(key.starts_with(&of_url("EXAMPLE.com", "/a/")));
        let parts = [Part::Path, Part::parse("header:X-Tenant").unwrap()];
        build(&parts, &req, &mut key);
        assert_eq!(key, b"/a/b\0t1, t2\0");
        assert_eq!(Part::parse("header:"), None);
        assert_eq!(Part::parse("cookie"), None);
    }
}
