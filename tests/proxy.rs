//! The HTTP/1.1 proxy with real hyper backends and real clients (reqwest, curl, raw TCP).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Backend, Fulcrum, client, config, raw, rt};

#[test]
fn forwards_requests_and_adds_forwarding_headers() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let head = raw(
        f.addr,
        b"GET /headers?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nKeep-Alive: 5\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("x-backend: b1"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    let seen = b.last_head.lock().unwrap().clone();
    assert!(seen.starts_with("GET /headers?q=1 HTTP/1.1"), "{seen}");
    assert!(seen.contains("host: example.test"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http"),
        "{seen}"
    );
    assert!(seen.contains("via: 1.1 fulcrum"), "{seen}");
    assert!(
        !seen.contains("x-secret"),
        "hop-by-hop header forwarded: {seen}"
    );
    assert!(!seen.contains("keep-alive"), "{seen}");
    assert!(
        f.wait_log("backend=b1 status=200"),
        "access log: {}",
        f.log()
    );
}

#[test]
fn keeps_client_connections_alive_and_pools_backend_connections() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let mut pipelined = Vec::new();
    for _ in 0..3 {
        pipelined.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    pipelined.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let out = raw(f.addr, &pipelined, Duration::from_secs(5));
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 4, "{out}");
    assert_eq!(b.requests(), 4);

    let rt = rt();
    let c = client();
    rt.block_on(async {
        for i in 0..50 {
            let body = c
                .get(f.url("/"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(body, "b1", "request {i}");
        }
    });
    assert_eq!(b.requests(), 54);
}

#[test]
fn forwards_bodies_both_ways() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let payload = "x".repeat(300_000);
        let r = c
            .post(f.url("/echo"))
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), payload);

        // A chunked upload (no length known in advance).
        let chunks: Vec<Result<String, std::io::Error>> =
            (0..100).map(|i| Ok(format!("chunk-{i};"))).collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let r = c.post(f.url("/echo")).body(body).send().await.unwrap();
        let text = r.text().await.unwrap();
        assert!(text.starts_with("chunk-0;chunk-1;") && text.ends_with("chunk-99;"));
    });
}

#[test]
fn raw_chunked_request_and_head_request() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let out = raw(
        f.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\nHEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let (first, second) = out
        .split_once("HTTP/1.1 200 OK")
        .unwrap()
        .1
        .split_once("HTTP/1.1 200 OK")
        .unwrap();
    assert!(first.ends_with("hello world"), "{first}");
    assert!(
        second.contains("content-length: 1000") || second.contains("Content-Length: 1000"),
        "{second}"
    );
    assert!(
        second.ends_with("\r\n\r\n"),
        "HEAD response has a body: {second:?}"
    );
}

#[test]
fn expect_100_continue_with_curl() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, vec![b'z'; 2 * 1024 * 1024]).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--expect100-timeout",
            "10",
            "-H",
            "Expect: 100-continue",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(f.url("/count"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2097152");
}

#[test]
fn http10_client_gets_an_unchunked_close_delimited_response() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    // hyper answers a streamed body without a length with chunked encoding to Fulcrum;
    // an HTTP/1.0 client must get the plain bytes.
    let out = raw(
        f.addr,
        b"POST /echo HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        Duration::from_secs(5),
    );
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nabc"), "{out}");
}

#[test]
fn http10_request_without_host_gets_one() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let out = raw(
        f.addr,
        b"GET /headers HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
    let seen = b.last_head.lock().unwrap().clone();
    assert!(seen.contains(&format!("host: {}", f.addr)), "{seen}");
}

#[test]
fn a_slow_upload_is_not_cut_by_the_request_timeout() {
    use std::io::{Read, Write};
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("[timeouts]\nrequest = \"500ms\"", &[&b], ""));
    let mut s = std::net::TcpStream::connect(f.addr).unwrap();
    s.write_all(
        b"POST /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 40\r\n\r\n",
    )
    .unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(b"0123456789").unwrap();
    }
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with("40"), "{out}");
}

#[test]
fn max_connections_holds_extra_clients_in_the_accept_queue() {
    use std::io::{Read, Write};
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("[limits]\nmax_connections = 1", &[&b], ""));
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = std::net::TcpStream::connect(f.addr).unwrap();
    first.write_all(get).unwrap();
    let mut buf = [0u8; 1024];
    assert!(first.read(&mut buf).unwrap() > 0);
    // The first client keeps its connection: the second waits, unanswered.
    let mut second = std::net::TcpStream::connect(f.addr).unwrap();
    second.write_all(get).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        second.read(&mut buf).is_err(),
        "second client served beyond the limit"
    );
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = second.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    use std::io::{Read, Write};
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("[timeouts]\nidle = \"300ms\"", &[&b], ""));
    let mut s = std::net::TcpStream::connect(f.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    assert!(s.read(&mut buf).unwrap() > 0);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(s.read(&mut buf).unwrap(), 0, "connection not closed");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn several_worker_threads_share_the_traffic() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let f = Fulcrum::start(
        &config("", &[&a, &b], "algorithm = \"round_robin\"").replace("threads = 1", "threads = 4"),
    );
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, url) = (c.clone(), f.url("/"));
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    let r = c
                        .get(&url)
                        .header("connection", "close")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!((a.requests(), b.requests()), (100, 100));
    assert!(f.log().contains("threads=4"), "{}", f.log());
}
