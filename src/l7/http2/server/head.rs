//! Heads in and out: the request a client's decoded header block makes (RFC 9113 8.3.1,
//! with the checks that make a request malformed), and the HEADERS block of a response.
//!
//! A malformed request is a stream error (RST_STREAM PROTOCOL_ERROR), never a request
//! the pipeline sees: pseudo-headers after regular fields, unknown or repeated ones,
//! upper-case names, connection-specific fields, `te` other than `trailers`, a bad
//! `content-length`, a missing `:method`, `:scheme` or `:path`. Several `cookie` fields
//! are joined into one (RFC 9113 8.2.3), as an HTTP/1.1 backend expects.

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Parts as UriParts, PathAndQuery, Scheme};
use hyper::{HeaderMap, Method, Request, Uri, Version};

use super::super::frame::{self, HEADER_LEN};
use super::super::hpack::{self, Field};

/// Why a request cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// RST_STREAM PROTOCOL_ERROR.
    Malformed(&'static str),
    /// A 431 answer: more or larger fields than `limits` allow.
    TooLarge,
}

/// A request head being read, field by field.
pub struct RequestHead {
    method: Option<Method>,
    scheme: Option<Scheme>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    headers: HeaderMap,
    cookie: Option<Vec<u8>>,
    regular: bool,
    refused: Option<Refused>,
    size: usize,
    max_size: usize,
    max_fields: usize,
    length: Option<u64>,
    expect_continue: bool,
}

impl RequestHead {
    pub fn new(max_size: usize, max_fields: usize) -> RequestHead {
        RequestHead {
            method: None,
            scheme: None,
            authority: None,
            path: None,
            headers: HeaderMap::new(),
            cookie: None,
            regular: false,
            refused: None,
            size: 0,
            max_size,
            max_fields,
            length: None,
            expect_continue: false,
        }
    }

    /// Trailers are read with the same checks, and must have no pseudo-header.
    pub fn trailers(max_size: usize, max_fields: usize) -> RequestHead {
        let mut t = RequestHead::new(max_size, max_fields);
        t.regular = true;
        t
    }

    fn refuse(&mut self, why: Refused) {
        self.refused.get_or_insert(why);
    }

    /// One decoded field.
    pub fn field(&mut self, f: Field<'_>) {
        if self.refused.is_some() {
            return;
        }
        self.size += f.name.len() + f.value.len() + 32;
        if self.size > self.max_size || self.headers.len() >= self.max_fields {
            return self.refuse(Refused::TooLarge);
        }
        if f.name.first() == Some(&b':') {
            return self.pseudo(f);
        }
        self.regular = true;
        let name = match f.static_name.and_then(known) {
            Some(n) => n,
            None => {
                if f.name.iter().any(u8::is_ascii_uppercase) {
                    return self.refuse(Refused::Malformed("upper-case field name"));
                }
                match HeaderName::from_bytes(f.name) {
                    Ok(n) => n,
                    Err(_) => return self.refuse(Refused::Malformed("invalid field name")),
                }
            }
        };
        if is_connection_specific(&name) {
            return self.refuse(Refused::Malformed("connection-specific field"));
        }
        if name == header::TE && f.value != b"trailers" {
            return self.refuse(Refused::Malformed("te other than trailers"));
        }
        if name == header::CONTENT_LENGTH {
            let n = std::str::from_utf8(f.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
            match (n, self.length) {
                (Some(n), None) => self.length = Some(n),
                (Some(n), Some(m)) if n == m => return,
                _ => return self.refuse(Refused::Malformed("invalid content-length")),
            }
        }
        if name == header::EXPECT && f.value.eq_ignore_ascii_case(b"100-continue") {
            self.expect_continue = true;
        }
        if name == header::COOKIE {
            match &mut self.cookie {
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(f.value);
                }
                None => self.cookie = Some(f.value.to_vec()),
            }
            return;
        }
        match HeaderValue::from_bytes(f.value) {
            Ok(v) => {
                self.headers.append(name, v);
            }
            Err(_) => self.refuse(Refused::Malformed("invalid field value")),
        }
    }

    fn pseudo(&mut self, f: Field<'_>) {
        if self.regular {
            return self.refuse(Refused::Malformed("pseudo-header after a regular field"));
        }
        let repeated = match f.name {
            b":method" => {
                let m = Method::from_bytes(f.value).ok();
                if m.is_none() {
                    return self.refuse(Refused::Malformed("invalid :method"));
                }
                self.method.replace(m.expect("checked")).is_some()
            }
            b":scheme" => match Scheme::try_from(f.value) {
                Ok(s) => self.scheme.replace(s).is_some(),
                Err(_) => return self.refuse(Refused::Malformed("invalid :scheme")),
            },
            b":authority" => self
                .authority
                .replace(Bytes::copy_from_slice(f.value))
                .is_some(),
            b":path" => self.path.replace(Bytes::copy_from_slice(f.value)).is_some(),
            _ => return self.refuse(Refused::Malformed("unknown pseudo-header")),
        };
        if repeated {
            self.refuse(Refused::Malformed("repeated pseudo-header"));
        }
    }

