//! A fleet's config from etcd: `fulcrum run -c FILE --etcd URL --etcd-key KEY` follows
//! the key, and every instance that does runs the same config.
//!
//! The key holds a whole config file's text. At start, a valid value is written to FILE
//! (so FILE always holds the last good config, and an instance restarted while etcd is
//! down starts from it); then FILE is loaded as usual. While running, the key is read
//! every `--etcd-interval`. A new value is validated exactly as a file is: valid, it is
//! written to FILE and put in force as a reload (origin `etcd` in the log); invalid, it
//! is refused with its errors at line and column, the running config stays, and the
//! node's health says its config is stale until a valid value comes. etcd unreachable
//! changes nothing: the last good config runs on.
//!
//! etcd is spoken to through its v3 JSON gateway (`POST /v3/kv/range`) over plain HTTP,
//! each endpoint in turn until one answers.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::config::Config;
use crate::runtime::Live;

/// Where the config comes from.
#[derive(Debug, Clone)]
pub struct Source {
    /// `host:port` of each etcd endpoint, tried in order.
    endpoints: Vec<String>,
    /// The key.
    key: String,
    /// The file the last good value is kept in (and loaded from).
    file: PathBuf,
    /// How often the key is read.
    interval: Duration,
    /// Why the value found at start was refused, if it was (the node's health says so
    /// once it runs).
    refused_at_start: Option<String>,
}

/// A value of the key: its text and the revision it was last changed in.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    text: String,
    revision: u64,
}

impl Source {
    /// `endpoints`: `http://host:port` URLs (or `host:port`).
    pub fn new(endpoints: &[String], key: &str, file: &Path, interval: Duration) -> Source {
        Source {
            endpoints: endpoints
                .iter()
                .map(|e| {
                    e.trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_owned()
                })
                .collect(),
            key: key.to_owned(),
            file: file.to_owned(),
            interval,
            refused_at_start: None,
        }
    }

