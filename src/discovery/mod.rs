//! Service discovery through DNS: a backend written as a host name with `resolve = true`
//! becomes one backend per address the name has (A and AAAA records), and one written
//! as `srv = "_service._proto.name"` one per address of each SRV record's target, with
//! the record's port and weight (records of a higher priority than the lowest are
//! backups).
//!
//! Names are resolved when the config is read (a name that does not resolve then is a
//! config error), and again by a thread of their own each time their TTL runs out
//! (bounded by `[resolver] min_ttl` and `max_ttl`). A changed set is put in force like
//! a reload, through the same channel as the admin API's changes: backends whose
//! address stays keep their state and counters, new ones start, gone ones drain. A
//! failed resolution keeps the last good set and is logged.

pub mod dns;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{BackendConfig, Config, ResolverConfig};
use crate::runtime::Live;
use dns::{Failure, Kind, Record};

/// What a discovered backend asks DNS for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The A and AAAA records of `host`, each address with `port`.
    Host {
        /// The name.
        host: String,
        /// The port of every address.
        port: u16,
    },
    /// SRV records: each target's addresses, with the record's port and weight.
    Srv(String),
}

/// A backend of a pool's config that DNS turns into backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Its `name`: the backends found are named `NAME@ADDRESS`.
    pub name: String,
    /// What to resolve.
    pub target: Target,
    /// The weight of each address (SRV: the record's own).
    pub weight: u32,
    /// Every address is a backup.
    pub backup: bool,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Host { host, port } => write!(f, "{host}:{port}"),
            Target::Srv(name) => write!(f, "SRV {name}"),
        }
    }
}

/// Resolves `entry` (its index in its pool's `discovery` is `source`): the backends it
/// stands for now, and how long they may be kept (the smallest TTL, within the
/// resolver's bounds).
pub fn resolve(
    entry: &Discovered,
    source: usize,
    r: &ResolverConfig,
) -> Result<(Vec<BackendConfig>, Duration), String> {
    let mut ttl = u32::MAX;
    let mut found: Vec<(SocketAddr, u32, bool)> = Vec::new();
    match &entry.target {
        Target::Host { host, port } => {
            for (addr, t) in addresses(host, r)? {
                ttl = ttl.min(t);
                found.push((SocketAddr::new(addr, *port), entry.weight, entry.backup));
            }
        }
        Target::Srv(name) => {
            let records = dns::query(&r.nameservers, name, Kind::Srv, r.timeout)
                .map_err(|e| format!("SRV {name}: {e}"))?;
            let best = records
                .iter()
                .filter_map(|rec| match rec {
                    Record::Srv { priority, .. } => Some(*priority),
                    Record::Address(..) => None,
                })
                .min();
            for rec in &records {
                let Record::Srv {
                    priority,
                    weight,
                    port,
                    target,
                    ttl: t,
                } = rec
                else {
                    continue;
                };
                ttl = ttl.min(*t);
                for (addr, t) in addresses(target, r)? {
                    ttl = ttl.min(t);
                    let weight = u32::from(*weight).clamp(1, crate::config::MAX_WEIGHT);
                    let backup = entry.backup || Some(*priority) != best;
                    found.push((SocketAddr::new(addr, *port), weight, backup));
                }
            }
        }
    }
    if found.is_empty() {
        return Err(format!("{} has no address", entry.target));
    }
    found.sort();
    found.dedup_by_key(|f| f.0);
    let backends = found
        .into_iter()
        .map(|(address, weight, backup)| BackendConfig {
            name: format!("{}@{address}", entry.name),
            address,
            weight,
            backup,
            source: Some(source),
        })
        .collect();
    let ttl = Duration::from_secs(u64::from(ttl)).clamp(r.min_ttl, r.max_ttl);
    Ok((backends, ttl))
}

