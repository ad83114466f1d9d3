//! Reading a client's request head: strict parsing and validation of its framing, target
//! and `Host` ([`parse`], giving a [`Parsed`] head that the pipeline reads through
//! `RequestView`), and writing the head Fulcrum sends to the backend ([`Parsed::write`]:
//! origin-form target, hop-by-hop headers removed, the route's rewrites applied,
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `Forwarded` and `Via` added).
//!
//! Everything here is synchronous and works on the bytes already read; it never
//! allocates beyond growing the caller's reusable output buffer.

use std::mem::MaybeUninit;
use std::net::IpAddr;

use crate::headers::{ConnectionTokens, is_chunked, is_hop_by_hop, parse_content_length, put};
use crate::routing::{HeaderRules, PathRewrite, RequestView};

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
    /// An HTTP/1.0 request without `Host` (nor an absolute-form target): the proxy adds
    /// one, since it speaks HTTP/1.1 to backends.
    pub missing_host: bool,
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
pub struct Forwarding {
    /// The client's address.
    pub client_ip: IpAddr,
    /// The scheme the client used ("http").
    pub proto: &'static str,
}

/// Header slots for [`parse`], on the caller's stack.
pub type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; HEADER_SLOTS];

/// A parsed and validated request head, borrowing the bytes read: what the pipeline
/// reads through [`RequestView`], and what [`Parsed::write`] turns into the backend's head.
#[derive(Debug)]
pub struct Parsed<'h, 'b> {
    /// Framing and connection facts.
    pub head: RequestHead,
    /// The method.
    pub method: &'b str,
    /// The target as received (for the log).
    pub target: &'b str,
    /// The target in origin form (path and query), as forwarded.
    origin: &'b str,
    /// The authority of an absolute-form target, which wins over `Host`.
    authority: Option<&'b str>,
    /// The `Host` header's value.
    host: Option<&'b [u8]>,
    headers: &'h [httparse::Header<'b>],
    tokens: ConnectionTokens<'b>,
    length: Option<u64>,
    upgrade_to: Option<&'b [u8]>,
    client_ip: IpAddr,
}

impl Parsed<'_, '_> {
    /// The client is this address (named by a trusted proxy in front), not the peer.
    pub fn set_client_ip(&mut self, ip: IpAddr) {
        self.client_ip = ip;
    }
}

/// Parses and validates the request head at the start of `buf`, using `slots` (at most
/// `max_headers` of them) for its header lines.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut Slots<'b>,
    max_headers: usize,
    client_ip: IpAddr,
) -> Result<Parsed<'h, 'b>, HeadError> {
    let slots = &mut slots[..max_headers.min(HEADER_SLOTS)];
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
    let (Some(m), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Bad("malformed request line"));
    };
    let http10 = minor == 0;
    if m == "CONNECT" {
        return Err(HeadError::MethodNotAllowed);
    }
    // RFC 9112 3.2: a target is ASCII; anything else is percent-encoded by clients.
    // Raw bytes above 0x7f would reach backends that may read them differently (found by
    // fuzzing; HAProxy refuses them too).
    if !target.is_ascii() {
        return Err(HeadError::Bad(
            "a request target with bytes that are not ASCII",
        ));
    }
    let (origin, authority) = split_target(m, target)?;

    // Framing, connection tokens, and values that are merged.
    let mut tokens = ConnectionTokens::default();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut host: Option<&[u8]> = None;
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
            host = Some(h.value.trim_ascii());
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
    if host.is_some_and(|h| !valid_authority(h)) {
        return Err(HeadError::Bad("invalid Host header"));
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
    Ok(Parsed {
        head: RequestHead {
            head_len,
            body,
            keep_alive,
            expect_continue,
            is_head: m == "HEAD",
            http10,
            idempotent: matches!(m, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
            missing_host: hosts == 0 && authority.is_none(),
            upgrade: upgrade_to.is_some(),
        },
        method: m,
        target,
        origin,
        authority,
        host,
        headers: req.headers,
        tokens,
        length,
        upgrade_to,
        client_ip,
    })
}

/// The origin form (path and query) of a request target, and the authority of an
/// absolute-form one (RFC 9112 3.2). Fragments, user info, and an asterisk other than
/// `OPTIONS *` are refused.
fn split_target<'b>(
    method: &str,
    target: &'b str,
) -> Result<(&'b str, Option<&'b str>), HeadError> {
    if target.contains('#') {
        return Err(HeadError::Bad("a request target cannot carry a fragment"));
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok((target, None))
        } else {
            Err(HeadError::Bad("invalid request target"))
        };
    }
    if target.starts_with('/') {
        return Ok((target, None));
    }
    let rest = [("http://", 7), ("https://", 8)]
        .iter()
        .find(|(scheme, _)| {
            // Bytes, not `str` slicing: the target may hold UTF-8 (found by fuzzing).
            target
                .as_bytes()
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme.as_bytes()))
        })
        .map(|(_, n)| &target[*n..])
        .ok_or(HeadError::Bad("invalid request target"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    if authority.is_empty() || !valid_authority(authority.as_bytes()) {
        return Err(HeadError::Bad("invalid authority in the request target"));
    }
    // `http://h` and `http://h?q` have an empty path: it is written as `/` (see `write`).
    Ok((origin, Some(authority)))
}

/// Whether `value` is a valid `host[:port]` (RFC 9110 7.2): no user info, path, spaces or
/// other delimiters. An empty value is allowed (a target without authority).
pub(crate) fn valid_authority(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b".-_~!$&'()*+,;=:[]%".contains(&b))
}

