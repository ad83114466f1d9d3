//! Address lists kept in files (`allow_file`, `deny_file`): one block per line, `#`
//! comments, as HAProxy's `-f` files and NGINX `include`d `deny` lines. The files are
//! read with the config (a bad line is a config error naming the file and line), and
//! again whenever they change while Fulcrum runs: a thread checks their modification
//! times every [`CHECK_EVERY`] and swaps the listener's lists in one atomic step; a file
//! that no longer parses is logged and the lists in force stay. The same thread follows
//! every other file of that kind ([`Followed`]: htpasswd files).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::{Access, IpSet};

/// How often list files are checked for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a listener's lists are made of: the blocks written in the config and the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `allow` as written (`None`: not given).
    pub allow: Option<Vec<(IpAddr, u8)>>,
    /// `deny` as written.
    pub deny: Vec<(IpAddr, u8)>,
    /// `allow_file`.
    pub allow_file: Option<PathBuf>,
    /// `deny_file`.
    pub deny_file: Option<PathBuf>,
}

impl Sources {
    /// Whether any list comes from a file.
    pub fn has_files(&self) -> bool {
        self.allow_file.is_some() || self.deny_file.is_some()
    }

    /// The lists: the written blocks and the files' (read now). The error names the
    /// file and line of the first bad block.
    pub fn build(&self) -> Result<Access, String> {
        let mut allow = self.allow.clone();
        let mut deny = self.deny.clone();
        if let Some(path) = &self.allow_file {
            allow.get_or_insert_with(Vec::new).extend(read(path)?);
        }
        if let Some(path) = &self.deny_file {
            deny.extend(read(path)?);
        }
        Ok(Access {
            allow: allow.map(|a| IpSet::new(&a)),
            deny: IpSet::new(&deny),
        })
    }

    fn stamps(&self) -> [Option<SystemTime>; 2] {
        let stamp = |p: &Option<PathBuf>| {
            p.as_ref()
                .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        };
        [stamp(&self.allow_file), stamp(&self.deny_file)]
    }
}

/// The blocks of a list file.
pub fn read(path: &Path) -> Result<Vec<(IpAddr, u8)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
}

/// The blocks of a list's text: one per line (several separated by spaces or commas
/// are accepted too), `#` to the end of the line is a comment. The error gives the line.
pub fn parse(text: &str) -> Result<Vec<(IpAddr, u8)>, (usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for word in line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
        {
            out.push(super::ipset::parse_block(word).map_err(|why| (n + 1, why))?);
        }
    }
    Ok(out)
}

/// A listener's lists in force, swapped whole when a file changes.
#[derive(Debug)]
pub struct LiveAccess {
    current: ArcSwap<Access>,
    sources: Sources,
    stamps: Mutex<[Option<SystemTime>; 2]>,
}

impl LiveAccess {
    /// The lists `access` (as the config read them) from `sources`; when some come from
    /// files, they are followed from now on.
    pub fn new(access: Access, sources: Sources) -> Arc<LiveAccess> {
        let live = Arc::new(LiveAccess {
            current: ArcSwap::from_pointee(access),
            stamps: Mutex::new(sources.stamps()),
            sources,
        });
        if live.sources.has_files() {
            let followed: Arc<dyn Followed> = live.clone();
            follow(Arc::downgrade(&followed));
        }
        live
    }

    /// Whether a client at `ip` may connect.
    #[inline]
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.current.load().admits(ip)
    }
}

impl Followed for LiveAccess {
    /// Reads the files again if they changed; whether the lists were replaced.
    fn reload_if_changed(&self) -> bool {
        let stamps = self.sources.stamps();
        {
            let mut seen = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == stamps {
                return false;
            }
            *seen = stamps;
        }
        match self.sources.build() {
            Ok(access) => {
                self.current.store(Arc::new(access));
                tracing::info!(
                    allow_file = ?self.sources.allow_file,
                    deny_file = ?self.sources.deny_file,
                    "address lists reloaded"
                );
                true
            }
            Err(why) => {
                tracing::error!(error = %why, "address list not reloaded: the lists in force stay");
                false
            }
        }
    }
}

/// Something read from files that change while Fulcrum runs (address lists, htpasswd
/// files), checked every [`CHECK_EVERY`] by one thread.
pub trait Followed: Send + Sync + std::fmt::Debug {
    /// Reads the files again if they changed; whether what is in force was replaced.
    fn reload_if_changed(&self) -> bool;
}

/// What is being followed, each held weakly (a reload that replaces it drops the old
/// one), and whether the thread that checks them runs.
type Registry = (Vec<Weak<dyn Followed>>, bool);
static FOLLOWED: Mutex<Registry> = Mutex::new((Vec::new(), false));

/// Follows `live`'s files from now on, while it lives.
pub fn follow(live: Weak<dyn Followed>) {
    let mut followed = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    followed.0.push(live);
    if followed.1 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("fulcrum-lists".into())
        .spawn(|| {
            loop {
                std::thread::sleep(CHECK_EVERY);
                let lists: Vec<Arc<dyn Followed>> = {
                    let mut followed = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
                    followed.0.retain(|w| w.strong_count() > 0);
                    followed.0.iter().filter_map(Weak::upgrade).collect()
                };
                for live in lists {
                    live.reload_if_changed();
                }
            }
        });
    match spawned {
        Ok(_) => followed.1 = true,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the thread that follows address list files")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files() {
        let blocks = parse(
            "# office\n10.0.0.0/8\n\n192.0.2.7  # one host\n2001:db8::/32, 198.51.100.0/24\n",
        )
        .unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(parse("10.0.0.0/8\n10.0.0.0/40\n").unwrap_err().0, 2);
    }
}