    /// Whether the client waits for `100 Continue` before sending its body.
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// The declared `content-length`.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The request (its body is the caller's), or why it is refused.
    pub fn request(mut self) -> Result<Request<()>, Refused> {
        if let Some(why) = self.refused {
            return Err(why);
        }
        let Some(method) = self.method.take() else {
            return Err(Refused::Malformed("no :method"));
        };
        let mut parts = UriParts::default();
        if let Some(a) = self.authority.take() {
            parts.authority = Some(
                Authority::from_maybe_shared(a)
                    .map_err(|_| Refused::Malformed("invalid :authority"))?,
            );
        }
        if method == Method::CONNECT {
            if self.scheme.is_some() || self.path.is_some() || parts.authority.is_none() {
                return Err(Refused::Malformed(
                    "CONNECT with :scheme or :path, or no :authority",
                ));
            }
        } else {
            let (Some(scheme), Some(path)) = (self.scheme.take(), self.path.take()) else {
                return Err(Refused::Malformed("no :scheme or :path"));
            };
            if path.is_empty() {
                return Err(Refused::Malformed("empty :path"));
            }
            parts.path_and_query = Some(
                PathAndQuery::from_maybe_shared(path)
                    .map_err(|_| Refused::Malformed("invalid :path"))?,
            );
            // A URI has a scheme only with an authority.
            if parts.authority.is_some() {
                parts.scheme = Some(scheme);
            }
        }
        let uri =
            Uri::from_parts(parts).map_err(|_| Refused::Malformed("invalid request target"))?;
        if let Some(c) = self.cookie.take() {
            let v =
                HeaderValue::from_bytes(&c).map_err(|_| Refused::Malformed("invalid cookie"))?;
            self.headers.append(header::COOKIE, v);
        }
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers;
        Ok(req)
    }

    /// The fields, as trailers.
    pub fn into_trailers(mut self) -> Result<HeaderMap, Refused> {
        if let Some(why) = self.refused {
            return Err(why);
        }
        if let Some(c) = self.cookie.take()
            && let Ok(v) = HeaderValue::from_bytes(&c)
        {
            self.headers.append(header::COOKIE, v);
        }
        Ok(self.headers)
    }
}

/// The header name of a static-table index, for the names requests carry most.
fn known(index: u8) -> Option<HeaderName> {
    Some(match index {
        15 => header::ACCEPT_CHARSET,
        16 => header::ACCEPT_ENCODING,
        17 => header::ACCEPT_LANGUAGE,
        19 => header::ACCEPT,
        23 => header::AUTHORIZATION,
        24 => header::CACHE_CONTROL,
        28 => header::CONTENT_LENGTH,
        31 => header::CONTENT_TYPE,
        32 => header::COOKIE,
        38 => header::HOST,
        40 => header::IF_MODIFIED_SINCE,
        41 => header::IF_NONE_MATCH,
        50 => header::RANGE,
        51 => header::REFERER,
        57 => header::TRANSFER_ENCODING,
        58 => header::USER_AGENT,
        _ => return None,
    })
}

/// Fields HTTP/2 does not carry (RFC 9113 8.2.2).
fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// Writes a response head (or trailers, `status` None) as HEADERS frames on `stream`.
/// `length` is the body's exact length, added as `content-length` if the head has none.
pub fn write_head(
    status: Option<u16>,
    headers: &HeaderMap,
    length: Option<u64>,
    (stream, end_stream, max_frame): (u32, bool, usize),
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&[0; HEADER_LEN]);
    let start = out.len();
    if let Some(status) = status {
        hpack::encode::encode_status(status, out);
        let bodiless = status < 200 || status == 204 || status == 304;
        if let (Some(n), false) = (
            length,
            bodiless || headers.contains_key(header::CONTENT_LENGTH),
        ) {
            let digits = crate::digits::Digits::decimal(n);
            hpack::encode_field(b"content-length", digits.as_bytes(), out);
        }
    }
    for (name, value) in headers {
        if is_connection_specific(name) {
            continue;
        }
        hpack::encode_field(name.as_str().as_bytes(), value.as_bytes(), out);
    }
    frame::frame_headers(out, start, stream, end_stream, max_frame);
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
