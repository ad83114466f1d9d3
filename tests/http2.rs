//! HTTP/2 through the real binary: from clients over TLS (ALPN) and in clear text (prior
//! knowledge), to HTTP/1.1 and HTTP/2 backends, with the stream limit and flow control
//! respected; driven by curl and by hyper's HTTP/2 client.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;

use std::time::Duration;

use bytes::Bytes;
use common::pki::Pki;
use common::{Backend, Fulcrum};
use http_body_util::{BodyExt, Empty};

/// curl with `args`; returns stdout (body, then whatever `-w` adds).
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn tls_listener(pki: &Pki, backends: &[&Backend], pool_extra: &str) -> (Fulcrum, String) {
    let a = pki.leaf("a", &["a.test"]);
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name, b.addr))
        .collect();
    let config = format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n\n[pools.app]\nbackends = [{}]\n{pool_extra}\n",
        a.cert,
        a.key,
        list.join(", ")
    );
    let f = Fulcrum::start(&config);
    let resolve = format!("a.test:{}:127.0.0.1", f.addr.port());
    (f, resolve)
}

#[test]
fn http2_over_tls_with_alpn_and_in_clear_text_with_prior_knowledge() {
    let pki = Pki::new();
    let backend = Backend::start("app1");
    let (f, resolve) = tls_listener(&pki, &[&backend], "");
    let ca = pki.ca.to_str().unwrap();
    let url = format!("https://a.test:{}/headers", f.addr.port());
    let out = curl(&[
        "--http2",
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert!(out.ends_with("\n2"), "{out}");
    // The HTTP/1.1 backend got an HTTP/1.1 request with the forwarding headers.
    assert!(out.starts_with("GET /headers HTTP/1.1"), "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");
    assert!(out.contains("x-forwarded-for: 127.0.0.1"), "{out}");
    assert!(out.contains("via: 2 fulcrum"), "{out}");
    assert!(out.contains("host: a.test:"), "{out}");
    // HTTP/1.1 is still offered.
    let out = curl(&[
        "--http1.1",
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert!(out.ends_with("\n1.1"), "{out}");

    let plain = Fulcrum::start(&common::config("", &[&backend], ""));
    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        &plain.url("/headers"),
    ]);
    assert!(out.ends_with("\n2"), "{out}");
    assert!(out.contains("x-forwarded-proto: http\n"), "{out}");
    // A request body goes through intact.
    let body = "x".repeat(100_000);
    let out = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &body,
        &plain.url("/echo"),
    ]);
    assert_eq!(out.len(), body.len());
}

#[test]
fn http2_to_backends_in_clear_text_and_over_tls() {
    let backend = Backend::start("h2c");
    let f = Fulcrum::start(&common::config("", &[&backend], "http_version = \"2\""));
    // HTTP/2 and HTTP/1.1 clients alike reach the backend over HTTP/2.
    for version in ["--http2-prior-knowledge", "--http1.1"] {
        let out = curl(&[version, &f.url("/headers?q=1")]);
        // (hyper shows an HTTP/2 request's target in absolute form.)
        let first = out.lines().next().unwrap();
        assert!(
            first.starts_with("GET http://127.0.0.1:"),
            "{version}: {out}"
        );
        assert!(first.ends_with("/headers?q=1 HTTP/2.0"), "{version}: {out}");
        assert!(out.contains("x-forwarded-for: 127.0.0.1"), "{out}");
        assert!(
            out.contains("forwarded: for=127.0.0.1;proto=http\n"),
            "{out}"
        );
    }
    let out = curl(&["--http1.1", "--data-binary", "hello", &f.url("/echo")]);
    assert_eq!(out, "hello");

    let pki = Pki::new();
    let back = pki.leaf("back", &["127.0.0.1"]);
    let secure = Backend::start_tls("h2tls", back.server_config(&["h2"]));
    let extra = format!("http_version = \"2\"\ntls = {{ ca = {:?} }}", pki.ca);
    let f = Fulcrum::start(&common::config("", &[&secure], &extra));
    let out = curl(&["--http2-prior-knowledge", &f.url("/headers")]);
    assert!(
        out.lines().next().unwrap().ends_with("/headers HTTP/2.0"),
        "{out}"
    );
    assert!(out.contains("x-forwarded-proto: http\n"), "{out}");
}

