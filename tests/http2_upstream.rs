//! HTTP/2 clients reach HTTP/1.1 backends over the HTTP/1.1 engine's own backend
//! connections, with its rules: a try that got no answer, or a status in `on_status`, is
//! repeated on another backend for an idempotent request whose body is in memory; a
//! request whose body streams (no declared length) is sent once and arrives whole; and a
//! kept backend connection serves HTTP/1.1 and HTTP/2 clients alike.

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Backend, Fulcrum, retry_config};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

type Body = BoxBody<Bytes, Infallible>;

/// Sends `method path` with `body` on `sender`; the status, `x-backend` and body.
async fn send(
    sender: &mut hyper::client::conn::http2::SendRequest<Body>,
    method: &str,
    path: &str,
    body: Body,
) -> (u16, String, String) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://app.test{path}"))
        .body(body)
        .unwrap();
    sender.ready().await.unwrap();
    let r = sender.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    let backend = r
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.into_body().collect().await.unwrap().to_bytes();
    (status, backend, String::from_utf8_lossy(&text).into_owned())
}

fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// A raw backend: every connection goes to `serve` on its own thread; the first counter
/// counts connections, the second requests.
fn raw_backend(
    serve: fn(std::net::TcpStream, &AtomicUsize),
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (conns, count) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (Arc::clone(&conns), Arc::clone(&count));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let r = Arc::clone(&r);
            std::thread::spawn(move || serve(s, &r));
        }
    });
    (addr, conns, count)
}

/// Reads a request, then closes the connection without answering.
fn close_without_answer(mut s: std::net::TcpStream, count: &AtomicUsize) {
    let mut buf = [0u8; 4096];
    if s.read(&mut buf).unwrap_or(0) > 0 {
        count.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers each request head with `status` (body `raw`), keeping the connection; a
/// request's body, if it declares a length, is read first.
fn answer(mut s: std::net::TcpStream, count: &AtomicUsize, status: &str) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if pending.len() < end + 4 + length {
                break;
            }
            pending.drain(..end + 4 + length);
            count.fetch_add(1, Ordering::SeqCst);
            // A chunked body is not read: answered, and the connection closed.
            let chunked = head.contains("transfer-encoding: chunked");
            let close = if chunked { "Connection: close\r\n" } else { "" };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Length: 3\r\nx-backend: raw\r\n{close}\r\nraw"
            );
            if s.write_all(answer.as_bytes()).is_err() || chunked {
                return;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

fn always_503(s: std::net::TcpStream, count: &AtomicUsize) {
    answer(s, count, "503 Service Unavailable");
}

fn always_200(s: std::net::TcpStream, count: &AtomicUsize) {
    answer(s, count, "200 OK");
}

#[test]
fn a_backend_closing_without_answering_is_retried_for_http2_clients() {
    let live = Backend::start("live");
    let (closer, _, closed) = raw_backend(close_without_answer);
    let f = Fulcrum::start(&retry_config(
        &[("closer", closer), ("live", live.addr)],
        "budget = 100",
    ));
    common::rt().block_on(async {
        let mut c = common::h2_client::<Body>(f.addr).await;
        for _ in 0..10 {
            let (status, backend, _) = send(&mut c, "GET", "/", empty()).await;
            assert_eq!((status, backend.as_str()), (200, "live"), "{}", f.log());
        }
    });
    assert!(closed.load(Ordering::SeqCst) >= 5, "{}", f.log());
    assert!(f.wait_log("from=closer to=live"), "{}", f.log());
    assert!(f.wait_log("http=2"), "{}", f.log());
}

/// A backend that answers 503 and one that answers, round robin, with `on_status =
/// [503]`; the counter counts the 503s' requests.
fn busy_then_ok() -> (Backend, Arc<AtomicUsize>, Fulcrum) {
    let ok = Backend::start("ok");
    let (busy, _, asked) = raw_backend(always_503);
    let f = Fulcrum::start(&retry_config(
        &[("busy", busy), ("ok", ok.addr)],
        "on_status = [503]\nbudget = 100",
    ));
    (ok, asked, f)
}

#[test]
fn on_status_is_applied_for_http2_clients_with_bodies_in_memory() {
    let (_ok, asked, f) = busy_then_ok();
    common::rt().block_on(async {
        let mut c = common::h2_client::<Body>(f.addr).await;
        for _ in 0..10 {
            let (status, backend, text) = send(&mut c, "GET", "/", empty()).await;
            assert_eq!(
                (status, &*backend, &*text),
                (200, "ok", "ok"),
                "{}",
                f.log()
            );
        }
        // A PUT with a declared body is idempotent and in memory: retried, body whole.
        for i in 0..6 {
            let body = format!("payload {i}");
            let (status, backend, text) = send(
                &mut c,
                "PUT",
                "/echo",
                Full::new(Bytes::from(body.clone())).boxed(),
            )
            .await;
            assert_eq!((status, &*backend, text), (200, "ok", body), "{}", f.log());
        }
        // A POST is not idempotent: the backend's 503 is the answer when it lands there.
        let mut codes = std::collections::BTreeMap::new();
        for _ in 0..10 {
            let body = Full::new(Bytes::from_static(b"x")).boxed();
            let (status, _, _) = send(&mut c, "POST", "/echo", body).await;
            *codes.entry(status).or_insert(0) += 1;
        }
        assert_eq!(codes, [(200, 5), (503, 5)].into(), "{}", f.log());
    });
    assert!(asked.load(Ordering::SeqCst) >= 13, "{}", f.log());
    assert!(f.wait_log("the backend answered 503"), "{}", f.log());
}

#[test]
fn a_streamed_body_arrives_whole_and_is_sent_once() {
    let (ok, asked, f) = busy_then_ok();
    common::rt().block_on(async {
        let mut c = common::h2_client::<Body>(f.addr).await;
        let mut codes = std::collections::BTreeMap::new();
        for _ in 0..4 {
            // 200 frames of 1 KiB, no content-length: chunked to the backend.
            let frames =
                (0..200).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'a'; 1024]))));
            let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
            let (status, _, text) = send(&mut c, "PUT", "/count", body).await;
            if status == 200 {
                assert_eq!(text, "204800", "{}", f.log());
            }
            *codes.entry(status).or_insert(0) += 1;
        }
        // Streamed: never repeated, so the busy backend's 503 reaches the client.
        assert_eq!(codes, [(200, 2), (503, 2)].into(), "{}", f.log());
    });
    assert_eq!(asked.load(Ordering::SeqCst), 2, "{}", f.log());
    let head = ok.last_head.lock().unwrap().clone();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
}

