//! The admin API's changes.
//!
//! - Backend state, in place on the backend (it survives reloads, as the backend
//!   does): `drain` (no new requests; those in flight finish), `undrain`, `disable` (out
//!   of service, whatever its health), `enable`.
//! - Configuration (`weight`, adding and removing backends, `reload`): a copy of the
//!   running config, changed, is applied by the main thread as a reload would be, with
//!   the same validation, carried-over state and diff. The running config then differs
//!   from the file until the next reload, which puts the file's values back; `GET
//!   /api/diff` lists the differences.

use serde_json::{Value, json};

use super::http::Refused;
use super::{Admin, Change};
use crate::config::MAX_WEIGHT;
use crate::config::{BackendConfig, Config, PoolConfig};

/// `POST /api/backends/POOL/BACKEND/ACTION`.
pub(super) async fn backend(
    admin: &Admin,
    pool: &str,
    backend: &str,
    action: &str,
    body: &Value,
) -> Result<Value, Refused> {
    let snapshot = admin.live.snapshot();
    let p = snapshot
        .pool(pool)
        .ok_or_else(|| Refused::not_found(format!("no pool `{pool}`")))?;
    let b = p
        .balancer
        .backends()
        .find(|b| &*b.name == backend)
        .ok_or_else(|| Refused::not_found(format!("no backend `{backend}` in pool `{pool}`")))?;
    // Whether the backend was already so, whether the action turns its flag on, what
    // the change reads as, and its kind among the state changes.
    let (was, on, done, kind) = match action {
        "drain" => (
            b.is_draining(),
            true,
            "draining: no new requests",
            "draining",
        ),
        "undrain" => (
            !b.is_draining(),
            false,
            "undrained: back in rotation",
            "undrained",
        ),
        "disable" => (
            !b.is_enabled(),
            true,
            "disabled: out of service",
            "disabled",
        ),
        "enable" => (b.is_enabled(), false, "enabled: back in service", "enabled"),
        "weight" => {
            let weight = body
                .get("weight")
                .and_then(Value::as_u64)
                .filter(|w| (1..=u64::from(MAX_WEIGHT)).contains(w))
                .ok_or_else(|| {
                    Refused::bad(format!(
                        "give the new weight as {{\"weight\": N}}, N from 1 to {MAX_WEIGHT}"
                    ))
                })? as u32;
            let mut config = snapshot.config.clone();
            if let Some(c) = backend_config(&mut config, pool, backend) {
                c.weight = weight;
            }
            return apply(
                admin,
                &format!("weight {pool}/{backend} {weight}"),
                Some(config),
            )
            .await;
        }
        other => {
            return Err(Refused::not_found(format!(
                "unknown action `{other}`: drain, undrain, disable, enable or weight"
            )));
        }
    };
    match action {
        "drain" | "undrain" => b.set_draining(on),
        _ => b.set_available(!on),
    }
    tracing::info!(target: "fulcrum::admin", pool, backend, action, in_flight = b.in_flight(), "admin: {action} {pool}/{backend}");
    let changed = if was {
        Vec::new()
    } else {
        crate::metrics::events::record(pool, backend, kind, "admin");
        vec![format!("~ backend {pool}/{backend} {done}")]
    };
    Ok(
        json!({ "ok": true, "changed": changed, "status": super::state::status(b), "in_flight": b.in_flight() }),
    )
}

/// `POST /api/backends/POOL` with `{"name": ..., "address": "IP:PORT", "weight": N,
/// "backup": bool}`.
pub(super) async fn add(admin: &Admin, pool: &str, body: &Value) -> Result<Value, Refused> {
    let address: std::net::SocketAddr = body
        .get("address")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .filter(|a: &std::net::SocketAddr| a.port() != 0)
        .ok_or_else(|| {
            Refused::bad("give the backend's \"address\" as IP:PORT, e.g. \"127.0.0.1:8080\"")
        })?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| address.to_string(), str::to_owned);
    let weight = match body.get("weight") {
        None => 1,
        Some(w) => w
            .as_u64()
            .filter(|w| (1..=u64::from(MAX_WEIGHT)).contains(w))
            .ok_or_else(|| Refused::bad(format!("\"weight\" goes from 1 to {MAX_WEIGHT}")))?
            as u32,
    };
    let backup = body.get("backup").and_then(Value::as_bool).unwrap_or(false);
    let mut config = admin.live.snapshot().config.clone();
    let p = pool_config(&mut config, pool)?;
    if p.backends.iter().any(|b| b.name == name) {
        return Err(Refused(
            hyper::StatusCode::CONFLICT,
            format!("pool `{pool}` already has a backend named `{name}`"),
        ));
    }
    p.backends.push(BackendConfig {
        name: name.clone(),
        address,
        weight,
        backup,
        source: None,
    });
    let done = apply(admin, &format!("add {pool}/{name} {address}"), Some(config)).await?;
    crate::metrics::events::record(pool, &name, "added", format!("admin: {address}"));
    Ok(done)
}

