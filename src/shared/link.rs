//! The link to Redis: a thread of its own (an event loop of one thread, as the health
//! checks have), so that nothing of it runs on the workers. It connects (asking the
//! sentinels for the master first, when configured), subscribes to the fleet's channel,
//! catches up, then every `interval` sends the outbox as one pipeline (a `SET ... PX` per
//! stick entry, one `PUBLISH` per batch) and applies the batches other instances publish.
//!
//! Any error or a command slower than `timeout` ends the session: the instance says in
//! its log that it serves from local state, keeps draining the outbox (dropping what it
//! held, and the rate counts behind it), and tries again every second. On reconnecting
//! it catches up: the stick entries Redis holds are put in the local tables, and every
//! local entry is sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;

use super::wire::{Batch, MOST, Record};
use super::{Change, RATE, STATS, STICK};
use crate::config::shared::{RedisAt, SharedConfig};
use crate::policy::ratelimit::Limiter;
use crate::policy::stick_table::StickTable;
use crate::runtime::Live;

/// Changes taken from the outbox per batch at most.
const BATCH: usize = 100_000;
/// The pause between two attempts to reach Redis.
const RETRY: Duration = Duration::from_secs(1);
/// A command sent when nothing else was for this long, to notice a silent Redis.
const PING_AFTER: Duration = Duration::from_secs(1);

/// The running link; stopped when dropped.
#[derive(Debug)]
pub struct Link {
    /// The settings it runs with.
    pub config: SharedConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Link {
    /// Starts the link thread for `config`, applying what it receives to `live`'s tables.
    pub fn start(config: SharedConfig, live: Arc<Live>) -> std::io::Result<Link> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let settings = config.clone();
        std::thread::Builder::new()
            .name("fulcrum-shared".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot start the shared-state event loop");
                runtime.block_on(run(settings, live, stopped));
            })?;
        Ok(Link {
            config,
            stop: Some(stop),
        })
    }
}

async fn run(
    config: SharedConfig,
    live: Arc<Live>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let me = instance_id();
    let mut first = true;
    let mut tables = Tables::default();
    loop {
        let session = session(&config, &live, me);
        let error = tokio::select! {
            _ = &mut stopped => return,
            e = session => e,
        };
        if STATS.up.swap(false, Ordering::Relaxed) || first {
            STATS.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                redis = %describe(&config.redis),
                error = %error,
                "shared state: Redis unreachable; stick tables and rate limits are this instance's own until it returns"
            );
        }
        first = false;
        // Keep the outbox moving while down; retry after a while.
        let until = Instant::now() + RETRY;
        while Instant::now() < until {
            tables.refresh(&live);
            super::drain(BATCH, |c| {
                if let Change::Rate { limit, key } = c
                    && let Some(l) = tables.limits.get(&limit)
                {
                    l.take_unsent(key);
                }
            });
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(config.interval.max(Duration::from_millis(20))) => {}
            }
        }
    }
}

/// The stick tables and limits of the snapshot in force, by identity.
#[derive(Default)]
struct Tables {
    generation: u64,
    sticks: HashMap<u64, Arc<StickTable>>,
    limits: HashMap<u64, Arc<Limiter>>,
}

impl Tables {
    fn refresh(&mut self, live: &Live) {
        if self.generation == live.generation() && self.generation != 0 {
            return;
        }
        let snapshot = live.snapshot();
        self.generation = snapshot.generation;
        self.sticks = snapshot
            .pools
            .iter()
            .filter_map(|p| p.sticky.as_ref()?.table())
            .filter_map(|t| Some((t.shared()?, Arc::clone(t))))
            .collect();
        self.limits = snapshot
            .limiters
            .iter()
            .filter(|l| l.config.shared.is_some())
            .map(|l| (l.id(), Arc::clone(l)))
            .collect();
    }
}