#[test]
fn expect_100_continue_over_http2_gets_its_interim_response() {
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config("", &[&backend], ""));
    let body = "x".repeat(2000);
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20", "--http2-prior-knowledge"])
        .args(["-H", "Expect: 100-continue", "--data-binary", &body])
        .arg(f.url("/echo"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // The client waited for the interim response, then sent its body.
    assert!(stderr.contains("< HTTP/2 100"), "{stderr}");
    assert!(stderr.contains("< HTTP/2 200"), "{stderr}");
    assert_eq!(stdout, body);
    // The backend did not see the client's Expect (its hop ends at Fulcrum).
    let head = backend.last_head.lock().unwrap().clone();
    assert!(!head.to_ascii_lowercase().contains("expect:"), "{head}");
}

/// Sends a GET for each of `paths` at once, each on its own stream of `sender`'s
/// connection; returns each response's status and body, in order.
async fn concurrent_gets(
    sender: &hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    paths: Vec<String>,
) -> Vec<(u16, String)> {
    let mut calls = Vec::new();
    for path in paths {
        let mut sender = sender.clone();
        calls.push(tokio::spawn(async move {
            let req = hyper::Request::get(format!("http://a.test{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).to_string())
        }));
    }
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[test]
fn the_stream_limit_is_respected() {
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config(
        "[limits]\nmax_concurrent_streams = 4",
        &[&backend],
        "",
    ));
    let rt = common::rt();
    let statuses = rt.block_on(async {
        let mut sender = common::h2_client::<Empty<Bytes>>(f.addr).await;
        // Before the server's SETTINGS arrive a client may open more streams; those are
        // refused (REFUSED_STREAM, safe to retry). One exchange first, so they have.
        let req = hyper::Request::get("http://a.test/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let _ = sender.send_request(req).await.unwrap();
        let paths = vec!["/slow/150".to_string(); 20];
        concurrent_gets(&sender, paths).await
    });
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    // 20 requests, never more than 4 at once at the backend.
    assert_eq!(backend.requests(), 21);
    assert!(backend.max_in_flight.load(Ordering::SeqCst) <= 4);
    assert!(backend.max_in_flight.load(Ordering::SeqCst) >= 2);
}

#[test]
fn flow_control_carries_large_bodies_both_ways_in_bounded_memory() {
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config("", &[&backend], ""));
    let size = 256u64 << 20;
    // Download: 256 MiB through one stream, with the client reading slowly at first.
    let out = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &f.url(&format!("/bytes/{size}")),
    ]);
    assert_eq!(out, size.to_string());
    // Upload: 64 MiB from a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up");
    std::fs::write(&file, vec![b'u'; 64 << 20]).unwrap();
    let out = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &format!("@{}", file.display()),
        &f.url("/count"),
    ]);
    assert_eq!(out, (64u64 << 20).to_string());
    let rss = f.peak_rss_kib();
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
}

#[test]
fn many_streams_on_one_connection_are_balanced_and_isolated() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let f = Fulcrum::start(&common::config(
        "",
        &[&a, &b],
        "algorithm = \"round_robin\"",
    ));
    let rt = common::rt();
    let names = rt.block_on(async {
        let sender = common::h2_client::<Empty<Bytes>>(f.addr).await;
        let paths = (0..40)
            .map(|i| if i % 10 == 0 { "/status/500" } else { "/" }.to_string())
            .collect();
        concurrent_gets(&sender, paths).await
    });
    let errors = names.iter().filter(|(s, _)| *s == 500).count();
    assert_eq!(errors, 4, "{names:?}");
    let on_a = names.iter().filter(|(_, n)| n == "a").count();
    assert_eq!(on_a, 20, "{names:?}");
}