/// The A and AAAA addresses of `host` with their TTLs (an IP address is itself).
fn addresses(host: &str, r: &ResolverConfig) -> Result<Vec<(std::net::IpAddr, u32)>, String> {
    if let Ok(ip) = host.parse() {
        return Ok(vec![(ip, u32::MAX)]);
    }
    let mut out = Vec::new();
    let mut failed = None;
    for kind in [Kind::A, Kind::Aaaa] {
        match dns::query(&r.nameservers, host, kind, r.timeout) {
            Ok(records) => out.extend(records.into_iter().filter_map(|rec| match rec {
                Record::Address(ip, ttl) => Some((ip, ttl)),
                Record::Srv { .. } => None,
            })),
            Err(Failure::NoSuchName) => return Err(format!("`{host}`: no such name")),
            Err(e) => failed = Some(format!("`{host}`: {e}")),
        }
    }
    match (out.is_empty(), failed) {
        (true, Some(why)) => Err(why),
        _ => Ok(out),
    }
}

/// Starts the thread that resolves discovered backends again as their TTLs run out and
/// hands changed sets to the main thread (`changes`), until the process stops.
pub fn start(live: Arc<Live>, changes: tokio::sync::mpsc::UnboundedSender<crate::admin::Change>) {
    let spawned = std::thread::Builder::new()
        .name("fulcrum-discovery".into())
        .spawn(move || follow(&live, &changes));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start DNS service discovery");
    }
}

fn follow(live: &Live, changes: &tokio::sync::mpsc::UnboundedSender<crate::admin::Change>) {
    // When each entry (pool, name) is due; the set read at load is fresh.
    let mut due: HashMap<(String, String), Instant> = HashMap::new();
    let mut failing: HashMap<(String, String), String> = HashMap::new();
    while !live.is_stopping() {
        let snapshot = live.snapshot();
        let config = &snapshot.config;
        let now = Instant::now();
        let mut updates = Vec::new();
        for pool in &config.pools {
            for (i, entry) in pool.discovery.iter().enumerate() {
                let key = (pool.name.clone(), entry.name.clone());
                let next = due
                    .entry(key.clone())
                    .or_insert(now + config.resolver.min_ttl);
                if *next > now {
                    continue;
                }
                match resolve(entry, i, &config.resolver) {
                    Ok((found, ttl)) => {
                        *next = now + ttl;
                        if failing.remove(&key).is_some() {
                            tracing::info!(pool = %pool.name, backend = %entry.name, "DNS resolution works again");
                        }
                        let mut current: Vec<_> = pool
                            .backends
                            .iter()
                            .filter(|b| b.source == Some(i))
                            .cloned()
                            .collect();
                        current.sort_by_key(|b| b.address);
                        if current != found {
                            updates.push((pool.name.clone(), i, found));
                        }
                    }
                    Err(why) => {
                        *next = now + config.resolver.min_ttl;
                        if failing.get(&key) != Some(&why) {
                            tracing::warn!(pool = %pool.name, backend = %entry.name, error = %why, "DNS resolution failed: keeping the last addresses found");
                            failing.insert(key, why);
                        }
                    }
                }
            }
        }
        if !updates.is_empty() {
            apply(live, changes, updates);
        }
        let wake = due
            .values()
            .min()
            .copied()
            .unwrap_or(now + Duration::from_secs(1));
        let nap = wake.saturating_duration_since(Instant::now());
        std::thread::sleep(nap.clamp(Duration::from_millis(20), Duration::from_secs(1)));
    }
}

/// Puts the new sets in force: the running config with each entry's backends replaced.
fn apply(
    live: &Live,
    changes: &tokio::sync::mpsc::UnboundedSender<crate::admin::Change>,
    updates: Vec<(String, usize, Vec<BackendConfig>)>,
) {
    let mut config: Config = live.snapshot().config.clone();
    for (pool, source, found) in updates {
        let Some(p) = config.pools.iter_mut().find(|p| p.name == pool) else {
            continue;
        };
        let at = p
            .backends
            .iter()
            .position(|b| b.source == Some(source))
            .unwrap_or(p.backends.len());
        p.backends.retain(|b| b.source != Some(source));
        let names: Vec<_> = found.iter().map(|b| b.name.clone()).collect();
        tracing::info!(pool = %pool, backends = %names.join(" "), "DNS: the addresses changed");
        let at = at.min(p.backends.len());
        p.backends.splice(at..at, found);
    }
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let change = crate::admin::Change {
        origin: "DNS",
        config: Some(config),
        reply,
    };
    if changes.send(change).is_err() {
        return;
    }
    if let Ok(Err(why)) = outcome.blocking_recv() {
        tracing::warn!(error = %why.join("; "), "DNS: the new addresses could not be put in force");
    }
}
