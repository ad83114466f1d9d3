//! The compress phase: whether a response is compressed on its way to the client, and
//! how its head changes. Both engines ask it, with what they read of the response head
//! ([`Facts`]); they then feed the body through a `content::encoder::Encoder`.
//!
//! At route time the request's `Accept-Encoding` is read once ([`accepted`]): a route
//! (or listener) that compresses records which coding the client takes, if any. At
//! response time [`Offer::plan`] decides, as NGINX's gzip filter and HAProxy's
//! `compression` do: a response is left alone when its body is already encoded, is a
//! range, says `Cache-Control: no-transform`, has a type not listed, is declared shorter
//! than `min_size`, has no body, or has a status other than 200-203 or an error. A
//! response that could be compressed gets `Vary: Accept-Encoding` whatever the client
//! takes, so that caches on the way keep the versions apart; a compressed one loses its
//! `Content-Length` and `Accept-Ranges`, and a strong `ETag` is made weak (the bytes
//! differ from the backend's).

use crate::config::compression::Compression;
use crate::content::coding::{self, Coding};
use crate::routing::RequestView;

/// What the route phase records for a request whose route compresses: the coding the
/// client takes (`None`: identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted(pub Option<Coding>);

/// The route phase's part: `None` when `config` is `None` or the request is a HEAD.
#[inline]
pub fn accepted<V: RequestView + ?Sized>(
    config: Option<&Compression>,
    req: &V,
) -> Option<Accepted> {
    let config = config?;
    if req.method() == b"HEAD" {
        return None;
    }
    Some(Accepted(coding::negotiate(
        req.header_values("accept-encoding"),
        &config.codings,
    )))
}

/// The coding of a request body Fulcrum can decode: one `Content-Encoding` naming one
/// coding it knows (none, several, or an unknown one: the body passes as it is).
pub fn request_coding<V: RequestView + ?Sized>(req: &V) -> Option<Coding> {
    let mut values = req.header_values("content-encoding");
    let value = values.next()?;
    if values.next().is_some() || value.contains(&b',') {
        return None;
    }
    Coding::from_token(std::str::from_utf8(value).ok()?.trim())
}

/// A route's compression settings with what the client takes.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The settings.
    pub config: &'a Compression,
    /// The client's coding, if any.
    pub coding: Option<Coding>,
}

/// What the engine read of a response head, the phase's input.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'h> {
    /// The status code.
    pub status: u16,
    /// The response has no body (HEAD, 204, 304, `Content-Length: 0`).
    pub no_body: bool,
    /// `Content-Type`.
    pub content_type: Option<&'h [u8]>,
    /// A `Content-Encoding` other than identity.
    pub encoded: bool,
    /// `Cache-Control: no-transform`.
    pub no_transform: bool,
    /// `Content-Range` (or a 206).
    pub ranged: bool,
    /// `Content-Length`.
    pub length: Option<u64>,
    /// `Vary` already lists `Accept-Encoding` (or `*`).
    pub varies: bool,
}

impl<'h> Facts<'h> {
    /// Takes one header line into account.
    #[inline]
    pub fn see(&mut self, name: &[u8], value: &'h [u8]) {
        if name.eq_ignore_ascii_case(b"content-type") {
            self.content_type = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            self.encoded |= !value.trim_ascii().eq_ignore_ascii_case(b"identity");
        } else if name.eq_ignore_ascii_case(b"cache-control") {
            self.no_transform |= has_token(value, b"no-transform");
        } else if name.eq_ignore_ascii_case(b"content-range") {
            self.ranged = true;
        } else if name.eq_ignore_ascii_case(b"vary") {
            self.varies |= has_token(value, b"accept-encoding") || has_token(value, b"*");
        }
    }

    /// The facts of a header map (the HTTP/2 path).
    pub fn of(status: u16, headers: &'h http::HeaderMap, length: Option<u64>) -> Facts<'h> {
        let mut facts = Facts {
            status,
            length,
            no_body: length == Some(0) || status == 204 || status == 304,
            ..Facts::default()
        };
        for (name, value) in headers {
            facts.see(name.as_str().as_bytes(), value.as_bytes());
        }
        facts
    }
}

/// What happens to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Sent as it is.
    Leave,
    /// Sent as it is, with `Vary: Accept-Encoding` added.
    Vary,
    /// Compressed with this coding (and `Vary` added unless `vary` is false: the
    /// backend's `Vary` covers it already).
    Encode {
        /// The coding.
        coding: Coding,
        /// Add `Vary: Accept-Encoding`.
        vary: bool,
    },
}

impl Plan {
    /// Whether `Vary: Accept-Encoding` is added.
    pub fn adds_vary(self) -> bool {
        matches!(self, Plan::Vary | Plan::Encode { vary: true, .. })
    }

