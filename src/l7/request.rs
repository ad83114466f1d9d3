//! Reading a client's request head: strict parsing and validation of its framing, and
//! writing the head Fulcrum sends to the backend (hop-by-hop headers removed,
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `Forwarded` and `Via` added).
//!
//! Everything here is synchronous and works on the bytes already read; it never
//! allocates beyond growing the caller's reusable output buffer.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::IpAddr;

use super::headers::{ConnectionTokens, is_chunked, is_hop_by_hop, parse_content_length, put};
use crate::balance::HashKey;
use crate::balance::hash::{hash_bytes, mix};

/// Most header lines that can ever be parsed (the configured limit is at most this).
pub const HEADER_SLOTS: usize = 256;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the proxy needs to know about a parsed request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead {
    /// Bytes of the head in the input (the body starts there).
    pub head_len: usize,
    /// Body framing.
    pub body: BodyFraming,
    /// The client asked to keep the connection open after this exchange.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The method is HEAD (the response has no body).
    pub is_head: bool,
    /// The client speaks HTTP/1.0.
    pub http10: bool,
    /// The method is idempotent (RFC 9110 9.2.2), so it may be sent again after a stale
    /// backend connection failed before answering.
    pub idempotent: bool,
    /// An HTTP/1.0 request without `Host`: the proxy adds one, since it speaks
    /// HTTP/1.1 to backends.
    pub missing_host: bool,
    /// The request's hash key, for pools that hash.
    pub key: u64,
    /// A GET asking to switch protocols (`Connection: upgrade`, `Upgrade: websocket`):
    /// after a 101 the connection becomes a tunnel to the backend.
    pub upgrade: bool,
}

/// Why a request head was not accepted; each maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Partial,
    /// Too many header lines (431).
    TooManyHeaders,
    /// Malformed or ambiguous (400), with the reason shown to the client.
    Bad(&'static str),
    /// A valid request Fulcrum does not handle (501).
    NotImplemented(&'static str),
    /// A method not allowed through a reverse proxy (405).
    MethodNotAllowed,
    /// An `Expect` value other than `100-continue` (417).
    ExpectationFailed,
}

/// Per-listener facts used to rewrite the head.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// The client's address.
    pub client_ip: IpAddr,
    /// The scheme the client used ("http").
    pub proto: &'static str,
    /// What pools hash on, when the pool hashes.
    pub hash_key: Option<&'a HashKey>,
    /// Configured limit of header lines.
    pub max_headers: usize,
}