#[test]
fn idle_http2_connections_are_closed_and_cookies_are_joined_for_http1_backends() {
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config(
        "[timeouts]\nidle = \"1s\"\nrequest_header = \"1s\"",
        &[&backend],
        "",
    ));
    let rt = common::rt();
    rt.block_on(async {
        let mut sender = common::h2_client::<Empty<Bytes>>(f.addr).await;
        let req = hyper::Request::get("http://a.test/headers")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let head = resp.into_body().collect().await.unwrap().to_bytes();
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(head.contains("cookie: a=1; b=2\n"), "{head}");
        // Nothing in progress for the idle timeout: GOAWAY, then closed.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert!(sender.is_closed(), "the idle connection is still open");
    });
    // A connection to a pool that speaks HTTP/2 that never sends anything.
    let h2pool = Fulcrum::start(&common::config(
        "[timeouts]\nrequest_header = \"1s\"",
        &[&backend],
        "http_version = \"2\"",
    ));
    let mut silent = std::net::TcpStream::connect(h2pool.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    use std::io::Read;
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// A backend of raw HTTP/1.1: `GET /stall` gets a head that promises 1000 bytes, 10 of
/// them, then nothing (the connection held 20 s); `GET /pause` gets 10 bytes, a 7 s
/// pause, then the other 10; anything else gets `ok`.
fn stalling_backend() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    head.clear();
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    if head.starts_with(b"GET /stall") {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789",
                        );
                        std::thread::sleep(Duration::from_secs(20));
                        return;
                    }
                    if head.starts_with(b"GET /pause") {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n0123456789");
                        std::thread::sleep(Duration::from_secs(7));
                        let _ = conn.write_all(b"abcdefghij");
                        continue;
                    }
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                }
            });
        }
    });
    addr
}

#[test]
fn stalled_http2_responses_and_uploads_end_after_the_idle_timeout() {
    // A response body the backend stops sending: its stream is reset once `idle` passes
    // with nothing sent; the connection's other streams go on.
    let raw = stalling_backend();
    let f = Fulcrum::start(&format!(
        "threads = 1\n[timeouts]\nidle = \"1s\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{{ address = \"{raw}\" }}]\n"
    ));
    let get = |path: &str| {
        hyper::Request::get(format!("http://a.test{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let rt = common::rt();
    rt.block_on(async {
        let mut sender = common::h2_client::<Empty<Bytes>>(f.addr).await;
        let started = std::time::Instant::now();
        let resp = sender.send_request(get("/stall")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.into_body().collect().await.is_err(),
            "the stalled body ended cleanly"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
        let resp = sender.send_request(get("/fine")).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    });
    // A request body the client stops sending (no declared length, so it streams to
    // the backend): 408 once `idle` passes, as on the HTTP/1.1 engine.
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config(
        "[timeouts]\nidle = \"1s\"",
        &[&backend],
        "",
    ));
    rt.block_on(async {
        use futures_util::StreamExt as _;
        type Chunk = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;
        let first: Chunk = Ok(hyper::body::Frame::data(Bytes::from_static(b"part of it")));
        let frames = futures_util::stream::iter([first]).chain(futures_util::stream::pending());
        let body = http_body_util::StreamBody::new(frames);
        let mut sender = common::h2_client(f.addr).await;
        let started = std::time::Instant::now();
        let req = hyper::Request::post("http://a.test/echo")
            .body(body)
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 408);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    });
}

#[test]
fn http1_requests_with_a_length_and_chunks_are_refused_on_listeners_to_http2_pools() {
    // HTTP/1.1 clients are read by the HTTP/1.1 engine's strict parser whatever the
    // pool speaks: Content-Length with Transfer-Encoding is refused, the connection
    // closed, and what followed is never read as a request.
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config("", &[&backend], "http_version = \"2\""));
    let out = common::raw(
        f.addr,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(3),
    );
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(
        out.contains("both Content-Length and Transfer-Encoding"),
        "{out}"
    );
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert_eq!(backend.requests(), 0);
}

#[test]
fn a_response_pausing_for_less_than_the_idle_timeout_is_not_reset() {
    // idle 10 s: a 7 s pause in a response body (longer than the buffers' two-second
    // wakes, shorter than idle) is waited out.
    let raw = stalling_backend();
    let f = Fulcrum::start(&format!(
        "threads = 1\n[timeouts]\nidle = \"10s\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{{ address = \"{raw}\" }}]\n"
    ));
    common::rt().block_on(async {
        let mut sender = common::h2_client::<Empty<Bytes>>(f.addr).await;
        let req = hyper::Request::get("http://a.test/pause")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"0123456789abcdefghij");
    });
}
