//! The HTTP/2 path's side of the pipeline: a [`RequestView`] over a hyper request, the
//! checks of its host (`:authority` and `Host` must agree, RFC 9113 8.3.1), and the
//! rewrite of the request for the backend (hop-by-hop headers out, forwarding headers in,
//! the route's path and header rules, the target in the form the backend's HTTP version
//! needs).

use std::net::IpAddr;

use super::forward::ClientBody;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Uri, Version};

use crate::config::HttpVersion;
use crate::pipeline::error::Error;
use crate::routing::{HeaderRules, PathRewrite, RequestView, host_name};
use crate::runtime::Pool;

/// Headers that only concern one hop of an HTTP/1.1 connection.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// What the pipeline reads of a hyper request.
pub struct View<'a> {
    req: &'a Request<ClientBody>,
    host: Option<&'a [u8]>,
    ip: IpAddr,
}

impl<'a> View<'a> {
    /// The view of `req` from `ip`, once its host has been checked ([`check_host`]).
    pub fn new(req: &'a Request<ClientBody>, ip: IpAddr) -> View<'a> {
        let host = match req.uri().authority() {
            Some(a) => Some(a.as_str().as_bytes()),
            None => req.headers().get(header::HOST).map(HeaderValue::as_bytes),
        };
        View { req, host, ip }
    }
}

impl RequestView for View<'_> {
    fn method(&self) -> &[u8] {
        self.req.method().as_str().as_bytes()
    }

    fn host(&self) -> Option<&[u8]> {
        self.host
    }

    fn path(&self) -> &[u8] {
        self.req.uri().path().as_bytes()
    }

    fn query(&self) -> Option<&[u8]> {
        self.req.uri().query().map(str::as_bytes)
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.req
            .headers()
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
    }

    fn client_ip(&self) -> IpAddr {
        self.ip
    }
}

/// Refuses requests whose host is ambiguous: several `Host` headers, user info in the
/// authority, or (HTTP/2) a `Host` naming another host than `:authority`, which would
/// let the backend see another host than the one Fulcrum routed on (NGINX answers 400 to
/// both; RFC 9113 8.3.1 calls the latter malformed). For HTTP/1.1, an absolute-form
/// target's authority wins over `Host` (RFC 9112 3.2.2).
pub fn check_host(req: &Request<ClientBody>) -> Result<(), Error> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::bad_request(
            "a request needs at most one Host header",
        ));
    }
    let authority = req.uri().authority();
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Err(Error::bad_request("user information in the authority"));
    }
    if host.is_some_and(|h| !crate::l7::request::valid_authority(h.as_bytes())) {
        return Err(Error::bad_request("invalid Host header"));
    }
    if req.uri() == "*" && req.method() != hyper::Method::OPTIONS {
        return Err(Error::bad_request("invalid request target"));
    }
    if req.version() == Version::HTTP_2
        && let (Some(a), Some(h)) = (authority, host)
        && !host_name(a.as_str().as_bytes()).eq_ignore_ascii_case(host_name(h.as_bytes()))
    {
        return Err(Error::bad_request(
            "the Host header and :authority name different hosts",
        ));
    }
    if authority.is_none() && host.is_none() && req.version() != Version::HTTP_10 {
        return Err(Error::bad_request("a request needs a host"));
    }
    Ok(())
}

/// The route's rewrites for a request (path, header rules).
pub struct Rewrites<'a> {
    /// How the path changes.
    pub path: &'a PathRewrite,
    /// The route's request header rules.
    pub headers: Option<&'a HeaderRules>,
}

/// Rewrites the request for a backend of `pool`: hop-by-hop headers out, forwarding
/// headers in, the route's rewrites, the target in the form the backend's HTTP version
/// needs, and `Host` (HTTP/1.1 backends) from the authority the request was routed on.
pub fn prepare<B>(
    req: &mut Request<B>,
    ip: IpAddr,
    tls: bool,
    pool: &Pool,
    rewrites: &Rewrites<'_>,
) -> Result<(), Error> {
    let h2_backend = pool.http_version == HttpVersion::Http2;
    let authority = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
    };
    let via = if req.version() == Version::HTTP_2 {
        "2 fulcrum"
    } else {
        "1.1 fulcrum"
    };
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // HTTP/2 clients may split cookies over several fields; HTTP/1.1 wants one line
    // (RFC 9113 8.2.3).
    if !h2_backend && headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        let joined = join(headers, &header::COOKIE, "; ");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
    // gRPC needs `te: trailers` to reach an HTTP/2 backend; HTTP/1.1 backends get no TE.
    if !h2_backend || headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
    if let Some(rules) = rewrites.headers {
        rules.apply(headers);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    // The HTTP/1.1 engine's writers: IPv4 without `core::fmt` (which cost 3 % of an
    // HTTP/2 request, measured with bench/instructions).
    let mut text = Vec::with_capacity(64);
    crate::headers::put_client_ip(&mut text, ip);
    let xff_len = text.len();
    crate::headers::put_forwarded_for(&mut text, ip, proto);
    // Only ASCII was written.
    let text = std::str::from_utf8(&text).unwrap_or_default();
    append(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &text[..xff_len],
    );
    append(headers, header::FORWARDED, &text[xff_len..]);
    append(headers, header::VIA, via);

    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let path = match rewrites.path {
        PathRewrite::None => target.to_owned(),
        rewrite => rewrite.rewrite(target),
    };
    set_target(req, authority.as_deref(), path, pool)
}

/// Sets the request's target (`path`, with the query) and authority in the form a
/// backend of `pool` takes: the URI's for HTTP/2, `Host` for HTTP/1.1.
pub fn set_target<B>(
    req: &mut Request<B>,
    authority: Option<&str>,
    path: String,
    pool: &Pool,
) -> Result<(), Error> {
    let h2_backend = pool.http_version == HttpVersion::Http2;
    let uri = if h2_backend {
        // HTTP/2 carries the authority in its own field.
        req.headers_mut().remove(header::HOST);
        let scheme = if pool.tls.is_some() { "https" } else { "http" };
        let authority = authority.unwrap_or("backend");
        *req.version_mut() = Version::HTTP_2;
        format!("{scheme}://{authority}{path}")
    } else {
        if let Some(a) = authority {
            let host =
                HeaderValue::from_str(a).map_err(|_| Error::bad_request("invalid authority"))?;
            req.headers_mut().insert(header::HOST, host);
        }
        *req.version_mut() = Version::HTTP_11;
        path
    };
    *req.uri_mut() = uri
        .parse::<Uri>()
        .map_err(|_| Error::bad_request("invalid request target"))?;
    Ok(())
}

/// Removes hop-by-hop headers, and those the `Connection` header names (except `Host`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names is cheaper than five removals
    // (a hash each).
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| *n != header::HOST)
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The values of every `name` field, joined with `separator`.
fn join(headers: &HeaderMap, name: &HeaderName, separator: &str) -> String {
    let mut joined = String::new();
    for v in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        if !joined.is_empty() {
            joined.push_str(separator);
        }
        joined.push_str(v);
    }
    joined
}

/// Adds `value` to a list header (one line, comma-separated).
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if !headers.contains_key(&name) {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
        return;
    }
    let joined = match join(headers, &name, ", ") {
        prior if prior.is_empty() => value.to_owned(),
        prior => format!("{prior}, {value}"),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}
