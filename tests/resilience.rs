//! Passive health (circuit breaker), overload protection, draining and slow start, with
//! real backends and the real binary.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum, client, rt};

fn pool(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("  {{ name = \"{}\", address = \"{}\" }},", b.name, b.addr))
        .collect();
    format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nalgorithm = \"round_robin\"\nbackends = [\n{}\n]\n{extra}\n",
        list.join("\n")
    )
}

/// Sends `n` GETs one after the other; returns (status, backend) of each.
fn sequential(url: &str, n: usize) -> Vec<(u16, String)> {
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..n {
            let r = c.get(url).send().await.unwrap();
            let name = r
                .headers()
                .get("x-backend")
                .map_or("-".into(), |v| v.to_str().unwrap().to_string());
            out.push((r.status().as_u16(), name));
        }
        out
    })
}

/// Sends `n` GETs at once; returns (status, headers-and-body text) of each.
fn concurrent(url: &str, n: usize) -> Vec<(u16, String)> {
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let req = c.get(url).send();
                tokio::spawn(async move {
                    let r = req.await.unwrap();
                    let status = r.status().as_u16();
                    let retry_after = r.headers().get("retry-after").is_some();
                    let body = r.text().await.unwrap();
                    (status, format!("retry-after={retry_after} {body}"))
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

fn wait_for(f: &Fulcrum, needle: &str) {
    assert!(f.wait_log(needle), "`{needle}` not logged:\n{}", f.log());
}

#[test]
fn a_backend_answering_500s_opens_its_circuit_and_probes_close_it() {
    let good = Backend::start("good");
    let bad = Backend::start("bad");
    bad.failing.store(true, Ordering::SeqCst);
    let f = Fulcrum::start(&pool(
        &[&good, &bad],
        "[pools.app.breaker]\nfailures = 3\nopen_for = \"300ms\"\nprobes = 2",
    ));
    let first = sequential(&f.url("/"), 30);
    let to_bad: Vec<_> = first.iter().filter(|(_, b)| b == "bad").collect();
    assert_eq!(
        to_bad.len(),
        3,
        "the circuit opens at the threshold: {first:?}"
    );
    assert!(to_bad.iter().all(|(s, _)| *s == 500));
    assert_eq!(first.iter().filter(|(s, _)| *s == 200).count(), 27);
    wait_for(
        &f,
        "circuit OPEN: backend ejected pool=app backend=bad reason=consecutive failures",
    );

    // The backend recovers; after the backoff, two probes succeed and close the circuit.
    bad.failing.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    let after = sequential(&f.url("/"), 20);
    assert!(after.iter().all(|(s, _)| *s == 200), "{after:?}");
    wait_for(
        &f,
        "circuit CLOSED: backend back in rotation pool=app backend=bad",
    );
    assert!(
        after.iter().filter(|(_, b)| b == "bad").count() >= 5,
        "{after:?}"
    );
}

#[test]
fn a_failed_probe_reopens_the_circuit_for_longer() {
    let good = Backend::start("good");
    let bad = Backend::start("bad");
    bad.failing.store(true, Ordering::SeqCst);
    let f = Fulcrum::start(&pool(
        &[&good, &bad],
        "[pools.app.breaker]\nfailures = 2\nopen_for = \"200ms\"\nprobes = 1",
    ));
    sequential(&f.url("/"), 10);
    wait_for(&f, "open_ms=200");
    std::thread::sleep(Duration::from_millis(300));
    sequential(&f.url("/"), 10);
    wait_for(&f, "reason=a probe request failed open_ms=400");
}

#[test]
fn a_slow_backend_with_max_in_flight_10_never_sees_more_than_10() {
    let slow = Backend::start_slow("slow", Duration::from_millis(200));
    let f = Fulcrum::start(&pool(
        &[&slow],
        "max_in_flight = 10\nqueue = 100\nqueue_timeout = \"10s\"",
    ));
    let results = concurrent(&f.url("/"), 40);
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 10);
}

#[test]
fn a_full_queue_and_a_queue_timeout_get_503_with_retry_after() {
    let slow = Backend::start_slow("slow", Duration::from_millis(1500));
    let f = Fulcrum::start(&pool(
        &[&slow],
        "max_in_flight = 1\nqueue = 1\nqueue_timeout = \"300ms\"",
    ));
    let started = Instant::now();
    let mut results = concurrent(&f.url("/"), 3);
    results.sort();
    assert_eq!(results[0].0, 200, "{results:?}");
    assert_eq!((results[1].0, results[2].0), (503, 503), "{results:?}");
    let bodies = format!("{results:?}");
    assert!(
        bodies.contains(
            "retry-after=true Service Unavailable: every backend is busy and the queue is full"
        ),
        "{bodies}"
    );
    assert!(bodies.contains("retry-after=true Service Unavailable: every backend stayed busy for the whole queue timeout"), "{bodies}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 1);
}

#[test]
fn a_draining_backend_gets_no_new_requests_and_nothing_fails() {
    // In-process, so that the test can set the backend to drain.
    let a = Backend::start_slow("a", Duration::from_millis(50));
    let b = Backend::start_slow("b", Duration::from_millis(50));
    let config = fulcrum::cli::single_pool_config(
        "127.0.0.1:0".parse().unwrap(),
        vec![a.config(false), b.config(false)],
        fulcrum::balance::Algorithm::RoundRobin,
        Some(2),
        false,
    );
    let running = fulcrum::listener::start(&config).unwrap();
    let url = format!("http://{}/", running.listeners()[0].1);
    let snapshot = running.live.snapshot();
    let pool = &snapshot.pools[0].balancer;
    let load = std::thread::spawn(move || {
        let rt = rt();
        let c = client();
        rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (c, url) = (c.clone(), url.clone());
                    tokio::spawn(async move {
                        let mut statuses = Vec::new();
                        for _ in 0..30 {
                            statuses.push(c.get(&url).send().await.unwrap().status().as_u16());
                        }
                        statuses
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let drained = pool.backends().find(|x| &*x.name == "b").unwrap();
    drained.set_draining(true);
    // Requests already sent to it finish (50 ms); after that it gets nothing new.
    std::thread::sleep(Duration::from_millis(200));
    let at_drain = b.requests();
    assert_eq!(drained.in_flight(), 0);
    let statuses = load.join().unwrap();
    assert_eq!(statuses.len(), 240);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a request failed while draining"
    );
    assert!(at_drain > 0);
    assert_eq!(
        b.requests(),
        at_drain,
        "the draining backend got new requests"
    );
    assert!(a.requests() > b.requests());
}

#[test]
fn a_recovered_backend_ramps_up_during_slow_start() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let b_addr = b.addr;
    let list = format!(
        "  {{ name = \"a\", address = \"{}\", weight = 100 }},\n  {{ name = \"b\", address = \"{}\", weight = 100 }},",
        a.addr, b.addr
    );
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nslow_start = \"2s\"\nbackends = [\n{list}\n]\n[pools.app.health]\ncheck = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 1\nrise = 1\n"
    ));
    let even = sequential(&f.url("/"), 20);
    assert_eq!(even.iter().filter(|(_, n)| n == "b").count(), 10);
    drop(b);
    wait_for(&f, "backend is DOWN pool=app backend=b");
    let _b = Backend::start_at("b", b_addr, Duration::ZERO);
    wait_for(&f, "backend is UP pool=app backend=b");
    // Weight 100 each, but b is at the start of a 2 s ramp: it gets few requests...
    let ramping = sequential(&f.url("/"), 40);
    let to_b = ramping.iter().filter(|(_, n)| n == "b").count();
    assert!(
        to_b <= 8,
        "b got {to_b} of 40 at the start of its ramp: {ramping:?}"
    );
    // ...and its full share once the ramp is over.
    std::thread::sleep(Duration::from_millis(2200));
    let ramped = sequential(&f.url("/"), 40);
    let to_b = ramped.iter().filter(|(_, n)| n == "b").count();
    // (Smooth WRR's running state may carry one pick across the window.)
    assert!((19..=21).contains(&to_b), "{ramped:?}");
}
