//! Responses Fulcrum gives by itself: its errors (400, 408, 502, 503...), a route's
//! redirect or fixed response, and 404 when nothing routes. One [`Reply`] is built per
//! answer and written by each engine in its own framing ([`Reply::write_h1`] for the
//! HTTP/1.1 engine, [`Reply::to_http`] for the HTTP/2 path).

use std::io::Write as _;

use bytes::Bytes;

use super::error::{Error, status_title};

/// A response Fulcrum writes itself.
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    /// The status.
    pub status: u16,
    /// The body.
    pub body: Body<'a>,
    /// Its `Content-Type`.
    pub content_type: &'a str,
    /// `Location`, for redirects.
    pub location: Option<&'a str>,
    /// `Retry-After`, in seconds (503s).
    pub retry_after: Option<u32>,
    /// The connection is closed after it (errors).
    pub close: bool,
    /// Another header to send (`Set-Cookie`...), as a whole `name: value` line's parts.
    pub extra: Option<(&'a str, &'a str)>,
    /// The `RateLimit-*` headers (refusals by a rate limit).
    pub rate: Option<RateHeaders>,
}

/// The `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` headers of a request
/// refused by a rate limit (draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    /// Requests per window (0: a concurrency limit, no rate).
    pub quota: u32,
    /// The window, in seconds.
    pub window: u64,
    /// The burst allowed beyond the rate.
    pub burst: u32,
    /// Seconds until a request would pass.
    pub reset: u64,
}

/// A reply's body: Fulcrum's one-line reason, or given text.
#[derive(Debug, Clone)]
pub enum Body<'a> {
    /// `Title: reason\n`.
    Reason(&'static str),
    /// This text, as is.
    Text(&'a str),
}

const TEXT: &str = "text/plain; charset=utf-8";

impl<'a> Reply<'a> {
    /// The reply to an error; `body` replaces the reason (a pool's `unavailable_body`).
    pub fn error(e: &Error, body: Option<&'a str>) -> Reply<'a> {
        Reply {
            status: e.status,
            body: match body {
                Some(text) => Body::Text(text),
                None => Body::Reason(e.reason),
            },
            content_type: TEXT,
            location: None,
            retry_after: (e.status == 503).then_some(e.retry_after),
            close: true,
            extra: None,
            rate: None,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &'a str) -> Reply<'a> {
        Reply {
            status,
            body: Body::Text(""),
            content_type: TEXT,
            location: Some(location),
            retry_after: None,
            close: false,
            extra: None,
            rate: None,
        }
    }

    /// A fixed response.
    pub fn fixed(status: u16, body: &'a str, content_type: &'a str) -> Reply<'a> {
        Reply {
            status,
            body: Body::Text(body),
            content_type,
            location: None,
            retry_after: None,
            close: false,
            extra: None,
            rate: None,
        }
    }

    fn body_len(&self) -> usize {
        match self.body {
            Body::Reason(reason) => status_title(self.status).len() + 2 + reason.len() + 1,
            Body::Text(t) => t.len(),
        }
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        match self.body {
            Body::Reason(reason) => {
                let _ = writeln!(out, "{}: {reason}", status_title(self.status));
            }
            Body::Text(t) => out.extend_from_slice(t.as_bytes()),
        }
    }

    /// Writes the whole HTTP/1.1 response into `out`; `head_only` for HEAD requests.
    pub fn write_h1(&self, out: &mut Vec<u8>, head_only: bool) {
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            status_title(self.status),
            self.content_type,
            self.body_len()
        );
        if let Some(location) = self.location {
            let _ = write!(out, "Location: {location}\r\n");
        }
        if let Some(secs) = self.retry_after {
            let _ = write!(out, "Retry-After: {secs}\r\n");
        }
        if let Some((name, value)) = self.extra {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if let Some(r) = self.rate {
            r.each(|name, value| {
                let _ = write!(out, "{name}: {value}\r\n");
            });
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\nCache-Control: no-store\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            self.write_body(out);
        }
    }

    /// The response as an `http` response (for hyper).
    pub fn to_http(&self) -> http::Response<Bytes> {
        let mut body = Vec::with_capacity(self.body_len());
        self.write_body(&mut body);
        let mut r = http::Response::new(Bytes::from(body));
        *r.status_mut() =
            http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let h = r.headers_mut();
        if let Ok(v) = http::HeaderValue::from_str(self.content_type) {
            h.insert(http::header::CONTENT_TYPE, v);
        }
        if let Some(v) = self
            .location
            .and_then(|l| http::HeaderValue::from_str(l).ok())
        {
            h.insert(http::header::LOCATION, v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if let Some((name, value)) = self.extra
            && let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            )
        {
            h.append(n, v);
        }
        if let Some(r) = self.rate {
            r.each(|name, value| {
                if let Ok(v) = http::HeaderValue::from_str(&value.to_string()) {
                    h.insert(name, v);
                }
            });
        }
        if self.close {
            h.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
        }
        r
    }
}

impl RateHeaders {
    /// Calls `f` with each header's name and value.
    fn each(&self, mut f: impl FnMut(&'static str, std::fmt::Arguments<'_>)) {
        f("retry-after", format_args!("{}", self.reset.max(1)));
        if self.quota > 0 {
            f("ratelimit-limit", format_args!("{}", self.quota));
            f("ratelimit-remaining", format_args!("0"));
            f("ratelimit-reset", format_args!("{}", self.reset.max(1)));
            f(
                "ratelimit-policy",
                format_args!("{};w={};burst={}", self.quota, self.window, self.burst),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::error::{NO_BACKEND, QUEUE_TIMEOUT};

    fn h1(r: &Reply<'_>) -> String {
        let mut out = Vec::new();
        r.write_h1(&mut out, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn error_body_length_matches() {
        let text = h1(&Reply::error(
            &Error::bad_gateway("backend refused the connection"),
            None,
        ));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
        assert_eq!(body, "Bad Gateway: backend refused the connection\n");
    }

    #[test]
    fn custom_body_and_retry_after() {
        let text = h1(&Reply::error(&NO_BACKEND, Some("Back soon.")));
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nRetry-After: 1\r\nConnection: close\r\nCache-Control: no-store\r\n\r\nBack soon."
        );
        let e = QUEUE_TIMEOUT.come_back_in(std::time::Duration::from_secs(7));
        assert!(h1(&Reply::error(&e, None)).contains("Retry-After: 7\r\n"));
    }

    #[test]
    fn redirect_keeps_the_connection() {
        let text = h1(&Reply::redirect(308, "https://example.com/"));
        assert!(text.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"));
        assert!(text.contains("Location: https://example.com/\r\n"));
        assert!(text.contains("Content-Length: 0\r\n"));
        assert!(!text.contains("Connection: close"));
    }
}
