//! Nanoseconds per `Selector::pick` for every algorithm, over 8 backends of mixed weights.
//!
//! Two situations: every backend available and idle, and a loaded pool where two backends
//! are unavailable and the others have requests in flight and response-time samples (so
//! the fallbacks and the load-aware comparisons are exercised).
//!
//! Run with `cargo bench --bench selectors -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fulcrum::balance::{Algorithm, Backend, BuildSelector};

const WEIGHTS: [u32; 8] = [1, 2, 3, 4, 5, 1, 2, 3];

fn backends() -> Vec<Arc<Backend>> {
    WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let addr = SocketAddr::from(([10, 0, 0, i as u8 + 1], 8080));
            Arc::new(Backend::new(format!("b{i}"), addr, w, false))
        })
        .collect()
}

fn bench_pool(c: &mut Criterion, group: &str, backends: &[Arc<Backend>]) {
    let mut g = c.benchmark_group(group);
    for name in Algorithm::NAMES {
        let algorithm = Algorithm::from_name(name).expect("a known algorithm name");
        let selector = algorithm.build(backends);
        let mut key = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                // A different key each time, as requests from many clients.
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                selector.pick(black_box(backends), black_box(key))
            })
        });
    }
    g.finish();
}

fn selectors(c: &mut Criterion) {
    let idle = backends();
    bench_pool(c, "pick_8_idle", &idle);

    let loaded = backends();
    loaded[1].set_available(false);
    loaded[6].set_available(false);
    let mut guards = Vec::new();
    for (i, b) in loaded.iter().enumerate() {
        b.record_latency(Duration::from_micros(500 + 250 * i as u64));
        for _ in 0..(i * 3) % 7 {
            guards.push(b.begin());
        }
    }
    bench_pool(c, "pick_8_loaded_2_down", &loaded);
    drop(guards);
}

criterion_group!(benches, selectors);
criterion_main!(benches);
