//! Header rules shared by requests and responses: which headers are hop-by-hop (never
//! forwarded), how `Connection` tokens are read, and strict `Content-Length` parsing.

/// Headers that describe one connection and are never forwarded (RFC 9110 7.6.1), plus
/// the framing headers that Fulcrum re-emits itself after validating them.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Tokens listed in `Connection` headers: at most 16 (more makes the message invalid, see
/// [`ConnectionTokens::overflowed`]), so that every listed header can be stripped.
#[derive(Debug, Default)]
pub struct ConnectionTokens<'a> {
    tokens: [&'a [u8]; 16],
    len: usize,
    overflow: bool,
    /// `close` was listed.
    pub close: bool,
    /// `keep-alive` was listed.
    pub keep_alive: bool,
}

impl<'a> ConnectionTokens<'a> {
    /// Adds the tokens of one `Connection` header value.
    pub fn add(&mut self, value: &'a [u8]) {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if self.len < self.tokens.len() {
                self.tokens[self.len] = token;
                self.len += 1;
            } else {
                self.overflow = true;
            }
        }
    }

    /// Whether more options were listed than can be tracked.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Whether `name` was listed (so is hop-by-hop for this message).
    pub fn lists(&self, name: &[u8]) -> bool {
        self.tokens[..self.len]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Parses a `Content-Length` value strictly: digits only, no sign, no list.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether a `Transfer-Encoding` value is exactly `chunked`.
pub fn is_chunked(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// Appends `name: value\r\n`.
#[inline]
/// Appends the client's address as an X-Forwarded-For element (IPv4 without
/// `core::fmt`, the common case on the request path).
pub fn put_client_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            out.extend_from_slice(crate::digits::Digits::ipv4(v4).as_bytes())
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends the client's Forwarded element (RFC 7239): `for=IP;proto=PROTO`, an IPv6
/// address quoted in brackets.
pub fn put_forwarded_for(out: &mut Vec<u8>, ip: std::net::IpAddr, proto: &str) {
    if ip.is_ipv4() {
        out.extend_from_slice(b"for=");
        put_client_ip(out, ip);
    } else {
        out.extend_from_slice(b"for=\"[");
        put_client_ip(out, ip);
        out.extend_from_slice(b"]\"");
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto.as_bytes());
}

pub fn put(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
#[inline]
pub fn put_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::digits::Digits::decimal(n).as_bytes());
}

/// Replaces the value of every line of header `name` (any case) in the HTTP/1 head in
/// `head` for which `f` gives a new one.
pub fn map_lines(head: &mut Vec<u8>, name: &[u8], mut f: impl FnMut(&[u8]) -> Option<Vec<u8>>) {
    let Some(first) = head.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let mut at = first + 2;
    while at < head.len() {
        let Some(len) = head[at..].windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let end = at + len;
        let line = &head[at..end];
        let named = line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':';
        if named {
            let value_at = at + name.len() + 1;
            let value = head[value_at..end].trim_ascii();
            if let Some(new) = f(value) {
                let mut line = name.to_vec();
                line.extend_from_slice(b": ");
                line.extend_from_slice(&new);
                let new_len = line.len();
                head.splice(at..end, line);
                at += new_len + 2;
                continue;
            }
        }
        at = end + 2;
    }
}

/// Removes every line of header `name` (any case) from the HTTP/1 head in `head` (the
/// request or status line first; lines end with CRLF).
pub fn remove_lines(head: &mut Vec<u8>, name: &[u8]) {
    let mut at = match head.windows(2).position(|w| w == b"\r\n") {
        Some(i) => i + 2,
        None => return,
    };
    while at < head.len() {
        let end = match head[at..].windows(2).position(|w| w == b"\r\n") {
            Some(i) => at + i + 2,
            None => return,
        };
        let line = &head[at..end];
        let named = line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':';
        if named {
            head.drain(at..end);
        } else {
            at = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_elements_of_both_families() {
        let mut out = Vec::new();
        put_forwarded_for(&mut out, "192.0.2.7".parse().unwrap(), "https");
        assert_eq!(out, b"for=192.0.2.7;proto=https");
        out.clear();
        put_forwarded_for(&mut out, "2001:db8::1".parse().unwrap(), "http");
        assert_eq!(out, b"for=\"[2001:db8::1]\";proto=http");
        out.clear();
        put_client_ip(&mut out, "2001:db8::1".parse().unwrap());
        assert_eq!(out, b"2001:db8::1");
    }

    #[test]
    fn lines_of_a_header_are_rewritten() {
        let mut head = b"GET / HTTP/1.1\r\nCookie: a=1\r\nHost: x\r\ncookie: b=2\r\n\r\n".to_vec();
        map_lines(&mut head, b"cookie", |v| {
            (v == b"b=2").then(|| b"b=3".to_vec())
        });
        assert_eq!(
            head,
            b"GET / HTTP/1.1\r\nCookie: a=1\r\nHost: x\r\ncookie: b=3\r\n\r\n"
        );
    }

    #[test]
    fn lines_of_a_header_are_removed() {
        let mut head =
            b"GET / HTTP/1.1\r\nHost: x\r\nX-User: me\r\nx-user: again\r\nX-Users: keep\r\n\r\n"
                .to_vec();
        remove_lines(&mut head, b"x-user");
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: x\r\nX-Users: keep\r\n\r\n");
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b" 7 "), Some(7));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5,5",
            b"0x10",
            b"1 2",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None);
        }
    }

    #[test]
    fn connection_tokens() {
        let mut t = ConnectionTokens::default();
        t.add(b"Keep-Alive, X-Secret");
        t.add(b"close");
        assert!(t.close && t.keep_alive);
        assert!(t.lists(b"x-secret"));
        assert!(!t.lists(b"host"));
    }

    #[test]
    fn decimal() {
        let mut v = Vec::new();
        put_decimal(&mut v, 0);
        v.push(b' ');
        put_decimal(&mut v, 1_048_576);
        assert_eq!(v, b"0 1048576");
    }
}
