//! The policy families of the exposition: every rate limit's decisions by outcome, the
//! keys it tracks and the memory its tables hold, the connections listeners refused
//! under their per-client connection limits, and the entries of pools' stick tables.

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
    )
}