    /// The coding the body is compressed with, if any.
    pub fn coding(self) -> Option<Coding> {
        match self {
            Plan::Encode { coding, .. } => Some(coding),
            _ => None,
        }
    }
}

impl Offer<'_> {
    /// The plan for a response with `facts`.
    pub fn plan(&self, facts: &Facts<'_>) -> Plan {
        let status_fits = (200..=203).contains(&facts.status) || facts.status >= 400;
        let compressible = status_fits
            && !facts.no_body
            && !facts.encoded
            && !facts.no_transform
            && !facts.ranged
            && facts.status != 206
            && facts.length.is_none_or(|n| n >= self.config.min_size)
            && facts
                .content_type
                .is_some_and(|t| self.config.compresses(t));
        match (compressible, self.coding) {
            (false, _) => Plan::Leave,
            (true, None) if facts.varies => Plan::Leave,
            (true, None) => Plan::Vary,
            (true, Some(coding)) => Plan::Encode {
                coding,
                vary: !facts.varies,
            },
        }
    }
}

/// `value` made weak if it is a strong entity tag (`"x"` becomes `W/"x"`).
pub fn weak_etag(value: &[u8], out: &mut Vec<u8>) {
    let value = value.trim_ascii();
    if !value.starts_with(b"W/") {
        out.extend_from_slice(b"W/");
    }
    out.extend_from_slice(value);
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(headers: &[(&str, &'static str)], length: Option<u64>) -> Facts<'static> {
        let mut f = Facts {
            status: 200,
            length,
            ..Facts::default()
        };
        for (n, v) in headers {
            f.see(n.as_bytes(), v.as_bytes());
        }
        f
    }

    #[test]
    fn compresses_listed_types_above_the_minimum() {
        let config = Compression::default();
        let offer = Offer {
            config: &config,
            coding: Some(Coding::Gzip),
        };
        let html = [("Content-Type", "text/html; charset=utf-8")];
        assert_eq!(
            offer.plan(&facts(&html, Some(10_000))),
            Plan::Encode {
                coding: Coding::Gzip,
                vary: true
            }
        );
        assert_eq!(offer.plan(&facts(&html, None)).coding(), Some(Coding::Gzip));
        assert_eq!(offer.plan(&facts(&html, Some(100))), Plan::Leave);
        let png = [("Content-Type", "image/png")];
        assert_eq!(offer.plan(&facts(&png, Some(10_000))), Plan::Leave);
        assert_eq!(offer.plan(&facts(&[], Some(10_000))), Plan::Leave);
    }

    #[test]
    fn leaves_encoded_ranged_and_no_transform_bodies() {
        let config = Compression::default();
        let offer = Offer {
            config: &config,
            coding: Some(Coding::Br),
        };
        for extra in [
            ("Content-Encoding", "gzip"),
            ("Cache-Control", "public, no-transform"),
            ("Content-Range", "bytes 0-99/1000"),
        ] {
            let h = [("Content-Type", "text/plain"), extra];
            assert_eq!(offer.plan(&facts(&h, Some(5000))), Plan::Leave, "{extra:?}");
        }
        let identity = [
            ("Content-Type", "text/plain"),
            ("Content-Encoding", "identity"),
        ];
        assert!(offer.plan(&facts(&identity, Some(5000))).coding().is_some());
        let mut f = facts(&[("Content-Type", "text/plain")], Some(5000));
        for status in [204, 206, 301, 304] {
            f.status = status;
            assert_eq!(offer.plan(&f), Plan::Leave, "{status}");
        }
        f.status = 404;
        assert!(offer.plan(&f).coding().is_some());
    }

    #[test]
    fn vary_is_added_once_whatever_the_client_takes() {
        let config = Compression::default();
        let identity = Offer {
            config: &config,
            coding: None,
        };
        let h = [("Content-Type", "text/css")];
        assert_eq!(identity.plan(&facts(&h, None)), Plan::Vary);
        let varied = [
            ("Content-Type", "text/css"),
            ("Vary", "Origin, Accept-Encoding"),
        ];
        assert_eq!(identity.plan(&facts(&varied, None)), Plan::Leave);
        let zstd = Offer {
            config: &config,
            coding: Some(Coding::Zstd),
        };
        assert_eq!(
            zstd.plan(&facts(&varied, None)),
            Plan::Encode {
                coding: Coding::Zstd,
                vary: false
            }
        );
    }

    #[test]
    fn strong_tags_become_weak() {
        let mut out = Vec::new();
        weak_etag(b"\"abc\"", &mut out);
        assert_eq!(out, b"W/\"abc\"");
        out.clear();
        weak_etag(b"W/\"abc\"", &mut out);
        assert_eq!(out, b"W/\"abc\"");
    }
}
