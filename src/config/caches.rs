//! `[caches.NAME]`: response caches that routes store in (`cache = "NAME"`), as NGINX's
//! `proxy_cache_path` zones: a memory budget, the largest object stored, what the key is
//! made of, and the freshness given when a response states none.
//!
//! ```toml
//! [caches.pages]
//! memory = "256m"            # the budget; least recently used entries go first
//! max_object_size = "8m"     # larger responses pass by
//! key = ["host", "path", "query"]   # or "header:NAME" parts
//! default_ttl = "0s"         # for heuristically cacheable responses without freshness
//! max_heuristic = "1d"       # cap of the 10%-of-age heuristic
//! lock_timeout = "5s"        # how long a miss waits for the same key's fetch
//! stale_if_error = "0s"      # serve this stale when the backends fail
//! stale_while_revalidate = "0s"  # serve this stale while it is refreshed behind
//! disk = "/var/cache/fulcrum/pages" # evicted responses go on to disk (none by default)
//! disk_size = "1g"           # the disk tier's cap
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problems;
use super::raw::RawSize;
use crate::content::cache::key::Part;

/// One `[caches.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub memory: Option<Spanned<RawSize>>,
    pub max_object_size: Option<Spanned<RawSize>>,
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
    pub default_ttl: Option<Spanned<String>>,
    pub max_heuristic: Option<Spanned<String>>,
    pub lock_timeout: Option<Spanned<String>>,
    pub stale_if_error: Option<Spanned<String>>,
    pub stale_while_revalidate: Option<Spanned<String>>,
    pub disk: Option<Spanned<String>>,
    pub disk_size: Option<Spanned<RawSize>>,
}

/// A cache, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Its name (`cache = "NAME"` in routes, the admin API, metrics).
    pub name: String,
    /// Bytes of responses it holds at most.
    pub memory: u64,
    /// Larger responses are not stored.
    pub max_object_size: u64,
    /// What the key is made of.
    pub key: Vec<Part>,
    /// Freshness of heuristically cacheable responses stating none (0: none).
    pub default_ttl: Duration,
    /// The longest heuristic freshness.
    pub max_heuristic: Duration,
    /// How long a miss waits for a fetch of the same key.
    pub lock_timeout: Duration,
    /// How long past its freshness a stored response may be served when the backends
    /// fail (beyond what responses say with `stale-if-error`).
    pub stale_if_error: Duration,
    /// How long past its freshness a stored response is served while a fetch in the
    /// background refreshes it (for responses that do not say, with
    /// `stale-while-revalidate`).
    pub stale_while_revalidate: Duration,
    /// The disk tier: its directory and its cap in bytes.
    pub disk: Option<(std::path::PathBuf, u64)>,
}

/// Validates every `[caches.NAME]`.
/// Validates every `[caches.NAME]` (`base`: the config file's directory).
pub(super) fn check(
    raw: &std::collections::BTreeMap<Spanned<String>, RawCache>,
    base: &std::path::Path,
    problems: &mut Problems<'_>,
) -> Vec<CacheConfig> {
    raw.iter()
        .map(|(name, c)| check_one(name.get_ref(), c, base, problems))
        .collect()
}

fn check_one(
    name: &str,
    c: &RawCache,
    base: &std::path::Path,
    problems: &mut Problems<'_>,
) -> CacheConfig {
    let size =
        |v: &Option<Spanned<RawSize>>, key: &str, default: u64, problems: &mut Problems<'_>| {
            let Some(v) = v else { return default };
            let bytes = v.get_ref().bytes();
            match bytes {
                Some(n) if n > 0 => n,
                _ => {
                    problems.add(
                        v.span(),
                        format!("`caches.{name}.{key}` is not a size"),
                        Some("write bytes or a size with a unit: \"256m\", \"1g\"".into()),
                    );
                    default
                }
            }
        };
    let memory = size(&c.memory, "memory", 256 << 20, problems);
    let max_object_size = size(&c.max_object_size, "max_object_size", 8 << 20, problems);
    if let Some(m) = &c.max_object_size
        && max_object_size > memory
    {
        problems.add(
            m.span(),
            format!("`caches.{name}.max_object_size` is larger than its `memory`"),
            Some("an object must fit in the cache".into()),
        );
    }
    let key = match &c.key {
        None => crate::content::cache::key::default_parts(),
        Some(parts) => parts
            .get_ref()
            .iter()
            .filter_map(|p| {
                let parsed = Part::parse(p.get_ref().trim());
                if parsed.is_none() {
                    problems.add(
                        p.span(),
                        format!("`{}` is not a cache key part", p.get_ref()),
                        Some("parts: \"host\", \"path\", \"query\", \"header:NAME\"".into()),
                    );
                }
                parsed
            })
            .collect(),
    };
    let disk_size = size(&c.disk_size, "disk_size", 1 << 30, problems);
    let disk = c.disk.as_ref().and_then(|d| {
        let dir = base.join(d.get_ref());
        match std::fs::create_dir_all(&dir).and_then(|()| writable(&dir)) {
            Ok(()) => Some((dir, disk_size)),
            Err(e) => {
                problems.add(
                    d.span(),
                    format!("`caches.{name}.disk`: {} cannot be used: {e}", dir.display()),
                    Some("name a directory Fulcrum may create and write (relative paths start at the config file's directory)".into()),
                );
                None
            }
        }
    });
    if let (None, Some(s)) = (&c.disk, &c.disk_size) {
        problems.add(
            s.span(),
            format!("`caches.{name}.disk_size` without `disk`"),
            Some("add `disk = \"DIRECTORY\"` for a disk tier".into()),
        );
    }
    CacheConfig {
        name: name.to_owned(),
        disk,
        memory,
        max_object_size,
        key,
        default_ttl: super::fields::duration_or_zero(
            &c.default_ttl,
            &format!("caches.{name}.default_ttl"),
            problems,
        ),
        max_heuristic: match &c.max_heuristic {
            None => Duration::from_secs(86_400),
            some => super::fields::duration(
                some,
                &format!("caches.{name}.max_heuristic"),
                Duration::from_secs(86_400),
                problems,
            ),
        },
        lock_timeout: super::fields::duration(
            &c.lock_timeout,
            &format!("caches.{name}.lock_timeout"),
            Duration::from_secs(5),
            problems,
        ),
        stale_if_error: super::fields::duration_or_zero(
            &c.stale_if_error,
            &format!("caches.{name}.stale_if_error"),
            problems,
        ),
        stale_while_revalidate: super::fields::duration_or_zero(
            &c.stale_while_revalidate,
            &format!("caches.{name}.stale_while_revalidate"),
            problems,
        ),
    }
}

/// Whether files can be made in `dir`.
fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".fulcrum-check-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}
