//! Rate and concurrency limits with real clients: a flood from 50 client addresses
//! (127.0.0.0/8) at ten times the limit passes at the limit's rate while a client under
//! the limit is never refused; refusals are 429s with `Retry-After` and the
//! `RateLimit-*` headers, over HTTP/1.1 and HTTP/2; limits keyed by an API key header;
//! concurrency limits; delaying instead of refusing; per-client connection limits on
//! HTTP and TCP listeners; the memory bound under 100,000 keys; state kept over reloads.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(backend: &Backend, listener: &str, route: &str, limits: &str) -> String {
    format!(
        "threads = 2\n[admin]\nbind = \"127.0.0.1:0\"\n[access_log]\nenabled = true\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{listener}\n\
         [[listeners.routes]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"app\"\n{route}\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n{limits}\n",
        backend.addr
    )
}

/// One keep-alive client at `source`: sends `GET path` every `gap` for `run`, and
/// returns the statuses it got, when it sent its first and last requests, and each
/// request's latency.
async fn paced(
    addr: SocketAddr,
    source: IpAddr,
    path: &str,
    gap: Duration,
    run: Duration,
) -> (Vec<u16>, Duration, Vec<Duration>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut statuses = Vec::new();
    let mut latencies = Vec::new();
    let mut ticks = tokio::time::interval(gap);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut last = Duration::ZERO;
    let mut buf = Vec::with_capacity(4096);
    while start.elapsed() < run {
        ticks.tick().await;
        last = start.elapsed();
        let sent = Instant::now();
        stream.write_all(request.as_bytes()).await.unwrap();
        buf.clear();
        let status = read_response(&mut stream, &mut buf).await;
        latencies.push(sent.elapsed());
        statuses.push(status);
    }
    (statuses, last, latencies)
}

