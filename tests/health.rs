//! Active health checks with real processes: a backend that dies is detected within
//! interval x fall + timeout and gets no more traffic, comes back after `rise` passed
//! checks, and backups serve only while every primary is down.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Fulcrum, raw, tally};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn pool(backends: &[(&Backend, bool)], health: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(b, backup)| {
            format!(
                "  {{ name = \"{}\", address = \"{}\", backup = {backup} }},",
                b.name, b.addr
            )
        })
        .collect();
    format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nalgorithm = \"round_robin\"\nbackends = [\n{}\n]\n[pools.app.health]\n{health}\n",
        list.join("\n")
    )
}

/// Waits until `needle` is logged; returns how long that took.
fn wait_for(f: &Fulcrum, needle: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f.log().contains(needle) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("`{needle}` not logged within {limit:?}:\n{}", f.log());
}

#[test]
fn a_dead_backend_is_detected_in_time_and_comes_back_after_rise_checks() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let c_addr = c.addr;
    let f = Fulcrum::start(&pool(
        &[(&a, false), (&b, false), (&c, false)],
        "interval = \"200ms\"\ntimeout = \"100ms\"\nfall = 3\nrise = 2",
    ));
    let before = tally(&f.url("/"), 30, &[]);
    assert_eq!(before.get("c"), Some(&10));

    drop(c);
    // interval x fall + timeout = 700 ms; the log line itself may lag a little.
    let detected = wait_for(
        &f,
        "backend is DOWN pool=app backend=c",
        Duration::from_secs(5),
    );
    assert!(
        detected <= Duration::from_millis(700 + 300),
        "detected after {detected:?}"
    );
    assert!(f.log().contains("reason=connection refused"), "{}", f.log());
    // No request goes to the dead backend any more: every one succeeds.
    let after = tally(&f.url("/"), 30, &[]);
    assert_eq!(after.get("c"), None);
    assert_eq!(after.values().sum::<usize>(), 30);

    let c = Backend::start_at("c", c_addr, Duration::ZERO);
    let back = wait_for(
        &f,
        "backend is UP pool=app backend=c",
        Duration::from_secs(5),
    );
    assert!(
        back <= Duration::from_millis(2 * 200 + 100 + 300),
        "back after {back:?}"
    );
    let again = tally(&f.url("/"), 30, &[]);
    assert_eq!(again.get("c"), Some(&10), "{again:?}");
    drop(c);
}

#[test]
fn backups_serve_only_while_every_primary_is_down() {
    let p1 = Backend::start("p1");
    let p2 = Backend::start("p2");
    let backup = Backend::start("backup");
    let (p1_addr, p2_addr) = (p1.addr, p2.addr);
    let f = Fulcrum::start(&pool(
        &[(&p1, false), (&p2, false), (&backup, true)],
        "check = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 2\nrise = 1",
    ));
    assert_eq!(tally(&f.url("/"), 20, &[]).get("backup"), None);

    drop(p1);
    wait_for(
        &f,
        "backend is DOWN pool=app backend=p1",
        Duration::from_secs(5),
    );
    let one_left = tally(&f.url("/"), 20, &[]);
    assert_eq!(one_left.get("p2"), Some(&20), "{one_left:?}");
    assert_eq!(backup.requests(), 0);

    drop(p2);
    wait_for(
        &f,
        "backend is DOWN pool=app backend=p2",
        Duration::from_secs(5),
    );
    let none_left = tally(&f.url("/"), 20, &[]);
    assert_eq!(none_left.get("backup"), Some(&20), "{none_left:?}");

    let p1 = Backend::start_at("p1", p1_addr, Duration::ZERO);
    wait_for(
        &f,
        "backend is UP pool=app backend=p1",
        Duration::from_secs(5),
    );
    let back = tally(&f.url("/"), 20, &[]);
    assert_eq!(back.get("p1"), Some(&20), "{back:?}");
    assert_eq!(backup.requests(), 20);
    drop((p1, p2_addr));
}

#[test]
fn http_checks_look_at_status_and_body_and_503_when_nothing_is_left() {
    let ok = Backend::start("ok");
    let f = Fulcrum::start(&pool(
        &[(&ok, false)],
        "path = \"/status/500\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 1",
    ));
    wait_for(
        &f,
        "backend is DOWN pool=app backend=ok",
        Duration::from_secs(5),
    );
    assert!(f.log().contains("reason=status 500"), "{}", f.log());
    let out = raw(f.addr, GET, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 503 Service Unavailable"), "{out}");

    let g = Fulcrum::start(&pool(
        &[(&ok, false)],
        "path = \"/\"\nexpect_body = \"not-my-name\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 1",
    ));
    wait_for(
        &g,
        "backend is DOWN pool=app backend=ok",
        Duration::from_secs(5),
    );
    assert!(g.log().contains("reason=body did not match"), "{}", g.log());

    let h = Fulcrum::start(&pool(
        &[(&ok, false)],
        "path = \"/\"\nexpect_body = \"ok\"\nexpect_status = \"200\"\ninterval = \"100ms\"\nfall = 1\ntimeout = \"50ms\"",
    ));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!h.log().contains("backend is DOWN"), "{}", h.log());
    assert!(raw(h.addr, GET, Duration::from_secs(5)).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn a_backend_that_hangs_fails_its_checks_by_timeout() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _held = std::thread::spawn(move || {
        let held: Vec<_> = l.incoming().take(50).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let config = format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{{ name = \"hang\", address = \"{addr}\" }}]\n[pools.app.health]\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 2\n"
    );
    let f = Fulcrum::start(&config);
    wait_for(
        &f,
        "backend is DOWN pool=app backend=hang",
        Duration::from_secs(5),
    );
    assert!(f.log().contains("reason=check timed out"), "{}", f.log());
}
