//! The metrics of what happens around a request, checked against what real clients did:
//! HTTP bytes each way (as curl counts them), connect and first-byte times, retries
//! and the access log's reasons for them, the overload queue, requests in flight,
//! client connections open, TLS handshakes by version and their failures, HTTP/2
//! streams, and TCP connections that reached no backend.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{Backend, Fulcrum, scrape, value};

/// Scrapes until `ok` holds for the exposition (requests are counted as they end,
/// just after the client has its response); panics after 5 s.
fn scrape_until(admin: SocketAddr, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(admin);
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "never held:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bytes_upstream_times_and_retries_match_what_happened() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // "dead" refuses connections: each request that the round robin sends there is
    // retried on "a".
    let f = Fulcrum::start(&format!(
        r#"threads = 1
[admin]
bind = "127.0.0.1:0"
[access_log]
path = "{}"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
pool = "app"
[pools.app]
algorithm = "round_robin"
backends = [
  {{ name = "dead", address = "127.0.0.1:9" }},
  {{ name = "a", address = "{}" }},
]
"#,
        log.display(),
        a.addr
    ));
    let admin = f.admin_addr();
    // curl says how many bytes it sent and received (head and body).
    let (mut sent, mut received) = (0u64, 0u64);
    for i in 0..6 {
        let (code, out, err) = common::curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{size_request} %{size_header} %{size_download}",
            "--data-binary",
            &"x".repeat(100 * i),
            &f.url(&format!("/upload/{i}")),
        ]);
        assert_eq!(code, 0, "{err}");
        let n: Vec<u64> = out.split(' ').map(|n| n.parse().unwrap()).collect();
        // size_request counts the head and the body.
        sent += n[0];
        received += n[1] + n[2];
    }
    let m = scrape_until(admin, |m| {
        m.contains(r#"fulcrum_listener_requests_total{listener="web",class="2xx"} 6"#)
    });
    for series in [
        r#"fulcrum_listener_request_bytes_total{listener="web",direction="in"}"#,
        r#"fulcrum_pool_request_bytes_total{pool="app",direction="in"}"#,
        r#"fulcrum_backend_request_bytes_total{pool="app",backend="a",direction="in"}"#,
    ] {
        assert_eq!(value(&m, series), sent as f64, "{series}");
    }
    assert_eq!(
        value(
            &m,
            r#"fulcrum_listener_request_bytes_total{listener="web",direction="out"}"#
        ),
        received as f64
    );
    // Six requests, each answered by "a" (one first byte each); "dead" refused every
    // connect.
    assert_eq!(
        value(
            &m,
            r#"fulcrum_backend_first_byte_duration_seconds_count{pool="app",backend="a"}"#
        ),
        6.0
    );
    let connects = value(
        &m,
        r#"fulcrum_backend_connect_duration_seconds_count{pool="app",backend="a"}"#,
    );
    assert!((1.0..=6.0).contains(&connects), "{connects}");
    assert_eq!(
        value(
            &m,
            r#"fulcrum_backend_connect_duration_seconds_count{pool="app",backend="dead"}"#
        ),
        0.0
    );
    // Round robin sends some requests to dead first (each retry also moves it on).
    let retries = value(&m, r#"fulcrum_pool_retries_total{pool="app"}"#);
    assert!((1.0..=6.0).contains(&retries), "{retries}");
    assert_eq!(
        value(
            &m,
            r#"fulcrum_backend_retries_total{pool="app",backend="dead"}"#
        ),
        retries
    );
    assert_eq!(
        value(
            &m,
            r#"fulcrum_pool_retry_budget_refusals_total{pool="app"}"#
        ),
        0.0
    );
    assert_eq!(
        value(&m, r#"fulcrum_listener_requests_in_flight{listener="web"}"#),
        0.0
    );

    // The access log says the same, line by line.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= 6 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines.len(), 6, "{lines:?}");
    let retried: Vec<_> = lines.iter().filter(|l| l.contains(" retried=")).collect();
    assert_eq!(retried.len() as f64, retries, "{lines:#?}");
    for line in &retried {
        assert!(
            line.contains(r#"retried="dead: the backend refused the connection""#)
                && line.contains("retries=1"),
            "{line}"
        );
    }
    for line in &lines {
        assert!(line.contains(" ttfb_ms="), "{line}");
        assert!(
            line.contains(" bytes_in=") && line.contains(" bytes_out="),
            "{line}"
        );
        assert!(!line.contains("queue_ms="), "nothing queued: {line}");
    }
    assert!(
        lines.iter().any(|l| l.contains(" connect_ms=")),
        "{lines:#?}"
    );
    let logged_in: u64 = lines
        .iter()
        .map(|l| {
            let v = l.split(" bytes_in=").nth(1).unwrap();
            v.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(logged_in, sent);
}

#[test]
fn the_queue_in_flight_requests_and_open_connections_are_shown() {
    let slow = Backend::start_slow("slow", Duration::from_millis(600));
    let f = Fulcrum::start(&format!(
        r#"threads = 1
[admin]
bind = "127.0.0.1:0"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
pool = "app"
[pools.app]
max_in_flight = 1
queue = 1
backends = [{{ name = "slow", address = "{}" }}]
"#,
        slow.addr
    ));
    let admin = f.admin_addr();
    // An idle kept-alive connection (its request answered) is open and has nothing in
    // flight. (A connection that has sent nothing yet waits in the kernel: HTTP
    // listeners defer accepting until the first bytes.)
    let mut idle = TcpStream::connect(f.addr).unwrap();
    idle.write_all(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 512];
    assert!(idle.read(&mut head).unwrap() > 0);
    // Three requests at once on a backend that takes one at a time with a queue of
    // one: one served, one waits, one is refused as the queue is full.
    let url = f.url("/");
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100 * i));
                common::curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]).1
            })
        })
        .collect();
    let m = scrape_until(admin, |m| {
        m.contains(r#"fulcrum_pool_queue_depth{pool="app"} 1"#)
            && m.contains(r#"fulcrum_listener_requests_in_flight{listener="web"} 2"#)
    });
    assert_eq!(
        value(&m, r#"fulcrum_pool_requests_in_flight{pool="app"}"#),
        1.0
    );
    let open = value(&m, r#"fulcrum_listener_connections_open{listener="web"}"#);
    assert!(open >= 3.0, "{open}");
    let mut codes: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, ["200", "200", "503"]);
    let m = scrape_until(admin, |m| {
        m.contains(r#"fulcrum_listener_requests_in_flight{listener="web"} 0"#)
    });
    assert_eq!(
        value(&m, r#"fulcrum_pool_queue_wait_seconds_count{pool="app"}"#),
        1.0
    );
    let waited = value(&m, r#"fulcrum_pool_queue_wait_seconds_sum{pool="app"}"#);
    assert!(waited > 0.2, "{waited}");
    assert_eq!(
        value(
            &m,
            r#"fulcrum_pool_queue_refusals_total{pool="app",reason="full"}"#
        ),
        1.0
    );
    drop(idle);
    scrape_until(admin, |m| {
        m.contains(r#"fulcrum_listener_connections_open{listener="web"} 0"#)
    });
}

#[test]
fn tls_handshakes_by_version_and_http2_streams_are_counted() {
    let a = Backend::start("a");
    let pki = Pki::new();
    let leaf = pki.leaf("a", &["a.test"]);
    let f = Fulcrum::start(&format!(
        r#"threads = 1
[admin]
bind = "127.0.0.1:0"
[[listeners]]
name = "secure"
bind = "127.0.0.1:0"
pool = "app"
[listeners.tls]
certificates = [{{ cert = {:?}, key = {:?} }}]
[pools.app]
backends = [{{ name = "a", address = "{}" }}]
"#,
        leaf.cert, leaf.key, a.addr
    ));
    let admin = f.admin_addr();
    let port = f.addr.port();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/");
    let ca = pki.ca.display().to_string();
    let curl = |extra: &[&str]| {
        let mut args = vec!["-o", "/dev/null", "--cacert", &ca, "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        let (code, _, err) = common::curl(&args);
        assert_eq!(code, 0, "{err}");
    };
    curl(&["--tlsv1.2", "--tls-max", "1.2", "--http1.1"]);
    curl(&["--tlsv1.3", "--http1.1"]);
    curl(&["--tlsv1.3", "--http2"]);
    // Plain HTTP to the TLS port: a failed handshake.
    let mut plain = TcpStream::connect(f.addr).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = plain.read_to_end(&mut sink);

    let m = scrape_until(admin, |m| {
        m.contains(
            r#"fulcrum_listener_tls_handshake_failures_total{listener="secure",reason="error"} 1"#,
        )
    });
    let handshakes = |version: &str| {
        value(
            &m,
            &format!(
                "fulcrum_listener_tls_handshakes_total{{listener=\"secure\",version=\"{version}\"}}"
            ),
        )
    };
    assert_eq!(handshakes("TLSv1.2"), 1.0);
    assert_eq!(handshakes("TLSv1.3"), 2.0);
    assert_eq!(
        value(
            &m,
            r#"fulcrum_listener_http2_streams_total{listener="secure"}"#
        ),
        1.0
    );
}

#[test]
fn tcp_connections_that_reach_no_backend_are_counted() {
    let f = Fulcrum::start(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nname = \"db\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"db\"\n[pools.db]\nbackends = [{ name = \"d1\", address = \"127.0.0.1:9\" }]\n[pools.db.retries]\nattempts = 0\n",
    );
    for _ in 0..2 {
        let mut s = TcpStream::connect(f.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        // Closed by Fulcrum: nothing to relay to.
        let _ = s.read_to_end(&mut sink);
        assert!(sink.is_empty());
    }
    scrape_until(f.admin_addr(), |m| {
        m.contains(
            r#"fulcrum_listener_unrelayed_connections_total{listener="db",protocol="tcp"} 2"#,
        ) && m.contains(
            r#"fulcrum_listener_relayed_connections_total{listener="db",protocol="tcp"} 0"#,
        )
    });
}
