//! The policy families of the exposition: every rate limit's decisions by outcome, the
//! keys it tracks and the memory its tables hold, the connections listeners refused
//! under their per-client connection limits, the entries of pools' stick tables, and
//! the link that shares them with other instances (`[shared]`).

use std::fmt::Error;

use prometheus_client::encoding::DescriptorEncoder;

use super::counters::get;
use super::expose::{Labels, counter, gauge};
use crate::runtime::Snapshot;

/// Writes the rate limit families of `snapshot`.
pub(super) fn encode(e: &mut DescriptorEncoder<'_>, snapshot: &Snapshot) -> Result<(), Error> {
    let limited: Vec<(Labels<'_>, u64)> = snapshot
        .frontends
        .iter()
        .map(|f| {
            (
                vec![("listener", &*f.name)],
                get(&f.stats.connections.limited),
            )
        })
        .collect();
    counter(
        e,
        "listener_limited_connections",
        "Connections refused (UDP: flows not opened) because the client was over one of the listener's `connection_limits`",
        &limited,
    )?;
    let mut decisions = Vec::new();
    let mut keys = Vec::new();
    let mut memory = Vec::new();
    for l in snapshot.limiters.iter() {
        let name = l.config.name.as_str();
        let c = &l.counts;
        for (outcome, n) in [
            ("passed", &c.passed),
            ("delayed", &c.delayed),
            ("limited", &c.limited),
            ("busy", &c.busy),
        ] {
            decisions.push((vec![("limit", name), ("outcome", outcome)], get(n)));
        }
        keys.push((vec![("limit", name)], l.keys() as u64));
        memory.push((vec![("limit", name)], l.memory() as u64));
    }
    counter(
        e,
        "rate_limit_decisions",
        "Requests (or connections) checked against the limit, by outcome: `passed`, `delayed` (action = \"delay\"), `limited` (over the rate), `busy` (over the concurrency)",
        &decisions,
    )?;
    gauge(
        e,
        "rate_limit_keys",
        "Keys (client addresses, API keys...) the limit tracks now; at most its `max_keys`",
        &keys,
    )?;
    gauge(
        e,
        "rate_limit_memory_bytes",
        "Memory the limit's key tables hold (allocated at start for `max_keys`, never grown)",
        &memory,
    )?;
    let tables: Vec<(Labels<'_>, u64)> = snapshot
        .pools
        .iter()
        .filter_map(|p| {
            let sticky = p.sticky.as_ref().filter(|s| s.has_table())?;
            Some((vec![("pool", &*p.name)], sticky.table_entries() as u64))
        })
        .collect();
    gauge(
        e,
        "pool_stick_table_entries",
        "Clients the pool's stick table remembers now (sticky mode `table` or `learn`), at most its `size`",
        &tables,
    )?;
    if snapshot.config.shared.is_some() {
        shared(e)?;
    }
    Ok(())
}

/// The families of the link to Redis.
fn shared(e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
    use crate::shared::{RATE, STATS, STICK};
    use std::sync::atomic::Ordering;
    let up = u64::from(STATS.up.load(Ordering::Relaxed));
    gauge(
        e,
        "shared_redis_up",
        "1 while Redis answers and state is shared; 0 while each instance serves from its own state",
        &[(vec![], up)],
    )?;
    counter(
        e,
        "shared_redis_outages",
        "Times Redis could not be reached (or was slower than `shared.timeout`), counting a failed first connection",
        &[(vec![], get(&STATS.outages))],
    )?;
    let kinds = |counts: &'static [std::sync::atomic::AtomicU64; 2]| {
        vec![
            (vec![("kind", "stick")], get(&counts[STICK])),
            (vec![("kind", "rate")], get(&counts[RATE])),
        ]
    };
    counter(
        e,
        "shared_sent",
        "Stick table entries and rate limit counts (one per key and batch) sent to the other instances",
        &kinds(&STATS.sent),
    )?;
    counter(
        e,
        "shared_received",
        "Stick table entries and rate limit counts received from the other instances and applied",
        &kinds(&STATS.received),
    )?;
    counter(
        e,
        "shared_dropped",
        "Changes dropped because the queue to the link was full (more than 16,384 in one interval)",
        &[(vec![], get(&STATS.dropped))],
    )
}
