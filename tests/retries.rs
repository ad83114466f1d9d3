//! Retries: a request that fails at one backend in a way that is safe to repeat is sent to
//! another backend of the pool, within `attempts` and the pool's retry budget; requests
//! that are not idempotent, or whose body was streamed, are not once they reached a
//! backend (any request is, when the connection failed and nothing was sent); and the
//! 503 sent when no backend is available carries the pool's `unavailable_body`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Fulcrum, raw, retry_config};

/// GETs `url` `n` times, one after the other; counts the statuses, and the `x-backend`
/// of the successful responses.
fn statuses(url: &str, n: usize) -> (BTreeMap<u16, usize>, BTreeMap<String, usize>) {
    let rt = common::rt();
    let c = common::client();
    rt.block_on(async {
        let mut codes = BTreeMap::new();
        let mut names = BTreeMap::new();
        for _ in 0..n {
            let r = c.get(url).send().await.unwrap();
            *codes.entry(r.status().as_u16()).or_insert(0) += 1;
            if let Some(name) = r.headers().get("x-backend") {
                *names.entry(name.to_str().unwrap().to_string()).or_insert(0) += 1;
            }
        }
        (codes, names)
    })
}

/// A raw backend: every connection is handed to `serve` on a thread of its own; the
/// counter counts requests (heads) received.
fn raw_backend(serve: fn(std::net::TcpStream, &AtomicUsize)) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || serve(s, &counter));
        }
    });
    (addr, count)
}

/// Reads a request, then closes the connection without answering.
fn close_without_answer(mut s: std::net::TcpStream, count: &AtomicUsize) {
    let mut buf = [0u8; 4096];
    if s.read(&mut buf).unwrap_or(0) > 0 {
        count.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers every request head on the connection with `503 busy`, keeping it alive.
fn always_503(mut s: std::net::TcpStream, count: &AtomicUsize) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            count.fetch_add(1, Ordering::SeqCst);
            let answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nx-backend: busy\r\n\r\nbusy";
            if s.write_all(answer).is_err() {
                return;
            }
        }
    }
}

#[test]
fn refused_connections_are_retried_on_another_backend() {
    let live = Backend::start("live");
    let (dead, _held) = common::refused_address();
    let f = Fulcrum::start(&retry_config(
        &[("dead", dead), ("live", live.addr)],
        "budget = 100",
    ));
    let (codes, names) = statuses(&f.url("/"), 40);
    assert_eq!(codes, BTreeMap::from([(200, 40)]), "{}", f.log());
    assert_eq!(names, BTreeMap::from([("live".to_string(), 40)]));
    assert_eq!(live.requests(), 40);
    assert!(f.wait_log("from=dead to=live"), "{}", f.log());
    assert!(
        f.wait_log("backend=live status=200 retries=1"),
        "{}",
        f.log()
    );
    assert!(f.log().contains("refused"), "{}", f.log());

    // Without retries, the requests that land on the dead backend get its 502.
    let f = Fulcrum::start(&retry_config(
        &[("dead", dead), ("live", live.addr)],
        "attempts = 0",
    ));
    let (codes, _) = statuses(&f.url("/"), 40);
    assert_eq!(codes.get(&502), Some(&20), "{codes:?}");
    assert_eq!(codes.get(&200), Some(&20), "{codes:?}");
    assert!(!f.log().contains("retrying the request"), "{}", f.log());
}

#[test]
fn a_backend_closing_without_answering_is_retried_with_the_default_settings() {
    let live = Backend::start("live");
    let (closer, closed) = raw_backend(close_without_answer);
    let f = Fulcrum::start(&retry_config(
        &[("closer", closer), ("live", live.addr)],
        "",
    ));
    // 10 requests, each meeting the closing backend first (a retry advances round robin
    // too): within the default budget's 10 retries per second.
    let (codes, names) = statuses(&f.url("/"), 10);
    assert_eq!(codes, BTreeMap::from([(200, 10)]), "{}", f.log());
    assert_eq!(names, BTreeMap::from([("live".to_string(), 10)]));
    assert!(closed.load(Ordering::SeqCst) >= 5, "{}", f.log());
    assert!(f.wait_log("from=closer to=live"), "{}", f.log());
}

#[test]
fn post_is_retried_only_when_nothing_reached_a_backend() {
    // A refused connection sent nothing: any method goes to another backend, as NGINX's
    // proxy_next_upstream and HAProxy's conn-failure retries do.
    let live = Backend::start("live");
    let (dead, _held) = common::refused_address();
    let f = Fulcrum::start(&retry_config(
        &[("dead", dead), ("live", live.addr)],
        "budget = 100",
    ));
    let post =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    for _ in 0..6 {
        let out = raw(f.addr, post, Duration::from_secs(5));
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("hi"), "{out}");
    }
    assert!(f.wait_log("from=dead to=live"), "{}", f.log());

    // A backend that took the POST and closed without answering may have acted on it:
    // the client gets the 502, and the POST is not sent again.
    let (closer, asked) = raw_backend(close_without_answer);
    let f = Fulcrum::start(&retry_config(
        &[("closer", closer), ("live", live.addr)],
        "budget = 100",
    ));
    let mut codes = BTreeMap::new();
    for _ in 0..10 {
        let out = raw(f.addr, post, Duration::from_secs(5));
        let code: u16 = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        *codes.entry(code).or_insert(0) += 1;
    }
    // Round robin alternates, starting with the closing backend.
    assert_eq!(codes, BTreeMap::from([(200, 5), (502, 5)]), "{}", f.log());
    assert_eq!(asked.load(Ordering::SeqCst), 5);
    assert!(!f.log().contains("retrying the request"), "{}", f.log());
}