/// One connected session: returns why it ended.
async fn session(config: &SharedConfig, live: &Live, me: u64) -> String {
    match connected(config, live, me).await {
        Ok(()) => "the subscription ended".into(),
        Err(e) => e,
    }
}

async fn connected(config: &SharedConfig, live: &Live, me: u64) -> Result<(), String> {
    let limit = config.timeout;
    let client = within(limit, client(&config.redis)).await?;
    let mut conn = within(limit, async {
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let channel = format!("{}:sync", config.prefix);
    let mut pubsub = within(limit, async {
        client.get_async_pubsub().await.map_err(|e| e.to_string())
    })
    .await?;
    within(limit, async {
        pubsub.subscribe(&channel).await.map_err(|e| e.to_string())
    })
    .await?;
    let mut messages = pubsub.into_on_message();
    let mut tables = Tables::default();
    tables.refresh(live);
    let (loaded, sent) = catch_up(config, &mut conn, &tables, (&channel, me)).await?;
    STATS.up.store(true, Ordering::Relaxed);
    tracing::info!(
        redis = %describe(&config.redis),
        loaded,
        sent,
        "shared state: connected to Redis; stick entries loaded from it and sent to it"
    );
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Batch::new(me);
    let mut last_command = Instant::now();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                tables.refresh(live);
                apply(&tables, me, message.get_payload_bytes());
            }
            _ = tick.tick() => {
                tables.refresh(live);
                let mut pipe = redis::pipe();
                batch.clear();
                let mut counts = [0u64; 2];
                super::drain(BATCH, |change| {
                    if let Some(r) = record(config, &tables, change, &mut pipe) {
                        counts[usize::from(r.kind == b'r')] += 1;
                        batch.push(r);
                        if batch.len() >= MOST {
                            pipe.cmd("PUBLISH").arg(&channel).arg(batch.bytes()).ignore();
                            batch.clear();
                        }
                    }
                });
                if !batch.is_empty() {
                    pipe.cmd("PUBLISH").arg(&channel).arg(batch.bytes()).ignore();
                }
                if counts == [0, 0] {
                    if last_command.elapsed() < PING_AFTER {
                        continue;
                    }
                    pipe.cmd("PING").ignore();
                }
                within(limit, async {
                    pipe.query_async::<()>(&mut conn).await.map_err(|e| e.to_string())
                })
                .await?;
                last_command = Instant::now();
                STATS.sent[STICK].fetch_add(counts[0], Ordering::Relaxed);
                STATS.sent[RATE].fetch_add(counts[1], Ordering::Relaxed);
            }
        }
    }
}

/// The record of `change` (with its `SET` added to `pipe` for a stick entry); `None`
/// when it no longer applies.
fn record(
    config: &SharedConfig,
    tables: &Tables,
    change: Change,
    pipe: &mut redis::Pipeline,
) -> Option<Record> {
    match change {
        Change::Stick {
            table,
            key,
            backend,
            expire_ms,
        } => Some(store_stick(config, pipe, table, key, backend, expire_ms)),
        Change::Rate { limit, key } => {
            let count = tables.limits.get(&limit)?.take_unsent(key);
            (count > 0).then_some(Record {
                kind: b'r',
                id: limit,
                key,
                value: u64::from(count),
            })
        }
    }
}