/// Reads one response (head and Content-Length body); its status.
async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> u16 {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = common::header_of(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head[9..12].parse().unwrap();
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn p99(mut all: Vec<Duration>) -> Duration {
    all.sort();
    all[(all.len() * 99 / 100).min(all.len() - 1)]
}

#[test]
fn a_flood_from_50_addresses_passes_at_the_limit_and_a_bystander_is_never_refused() {
    let a = Backend::start("a");
    let limits = "[rate_limits.per-ip]\nkey = \"ip\"\nrate = \"5/s\"\nburst = 2\n";
    let f = Fulcrum::start(&config(&a, "rate_limits = [\"per-ip\"]", "", limits));
    let run = Duration::from_secs(4);
    let rt = common::rt();
    let (flood, bystander) = rt.block_on(async {
        // 50 clients at 50 requests/s each: ten times the limit.
        let flood: Vec<_> = (0..50u8)
            .map(|i| {
                let source = IpAddr::from([127, 0, 1, 10 + i]);
                tokio::spawn(paced(f.addr, source, "/", Duration::from_millis(20), run))
            })
            .collect();
        // A bystander at 4 requests/s: under the limit.
        let bystander = tokio::spawn(paced(
            f.addr,
            IpAddr::from([127, 0, 2, 1]),
            "/",
            Duration::from_millis(250),
            run,
        ));
        let mut results = Vec::new();
        for c in flood {
            results.push(c.await.unwrap());
        }
        (results, bystander.await.unwrap())
    });
    let mut passed = 0;
    let mut expected = 0.0;
    let mut refused = 0;
    for (statuses, last, _) in &flood {
        assert!(
            statuses.len() > 100,
            "a flood client sent only {}",
            statuses.len()
        );
        passed += statuses.iter().filter(|&&s| s == 200).count();
        refused += statuses.iter().filter(|&&s| s == 429).count();
        assert_eq!(
            statuses.iter().filter(|&&s| s != 200 && s != 429).count(),
            0,
            "{statuses:?}"
        );
        // GCRA: the rate over the client's time, plus the first request and the burst.
        expected += 5.0 * last.as_secs_f64() + 1.0 + 2.0;
    }
    let ratio = passed as f64 / expected;
    println!(
        "flood: {passed} passed of {} ({refused} refused), expected {expected:.0}: ratio {ratio:.3}",
        passed + refused
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{passed} passed, {expected:.0} expected"
    );
    let (statuses, _, latencies) = bystander;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "bystander: {statuses:?}"
    );
    println!(
        "bystander: {} requests, none refused, p99 {:?}",
        statuses.len(),
        p99(latencies)
    );
    // Only what passed reached the backend (the bystander's too).
    assert_eq!(a.requests(), passed + statuses.len());
    let m = common::scrape(f.admin_addr());
    assert_eq!(
        common::value(
            &m,
            r#"fulcrum_rate_limit_decisions_total{limit="per-ip",outcome="limited"}"#
        ),
        refused as f64
    );
    assert!(f.wait_log("status=429"));
    assert!(f.log().contains(" limited=rate "), "{}", f.log());
}

#[test]
fn a_refusal_says_when_to_come_back_over_http1_and_http2() {
    let a = Backend::start("a");
    let limits = "[rate_limits.slow]\nrate = \"1/m\"\nburst = 1\n";
    let f = Fulcrum::start(&config(&a, "", "rate_limits = [\"slow\"]", limits));
    let get = |extra: &[&str]| {
        let mut args = vec!["-s", "-i"];
        args.extend_from_slice(extra);
        let url = f.url("/api/x");
        args.push(&url);
        common::curl(&args).1
    };
    assert!(get(&[]).starts_with("HTTP/1.1 200"));
    assert!(get(&["--http2-prior-knowledge"]).starts_with("HTTP/2 200"));
    let refused = get(&[]);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    let retry: u64 = common::header_of(&refused, "retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{refused}");
    assert_eq!(
        common::header_of(&refused, "ratelimit-limit").as_deref(),
        Some("1")
    );
    assert_eq!(
        common::header_of(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(
        common::header_of(&refused, "ratelimit-policy").as_deref(),
        Some("1;w=60;burst=1")
    );
    let h2 = get(&["--http2-prior-knowledge"]);
    assert!(h2.starts_with("HTTP/2 429"), "{h2}");
    assert!(common::header_of(&h2, "ratelimit-reset").is_some(), "{h2}");
    // Other paths (the listener's default, no limit) are not limited.
    let out = common::code(&[&f.url("/")]);
    assert_eq!(out, "200");
    assert_eq!(a.requests(), 3);
}

#[test]
fn an_api_key_header_is_limited_on_its_own_and_requests_without_it_are_not() {
    let a = Backend::start("a");
    let limits = "[rate_limits.keys]\nkey = \"header:X-Api-Key\"\nrate = \"2/m\"\nburst = 1\n";
    let f = Fulcrum::start(&config(&a, "", "rate_limits = [\"keys\"]", limits));
    let status = |key: Option<&str>| {
        let header;
        let mut args = Vec::new();
        if let Some(k) = key {
            header = format!("X-Api-Key: {k}");
            args.extend(["-H", &header]);
        }
        let url = f.url("/api/x");
        args.push(&url);
        common::code(&args)
    };
    assert_eq!(status(Some("alpha")), "200");
    assert_eq!(status(Some("alpha")), "200");
    assert_eq!(status(Some("alpha")), "429");
    assert_eq!(status(Some("beta")), "200");
    for _ in 0..5 {
        assert_eq!(status(None), "200");
    }
}

#[test]
fn a_concurrency_limit_refuses_the_request_over_it_and_frees_its_place_after() {
    let a = Backend::start_slow("a", Duration::from_millis(600));
    let limits = "[rate_limits.two-at-once]\nconcurrency = 2\n";
    let f = Fulcrum::start(&config(&a, "", "rate_limits = [\"two-at-once\"]", limits));
    let url = f.url("/api/x");
    let statuses = common::rt().block_on(async {
        let client = common::client();
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100 * i)).await;
                    client.get(url).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    });
    assert_eq!(statuses, [200, 200, 429]);
    // Both places are free again.
    let out = common::code(&[&url]);
    assert_eq!(out, "200");
    assert!(f.wait_log("limited=concurrency"));
}

#[test]
fn a_delaying_limit_spaces_requests_out_instead_of_refusing() {
    let a = Backend::start("a");
    let limits =
        "[rate_limits.smooth]\nrate = \"5/s\"\naction = \"delay\"\nmax_delay = \"500ms\"\n";
    let f = Fulcrum::start(&config(&a, "", "rate_limits = [\"smooth\"]", limits));
    let url = f.url("/api/x");
    let (statuses, took) = common::rt().block_on(async {
        let client = common::client();
        let start = Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
            })
            .collect();
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        (out, start.elapsed())
    });
    // Five at once at 5/s: the last waits 4 x 200 ms, more than max_delay: refused.
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(ok, 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 2);
    // The third waited two intervals.
    assert!(took >= Duration::from_millis(380), "{took:?}");
    let m = common::scrape(f.admin_addr());
    assert_eq!(
        common::value(
            &m,
            r#"fulcrum_rate_limit_decisions_total{limit="smooth",outcome="delayed"}"#
        ),
        2.0
    );
}

