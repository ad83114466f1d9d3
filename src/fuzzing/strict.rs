//! A second HTTP/1.1 head parser, written from RFC 9112's grammar independently of the
//! one Fulcrum serves with (httparse and `l7::request`), and strict: CRLF line endings
//! only, no obs-fold, no whitespace before a colon, tokens and field values as the RFC
//! defines them, one framing or none. The fuzz targets parse what Fulcrum forwards with
//! it: whatever Fulcrum accepts must read the same here.

/// How a message's body ends, as this parser reads the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes (0: no body).
    Length(u64),
    /// Chunked.
    Chunked,
    /// When the connection closes (responses only).
    UntilClose,
}

/// A parsed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'b> {
    /// The method (requests) or the status code's digits (responses).
    pub method: &'b [u8],
    /// The request target (requests) or the reason phrase (responses).
    pub target: &'b [u8],
    /// `HTTP/1.x`'s x.
    pub minor: u8,
    /// The header fields, values without surrounding whitespace.
    pub headers: Vec<(&'b [u8], &'b [u8])>,
    /// Where the body ends.
    pub framing: Framing,
    /// Bytes of the head, the empty line included.
    pub head_len: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// The lines of the head (CRLF-terminated, the empty line excluded) and its length.
fn lines(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), &'static str> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("incomplete head")?;
        if end == 0 || rest[end - 1] != b'\r' {
            return Err("a line not ended by CRLF");
        }
        let line = &rest[..end - 1];
        at += end + 1;
        if line.is_empty() {
            return Ok((out, at));
        }
        if line.contains(&b'\r') {
            return Err("a CR inside a line");
        }
        out.push(line);
    }
}

fn version(v: &[u8]) -> Result<u8, &'static str> {
    match v {
        b"HTTP/1.1" => Ok(1),
        b"HTTP/1.0" => Ok(0),
        _ => Err("not HTTP/1.0 or HTTP/1.1"),
    }
}

fn field(line: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err("obs-fold");
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("a field without a colon")?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) {
        return Err("a field name that is not a token");
    }
    let value = value.trim_ascii();
    if value
        .iter()
        .any(|&b| b == 0 || b == b'\n' || b == b'\r' || (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err("a control character in a field value");
    }
    Ok((name, value))
}

/// The framing the fields give: `None` when they give none. A Transfer-Encoding whose
/// last coding is not chunked is an error in a request, and means until-close in a
/// response (RFC 9112 6.3).
fn framing(
    headers: &[(&[u8], &[u8])],
    minor: u8,
    response: bool,
) -> Result<Option<Framing>, &'static str> {
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    for &(name, value) in headers {
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err("a Content-Length that is not a number");
            }
            let n: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("a Content-Length too large")?;
            if length.is_some_and(|l| l != n) {
                return Err("Content-Length values differ");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if te.is_some() {
                return Err("two Transfer-Encoding fields");
            }
            te = Some(value);
        }
    }
    match (te, length) {
        (Some(_), Some(_)) => Err("both Transfer-Encoding and Content-Length"),
        (Some(_), None) if minor == 0 => Err("Transfer-Encoding in HTTP/1.0"),
        (Some(te), None) => {
            let last = te
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if last.eq_ignore_ascii_case(b"chunked") {
                Ok(Some(Framing::Chunked))
            } else if response {
                Ok(Some(Framing::UntilClose))
            } else {
                Err("a Transfer-Encoding not ending in chunked")
            }
        }
        (None, Some(n)) => Ok(Some(Framing::Length(n))),
        (None, None) => Ok(None),
    }
}

/// A request head at the start of `buf`.
pub fn request(buf: &[u8]) -> Result<Head<'_>, &'static str> {
    let (lines, head_len) = lines(buf)?;
    let (first, rest) = lines.split_first().ok_or("no request line")?;
    let parts: Vec<&[u8]> = first.split(|&b| b == b' ').collect();
    let [method, target, v] = parts[..] else {
        return Err("a request line not of three parts");
    };
    if !is_token(method) {
        return Err("a method that is not a token");
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err("a request target with invalid bytes");
    }
    let minor = version(v)?;
    let headers = rest
        .iter()
        .map(|l| field(l))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        .count();
    if hosts > 1 || (hosts == 0 && minor == 1) {
        return Err("not exactly one Host field");
    }
    let framing = framing(&headers, minor, false)?.unwrap_or(Framing::Length(0));
    Ok(Head {
        method,
        target,
        minor,
        headers,
        framing,
        head_len,
    })
}

/// A response head at the start of `buf`.
pub fn response(buf: &[u8]) -> Result<Head<'_>, &'static str> {
    let (lines, head_len) = lines(buf)?;
    let (first, rest) = lines.split_first().ok_or("no status line")?;
    let (v, after) = first.split_at(first.len().min(8));
    let minor = version(v)?;
    let after = after
        .strip_prefix(b" ")
        .ok_or("no space after the version")?;
    if after.len() < 3 || !after[..3].iter().all(u8::is_ascii_digit) {
        return Err("a status code that is not 3 digits");
    }
    let (code, reason) = after.split_at(3);
    let reason = match reason {
        [] => reason,
        [b' ', r @ ..] => r,
        _ => return Err("no space after the status code"),
    };
    if reason.iter().any(|&b| b < 0x20 && b != b'\t') {
        return Err("a control character in the reason phrase");
    }
    let headers = rest
        .iter()
        .map(|l| field(l))
        .collect::<Result<Vec<_>, _>>()?;
    let status: u16 = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        framing(&headers, minor, true)?.unwrap_or(Framing::UntilClose)
    };
    Ok(Head {
        method: code,
        target: reason,
        minor,
        headers,
        framing,
        head_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strict_reading() {
        let r = request(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(
            (r.method, r.framing, r.head_len),
            (&b"POST"[..], Framing::Length(5), 48)
        );
        let r = request(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.unwrap().framing, Framing::Chunked);
        for bad in [
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(request(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!(r.framing, Framing::Length(2));
        assert_eq!(
            response(b"HTTP/1.0 200\r\n\r\n").unwrap().framing,
            Framing::UntilClose
        );
        assert_eq!(
            response(b"HTTP/1.1 304 x\r\nContent-Length: 9\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Length(0)
        );
        assert!(response(b"HTTP/1.1 20 OK\r\n\r\n").is_err());
    }
}
