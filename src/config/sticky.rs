//! `[pools.NAME.sticky]`: session persistence by an inserted cookie, as HAProxy's
//! `cookie NAME insert` and Traefik's sticky cookie: the first response to a client
//! names the backend that served it in a cookie, and later requests carrying it go
//! back to that backend while it is up.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;
use super::is_token_byte;

/// `[pools.NAME.sticky]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub cookie: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
}

/// How a pool keeps clients on their backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name.
    pub cookie: String,
    /// Its `Path` (default `/`).
    pub path: String,
    /// Its `Domain`, if any.
    pub domain: Option<String>,
    /// Its `Max-Age` (none: a session cookie).
    pub max_age: Option<Duration>,
    /// Always `Secure` (it is anyway over TLS).
    pub secure: bool,
    /// `HttpOnly` (default).
    pub http_only: bool,
    /// `SameSite`: `Lax` (default), `Strict` or `None`.
    pub same_site: String,
    /// Mixed into the cookie values so that they cannot be computed from the backend
    /// names alone.
    pub secret: String,
}

/// Validates `[pools.NAME.sticky]`.
pub(super) fn check_sticky(
    raw: &RawSticky,
    pool: &str,
    problems: &mut Problems<'_>,
) -> StickyConfig {
    let cookie = raw.cookie.get_ref().trim().to_owned();
    if cookie.is_empty() || !cookie.bytes().all(is_token_byte) {
        problems.add(
            raw.cookie.span(),
            format!("`{cookie}` is not a cookie name"),
            Some("use letters, digits and -_. only, e.g. cookie = \"SRV\"".into()),
        );
    }
    let text_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    let path = match &raw.path {
        None => "/".to_owned(),
        Some(p) if text_ok(p.get_ref()) && p.get_ref().starts_with('/') => p.get_ref().clone(),
        Some(p) => {
            problems.add(
                p.span(),
                format!("`{}` is not a cookie path", p.get_ref()),
                Some("a path starting with /, without spaces or `;`".into()),
            );
            "/".to_owned()
        }
    };
    let domain = raw.domain.as_ref().and_then(|d| {
        if text_ok(d.get_ref()) {
            Some(d.get_ref().clone())
        } else {
            problems.add(
                d.span(),
                format!("`{}` is not a cookie domain", d.get_ref()),
                Some("a host name such as example.com".into()),
            );
            None
        }
    });
    let max_age = raw.max_age.as_ref().map(|_| {
        super::fields::duration(
            &raw.max_age,
            &format!("pools.{pool}.sticky.max_age"),
            Duration::ZERO,
            problems,
        )
    });
    let same_site = match raw
        .same_site
        .as_ref()
        .map(|s| s.get_ref().to_ascii_lowercase())
    {
        None => "Lax".to_owned(),
        Some(s) if s == "lax" => "Lax".to_owned(),
        Some(s) if s == "strict" => "Strict".to_owned(),
        Some(s) if s == "none" => "None".to_owned(),
        Some(other) => {
            let span = raw.same_site.as_ref().map_or(0..0, Spanned::span);
            problems.add(
                span,
                format!("`{other}` is not a SameSite value"),
                Some("use \"Lax\", \"Strict\" or \"None\"".into()),
            );
            "Lax".to_owned()
        }
    };
    let secure = raw.secure.unwrap_or(false);
    if same_site == "None" && !secure {
        let span = raw.same_site.as_ref().map_or(0..0, Spanned::span);
        problems.add(
            span,
            "browsers refuse `SameSite=None` without `Secure`",
            Some("add secure = true (the site must be served over HTTPS)".into()),
        );
    }
    StickyConfig {
        cookie,
        path,
        domain,
        max_age,
        secure,
        http_only: raw.http_only.unwrap_or(true),
        same_site,
        secret: raw
            .secret
            .as_ref()
            .map_or_else(String::new, |s| s.get_ref().clone()),
    }
}

impl StickyConfig {
    /// The opaque value naming backend `name` at `address` of pool `pool`: 16 hex digits
    /// of a stable keyed hash, the same in every worker, across restarts and on every
    /// instance sharing the `secret`; never the address.
    pub fn value_for(&self, pool: &str, name: &str, address: &str) -> String {
        let h = crate::balance::hash::hash_parts(&[
            self.secret.as_bytes(),
            b"\0",
            pool.as_bytes(),
            b"\0",
            name.as_bytes(),
            b"\0",
            address.as_bytes(),
        ]);
        format!("{h:016x}")
    }

    /// The `Set-Cookie` value giving `value` (`tls`: the request came over TLS, so the
    /// cookie is `Secure` whatever `secure` says).
    pub fn set_cookie(&self, value: &str, tls: bool) -> String {
        let mut s = format!("{}={value}; Path={}", self.cookie, self.path);
        if let Some(d) = &self.domain {
            s.push_str("; Domain=");
            s.push_str(d);
        }
        if let Some(age) = self.max_age {
            s.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if self.secure || tls {
            s.push_str("; Secure");
        }
        if self.http_only {
            s.push_str("; HttpOnly");
        }
        s.push_str("; SameSite=");
        s.push_str(&self.same_site);
        s
    }
}
