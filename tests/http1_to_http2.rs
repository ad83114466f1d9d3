//! HTTP/1.1 clients of listeners that route to pools speaking HTTP/2: they are served by
//! the HTTP/1.1 engine like every HTTP/1.x client (its strict parser, keep-alive,
//! `Expect`, WebSocket to HTTP/1.1 pools, access log at the end of the response), and
//! their requests reach the HTTP/2 backends through the same tries as HTTP/2 clients'.
//! Real hyper backends speaking HTTP/2 with prior knowledge, driven by curl and raw bytes.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::peers::{self, PeerServer};
use common::{Backend, Fulcrum, curl};

/// A listener whose only pool speaks HTTP/2 to `backends`.
fn h2_pool(backends: &[&Backend], extra: &str) -> Fulcrum {
    let pool = format!("http_version = \"2\"\n{extra}");
    Fulcrum::start(&common::config("", backends, &pool))
}

/// A file of `len` bytes of text, for uploads.
fn upload(dir: &tempfile::TempDir, len: usize) -> String {
    let path = dir.path().join(format!("up-{len}"));
    std::fs::write(&path, common::text(0, len)).unwrap();
    format!("@{}", path.display())
}

#[test]
fn requests_and_bodies_reach_http2_backends_with_their_framing() {
    let backend = Backend::start("h2c");
    let f = h2_pool(&[&backend], "");
    let (_, head, _) = curl(&["--http1.1", &f.url("/headers?q=1")]);
    let first = head.lines().next().unwrap();
    assert!(first.starts_with("GET http://127.0.0.1:"), "{head}");
    assert!(first.ends_with("/headers?q=1 HTTP/2.0"), "{head}");
    assert!(head.contains("via: 1.1 fulcrum\n"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1\n"), "{head}");

    // Uploads with a length (small: read first; large: streamed) and chunked.
    let dir = tempfile::tempdir().unwrap();
    let (_, out, _) = curl(&["--http1.1", "--data-binary", "hello", &f.url("/echo")]);
    assert_eq!(out, "hello");
    let big = upload(&dir, 1 << 20);
    let (_, out, _) = curl(&["--http1.1", "--data-binary", &big, &f.url("/count")]);
    assert_eq!(out, "1048576");
    let chunked = ["-H", "Transfer-Encoding: chunked", "--data-binary", &big];
    let (_, out, _) = curl(&[&["--http1.1"], &chunked[..], &[&f.url("/count")]].concat());
    assert_eq!(out, "1048576");
    // Expect: 100-continue is answered before the body is read.
    let expect = ["-v", "-H", "Expect: 100-continue", "--data-binary", &big];
    let (_, out, err) = curl(&[&["--http1.1"], &expect[..], &[&f.url("/count")]].concat());
    assert_eq!(out, "1048576");
    assert!(err.contains("HTTP/1.1 100 Continue"), "{err}");

    // Responses: a known length is sent as Content-Length, an unknown one chunked.
    let (_, out, _) = curl(&["--http1.1", "-D", "-", &f.url("/bytes/300000")]);
    assert!(
        out.contains("Content-Length: 300000\r\n"),
        "{}",
        &out[..200]
    );
    assert!(out.ends_with(&"x".repeat(100)));
    let reply = common::raw(
        f.addr,
        b"GET /events/3/20 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.contains("Transfer-Encoding: chunked\r\n"), "{reply}");
    assert!(reply.contains("data: event 2"), "{reply}");
    assert!(reply.ends_with("\r\n0\r\n\r\n"), "{reply}");
    // HEAD keeps the declared length, with no body; HTTP/1.0 gets the body up to the close.
    let reply = common::raw(
        f.addr,
        b"HEAD /bytes/1000 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.contains("content-length: 1000\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n"), "{reply}");
    let reply = common::raw(
        f.addr,
        b"GET /events/2/0 HTTP/1.0\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(!reply.contains("Transfer-Encoding"), "{reply}");
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    assert!(reply.ends_with("data: event 1\n\n"), "{reply}");
    assert!(f.wait_log("backend=h2c"), "{}", f.log());
    // The access log counts the bodies read, chunked ones included (with their framing).
    let log = f.log();
    let uploads = log
        .lines()
        .filter(|l| l.contains("path=/count"))
        .filter_map(|l| {
            l.split("bytes_in=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .filter(|&n| n > 1 << 20)
        .count();
    assert_eq!(uploads, 3, "{log}");
}

#[test]
fn kept_alive_pipelined_and_malformed_requests_are_handled_by_the_engine() {
    let backend = Backend::start("h2c");
    let f = h2_pool(&[&backend], "");
    // Three requests in one write, on one connection: a chunked POST between two GETs.
    let reply = common::raw(
        f.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 3, "{reply}");
    assert!(reply.contains("\r\n\r\nhello"), "{reply}");
    assert_eq!(backend.requests(), 3);
    // A malformed chunked body: 400, and the connection closed.
    let reply = common::raw(
        f.addr,
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(reply.contains("invalid chunked request body"), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    // The strict parser's checks: a fragment in the target is refused.
    let reply = common::raw(
        f.addr,
        b"GET /a#frag HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
}

#[test]
fn on_status_retries_http1_requests_to_http2_pools() {
    let failing = Backend::start("bad");
    failing.failing.store(true, Ordering::SeqCst);
    let good = Backend::start("good");
    let f = h2_pool(
        &[&failing, &good],
        "algorithm = \"round_robin\"\nretries = { on_status = [500], budget = 100 }",
    );
    for _ in 0..4 {
        // (Idempotent, with its body in memory: PUT may be repeated, POST may not.)
        let put = ["-X", "PUT", "--data-binary", "x"];
        let (_, out, _) = curl(&[&["--http1.1"], &put[..], &[&f.url("/")]].concat());
        assert_eq!(out, "good");
        let (_, out, _) = curl(&["--http1.1", &f.url("/")]);
        assert_eq!(out, "good");
    }
    assert!(failing.requests() > 0);
    assert!(f.wait_log("retries=1"), "{}", f.log());
}

#[test]
fn websocket_still_reaches_http1_pools_of_a_listener_that_routes_to_http2_pools() {
    let echo = PeerServer::start("ws_echo.py", &[]);
    let h2 = Backend::start("h2c");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"ws\"\n\
         [[listeners.routes]]\npath_prefix = \"/api/\"\npool = \"api\"\n\
         [pools.ws]\nbackends = [{{ name = \"ws0\", address = \"{}\" }}]\n\
         [pools.api]\nhttp_version = \"2\"\nbackends = [{{ name = \"api0\", address = \"{}\" }}]\n",
        echo.addr, h2.addr
    ));
    let out = peers::run_ok("ws_client.py", &[&format!("ws://{}/chat", f.addr)]);
    assert!(out.contains("\"ok\":true"), "{out}");
    assert!(f.wait_log("status=101"), "{}", f.log());
    let (_, out, _) = curl(&["--http1.1", &f.url("/api/x")]);
    assert_eq!(out, "h2c");
    assert!(f.wait_log("backend=api0"), "{}", f.log());
}

#[test]
fn a_head_with_as_many_headers_as_allowed_plus_a_routes_reaches_the_http2_backend() {
    // 250 header lines from the client (the limit: 256), 30 more from the route's rules,
    // and Fulcrum's forwarding headers: more than the bridge reads without allocating.
    let backend = Backend::start("h2c");
    let added: Vec<String> = (0..30)
        .map(|i| format!("\"X-Add-{i}\" = \"{i}\""))
        .collect();
    let f = Fulcrum::start(&format!(
        "threads = 1\n[limits]\nmax_headers = 256\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/\"\npool = \"app\"\nrequest_headers = {{ add = {{ {} }} }}\n\
         [pools.app]\nhttp_version = \"2\"\nbackends = [{{ address = \"{}\" }}]\n",
        added.join(", "),
        backend.addr
    ));
    let mut request =
        String::from("GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n");
    for i in 0..248 {
        request.push_str(&format!("X-Client-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let reply = common::raw(f.addr, request.as_bytes(), Duration::from_secs(5));
    assert!(
        reply.starts_with("HTTP/1.1 200 "),
        "{}",
        &reply[..reply.len().min(300)]
    );
    assert!(reply.contains("x-client-247: 247\n"), "{reply}");
    assert!(reply.contains("x-add-29: 29\n"), "{reply}");
}
