//! Lock-free counters: requests by status class and a latency histogram, updated with
//! relaxed atomic adds (a scrape may see one request counted in one and not yet in the
//! other; never a torn value).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Status classes, as labels: index 0 is a request that got no response at all (the
/// client left, or the connection was closed), then `1xx` to `5xx`.
pub const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the latency buckets, in seconds (Prometheus's defaults, with 0.5 ms
/// and 1 ms added at the low end where a proxy's answers are).
pub const BOUNDS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Requests and their durations for one listener, route, pool or backend (and, for
/// layer 4, the connections or flows relayed and their bytes). Each level fills the
/// parts that apply to it: `upstream` and `queue` are kept by pools and backends,
/// `connections` by listeners.
#[derive(Debug, Default)]
pub struct Stats {
    requests: [AtomicU64; CLASSES.len()],
    /// Requests routed (listeners and routes): in flight = begun - ended.
    begun: AtomicU64,
    /// HTTP bytes from clients and to them.
    bytes: [AtomicU64; 2],
    /// How long requests took.
    pub duration: Histogram,
    /// TCP connections or UDP flows relayed to a backend, and their bytes.
    pub relayed: Relayed,
    /// Connecting to backends, their first byte, retries.
    pub upstream: Upstream,
    /// The overload queue.
    pub queue: Queued,
    /// Client connections, TLS handshakes, HTTP/2 streams.
    pub connections: Connections,
}

/// The backend side of requests (pools and backends).
#[derive(Debug, Default)]
pub struct Upstream {
    /// New connections to backends: how long each took to open (TLS included).
    pub connect: Histogram,
    /// From the request sent in full to the response head received.
    pub first_byte: Histogram,
    /// Pools: retries made; backends: tries on it that were retried elsewhere.
    pub retries: AtomicU64,
    /// Retries the pool's retry budget refused.
    pub budget_refusals: AtomicU64,
    /// Responses by what the pool's sticky cookie did (`pipeline::upstream::STICKY`).
    pub sticky: [AtomicU64; 3],
}

/// The overload queue of a pool.
#[derive(Debug, Default)]
pub struct Queued {
    /// How long requests that had to wait waited (their count is the histogram's).
    pub wait: Histogram,
    /// Requests refused because the queue was full.
    pub full: AtomicU64,
    /// Requests that waited `queue_timeout` in vain.
    pub timed_out: AtomicU64,
}

/// A listener's client connections.
#[derive(Debug, Default)]
pub struct Connections {
    /// Open now.
    pub open: AtomicU64,
    /// TLS handshakes completed, by version: TLS 1.2, TLS 1.3.
    pub tls: [AtomicU64; 2],
    /// TLS handshakes that failed, then those that timed out.
    pub tls_failed: [AtomicU64; 2],
    /// HTTP/2 streams (requests) received.
    pub h2_streams: AtomicU64,
    /// Connections (or UDP flows) refused by the listener's `allow`/`deny` lists.
    pub denied: AtomicU64,
    /// Connections (or UDP flows) refused by the listener's `connection_limits`.
    pub limited: AtomicU64,
}

/// Adds one to a counter.
#[inline]
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Layer 4 traffic: connections (or UDP flows) relayed, bytes each way.
#[derive(Debug, Default)]
pub struct Relayed {
    connections: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Connections or flows that reached no backend (none up, none could be connected).
    pub failed: AtomicU64,
}

impl Relayed {
    /// Counts one connection or flow that moved `bytes_in` from the client and
    /// `bytes_out` to it.
    #[inline]
    pub fn record(&self, bytes_in: u64, bytes_out: u64) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// (connections, bytes from clients, bytes to clients).
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.connections.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}

impl Stats {
    /// Counts one request that ended with `status` (0: no response) after `took`.
    #[inline]
    pub fn record(&self, status: u16, took: Duration) {
        let class = match status {
            100..=599 => usize::from(status / 100),
            _ => 0,
        };
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        self.duration.record(took);
    }

    /// Counts the HTTP bytes of one request: `bytes_in` from the client, `bytes_out`
    /// to it.
    #[inline]
    pub fn record_bytes(&self, bytes_in: u64, bytes_out: u64) {
        self.bytes[0].fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes[1].fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// A request was routed here and is in flight until [`Stats::record`]ed.
    #[inline]
    pub fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests begun and not yet ended (0 where requests are not begun).
    pub fn in_flight(&self) -> u64 {
        let begun = self.begun.load(Ordering::Relaxed);
        let ended: u64 = (0..CLASSES.len()).map(|i| self.requests(i)).sum();
        begun.saturating_sub(ended)
    }

    /// HTTP bytes (from clients, to clients).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes[0].load(Ordering::Relaxed),
            self.bytes[1].load(Ordering::Relaxed),
        )
    }

    /// Requests counted in status class `class` (an index of [`CLASSES`]).
    pub fn requests(&self, class: usize) -> u64 {
        self.requests[class].load(Ordering::Relaxed)
    }
}

/// A histogram with fixed buckets ([`BOUNDS`]).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last one is above every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    #[inline]
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The sum of observations in seconds, their count, and the count in each bucket by
    /// upper bound, not cumulative (the encoder adds them up; the last is `+Inf`).
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            buckets.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, total, buckets)
    }
}

impl Histogram {
    /// The `q` quantile (0 to 1) of every observation so far, in seconds, interpolated
    /// within its bucket (the top bucket reads as its lower bound); `None` before any.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.read().2, q)
    }
}

/// The `q` quantile of observations counted in `buckets` (upper bound, count; not
/// cumulative, as [`Histogram::read`] gives them), interpolated within its bucket.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let count: u64 = buckets.iter().map(|b| b.1).sum();
    if count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * count as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for &(upper, n) in buckets {
        if n > 0 && (below + n) as f64 >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let within = (rank - below as f64) / n as f64;
            return Some(lower + (upper - lower) * within);
        }
        below += n;
        if upper.is_finite() {
            lower = upper;
        }
    }
    Some(lower)
}

/// [`BOUNDS`] in nanoseconds.
const BOUNDS_NS: [u64; BOUNDS.len()] = {
    let mut ns = [0; BOUNDS.len()];
    let mut i = 0;
    while i < BOUNDS.len() {
        ns[i] = (BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_buckets() {
        let s = Stats::default();
        s.record(200, Duration::from_micros(300));
        s.record(204, Duration::from_millis(1));
        s.record(503, Duration::from_secs(7));
        s.record(0, Duration::ZERO);
        assert_eq!(s.requests(2), 2);
        assert_eq!(s.requests(5), 1);
        assert_eq!(s.requests(0), 1);
        let (sum, count, buckets) = s.duration.read();
        assert_eq!(count, 4);
        assert!((sum - 7.0013).abs() < 1e-9, "{sum}");
        // 0 s and 0.3 ms fall in the first bucket, 1 ms exactly in the second, 7 s above
        // every bound.
        assert_eq!(buckets[0], (0.0005, 2));
        assert_eq!(buckets[1], (0.001, 1));
        assert_eq!(buckets[BOUNDS.len() - 1], (5.0, 0));
        assert_eq!(buckets[BOUNDS.len()], (f64::INFINITY, 1));
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        // 100 observations between 1 ms and 2.5 ms: the median is half way.
        for _ in 0..100 {
            h.record(Duration::from_micros(1500));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        assert!((h.quantile(1.0).unwrap() - 0.0025).abs() < 1e-9);
        // Above every bound: the top bound.
        h.record(Duration::from_secs(60));
        assert_eq!(h.quantile(1.0), Some(5.0));
    }
}
