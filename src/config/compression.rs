//! `compression`, on a listener (its default pool and every route without its own) or on
//! a route: which responses are compressed on the way to the client, with which codings
//! and levels. The decision per response is `pipeline::compress`'s.
//!
//! ```toml
//! [listeners.compression]           # or, in a route: compression = { ... }
//! algorithms = ["zstd", "br", "gzip"]   # the order of preference
//! types = ["text/*", "application/json"]
//! min_size = 512
//! gzip_level = 6
//! br_level = 4
//! zstd_level = 3
//! # enabled = false                 # a route's: no compression where the listener has it
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;
use super::raw::RawSize;
use crate::content::coding::Coding;

/// `compression` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    pub enabled: Option<bool>,
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub types: Option<Vec<Spanned<String>>>,
    pub min_size: Option<Spanned<RawSize>>,
    pub gzip_level: Option<Spanned<i64>>,
    pub br_level: Option<Spanned<i64>>,
    pub zstd_level: Option<Spanned<i64>>,
}

/// The content types compressed when `types` is not given: text, and the structured and
/// font formats that are text underneath (images, audio, video and archives are already
/// compressed).
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/manifest+json",
    "application/graphql-response+json",
    "application/problem+json",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
];

/// Default smallest body compressed (bytes), when its length is known.
pub const DEFAULT_MIN_SIZE: u64 = 512;

/// Compression settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// The codings offered, in order of preference.
    pub codings: Vec<Coding>,
    /// Media types compressed (lower case): `type/subtype`, `type/*` or `*/*`.
    pub types: Vec<String>,
    /// Bodies declared shorter are sent as they are.
    pub min_size: u64,
    /// gzip level, 1-9.
    pub gzip_level: i32,
    /// Brotli quality, 0-11.
    pub br_level: i32,
    /// Zstandard level, 1-19.
    pub zstd_level: i32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            codings: Coding::ALL.to_vec(),
            types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            min_size: DEFAULT_MIN_SIZE,
            gzip_level: 6,
            br_level: 4,
            zstd_level: 3,
        }
    }
}

impl Compression {
    /// The level used for `coding`.
    pub fn level(&self, coding: Coding) -> i32 {
        match coding {
            Coding::Gzip => self.gzip_level,
            Coding::Br => self.br_level,
            Coding::Zstd => self.zstd_level,
        }
    }

    /// Whether a response of `content_type` (a `Content-Type` value, parameters and all)
    /// is compressed.
    pub fn compresses(&self, content_type: &[u8]) -> bool {
        let essence = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let Some(slash) = essence.iter().position(|&b| b == b'/') else {
            return false;
        };
        let (kind, _) = essence.split_at(slash);
        self.types.iter().any(|t| {
            let t = t.as_bytes();
            t == b"*/*"
                || t.eq_ignore_ascii_case(essence)
                || (t.ends_with(b"/*") && t[..t.len() - 2].eq_ignore_ascii_case(kind))
        })
    }
}

/// Validates `compression`; `None`: none (not given, or `enabled = false`).
pub(super) fn check(
    raw: Option<&Spanned<RawCompression>>,
    problems: &mut Problems<'_>,
) -> Option<Compression> {
    let spanned = raw?;
    let raw = spanned.get_ref();
    let mut out = Compression::default();
    if let Some(list) = &raw.algorithms {
        out.codings.clear();
        for a in list.get_ref() {
            match Coding::from_token(a.get_ref().trim()) {
                Some(c) if !out.codings.contains(&c) => out.codings.push(c),
                Some(_) => {}
                None => problems.add(
                    a.span(),
                    format!("`{}` is not a compression algorithm Fulcrum has", a.get_ref()),
                    Some("use \"zstd\", \"br\" or \"gzip\" (deflate is not offered: clients disagree on what it means)".into()),
                ),
            }
        }
        if list.get_ref().is_empty() {
            problems.add(
                list.span(),
                "`algorithms` is empty",
                Some(
                    "list at least one of \"zstd\", \"br\", \"gzip\", or write enabled = false"
                        .into(),
                ),
            );
        }
    }
    if let Some(types) = &raw.types {
        out.types.clear();
        for t in types {
            let text = t.get_ref().trim().to_ascii_lowercase();
            let valid = text.split_once('/').is_some_and(|(kind, sub)| {
                !kind.is_empty()
                    && !sub.is_empty()
                    && (kind != "*" || sub == "*")
                    && kind
                        .bytes()
                        .chain(sub.bytes())
                        .all(|b| b == b'*' || super::is_token_byte(b))
            });
            if valid {
                out.types.push(text);
            } else {
                problems.add(
                    t.span(),
                    format!("`{}` is not a media type", t.get_ref()),
                    Some("write \"text/html\", \"text/*\" or \"*/*\"".into()),
                );
            }
        }
    }
    if let Some(v) = &raw.min_size {
        let bytes = v.get_ref().bytes();
        match bytes {
            Some(n) => out.min_size = n,
            None => problems.add(
                v.span(),
                "`min_size` is not a size",
                Some("write bytes or a size with a unit: 512, \"1k\"".into()),
            ),
        }
    }
    for (value, range, field, name) in [
        (&raw.gzip_level, 1..=9, &mut out.gzip_level, "gzip_level"),
        (&raw.br_level, 0..=11, &mut out.br_level, "br_level"),
        (&raw.zstd_level, 1..=19, &mut out.zstd_level, "zstd_level"),
    ] {
        let Some(v) = value else { continue };
        match i32::try_from(*v.get_ref()) {
            Ok(n) if range.contains(&n) => *field = n,
            _ => problems.add(
                v.span(),
                format!(
                    "`{name}` must be between {} and {}, not {}",
                    range.start(),
                    range.end(),
                    v.get_ref()
                ),
                Some("higher levels compress more and cost more CPU per response".into()),
            ),
        }
    }
    (raw.enabled != Some(false)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_by_essence_and_wildcard() {
        let c = Compression::default();
        assert!(c.compresses(b"text/html; charset=utf-8"));
        assert!(c.compresses(b"TEXT/CSS"));
        assert!(c.compresses(b"application/json"));
        assert!(c.compresses(b"text/event-stream"));
        assert!(!c.compresses(b"image/png"));
        assert!(!c.compresses(b"application/grpc"));
        assert!(!c.compresses(b"application/octet-stream"));
        assert!(!c.compresses(b"text"));
        assert!(!c.compresses(b""));
        let all = Compression {
            types: vec!["*/*".into()],
            ..Compression::default()
        };
        assert!(all.compresses(b"image/png"));
    }
}