    /// Before the start: the key's value, if etcd has a valid one, is written to the
    /// file. Says why not otherwise (the file's config is then the one run). The
    /// revision read, to follow from.
    pub fn bootstrap(&mut self) -> u64 {
        match self.get() {
            Ok(Some(v)) => match Config::parse(&self.file, &v.text) {
                Ok(_) => match self.keep(&v.text) {
                    Ok(()) => {
                        tracing::info!(key = %self.key, revision = v.revision, file = %self.file.display(), "config from etcd");
                        return v.revision;
                    }
                    Err(e) => {
                        tracing::error!(file = %self.file.display(), error = %e, "cannot write the config from etcd: starting from the file")
                    }
                },
                Err(e) => {
                    self.refused(&e.to_string());
                    self.refused_at_start = Some(format!(
                        "etcd key {} (revision {}) is invalid",
                        self.key, v.revision
                    ));
                    return v.revision;
                }
            },
            Ok(None) => {
                tracing::warn!(key = %self.key, "the etcd key has no value: starting from the file")
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "etcd does not answer: starting from the file")
            }
        }
        0
    }

    /// Follows the key from `revision` on a thread of its own: new valid values are
    /// sent to the main thread as changes (`changes`), invalid ones refused.
    pub fn follow(
        self,
        live: Arc<Live>,
        revision: u64,
        changes: tokio::sync::mpsc::UnboundedSender<crate::admin::Change>,
    ) {
        let spawned = std::thread::Builder::new()
            .name("fulcrum-etcd".into())
            .spawn(move || self.run(&live, revision, &changes));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot follow etcd");
        }
    }

    fn run(
        &self,
        live: &Live,
        mut seen: u64,
        changes: &tokio::sync::mpsc::UnboundedSender<crate::admin::Change>,
    ) {
        if let Some(why) = &self.refused_at_start {
            live.node.reloaded(Some(why.clone()));
        }
        let mut reachable = true;
        while !live.is_stopping() {
            std::thread::sleep(self.interval);
            let value = match self.get() {
                Ok(v) => {
                    if !reachable {
                        tracing::info!(key = %self.key, "etcd answers again");
                    }
                    reachable = true;
                    v
                }
                Err(e) => {
                    if reachable {
                        tracing::warn!(key = %self.key, error = %e, "etcd does not answer: the running config stays");
                    }
                    reachable = false;
                    continue;
                }
            };
            let Some(value) = value.filter(|v| v.revision != seen) else {
                continue;
            };
            seen = value.revision;
            let config = match Config::parse(&self.file, &value.text) {
                Ok(c) => c,
                Err(e) => {
                    self.refused(&e.to_string());
                    live.node.reloaded(Some(format!(
                        "etcd key {} (revision {}) is invalid",
                        self.key, value.revision
                    )));
                    continue;
                }
            };
            if let Err(e) = self.keep(&value.text) {
                tracing::error!(file = %self.file.display(), error = %e, "cannot keep the config from etcd in its file");
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let change = crate::admin::Change {
                origin: "etcd",
                config: Some(config),
                reply,
            };
            if changes.send(change).is_err() {
                return;
            }
            match answer.blocking_recv() {
                Ok(Ok(_)) => {
                    live.node.reloaded(None);
                    tracing::info!(key = %self.key, revision = value.revision, "config from etcd in force");
                }
                Ok(Err(why)) => {
                    let why = why.join("; ");
                    tracing::error!(key = %self.key, revision = value.revision, %why, "config from etcd not put in force");
                    live.node.reloaded(Some(why));
                }
                Err(_) => return,
            }
        }
    }

    /// Logs a refused value's errors.
    fn refused(&self, errors: &str) {
        for line in errors.lines() {
            tracing::error!(key = %self.key, "etcd value refused: {line}");
        }
        tracing::error!(key = %self.key, "etcd value refused: the running configuration is unchanged");
    }

    /// Writes `text` to the file (whole, by renaming a new file over it).
    fn keep(&self, text: &str) -> std::io::Result<()> {
        let tmp = self.file.with_extension("etcd-tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.file)
    }

    /// The key's value now (`None`: the key has none), from the first endpoint that
    /// answers.
    fn get(&self) -> Result<Option<Stored>, String> {
        let body = json!({ "key": B64.encode(self.key.as_bytes()) });
        let mut last = String::from("no endpoint");
        for endpoint in &self.endpoints {
            match post(endpoint, "/v3/kv/range", &body) {
                Ok(answer) => return parse_range(&answer),
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        Err(last)
    }
}

/// The value in a `/v3/kv/range` answer.
fn parse_range(answer: &Value) -> Result<Option<Stored>, String> {
    let Some(kv) = answer["kvs"].as_array().and_then(|kvs| kvs.first()) else {
        return Ok(None);
    };
    let bytes = B64
        .decode(kv["value"].as_str().unwrap_or(""))
        .map_err(|e| format!("the value is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "the value is not UTF-8 text".to_owned())?;
    // The gateway writes 64-bit numbers as strings.
    let revision = kv["mod_revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .or_else(|| kv["mod_revision"].as_u64())
        .unwrap_or(0);
    Ok(Some(Stored { text, revision }))
}

/// One JSON request to `endpoint` (`host:port`), with short timeouts.
fn post(endpoint: &str, path: &str, body: &Value) -> std::io::Result<Value> {
    let addr = endpoint
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let limits = crate::json_client::Limits {
        connect: Duration::from_secs(2),
        read: Duration::from_secs(5),
    };
    let (status, body) =
        crate::json_client::call(addr, "POST", path, None, &body.to_string(), limits)?;
    match status {
        200 => serde_json::from_slice(&body).map_err(std::io::Error::other),
        0 => Err(std::io::Error::other("no HTTP answer")),
        status => Err(std::io::Error::other(format!("answered HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_answer_gives_the_value_and_its_revision() {
        let answer = json!({
            "header": { "revision": "9" },
            "kvs": [{ "key": B64.encode("/k"), "value": B64.encode("threads = 1\n"), "mod_revision": "7" }],
            "count": "1"
        });
        assert_eq!(
            parse_range(&answer),
            Ok(Some(Stored {
                text: "threads = 1\n".into(),
                revision: 7
            }))
        );
        assert_eq!(parse_range(&json!({ "header": {} })), Ok(None));
    }
}
