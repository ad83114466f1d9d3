//! `fulcrum ctl`: the command-line client of a running Fulcrum's admin API
//! ([`crate::admin`]), for people and for deploy scripts (state as a table, drain,
//! enable, weight, add and remove backends, reload, diff, purge a cache, `wait` for a
//! drained backend to finish its requests, and the node's `health` and drain for HA).
//!
//! It finds the admin address and the token in the config file the running Fulcrum was
//! started with (`-c FILE`), or takes them from `--admin` and `--token-file`. Exit
//! status: 0 done, 1 refused by Fulcrum (or `wait` timed out), 2 usage error or no
//! Fulcrum answering.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::Config;

/// `fulcrum ctl` arguments.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The config file of the running Fulcrum (for its [admin] bind and token_file).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The admin listener's address, instead of the config file's.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// A file holding the token, instead of the config file's token_file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON answer as it is.
    #[arg(long)]
    json: bool,
    /// What to do.
    #[command(subcommand)]
    action: Action,
}

/// What `fulcrum ctl` does.
#[derive(Debug, Subcommand)]
enum Action {
    /// Every pool's backends: status, weight, in-flight, requests/s, latency.
    State,
    /// Stop sending new requests to a backend; those in flight finish.
    Drain { pool: String, backend: String },
    /// Put a drained backend back in rotation.
    Undrain { pool: String, backend: String },
    /// Take a backend out of service, whatever its health.
    Disable { pool: String, backend: String },
    /// Put a disabled backend back in service.
    Enable { pool: String, backend: String },
    /// Set a backend's weight (1-1000) until the next reload.
    Weight {
        pool: String,
        backend: String,
        weight: u32,
    },
    /// Add a backend to a pool until the next reload.
    Add {
        pool: String,
        /// IP:PORT.
        address: String,
        /// Its name (default: the address).
        #[arg(long)]
        name: Option<String>,
        /// Its weight (default 1).
        #[arg(long)]
        weight: Option<u32>,
        /// Only used while no primary backend is available.
        #[arg(long)]
        backup: bool,
    },
    /// Remove a backend from a pool until the next reload.
    Remove { pool: String, backend: String },
    /// Re-read the config file and put it in force (as `fulcrum reload`).
    Reload,
    /// How the running config differs from the file (changes made with ctl).
    Diff,
    /// What the running Fulcrum does with a request: routes, pool, the backend it picks.
    Explain(crate::explain::RequestArgs),
    /// Drop stored responses from a cache: those of a path (any query), of every path
    /// under a prefix, or all.
    Purge {
        cache: String,
        /// The host of the requests (as their `Host` header names it).
        #[arg(long, required_unless_present = "all")]
        host: Option<String>,
        /// One path.
        #[arg(long, conflicts_with_all = ["prefix", "all"])]
        path: Option<String>,
        /// Every path starting with this.
        #[arg(long, conflicts_with = "all")]
        prefix: Option<String>,
        /// Everything.
        #[arg(long)]
        all: bool,
    },
    /// Whether this node should take traffic: prints ready, draining or unhealthy (with
    /// the reasons); exit 0 only when ready. For keepalived's `track_script`.
    Health {
        /// Give up after this many seconds (exit 2).
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
    /// Drain this node (its health says draining, so a standby takes the address) or
    /// make it ready again.
    Node {
        #[arg(value_parser = ["drain", "ready"])]
        action: String,
    },
    /// Wait until a backend has no request in flight (after `drain`).
    Wait {
        pool: String,
        backend: String,
        /// Give up after this many seconds (exit 1).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

/// Runs `fulcrum ctl`; returns the exit code.
pub fn main(args: CtlArgs) -> i32 {
    let target = match Target::find(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let path = |pool: &str, backend: &str, action: &str| {
        format!(
            "/api/backends/{}/{}/{action}",
            encode(pool),
            encode(backend)
        )
    };
    let result = match &args.action {
        Action::State => target.call("GET", "/api/state", None),
        Action::Drain { pool, backend } => target.call("POST", &path(pool, backend, "drain"), None),
        Action::Undrain { pool, backend } => {
            target.call("POST", &path(pool, backend, "undrain"), None)
        }
        Action::Disable { pool, backend } => {
            target.call("POST", &path(pool, backend, "disable"), None)
        }
        Action::Enable { pool, backend } => {
            target.call("POST", &path(pool, backend, "enable"), None)
        }
        Action::Weight {
            pool,
            backend,
            weight,
        } => target.call(
            "POST",
            &path(pool, backend, "weight"),
            Some(json!({ "weight": weight })),
        ),
        Action::Add {
            pool,
            address,
            name,
            weight,
            backup,
        } => {
            let mut body = json!({ "address": address, "backup": backup });
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(w) = weight {
                body["weight"] = json!(w);
            }
            target.call(
                "POST",
                &format!("/api/backends/{}", encode(pool)),
                Some(body),
            )
        }
        Action::Remove { pool, backend } => target.call(
            "DELETE",
            &format!("/api/backends/{}/{}", encode(pool), encode(backend)),
            None,
        ),
        Action::Reload => target.call("POST", "/api/reload", None),
        Action::Purge {
            cache,
            host,
            path,
            prefix,
            all,
        } => {
            let body = if *all {
                json!({ "all": true })
            } else {
                json!({ "host": host, "path": path, "prefix": prefix })
            };
            target.call(
                "POST",
                &format!("/api/caches/{}/purge", encode(cache)),
                Some(body),
            )
        }
        Action::Explain(request) => match request.probe() {
            Ok(p) => target.call(
                "POST",
                "/api/explain",
                Some(json!({
                    "method": p.method,
                    "url": p.url,
                    "headers": p.headers,
                    "client": p.client.to_string(),
                    "listener": p.listener,
                })),
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        Action::Diff => target.call("GET", "/api/diff", None),
        Action::Health { timeout } => return health(&target, Duration::from_secs(*timeout)),
        Action::Node { action } => target.call("POST", &format!("/api/node/{action}"), None),
        Action::Wait {
            pool,
            backend,
            timeout,
        } => return wait(&target, pool, backend, Duration::from_secs(*timeout)),
    };
    let (status, body) = match result {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!(
                "error: no answer from the admin API at {}: {e}",
                target.addr
            );
            return 2;
        }
    };
    if args.json {
        println!("{body:#}");
    } else if status == 200 {
        match &args.action {
            Action::State => print_state(&body),
            Action::Diff => print_lines(&body["differences"], "the running config is the file's"),
            Action::Explain(_) => print_lines(&body["explanation"], ""),
            Action::Purge { .. } => println!("purged {}", body["purged"]),
            _ => print_lines(&body["changed"], "nothing changed"),
        }
    }
    if status == 200 {
        0
    } else {
        let why = body["error"].as_str().unwrap_or("refused");
        eprintln!("error: {why} (HTTP {status})");
        1
    }
}

/// Where the admin API is, and the token for changes.
struct Target {
    addr: SocketAddr,
    token: Option<String>,
}

impl Target {
    fn find(args: &CtlArgs) -> Result<Target, String> {
        let config = match &args.config {
            Some(path) => Some(Config::load(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let admin = config.as_ref().and_then(|c| c.admin.as_ref());
        let addr = match (args.admin, admin) {
            (Some(a), _) => a,
            (None, Some(a)) if a.bind.port() != 0 => a.bind,
            (None, Some(_)) => {
                return Err("the config's [admin] bind has port 0: give --admin ADDR".into());
            }
            (None, None) => {
                return Err(
                    "where is the admin API? give -c FILE (with an [admin] table) or --admin ADDR"
                        .into(),
                );
            }
        };
        let token_file = args
            .token_file
            .clone()
            .or_else(|| admin.and_then(|a| a.token_file.clone()));
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Target { addr, token })
    }

    /// One HTTP/1.1 request; the status and the JSON answer.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> std::io::Result<(u16, Value)> {
        self.call_within(method, path, body, Duration::from_secs(90))
    }

    /// [`Target::call`], connecting and waiting for the answer at most `limit` each.
    fn call_within(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        limit: Duration,
    ) -> std::io::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let limits = crate::json_client::Limits {
            connect: limit.min(Duration::from_secs(5)),
            read: limit,
        };
        let (status, body) = crate::json_client::call(
            self.addr,
            method,
            path,
            self.token.as_deref(),
            &body,
            limits,
        )?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

/// `health`: prints the node's readiness and reasons; 0 ready, 1 not, 2 no answer.
fn health(target: &Target, limit: Duration) -> i32 {
    match target.call_within("GET", "/health", None, limit) {
        Ok((status, body)) if status == 200 || status == 503 => {
            println!("{}", body["status"].as_str().unwrap_or("unknown"));
            for r in body["reasons"].as_array().into_iter().flatten() {
                println!("  {}", r.as_str().unwrap_or_default());
            }
            i32::from(status != 200)
        }
        Ok((status, _)) => {
            eprintln!("error: GET /health answered HTTP {status}");
            2
        }
        Err(e) => {
            eprintln!(
                "error: no answer from the admin API at {}: {e}",
                target.addr
            );
            2
        }
    }
}

fn wait(target: &Target, pool: &str, backend: &str, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        let in_flight = match target.call("GET", "/api/state", None) {
            Ok((200, state)) => state["pools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"] == pool)
                .flat_map(|p| p["backends"].as_array().into_iter().flatten())
                .find(|b| b["name"] == backend)
                .map(|b| b["in_flight"].as_u64().unwrap_or(0)),
            Ok((status, body)) => {
                eprintln!(
                    "error: {} (HTTP {status})",
                    body["error"].as_str().unwrap_or("refused")
                );
                return 1;
            }
            Err(e) => {
                eprintln!(
                    "error: no answer from the admin API at {}: {e}",
                    target.addr
                );
                return 2;
            }
        };
        match in_flight {
            None => {
                eprintln!("error: no backend `{backend}` in pool `{pool}`");
                return 1;
            }
            Some(0) => {
                println!("{pool}/{backend}: no request in flight");
                return 0;
            }
            Some(n) if Instant::now() >= deadline => {
                eprintln!("error: {pool}/{backend} still has {n} request(s) in flight");
                return 1;
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn print_lines(lines: &Value, none: &str) {
    let lines: Vec<&str> = lines
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if lines.is_empty() {
        println!("{none}");
    }
    for l in lines {
        println!("{l}");
    }
}

fn print_state(state: &Value) {
    let mut rows = vec![
        [
            "POOL",
            "BACKEND",
            "ADDRESS",
            "STATUS",
            "WEIGHT",
            "IN-FLIGHT",
            "REQ/S",
            "P50 MS",
            "P99 MS",
            "LAST CHECK",
        ]
        .map(String::from),
    ];
    let ms = |v: &Value| v.as_f64().map_or("-".into(), |v| format!("{v:.2}"));
    for p in state["pools"].as_array().into_iter().flatten() {
        for b in p["backends"].as_array().into_iter().flatten() {
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            rows.push([
                text(&p["name"]),
                text(&b["name"]),
                text(&b["address"]),
                text(&b["status"]),
                text(&b["weight"]),
                text(&b["in_flight"]),
                format!("{:.0}", b["requests_per_second"].as_f64().unwrap_or(0.0)),
                ms(&b["requests"]["p50_ms"]),
                ms(&b["requests"]["p99_ms"]),
                b["last_check"].as_str().unwrap_or("-").to_owned(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Escapes what a path segment cannot hold.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