#[test]
fn a_request_whose_body_is_streamed_is_not_retried_once_sent() {
    let live = Backend::start("live");
    let (closer, asked) = raw_backend(close_without_answer);
    let f = Fulcrum::start(&retry_config(
        &[("closer", closer), ("live", live.addr)],
        "budget = 100",
    ));
    // The first pick is the closing backend. The PUT's body had not arrived with its head
    // (the client waits for 100 Continue), so once streamed it cannot be sent again.
    let mut s = std::net::TcpStream::connect(f.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    got.extend_from_slice(&buf[..n]);
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"hi").unwrap();
    let _ = s.read_to_end(&mut got);
    let out = String::from_utf8_lossy(&got);
    assert!(out.contains("HTTP/1.1 502 Bad Gateway"), "{out}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // Round robin: the next request would go to the live backend, the one after that to
    // the closing one. A PUT that arrives whole is retried.
    assert_eq!(statuses(&f.url("/"), 1).0.get(&200), Some(&1));
    let put = b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let out = raw(f.addr, put, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with("hi"), "{out}");
    assert!(f.wait_log("from=closer to=live"), "{}", f.log());
}

#[test]
fn statuses_in_on_status_are_retried_and_never_reach_the_client() {
    let ok = Backend::start("ok");
    let (busy, asked) = raw_backend(always_503);
    let f = Fulcrum::start(&retry_config(
        &[("busy", busy), ("ok", ok.addr)],
        "on_status = [503]\nbudget = 100",
    ));
    let rt = common::rt();
    let c = common::client();
    rt.block_on(async {
        for _ in 0..20 {
            let r = c.get(f.url("/")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", f.log());
            assert_eq!(r.headers()["x-backend"], "ok");
            assert_eq!(r.text().await.unwrap(), "ok");
        }
    });
    assert!(asked.load(Ordering::SeqCst) >= 10, "{}", f.log());
    assert_eq!(ok.requests(), 20);
    assert!(f.wait_log("from=busy to=ok"), "{}", f.log());
    assert!(f.log().contains("the backend answered 503"), "{}", f.log());

    // Without on_status, the backend's 503 is relayed.
    let f = Fulcrum::start(&retry_config(&[("busy", busy), ("ok", ok.addr)], ""));
    let (codes, _) = statuses(&f.url("/"), 10);
    assert_eq!(codes, BTreeMap::from([(200, 5), (503, 5)]), "{}", f.log());
}

#[test]
fn an_empty_budget_allows_no_retry() {
    // A backend that takes the request and hangs up: a retry would cost the backends
    // work, so it draws on the budget.
    let live = Backend::start("live");
    let (dead, _) = raw_backend(close_without_answer);
    let f = Fulcrum::start(&retry_config(
        &[("dead", dead), ("live", live.addr)],
        "attempts = 10\nbudget = 0\nmin_per_second = 0",
    ));
    let (codes, _) = statuses(&f.url("/"), 20);
    assert_eq!(codes, BTreeMap::from([(200, 10), (502, 10)]), "{}", f.log());
    assert!(!f.log().contains("retrying the request"), "{}", f.log());
}

#[test]
fn the_budget_limits_retries() {
    let live = Backend::start("live");
    let (dead, _) = raw_backend(close_without_answer);
    // 5 retries per second at most, and no share of the requests: the first requests
    // meet the dead backend first and are retried until the budget runs out; then the
    // requests that land on the dead backend get its 502.
    let f = Fulcrum::start(&retry_config(
        &[("dead", dead), ("live", live.addr)],
        "budget = 0\nmin_per_second = 5",
    ));
    let started = std::time::Instant::now();
    let (codes, _) = statuses(&f.url("/"), 20);
    let refill = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(codes.get(&502).copied().unwrap_or(0) >= 3, "{codes:?}");
    assert!(codes.get(&200).copied().unwrap_or(0) >= 5, "{codes:?}");
    std::thread::sleep(Duration::from_millis(200));
    let retried = f.log().matches("retrying the request").count();
    assert!(
        retried >= 5 && retried <= 5 + refill,
        "{retried} retries: {}",
        f.log()
    );
}

#[test]
fn unavailable_body_is_sent_with_the_503() {
    let only = Backend::start("only");
    let mut config = fulcrum::cli::single_pool_config(
        "127.0.0.1:0".parse().unwrap(),
        vec![only.config(false)],
        fulcrum::balance::Algorithm::RoundRobin,
        Some(1),
        false,
    );
    config.pools[0].unavailable_body = Some("We'll be back soon.\n".into());
    let running = fulcrum::listener::start(&config).unwrap();
    let addr = running.listeners()[0].1;
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for b in running.live.snapshot().pools[0].balancer.backends() {
        b.set_available(false);
    }
    let out = raw(addr, get, Duration::from_secs(5));
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{out}"
    );
    assert!(head.contains("Content-Type: text/plain"), "{out}");
    assert!(head.contains("Connection: close"), "{out}");
    assert!(head.contains("Content-Length: 20"), "{out}");
    assert_eq!(body, "We'll be back soon.\n");
}

#[test]
fn refused_connections_are_retried_whatever_the_budget() {
    // Nothing reached the dead backend, so sending the request elsewhere adds no load:
    // such retries do not draw on the budget (still bounded by `attempts`).
    let live = Backend::start("live");
    let (dead, _held) = common::refused_address();
    let f = Fulcrum::start(&retry_config(
        &[("dead", dead), ("live", live.addr)],
        "budget = 0\nmin_per_second = 0",
    ));
    let (codes, _) = statuses(&f.url("/"), 20);
    assert_eq!(codes, BTreeMap::from([(200, 20)]), "{}", f.log());
    assert!(f.log().contains("retrying the request"), "{}", f.log());
}
