//! The content families of the exposition: responses compressed by coding, with the
//! body bytes that went into the coder and came out of it (their ratio is the saving),
//! counted once per compressed response, process-wide, in relaxed atomics; and each
//! response cache's requests by outcome, entries and bytes.

use std::fmt::Error;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::DescriptorEncoder;

use super::expose::{Labels, counter, gauge};
use crate::content::coding::Coding;

/// Per coding (in `Coding::ALL` order): responses, bytes in, bytes out.
static COMPRESSED: [[AtomicU64; 3]; 3] = [const { [const { AtomicU64::new(0) }; 3] }; 3];

fn slot(coding: Coding) -> &'static [AtomicU64; 3] {
    let i = Coding::ALL.iter().position(|&c| c == coding).unwrap_or(0);
    &COMPRESSED[i]
}

/// Counts one response compressed with `coding`: `bytes_in` body bytes from the backend
/// became `bytes_out` coded bytes.
pub fn compressed(coding: Coding, bytes_in: u64, bytes_out: u64) {
    let s = slot(coding);
    s[0].fetch_add(1, Ordering::Relaxed);
    s[1].fetch_add(bytes_in, Ordering::Relaxed);
    s[2].fetch_add(bytes_out, Ordering::Relaxed);
}

/// Writes the cache families of `snapshot`.
pub(super) fn caches(
    e: &mut DescriptorEncoder<'_>,
    snapshot: &crate::runtime::Snapshot,
) -> Result<(), Error> {
    let mut outcomes = Vec::new();
    let mut entries = Vec::new();
    let mut bytes = Vec::new();
    let mut disk_entries = Vec::new();
    let mut disk_bytes = Vec::new();
    for cache in snapshot.caches.iter() {
        let name = cache.config.name.as_str();
        let c = &cache.counts;
        for (outcome, n) in [
            ("hit", &c.hits),
            ("stale", &c.stale),
            ("miss", &c.misses),
            ("bypass", &c.bypassed),
            ("coalesced", &c.coalesced),
            ("stored", &c.stored),
            ("refresh", &c.refreshes),
        ] {
            outcomes.push((
                vec![("cache", name), ("outcome", outcome)],
                n.load(Ordering::Relaxed),
            ));
        }
        entries.push((vec![("cache", name)], cache.store.entries() as u64));
        bytes.push((vec![("cache", name)], cache.store.bytes() as u64));
        if let Some(disk) = &cache.disk {
            outcomes.push((
                vec![("cache", name), ("outcome", "disk")],
                disk.hits.load(Ordering::Relaxed),
            ));
            disk_entries.push((vec![("cache", name)], disk.entries() as u64));
            disk_bytes.push((vec![("cache", name)], disk.bytes()));
        }
    }
    counter(
        e,
        "cache_requests",
        "Requests of routes with a cache, by outcome: `hit` (answered from it, fresh), `stale` (answered from it, stale: while it is refreshed, or when the backends fail), `miss` (fetched), `bypass` (not for the cache), `coalesced` (waited for another request's fetch of the same key), `stored` (fetches whose response was stored), `refresh` (background refreshes started for stale responses served), `disk` (responses read back from the disk tier)",
        &outcomes,
    )?;
    gauge(
        e,
        "cache_entries",
        "Responses the cache holds now",
        &entries,
    )?;
    gauge(
        e,
        "cache_bytes",
        "Bytes the cache holds now (bodies, headers, keys), at most its `memory`",
        &bytes,
    )?;
    gauge(
        e,
        "cache_disk_entries",
        "Responses the cache's disk tier holds now",
        &disk_entries,
    )?;
    gauge(
        e,
        "cache_disk_bytes",
        "Bytes of files the cache's disk tier holds now, at most its `disk_size`",
        &disk_bytes,
    )
}

/// Writes the content families.
pub(super) fn encode(e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
    let series = |field: usize| -> Vec<(Labels<'static>, u64)> {
        Coding::ALL
            .iter()
            .map(|&c| {
                (
                    vec![("coding", c.token())],
                    slot(c)[field].load(Ordering::Relaxed),
                )
            })
            .collect()
    };
    counter(
        e,
        "compressed_responses",
        "Responses compressed on their way to the client, by content coding",
        &series(0),
    )?;
    counter(
        e,
        "compression_in_bytes",
        "Body bytes of compressed responses as the backends sent them",
        &series(1),
    )?;
    counter(
        e,
        "compression_out_bytes",
        "Body bytes of compressed responses as sent to clients",
        &series(2),
    )
}
