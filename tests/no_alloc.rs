//! Picking a backend allocates nothing, for every algorithm, nor does picking one for a
//! retry or using the retry budget: a counting global allocator watches a few thousand
//! picks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fulcrum::balance::{Algorithm, Backend, BuildSelector, HashKey, Pool};
use fulcrum::pipeline::retry::{RetryBudget, Tried, pick_again};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only allocations made by the test's own thread count: the test harness's other
    /// threads (output capture, timers) allocate whenever they like.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn picking_allocates_nothing() {
    COUNTED.with(|c| c.set(true));
    let backends: Vec<Arc<Backend>> = (0..8)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
            Arc::new(Backend::new(format!("b{i}"), addr, 1 + i % 3, false))
        })
        .collect();
    backends[3].set_available(false);
    let _busy = backends[1].begin();
    backends[2].record_latency(std::time::Duration::from_millis(3));
    for name in Algorithm::NAMES {
        let selector = Algorithm::from_name(name).unwrap().build(&backends);
        // Warm up anything lazily initialised (thread-local RNG, clock epoch).
        for key in 0..16 {
            selector.pick(&backends, key);
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for key in 0..5_000u64 {
            let i = selector.pick(&backends, key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert!(
                i.is_some_and(|i| i != 3),
                "{name} picked an unavailable backend"
            );
        }
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(after - before, 0, "{name} allocated while picking");
    }

    // Nor does picking a backend for a retry, or counting requests and retries in a
    // pool's retry budget.
    for name in Algorithm::NAMES {
        let pool = Pool::new(
            "p",
            Algorithm::from_name(name).unwrap(),
            HashKey::default(),
            backends.clone(),
        );
        let budget = RetryBudget::new(20, 10);
        let _ = budget.try_withdraw();
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for key in 0..2_000u64 {
            let key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            budget.record_request();
            let mut tried = Tried::default();
            tried.add(pool.pick(key).unwrap());
            let again = pick_again(&pool, key, &tried).unwrap();
            assert!(!tried.contains(again), "{name} retried on the same backend");
            let _ = budget.try_withdraw();
        }
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(after - before, 0, "{name} allocated while retrying");
    }
}
