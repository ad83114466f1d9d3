//! HTTP basic authentication per route from an htpasswd file (bcrypt hashes, as
//! `htpasswd -B` writes them), as NGINX's `auth_basic_user_file` and HAProxy's
//! `userlist` + `http_auth`.
//!
//! bcrypt is slow on purpose (milliseconds per check), so a check never runs on a worker
//! thread: the admission phase answers from a cache of credentials verified in the
//! last [`REMEMBERED`] (a keyed hash of the `Authorization` value, never the password),
//! and otherwise hands the check to tokio's blocking pool ([`Pending::verify`]). An
//! unknown user costs the same as a wrong password (a check against a dummy hash), so
//! timing does not tell which users exist. The file is followed while Fulcrum runs;
//! a change forgets the cache.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine as _;

/// How long verified credentials are answered from the cache.
pub const REMEMBERED: Duration = Duration::from_secs(300);
/// Most credentials remembered.
const MOST_REMEMBERED: usize = 10_000;
/// Checked when the user is unknown, so that it costs what a wrong password costs.
const DUMMY: &str = "$2y$05$nEUbQ0p2GzOlH8z5RJQ/Uu2dMCP5.qjQAAlQ2BuCtbQQhemBaB3j.";

/// A route's users and what it has verified lately.
#[derive(Debug)]
pub struct BasicAuth {
    /// `Basic realm="..."`, the `WWW-Authenticate` of its 401s.
    pub challenge: Box<str>,
    file: PathBuf,
    users: ArcSwap<HashMap<String, String>>,
    stamp: Mutex<Option<SystemTime>>,
    verified: Mutex<HashMap<u64, Instant>>,
    hasher: RandomState,
}

/// What the admission phase makes of a request's credentials.
#[derive(Debug)]
pub enum Credentials {
    /// Verified lately: let through.
    Known,
    /// To verify first ([`Pending::verify`]).
    Verify(Pending),
    /// None, or not `Basic user:password`: 401.
    Missing,
}

/// Credentials the cache did not know, to verify off the worker thread.
#[derive(Debug)]
pub struct Pending {
    auth: Arc<BasicAuth>,
    key: u64,
    user: String,
    password: String,
}

/// Reads an htpasswd file: `user:hash` lines, bcrypt hashes only; `#` comments. The
/// error gives the line.
pub fn read(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: &str| format!("{}:{}: {why}", path.display(), n + 1);
        let (user, hash) = line.split_once(':').ok_or_else(|| at("not `user:hash`"))?;
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            return Err(at(&format!(
                "the hash of `{user}` is not bcrypt (write the file with `htpasswd -B`)"
            )));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

impl BasicAuth {
    /// The users of `file` (read now), asking with `realm`; the file is followed. A
    /// file that cannot be read now (it was when the config was checked) is logged,
    /// and nobody gets in until it can.
    pub fn new(file: &Path, realm: &str) -> Arc<BasicAuth> {
        let users = read(file).unwrap_or_else(|why| {
            tracing::error!(error = %why, "htpasswd file not read: nobody gets in until it is");
            HashMap::new()
        });
        let auth = Arc::new(BasicAuth {
            challenge: format!("Basic realm=\"{realm}\", charset=\"UTF-8\"").into(),
            file: file.to_owned(),
            users: ArcSwap::from_pointee(users),
            stamp: Mutex::new(stamp(file)),
            verified: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        });
        let followed: Arc<dyn super::lists::Followed> = auth.clone();
        super::lists::follow(Arc::downgrade(&followed));
        auth
    }

    /// The admission check of a request's `Authorization` header.
    pub fn check(self: &Arc<Self>, authorization: Option<&[u8]>) -> Credentials {
        match self.parse(authorization) {
            Some(Some(pending)) => Credentials::Verify(pending),
            Some(None) => Credentials::Known,
            None => Credentials::Missing,
        }
    }

    /// `Some(None)`: verified lately; `Some(Some)`: to verify; `None`: none, or not
    /// `Basic user:password`.
    fn parse(self: &Arc<Self>, authorization: Option<&[u8]>) -> Option<Option<Pending>> {
        let value = authorization?;
        let key = self.hasher.hash_one(value);
        if let Some(at) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < REMEMBERED
        {
            return Some(None);
        }
        let encoded = value
            .strip_prefix(b"Basic ")
            .or_else(|| value.strip_prefix(b"basic "))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim_ascii())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Some(Pending {
            auth: Arc::clone(self),
            key,
            user: user.to_owned(),
            password: password.to_owned(),
        }))
    }
}

impl Pending {
    /// Verifies the credentials on the blocking pool; remembered when right.
    pub async fn verify(self) -> bool {
        let users = self.auth.users.load_full();
        let hash = users.get(&self.user).cloned();
        let password = self.password;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY.to_owned());
        let right =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known;
        if right {
            let mut verified = self.auth.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= MOST_REMEMBERED {
                verified.retain(|_, at| at.elapsed() < REMEMBERED);
                if verified.len() >= MOST_REMEMBERED {
                    verified.clear();
                }
            }
            verified.insert(self.key, Instant::now());
        }
        right
    }
}

impl super::lists::Followed for BasicAuth {
    fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.file);
        {
            let mut seen = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match read(&self.file) {
            Ok(users) => {
                self.users.store(Arc::new(users));
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                tracing::info!(file = %self.file.display(), "htpasswd file reloaded");
                true
            }
            Err(why) => {
                tracing::error!(error = %why, "htpasswd file not reloaded: the users in force stay");
                false
            }
        }
    }
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_files_are_read() {
        let dir = std::env::temp_dir().join(format!("fulcrum-htpasswd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, format!("# users\nalice:{DUMMY}\n\n")).unwrap();
        assert_eq!(read(&good).unwrap().len(), 1);
        let md5 = dir.join("md5");
        std::fs::write(&md5, "bob:$apr1$abc$def\n").unwrap();
        assert!(
            read(&md5)
                .unwrap_err()
                .contains("md5:1: the hash of `bob` is not bcrypt")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