#[test]
fn http1_and_http2_clients_share_kept_backend_connections() {
    let (raw, conns, requests) = raw_backend(always_200);
    let f = Fulcrum::start(&retry_config(&[("raw", raw)], ""));
    let rt = common::rt();
    let c = common::client();
    rt.block_on(async {
        let mut h2c = common::h2_client::<Body>(f.addr).await;
        for _ in 0..5 {
            let r = c.get(f.url("/")).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), "raw");
            let (status, _, text) = send(&mut h2c, "GET", "/", empty()).await;
            assert_eq!((status, &*text), (200, "raw"), "{}", f.log());
        }
    });
    assert_eq!(requests.load(Ordering::SeqCst), 10);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one kept connection for both"
    );
}

/// Answers one request (keep-alive), then closes the connection 200 ms later, as a
/// backend's keep-alive timeout does.
fn answer_once_then_close(mut s: std::net::TcpStream, count: &AtomicUsize) {
    let mut buf = [0u8; 4096];
    if s.read(&mut buf).unwrap_or(0) > 0 {
        count.fetch_add(1, Ordering::SeqCst);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn kept_connections_their_backend_closed_are_closed_by_the_sweep() {
    let (raw, conns, _) = raw_backend(answer_once_then_close);
    let f = Fulcrum::start(&retry_config(&[("raw", raw)], ""));
    let pid = format!("pid={},", f.child.id());
    let peer = raw.to_string();
    // The connections to the backend this process holds, as `ss` lists them.
    let held = || -> Vec<String> {
        let ss = std::process::Command::new("ss")
            .args(["-tanp"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&ss.stdout)
            .lines()
            .filter(|l| l.contains(&pid) && l.contains(&peer))
            .map(str::to_owned)
            .collect()
    };
    for h2 in [false, true] {
        let mut args = vec!["-s"];
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        let url = f.url("/");
        args.push(&url);
        assert_eq!(common::code(&args), "200", "{}", f.log());
        // Past the backend's close, and within a sweep (5 s), nothing is left open.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        while !held().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(held(), Vec::<String>::new(), "h2={h2}");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