/// Parses the request head at the start of `buf`. On success, the head to send to the
/// backend is appended to `out`, and `method`/`target` receive copies for the access log.
pub fn parse(
    buf: &[u8],
    fwd: &Forwarding<'_>,
    out: &mut Vec<u8>,
    method: &mut String,
    target: &mut String,
) -> Result<RequestHead, HeadError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let slots = &mut slots[..fwd.max_headers.min(HEADER_SLOTS)];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HeadError::Bad("unsupported HTTP version")),
        Err(httparse::Error::HeaderName) => return Err(HeadError::Bad("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(HeadError::Bad("invalid header value")),
        Err(httparse::Error::NewLine) => return Err(HeadError::Bad("invalid line ending")),
        Err(_) => return Err(HeadError::Bad("malformed request line")),
    };
    let (Some(m), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Bad("malformed request line"));
    };
    let http10 = minor == 0;
    if m == "CONNECT" {
        return Err(HeadError::MethodNotAllowed);
    }
    if !(path.starts_with('/') || path == "*" || path.starts_with("http://")) {
        return Err(HeadError::Bad("invalid request target"));
    }

    // First pass: framing, connection tokens, and values that are merged.
    let mut tokens = ConnectionTokens::default();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut hosts = 0;
    let mut expect_continue = false;
    let mut upgrade_to: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n =
                parse_content_length(h.value).ok_or(HeadError::Bad("invalid Content-Length"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(HeadError::Bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding {
                return Err(HeadError::Bad("repeated Transfer-Encoding header"));
            }
            transfer_encoding = true;
            chunked = is_chunked(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            tokens.add(h.value);
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_to = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"expect") && !http10 {
            // HTTP/1.0 clients' expectations are ignored (RFC 9110 10.1.1).
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HeadError::ExpectationFailed);
            }
        }
    }
    if transfer_encoding {
        if length.is_some() {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
        }
        if http10 {
            return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !chunked {
            return Err(HeadError::NotImplemented("unsupported Transfer-Encoding"));
        }
    }
    if tokens.overflowed() {
        return Err(HeadError::Bad("too many Connection options"));
    }
    if hosts > 1 || (hosts == 0 && !http10) {
        return Err(HeadError::Bad("a request needs exactly one Host header"));
    }
    let body = match (chunked, length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::Empty,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    // WebSocket and other upgrades are passed on; h2c is not (Fulcrum speaks HTTP/2
    // itself, and would lose track of the backend connection).
    let upgrade_to = upgrade_to.filter(|v| {
        !http10
            && m == "GET"
            && body == BodyFraming::Empty
            && tokens.lists(b"upgrade")
            && !v.trim_ascii().eq_ignore_ascii_case(b"h2c")
    });
    let keep_alive = if http10 {
        tokens.keep_alive && !tokens.close
    } else {
        !tokens.close
    };

    // Second pass: the head for the backend.
    out.extend_from_slice(m.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff = ListHeader::default();
    let mut forwarded = ListHeader::default();
    let mut via = ListHeader::default();
    let mut key_value: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if is_hop_by_hop(name) || tokens.lists(name) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            continue;
        }
        if let Some(HashKey::Header(want)) = fwd.hash_key
            && name.eq_ignore_ascii_case(want.as_bytes())
        {
            key_value = Some(h.value);
        }
        if let Some(HashKey::Cookie(want)) = fwd.hash_key
            && name.eq_ignore_ascii_case(b"cookie")
            && let Some(v) = find_cookie(h.value, want.as_bytes())
        {
            key_value = Some(v);
        }
        // List headers that Fulcrum extends are written last, as one line each.
        let list = if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            &mut xff
        } else if name.eq_ignore_ascii_case(b"forwarded") {
            &mut forwarded
        } else if name.eq_ignore_ascii_case(b"via") {
            &mut via
        } else {
            put(out, name, h.value);
            continue;
        };
        list.push(h.value)?;
    }
    match body {
        BodyFraming::Empty if length == Some(0) => out.extend_from_slice(b"Content-Length: 0\r\n"),
        BodyFraming::Empty => {}
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            super::headers::put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if let Some(protocol) = upgrade_to {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        put(out, b"Upgrade", protocol);
    }
    write_forwarding(out, fwd, &xff, &forwarded, &via);
    out.extend_from_slice(b"\r\n");

    let key = match fwd.hash_key {
        None => 0,
        Some(HashKey::Uri) => hash_bytes(path.as_bytes()),
        Some(HashKey::SourceIp) => hash_ip(fwd.client_ip),
        Some(_) => key_value.map_or_else(|| hash_ip(fwd.client_ip), hash_bytes),
    };
    method.clear();
    method.push_str(m);
    target.clear();
    target.push_str(path);
    Ok(RequestHead {
        head_len,
        body,
        keep_alive,
        expect_continue,
        is_head: m == "HEAD",
        http10,
        idempotent: matches!(m, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
        missing_host: hosts == 0,
        key,
        upgrade: upgrade_to.is_some(),
    })
}

/// The values of a list header that may be sent on several lines.
#[derive(Debug, Default)]
struct ListHeader<'a> {
    values: [&'a [u8]; 8],
    len: usize,
}

impl<'a> ListHeader<'a> {
    fn push(&mut self, value: &'a [u8]) -> Result<(), HeadError> {
        let slot = self
            .values
            .get_mut(self.len)
            .ok_or(HeadError::Bad("too many forwarding header lines"))?;
        *slot = value;
        self.len += 1;
        Ok(())
    }

    /// Writes `name: v1, v2, ..., ` (ready for the value Fulcrum appends).
    fn start(&self, out: &mut Vec<u8>, name: &[u8]) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        for v in &self.values[..self.len] {
            out.extend_from_slice(v.trim_ascii());
            out.extend_from_slice(b", ");
        }
    }
}

/// Appends the X-Forwarded-For, X-Forwarded-Proto, Forwarded and Via headers, each
/// continuing the list the client sent.
fn write_forwarding(
    out: &mut Vec<u8>,
    fwd: &Forwarding<'_>,
    xff: &ListHeader<'_>,
    forwarded: &ListHeader<'_>,
    via: &ListHeader<'_>,
) {
    xff.start(out, b"X-Forwarded-For");
    let _ = write!(out, "{}\r\n", fwd.client_ip);
    out.extend_from_slice(b"X-Forwarded-Proto: ");
    out.extend_from_slice(fwd.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    forwarded.start(out, b"Forwarded");
    let _ = match fwd.client_ip {
        IpAddr::V4(ip) => write!(out, "for={ip};proto={}\r\n", fwd.proto),
        IpAddr::V6(ip) => write!(out, "for=\"[{ip}]\";proto={}\r\n", fwd.proto),
    };
    via.start(out, b"Via");
    out.extend_from_slice(b"1.1 fulcrum\r\n");
}

/// The value of cookie `name` in a `Cookie` header value.
pub(crate) fn find_cookie<'v>(header: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| &pair[eq + 1..])
    })
}

/// Hash of a client address.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => mix(u64::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            mix((n as u64) ^ mix((n >> 64) as u64))
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