#[test]
fn connection_limits_refuse_a_client_over_them_on_http_and_tcp_listeners() {
    let a = Backend::start_slow("a", Duration::from_millis(800));
    let config = format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\nconnection_limits = [\"new-conns\"]\n\
         [[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"app\"\nconnection_limits = [\"open-conns\"]\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n\
         [rate_limits.new-conns]\nrate = \"2/m\"\nburst = 1\n\
         [rate_limits.open-conns]\nconcurrency = 1\n",
        a.addr
    );
    let f = Fulcrum::start(&config);
    // HTTP: two new connections from 127.0.3.1 pass, the third is answered 429.
    let web = f.listener_addr("web");
    let get = |source: &str| {
        let url = format!("http://{web}/");
        common::curl(&["-s", "-i", "--interface", source, &url]).1
    };
    assert!(get("127.0.3.1").starts_with("HTTP/1.1 200"));
    assert!(get("127.0.3.1").starts_with("HTTP/1.1 200"));
    let refused = get("127.0.3.1");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(common::header_of(&refused, "retry-after").is_some());
    assert!(get("127.0.3.2").starts_with("HTTP/1.1 200"));
    // TCP: one connection open at a time per client; the second is closed unanswered.
    let tcp = f.listener_addr("tcp");
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| common::raw(tcp, request, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(200));
        let second = common::raw(tcp, request, Duration::from_secs(5));
        (first.join().unwrap(), second)
    });
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_eq!(second, "");
    // Its place is free once the first closed.
    assert!(common::raw(tcp, request, Duration::from_secs(5)).starts_with("HTTP/1.1 200"));
    let m = common::scrape(f.admin_addr());
    for (listener, n) in [("web", 1.0), ("tcp", 1.0)] {
        let series =
            format!("fulcrum_listener_limited_connections_total{{listener=\"{listener}\"}}");
        assert_eq!(common::value(&m, &series), n, "{series}");
    }
}

#[test]
fn memory_stays_under_the_cap_with_100000_keys() {
    let a = Backend::start("a");
    let route = "rate_limits = [\"keys\"]\nrespond = { status = 200, body = \"ok\" }";
    let limits =
        "[rate_limits.keys]\nkey = \"header:X-Api-Key\"\nrate = \"1/m\"\nmax_keys = 10000\n";
    let config = config(&a, "", route, limits)
        .replace("[access_log]\nenabled = true\n", "")
        .replace(
            "path_prefix = \"/api\"\npool = \"app\"\n",
            "path_prefix = \"/api\"\n",
        );
    let f = Fulcrum::start(&config);
    let metrics = |f: &Fulcrum| {
        let m = common::scrape(f.admin_addr());
        (
            common::value(&m, r#"fulcrum_rate_limit_keys{limit="keys"}"#),
            common::value(&m, r#"fulcrum_rate_limit_memory_bytes{limit="keys"}"#),
        )
    };
    let (_, memory_before) = metrics(&f);
    let rss_before = f.rss_kib();
    // 100,000 API keys, pipelined on 4 connections: each key's first request passes.
    let passed = common::rt().block_on(async {
        let tasks: Vec<_> = (0..4u32)
            .map(|c| {
                let addr = f.addr;
                tokio::spawn(async move {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let mut ok = 0;
                    let mut buf = Vec::new();
                    for batch in 0..250u32 {
                        let mut out = String::new();
                        for i in 0..100u32 {
                            let key = c * 25_000 + batch * 100 + i;
                            out.push_str(&format!(
                                "GET /api/k HTTP/1.1\r\nHost: x\r\nX-Api-Key: key-{key}\r\n\r\n"
                            ));
                        }
                        stream.write_all(out.as_bytes()).await.unwrap();
                        for _ in 0..100 {
                            if read_response(&mut stream, &mut buf).await == 200 {
                                ok += 1;
                            }
                            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                            buf.drain(..end + 4 + 2);
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    assert_eq!(passed, 100_000);
    let (keys, memory_after) = metrics(&f);
    let rss_after = f.rss_kib();
    println!(
        "100,000 keys: {keys} tracked, table {memory_before} bytes before and {memory_after} after; RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(keys <= 10_000.0, "{keys} keys");
    assert!(memory_after <= memory_before);
    assert!(
        memory_before < 1_000_000.0,
        "{memory_before} bytes for 10,000 keys"
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn a_reload_keeps_what_an_unchanged_limit_knows() {
    let a = Backend::start("a");
    let limits = "[rate_limits.slow]\nrate = \"1/m\"\n";
    let config = config(&a, "", "rate_limits = [\"slow\"]", limits);
    let f = Fulcrum::start(&config);
    let status = || common::code(&[&f.url("/api/x")]);
    assert_eq!(status(), "200");
    assert_eq!(status(), "429");
    let out = f.reload(&config.replace("name = \"a\"", "name = \"a\", weight = 2"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status(), "429");
    // A changed limit starts afresh.
    let out = f.reload(&config.replace("1/m", "2/m"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status(), "200");
}

#[test]
fn a_limit_that_does_not_exist_is_a_config_error_at_its_position() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\nrate_limits = [\"per-ipp\"]\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n[rate_limits.per-ip]\nrate = \"10/s\"\nkey = \"user\"\n",
    );
    assert!(
        err.contains("fulcrum.toml:4:16") && err.contains("did you mean `per-ip`?"),
        "{err}"
    );
    assert!(err.contains("`user` is not a rate limit key"), "{err}");
}
