//! Picking a backend allocates nothing, for every algorithm, nor does picking one for a
//! retry, using the retry budget, routing a request through a 20-route table, or
//! counting it in the metrics: a counting global allocator watches a few thousand of
//! each.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;

use fulcrum::balance::{Algorithm, Backend, BuildSelector, HashKey, Pool};
use fulcrum::pipeline::retry::{RetryBudget, Tried, pick_again};

struct Counting;

thread_local! {
    /// Only allocations made by the test's own thread count: the test harness's other
    /// threads (output capture, timers, the other test) allocate whenever they like.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This thread's allocations while counted.
    static ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The allocations counted on this thread so far.
fn allocations() -> usize {
    ALLOCS.with(|a| a.get())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(|c| c.get()) {
            ALLOCS.with(|a| a.set(a.get() + 1));
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
        let before = allocations();
        for key in 0..5_000u64 {
            let i = selector.pick(&backends, key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert!(
                i.is_some_and(|i| i != 3),
                "{name} picked an unavailable backend"
            );
        }
        let after = allocations();
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
        let before = allocations();
        for key in 0..2_000u64 {
            let key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            budget.record_request();
            let mut tried = Tried::default();
            tried.add(pool.pick(key).unwrap());
            let again = pick_again(&pool, key, &tried).unwrap();
            assert!(!tried.contains(again), "{name} retried on the same backend");
            let _ = budget.try_withdraw();
        }
        let after = allocations();
        assert_eq!(after - before, 0, "{name} allocated while retrying");
    }
}

/// A request as the pipeline reads it (what the engines give it, borrowed).
struct View {
    host: &'static [u8],
    path: &'static [u8],
    headers: Vec<(&'static str, &'static [u8])>,
}

impl fulcrum::routing::RequestView for View {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn host(&self) -> Option<&[u8]> {
        Some(self.host)
    }
    fn path(&self) -> &[u8] {
        self.path
    }
    fn query(&self) -> Option<&[u8]> {
        Some(b"a=1&b=2")
    }
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    fn client_ip(&self) -> std::net::IpAddr {
        "192.0.2.9".parse().unwrap()
    }
}

#[test]
fn routing_a_request_allocates_nothing() {
    // 20 routes in front of the pool, the request matching the last one, with a hashing
    // pool so that the hash key is computed too.
    let mut text = String::from("[[listeners]]\nbind = \"127.0.0.1:0\"\n");
    for i in 1..20 {
        text.push_str(&format!(
            "[[listeners.routes]]\nhost = [\"svc{i}.example.com\", \"*.svc{i}.test\"]\nheaders = {{ \"x-tenant\" = \"t{i}\" }}\npool = \"app\"\n"
        ));
    }
    text.push_str("[[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\n");
    text.push_str("[pools.app]\nalgorithm = \"consistent_hash\"\nhash_key = \"cookie:sid\"\nbackends = [{ address = \"127.0.0.1:9001\" }, { address = \"127.0.0.1:9002\" }]\n");
    let config = fulcrum::config::Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
    let snapshot = fulcrum::runtime::Snapshot::build(config, None).unwrap();
    let frontend = &snapshot.frontends[0];
    let view = View {
        host: b"www.example.com:8080",
        path: b"/shop/cart",
        headers: vec![("cookie", &b"a=b; sid=42"[..]), ("x-tenant", b"t99")],
    };
    COUNTED.with(|c| c.set(true));
    let _ = fulcrum::pipeline::route(frontend, &view, false);
    let before = allocations();
    for _ in 0..5_000 {
        match fulcrum::pipeline::route(frontend, &view, false) {
            fulcrum::pipeline::Decision::Forward(f) => assert_eq!(f.route, Some(19)),
            other => panic!("{other:?}"),
        }
    }
    let after = allocations();
    assert_eq!(after - before, 0, "routing allocated");
}

#[test]
fn counting_a_request_in_the_metrics_allocates_nothing() {
    // The log phase with the access log off: the request is counted for its listener,
    // route, pool and backend (relaxed atomic adds: status class, duration, bytes, in
    // flight), nothing else.
    let text = "access_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9001\" }]\n";
    let config = fulcrum::config::Config::parse(std::path::Path::new("t.toml"), text).unwrap();
    let snapshot = fulcrum::runtime::Snapshot::build(config, None).unwrap();
    let frontend = &snapshot.frontends[0];
    let pool = &snapshot.pools[0];
    let backend = pool.balancer.backends().next().unwrap();
    let trail = fulcrum::pipeline::upstream::Trail {
        connect: Some(std::time::Duration::from_micros(80)),
        first_byte: Some(std::time::Duration::from_micros(300)),
        ..Default::default()
    };
    let request = fulcrum::pipeline::log::Request {
        frontend,
        client: "127.0.0.1:5000".parse().unwrap(),
        method: "GET",
        path: "/",
        route: Some(0),
        pool: Some(pool),
        backend: Some(backend),
        status: 200,
        retries: 0,
        grpc_status: None,
        http: "1.1",
        tls: None,
        bytes: (120, 4000),
        trail: &trail,
        started: std::time::Instant::now(),
    };
    COUNTED.with(|c| c.set(true));
    frontend.begin(Some(0));
    fulcrum::pipeline::log::request(&request);
    let before = allocations();
    for _ in 0..5_000 {
        frontend.begin(Some(0));
        pool.stats
            .upstream
            .first_byte
            .record(std::time::Duration::from_micros(300));
        fulcrum::pipeline::log::request(&request);
    }
    let after = allocations();
    assert_eq!(after - before, 0, "counting allocated");
    assert_eq!(backend.stats.requests(2), 5_001);
    assert_eq!(frontend.route_stats[0].requests(2), 5_001);
    assert_eq!(frontend.stats.bytes(), (120 * 5_001, 4000 * 5_001));
    assert_eq!(frontend.route_stats[0].in_flight(), 0);
}

#[test]
fn admitting_a_request_under_rate_and_concurrency_limits_allocates_nothing() {
    // A listener limit by client address and a route limit by API key, with a rate, a
    // concurrency and request bounds: checking keys, taking and giving back places,
    // and making room in a full key table all run in memory allocated at start.
    // The address limit has a burst larger than the loop: without one, two requests less
    // than a microsecond apart (a fast machine) are over its rate.
    let text = "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\nrate_limits = [\"ip\"]\n\
        [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\nrate_limits = [\"keys\"]\nallowed_methods = [\"GET\"]\nmax_uri_length = 100\n\
        [pools.app]\nbackends = [{ address = \"127.0.0.1:9001\" }]\n\
        [rate_limits.ip]\nrate = \"1000000/s\"\nburst = 100000\nconcurrency = 10\n\
        [rate_limits.keys]\nkey = \"header:x-api-key\"\nrate = \"1/m\"\nmax_keys = 1000\n";
    let config = fulcrum::config::Config::parse(std::path::Path::new("t.toml"), text).unwrap();
    let snapshot = fulcrum::runtime::Snapshot::build(config, None).unwrap();
    let frontend = &snapshot.frontends[0];
    let keys: Vec<Vec<u8>> = (0..5_000)
        .map(|i| format!("key-{i}").into_bytes())
        .collect();
    let views: Vec<View> = keys
        .iter()
        .map(|k| View {
            host: b"www.example.com",
            path: b"/api",
            headers: vec![("x-api-key", k.clone().leak() as &[u8])],
        })
        .collect();
    COUNTED.with(|c| c.set(true));
    let admit = |view: &View| {
        let decision = fulcrum::pipeline::route(frontend, view, false);
        fulcrum::pipeline::admit::admit(frontend, decision, view, None, false)
    };
    drop(admit(&views[0]));
    let before = allocations();
    let mut refused = 0;
    for view in &views[1..] {
        let (decision, admitted) = admit(view);
        if matches!(decision, fulcrum::pipeline::Decision::Refuse { .. }) {
            refused += 1;
        }
        drop(admitted);
    }
    let after = allocations();
    assert_eq!(refused, 0, "each key's first request passes");
    assert_eq!(after - before, 0, "admission allocated");
}