/// Applies a batch another instance published.
fn apply(tables: &Tables, me: u64, message: &[u8]) {
    let Some((sender, records)) = super::wire::read(message) else {
        return;
    };
    if sender == me {
        return;
    }
    let now = Instant::now();
    for r in records {
        match r.kind {
            b's' => {
                if let Some(t) = tables.sticks.get(&r.id) {
                    t.put_remote(r.key, r.value);
                    STATS.received[STICK].fetch_add(1, Ordering::Relaxed);
                }
            }
            b'r' => {
                if let Some(l) = tables.limits.get(&r.id) {
                    l.absorb(r.key, r.value, now);
                    STATS.received[RATE].fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

/// Loads the stick entries Redis holds for the local shared tables, then sends every
/// local entry, stored and published on `channel` as instance `me`: (loaded, sent).
async fn catch_up(
    config: &SharedConfig,
    conn: &mut MultiplexedConnection,
    tables: &Tables,
    (channel, me): (&str, u64),
) -> Result<(u64, u64), String> {
    let limit = config.timeout;
    let mut loaded = 0;
    for (&id, table) in &tables.sticks {
        let pattern = format!("{}:stick:{id:016x}:*", config.prefix);
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = within(limit, async {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(conn)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = within(limit, async {
                    redis::cmd("MGET")
                        .arg(&keys)
                        .query_async(conn)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await?;
                for (k, v) in keys.iter().zip(values) {
                    let key = k
                        .rsplit(':')
                        .next()
                        .and_then(|h| u64::from_str_radix(h, 16).ok());
                    let backend = v.and_then(|v| Some(u64::from_le_bytes(v.try_into().ok()?)));
                    if let (Some(key), Some(backend)) = (key, backend) {
                        table.put_remote(key, backend);
                        loaded += 1;
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let mut sent = 0;
    for (&id, table) in &tables.sticks {
        let expire_ms = table.expire().as_millis() as u64;
        let mut entries = Vec::new();
        table.each(|key, backend| entries.push((key, backend)));
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            let mut batch = Batch::new(me);
            for &(key, backend) in chunk {
                batch.push(store_stick(config, &mut pipe, id, key, backend, expire_ms));
            }
            // Instances that reconnected before this one learn them too.
            pipe.cmd("PUBLISH").arg(channel).arg(batch.bytes()).ignore();
            within(limit, async {
                pipe.query_async::<()>(conn)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
            sent += chunk.len() as u64;
        }
    }
    Ok((loaded, sent))
}

/// Adds to `pipe` the `SET` that stores a stick entry in Redis (expiring with its
/// table), and gives its record for the published batch.
fn store_stick(
    config: &SharedConfig,
    pipe: &mut redis::Pipeline,
    table: u64,
    key: u64,
    backend: u64,
    expire_ms: u64,
) -> Record {
    pipe.cmd("SET")
        .arg(stick_key(config, table, key))
        .arg(backend.to_le_bytes().as_slice())
        .arg("PX")
        .arg(expire_ms)
        .ignore();
    Record {
        kind: b's',
        id: table,
        key,
        value: backend,
    }
}

/// The Redis key of a stick entry.
fn stick_key(config: &SharedConfig, table: u64, key: u64) -> String {
    format!("{}:stick:{table:016x}:{key:016x}", config.prefix)
}

/// A client of the Redis server, or of the master the sentinels name now.
async fn client(at: &RedisAt) -> Result<redis::Client, String> {
    match at {
        RedisAt::Server(url) => redis::Client::open(url.as_str()).map_err(|e| e.to_string()),
        RedisAt::Sentinel { sentinels, master } => {
            let mut sentinel = redis::sentinel::SentinelClient::build(
                sentinels.clone(),
                master.clone(),
                None,
                redis::sentinel::SentinelServerType::Master,
            )
            .map_err(|e| e.to_string())?;
            sentinel.async_get_client().await.map_err(|e| e.to_string())
        }
    }
}

/// `f`, unless it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

/// Where Redis is, for the log (without passwords).
fn describe(at: &RedisAt) -> String {
    let strip = |u: &str| match u.split_once('@') {
        Some((scheme_and_user, host)) => {
            let scheme = scheme_and_user.split("://").next().unwrap_or("redis");
            format!("{scheme}://***@{host}")
        }
        None => u.to_owned(),
    };
    match at {
        RedisAt::Server(url) => strip(url),
        RedisAt::Sentinel { sentinels, master } => format!(
            "master {master} of sentinels {}",
            sentinels
                .iter()
                .map(|s| strip(s))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A random identity for this instance's batches.
fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