/// `DELETE /api/backends/POOL/BACKEND`.
pub(super) async fn remove(admin: &Admin, pool: &str, backend: &str) -> Result<Value, Refused> {
    let mut config = admin.live.snapshot().config.clone();
    let p = pool_config(&mut config, pool)?;
    let before = p.backends.len();
    p.backends.retain(|b| b.name != backend);
    if p.backends.len() == before {
        return Err(Refused::not_found(format!(
            "no backend `{backend}` in pool `{pool}`"
        )));
    }
    if p.backends.is_empty() {
        return Err(Refused(
            hyper::StatusCode::CONFLICT,
            format!("`{backend}` is the last backend of pool `{pool}`: disable it instead"),
        ));
    }
    let done = apply(admin, &format!("remove {pool}/{backend}"), Some(config)).await?;
    crate::metrics::events::record(pool, backend, "removed", "admin");
    Ok(done)
}

/// `GET /api/diff`: how the running config differs from the config file.
pub(super) fn diff(admin: &Admin) -> Result<Value, Refused> {
    let Some(path) = &admin.file else {
        return Err(Refused::not_found(
            "Fulcrum was started without a config file: nothing to compare with",
        ));
    };
    let file = Config::load(path).map_err(|e| {
        Refused(
            hyper::StatusCode::CONFLICT,
            format!("the config file is not valid now: {e}"),
        )
    })?;
    let running = &admin.live.snapshot().config;
    // Read as: what the running process has that the file does not.
    let lines = crate::runtime::diff::describe(&file, running);
    Ok(json!({ "ok": true, "file": path.display().to_string(), "differences": lines }))
}

/// Has the main thread apply `config` (or re-read the file) as a reload, and waits for
/// the outcome.
pub(super) async fn apply(
    admin: &Admin,
    what: &str,
    config: Option<Config>,
) -> Result<Value, Refused> {
    tracing::info!(target: "fulcrum::admin", change = what, "admin: {what}");
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let gone = || {
        Refused(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "Fulcrum is stopping: nothing changed".into(),
        )
    };
    admin
        .changes
        .send(Change {
            origin: "admin",
            config,
            reply,
        })
        .map_err(|_| gone())?;
    match outcome.await.map_err(|_| gone())? {
        Ok(changed) => Ok(json!({ "ok": true, "changed": changed })),
        Err(why) => Err(Refused(
            hyper::StatusCode::CONFLICT,
            format!("nothing changed: {}", why.join("; ")),
        )),
    }
}

/// The running config's pool `pool`, to change.
fn pool_config<'c>(config: &'c mut Config, pool: &str) -> Result<&'c mut PoolConfig, Refused> {
    config
        .pools
        .iter_mut()
        .find(|p| p.name == pool)
        .ok_or_else(|| Refused::not_found(format!("no pool `{pool}`")))
}

fn backend_config<'c>(
    config: &'c mut Config,
    pool: &str,
    backend: &str,
) -> Option<&'c mut BackendConfig> {
    pool_config(config, pool)
        .ok()?
        .backends
        .iter_mut()
        .find(|b| b.name == backend)
}

/// `POST /api/caches/NAME/purge` with `{"host": H, "path": P}` (every stored response
/// of that path, any query), `{"host": H, "prefix": P}` (of every path starting with
/// P) or `{"all": true}`: drops them; how many.
pub(super) fn purge(admin: &Admin, name: &str, body: &Value) -> Result<Value, Refused> {
    use crate::content::cache::key::{self, Part};
    let snapshot = admin.live.snapshot();
    let cache = snapshot
        .caches
        .iter()
        .find(|c| c.config.name == name)
        .ok_or_else(|| Refused::not_found(format!("no cache `{name}`")))?;
    if body.get("all").and_then(Value::as_bool) == Some(true) {
        let purged = cache.purge_prefix(b"");
        return Ok(json!({ "cache": name, "purged": purged }));
    }
    let host = body
        .get("host")
        .and_then(Value::as_str)
        .ok_or_else(|| Refused::bad("give `host` and `path` or `prefix`, or `all`: true"))?;
    if cache.config.key.get(..2) != Some(&[Part::Host, Part::Path][..]) {
        return Err(Refused::bad(format!(
            "cache `{name}`'s key does not start with host and path: purge it with `all`"
        )));
    }
    let mut prefix = match (
        body.get("path").and_then(Value::as_str),
        body.get("prefix").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => return Err(Refused::bad("give one of `path` and `prefix`")),
        (Some(path), None) => {
            let mut k = key::of_url(host, path);
            // The whole path: its end is the part's end.
            k.push(0);
            k
        }
        (None, Some(prefix)) => key::of_url(host, prefix),
        _ => return Err(Refused::bad("give one of `path` and `prefix`")),
    };
    prefix.shrink_to_fit();
    let purged = cache.purge_prefix(&prefix);
    Ok(json!({ "cache": name, "purged": purged }))
}