impl Parsed<'_, '_> {
    /// Writes the head for the backend into `out`: the target as `rewrite` says, hop-by-hop
    /// headers out (and those `Connection` names, except `Host`), `Host` set to the
    /// target's authority for absolute-form requests, the route's header `rules`, then
    /// framing and forwarding headers.
    pub fn write(
        &self,
        fwd: &Forwarding,
        rewrite: &PathRewrite,
        rules: Option<&HeaderRules>,
        out: &mut Vec<u8>,
    ) -> Result<(), HeadError> {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        if !self.origin.starts_with(['/', '*']) {
            // An absolute-form target with an empty path.
            out.push(b'/');
        }
        rewrite.write(self.origin.as_bytes(), out);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut xff = ListHeader::default();
        let mut forwarded = ListHeader::default();
        let mut via = ListHeader::default();
        if let Some(authority) = self.authority {
            put(out, b"Host", authority.as_bytes());
        }
        for h in self.headers.iter() {
            let name = h.name.as_bytes();
            let is_host = name.eq_ignore_ascii_case(b"host");
            if is_host {
                // The authority of an absolute-form target replaced it.
                if self.authority.is_none() {
                    put(out, name, h.value);
                }
                continue;
            }
            if is_hop_by_hop(name) || self.tokens.lists(name) {
                continue;
            }
            if name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            {
                continue;
            }
            if rules.is_some_and(|r| r.drops(name)) {
                continue;
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
        match self.head.body {
            BodyFraming::Empty if self.length == Some(0) => {
                out.extend_from_slice(b"Content-Length: 0\r\n")
            }
            BodyFraming::Empty => {}
            BodyFraming::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                crate::headers::put_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        if let Some(protocol) = self.upgrade_to {
            out.extend_from_slice(b"Connection: upgrade\r\n");
            put(out, b"Upgrade", protocol);
        }
        if let Some(rules) = rules {
            for (name, value) in rules.appended() {
                put(out, name, value);
            }
        }
        write_forwarding(out, fwd, &xff, &forwarded, &via);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

impl RequestView for Parsed<'_, '_> {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }

    fn host(&self) -> Option<&[u8]> {
        self.authority.map(str::as_bytes).or(self.host)
    }

    fn path(&self) -> &[u8] {
        let o = self.origin.as_bytes();
        match o.iter().position(|&b| b == b'?') {
            Some(0) => b"/",
            Some(q) => &o[..q],
            None if o.is_empty() => b"/",
            None => o,
        }
    }

    fn query(&self) -> Option<&[u8]> {
        let o = self.origin.as_bytes();
        o.iter().position(|&b| b == b'?').map(|q| &o[q + 1..])
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    fn client_ip(&self) -> IpAddr {
        self.client_ip
    }
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
    fwd: &Forwarding,
    xff: &ListHeader<'_>,
    forwarded: &ListHeader<'_>,
    via: &ListHeader<'_>,
) {
    xff.start(out, b"X-Forwarded-For");
    crate::headers::put_client_ip(out, fwd.client_ip);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(fwd.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    forwarded.start(out, b"Forwarded");
    crate::headers::put_forwarded_for(out, fwd.client_ip, fwd.proto);
    out.extend_from_slice(b"\r\n");
    via.start(out, b"Via");
    out.extend_from_slice(b"1.1 fulcrum\r\n");
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
