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
    pub mode: Option<Spanned<String>>,
    pub cookie: Option<Spanned<String>>,
    pub on: Option<Spanned<String>>,
    pub expire: Option<Spanned<String>>,
    pub size: Option<Spanned<i64>>,
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
    /// How the client's backend is remembered.
    pub mode: StickyMode,
    /// The cookie's name: Fulcrum's own (`insert`), or the application's (`learn`).
    pub cookie: String,
    /// `table` and `learn`: entries are forgotten this long after their last use.
    pub expire: Duration,
    /// `table` and `learn`: most entries kept.
    pub size: usize,
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
    /// Its stick table is shared with other instances (`[shared]`).
    pub shared: bool,
}

/// How the client's backend is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyMode {
    /// In a cookie Fulcrum sets (HAProxy's `cookie NAME insert`).
    Insert,
    /// In the stick table, keyed by the application's session cookie, learnt from the
    /// responses that set it (HAProxy's `stick store-response res.cook(NAME)`).
    Learn,
    /// In the application's own session cookie, whose value Fulcrum prefixes with the
    /// backend's (`SRV~value`) in responses and strips from requests (HAProxy's
    /// `cookie NAME prefix`).
    Prefix,
    /// In the stick table, keyed by this part of the request (HAProxy's `stick on`).
    Table(super::rate_limits::KeyPart),
}

/// Default of `expire`.
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(30 * 60);

/// Validates `[pools.NAME.sticky]`.
pub(super) fn check_sticky(
    raw: &RawSticky,
    pool: &str,
    problems: &mut Problems<'_>,
) -> StickyConfig {
    let mode = mode(raw, problems);
    let cookie = raw
        .cookie
        .as_ref()
        .map_or_else(String::new, |c| c.get_ref().trim().to_owned());
    if let Some(c) = &raw.cookie
        && (cookie.is_empty() || !cookie.bytes().all(is_token_byte))
    {
        problems.add(
            c.span(),
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
    let expire = super::fields::duration(
        &raw.expire,
        &format!("pools.{pool}.sticky.expire"),
        DEFAULT_EXPIRE,
        problems,
    );
    let size =
        super::fields::integer(&raw.size, "size", 1..=100_000_000, 100_000, problems) as usize;
    StickyConfig {
        mode,
        cookie,
        expire,
        size,
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
        shared: false,
    }
}

/// The mode and what it needs: `cookie` for `insert` and `learn`, `on` for `table`.
fn mode(raw: &RawSticky, problems: &mut Problems<'_>) -> StickyMode {
    use super::rate_limits::KeyPart;
    let span = |v: &Option<Spanned<String>>| v.as_ref().map_or(0..0, Spanned::span);
    let named = raw.mode.as_ref().map(|m| m.get_ref().as_str());
    let wanted = match named {
        None if raw.on.is_some() => "table",
        None => "insert",
        Some(m) => m,
    };
    match wanted {
        "insert" | "learn" | "prefix" => {
            if raw.cookie.is_none() {
                problems.add(
                    span(&raw.mode),
                    format!("sticky mode `{wanted}` needs a `cookie`"),
                    Some(if wanted == "insert" {
                        "the name of the cookie Fulcrum sets, e.g. cookie = \"SRV\"".into()
                    } else {
                        "the application's session cookie, e.g. cookie = \"JSESSIONID\"".into()
                    }),
                );
            }
            if let Some(on) = &raw.on {
                problems.add(
                    on.span(),
                    format!("`on` applies to mode = \"table\", not `{wanted}`"),
                    None,
                );
            }
            match wanted {
                "insert" => StickyMode::Insert,
                "learn" => StickyMode::Learn,
                _ => StickyMode::Prefix,
            }
        }
        "table" => {
            let Some(on) = &raw.on else {
                problems.add(
                    span(&raw.mode),
                    "sticky mode `table` needs `on`",
                    Some("what clients are known by: on = \"source_ip\", \"header:NAME\" or \"cookie:NAME\"".into()),
                );
                return StickyMode::Table(KeyPart::Ip);
            };
            let text = on.get_ref().trim();
            let part = if text == "source_ip" || text == "ip" {
                Some(KeyPart::Ip)
            } else if let Some(h) = text
                .strip_prefix("header:")
                .filter(|h| !h.is_empty() && h.bytes().all(is_token_byte))
            {
                Some(KeyPart::Header(h.to_ascii_lowercase()))
            } else {
                text.strip_prefix("cookie:")
                    .filter(|c| !c.is_empty() && c.bytes().all(is_token_byte))
                    .map(|c| KeyPart::Cookie(c.to_owned()))
            };
            match part {
                Some(p) => StickyMode::Table(p),
                None => {
                    problems.add(
                        on.span(),
                        format!("`{text}` is not a stick table key"),
                        Some("use \"source_ip\", \"header:NAME\" or \"cookie:NAME\"".into()),
                    );
                    StickyMode::Table(KeyPart::Ip)
                }
            }
        }
        other => {
            problems.add(
                span(&raw.mode),
                format!("unknown sticky mode `{other}`"),
                Some("modes: \"insert\" (a cookie Fulcrum sets), \"prefix\" (the application's session cookie, prefixed), \"learn\" (the application's session cookie, in a table), \"table\" (by source IP, header or cookie)".into()),
            );
            StickyMode::Insert
        }
    }
}

impl StickyConfig {
    /// Whether clients are remembered in a stick table (`table`, `learn`).
    pub fn uses_table(&self) -> bool {
        matches!(self.mode, StickyMode::Learn | StickyMode::Table(_))
    }

    /// The opaque value naming backend `name` at `address` of pool `pool`: 16 hex digits
    /// of a stable keyed hash, the same in every worker, across restarts and on every
    /// instance sharing the `secret`; never the address.
    pub fn value_for(&self, pool: &str, name: &str, address: &str) -> String {
        format!("{:016x}", self.id_for(pool, name, address))
    }

    /// The stable identity behind [`StickyConfig::value_for`], which stick tables hold.
    pub fn id_for(&self, pool: &str, name: &str, address: &str) -> u64 {
        crate::balance::hash::hash_parts(&[
            self.secret.as_bytes(),
            b"\0",
            pool.as_bytes(),
            b"\0",
            name.as_bytes(),
            b"\0",
            address.as_bytes(),
        ])
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
