//! Errors a user can read: 502 when the backend refuses or resets, 504 on timeout, 503
//! when the pool has no backend left; never a hang.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum, raw};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

fn pool_config(top: &str, address: &str) -> String {
    format!(
        "threads = 1\n{top}\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\n[pools.app]\nbackends = [{{ address = \"{address}\" }}]\n"
    )
}

#[test]
fn refused_connection_is_502() {
    let (port, _held) = common::refused_address();
    let f = Fulcrum::start(&pool_config("", &port.to_string()));
    let out = raw(f.addr, GET, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 502 Bad Gateway"), "{out}");
    assert!(out.contains("refused"), "{out}");
    assert!(f.wait_log("backend=127.0.0.1"), "{}", f.log());
    assert!(f.wait_log("status=502"), "{}", f.log());
}

#[test]
fn reset_before_response_is_502() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            drop(s); // close without answering
        }
    });
    let f = Fulcrum::start(&pool_config("", &addr.to_string()));
    let out = raw(f.addr, GET, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 502 Bad Gateway"), "{out}");
    assert!(out.contains("the backend"), "{out}");
}

#[test]
fn silent_backend_is_504_after_the_request_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _keep = std::thread::spawn(move || {
        let held: Vec<_> = l.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let f = Fulcrum::start(&pool_config(
        "[timeouts]\nrequest = \"500ms\"",
        &addr.to_string(),
    ));
    let started = Instant::now();
    let out = raw(f.addr, GET, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 504 Gateway Timeout"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn unreachable_backend_is_504_after_the_connect_timeout() {
    // A listener whose accept queue is full drops new SYNs, so connecting hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let f = Fulcrum::start(&pool_config(
        "[timeouts]\nconnect = \"300ms\"",
        &addr.to_string(),
    ));
    let out = raw(f.addr, GET, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 504 Gateway Timeout"), "{out}");
    assert!(out.contains("connecting"), "{out}");
}

#[test]
fn backup_serves_only_while_primaries_are_down_then_503() {
    // In-process, so that the test can take backends out of service.
    let primary = Backend::start("primary");
    let backup = Backend::start("backup");
    let config = fulcrum::cli::single_pool_config(
        "127.0.0.1:0".parse().unwrap(),
        vec![primary.config(false), backup.config(true)],
        fulcrum::balance::Algorithm::RoundRobin,
        Some(1),
        false,
    );
    let running = fulcrum::listener::start(&config).unwrap();
    let url = format!("http://{}/", running.listeners()[0].1);
    assert_eq!(common::tally(&url, 10, &[]).get("primary"), Some(&10));
    assert_eq!(backup.requests(), 0);

    let snapshot = running.live.snapshot();
    let pool = &snapshot.pools[0].balancer;
    pool.backends()
        .find(|b| !b.is_backup())
        .unwrap()
        .set_available(false);
    assert_eq!(common::tally(&url, 10, &[]).get("backup"), Some(&10));

    for b in pool.backends() {
        b.set_available(false);
    }
    let out = raw(running.listeners()[0].1, GET, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 503 Service Unavailable"), "{out}");
    assert!(out.contains("no backend is available"), "{out}");
}
