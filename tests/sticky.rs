//! Sticky sessions by an inserted cookie, with real clients: 200 clients keeping their
//! cookie stay on one backend; a backend killed under load moves its own clients (each
//! gets the cookie of its new backend once), nobody else moves and no request fails;
//! HTTP/2 clients get and keep the same cookie; the value never shows the address.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, Fulcrum};

fn config(backends: &[&Backend]) -> String {
    common::config(
        "[admin]\nbind = \"127.0.0.1:0\"\n",
        backends,
        "algorithm = \"round_robin\"",
    )
    .replace("threads = 1", "threads = 2")
        + "[pools.app.sticky]\ncookie = \"SRV\"\n"
}

/// One response: the backend that answered and the `Set-Cookie` it came with.
type Seen = (u16, String, Option<String>);

async fn get(c: &reqwest::Client, url: &str, cookie: Option<&str>) -> Seen {
    let mut req = c.get(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", format!("theme=dark; {cookie}"));
    }
    let r = req.send().await.unwrap();
    let backend = r.headers()["x-backend"].to_str().unwrap().to_owned();
    let set = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), backend, set)
}

/// `SRV=value` of a `Set-Cookie` value.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[test]
fn clients_stay_on_their_backend_and_only_a_dead_ones_clients_move() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let c = Backend::start("c");
    let f = Fulcrum::start(&config(&[&a, &b, &c]));
    let url = f.url("/");
    let rt = common::rt();
    let client = common::client();

    // 200 clients, 30 requests each, keeping their cookie; c is killed half way.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
    });
    let runs = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (c, url) = (client.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = vec![get(&c, &url, None).await];
                let mut cookie = seen[0].2.as_deref().map(pair);
                for _ in 0..29 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let got = get(&c, &url, cookie.as_deref()).await;
                    if let Some(set) = &got.2 {
                        cookie = Some(pair(set));
                    }
                    seen.push(got);
                }
                seen
            }));
        }
        let mut runs = Vec::new();
        for t in tasks {
            runs.push(t.await.unwrap());
        }
        runs
    });

    let mut first_backends = BTreeMap::new();
    let mut moved = 0u32;
    for run in &runs {
        assert!(run.iter().all(|(status, ..)| *status == 200), "{run:?}");
        let first = &run[0].1;
        *first_backends.entry(first.clone()).or_insert(0) += 1;
        let set = run[0]
            .2
            .as_deref()
            .expect("the first response sets the cookie");
        assert!(set.starts_with("SRV=") && set.ends_with("; Path=/; HttpOnly; SameSite=Lax"));
        assert!(!set.contains("127.0.0.1"), "{set}");
        // Where the client's backend changed, and whether a cookie was set there.
        let changes: Vec<usize> = (1..run.len())
            .filter(|&i| run[i].1 != run[i - 1].1)
            .collect();
        let cookies: Vec<usize> = (1..run.len()).filter(|&i| run[i].2.is_some()).collect();
        if first == "c" {
            // Moved once, when c died, to a backend it then kept, with its cookie set
            // once, on the first answer from there.
            assert!(changes.len() <= 1, "{run:?}");
            assert_eq!(changes, cookies, "{run:?}");
            if let Some(&at) = changes.first() {
                assert!(run[at..].iter().all(|r| r.1 == run[at].1 && r.1 != "c"));
                moved += 1;
            }
        } else {
            assert!(changes.is_empty(), "a client of {first} moved: {run:?}");
            assert!(cookies.is_empty(), "{run:?}");
        }
    }
    killer.join().unwrap();
    assert_eq!(first_backends.len(), 3, "{first_backends:?}");
    assert!(
        first_backends.values().all(|n| *n > 30),
        "{first_backends:?}"
    );
    assert_eq!(moved, first_backends["c"], "every client of c moved");
    // Counted: 200 new clients, the moves, every other response a hit.
    let m = common::scrape(f.admin_addr());
    let outcome = |o: &str| {
        common::value(
            &m,
            &format!("fulcrum_pool_sticky_responses_total{{pool=\"app\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(outcome("new"), 200.0);
    assert_eq!(outcome("moved"), f64::from(moved));
    assert_eq!(outcome("hit"), f64::from(200 * 30 - 200 - moved));
    drop((a, b));
}

/// One request with curl (HTTP/2 with prior knowledge if `h2`).
fn curl(url: &str, h2: bool, cookie: Option<&str>) -> Seen {
    let mut args = vec!["-si", url];
    if h2 {
        args.push("--http2-prior-knowledge");
    }
    let header = cookie.map(|c| format!("cookie: {c}"));
    if let Some(h) = &header {
        args.extend(["-H", h]);
    }
    let (code, out, err) = common::curl(&args);
    assert_eq!(code, 0, "{err}");
    let head = out.split("\r\n\r\n").next().unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let backend = common::header_of(head, "x-backend").unwrap();
    (status, backend, common::header_of(head, "set-cookie"))
}

#[test]
fn http2_clients_get_and_keep_the_same_cookie() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let f = Fulcrum::start(&config(&[&a, &b]));
    let url = f.url("/");
    let (status, backend, set) = curl(&url, true, None);
    assert_eq!(status, 200);
    let cookie = pair(&set.expect("set-cookie over HTTP/2"));
    for _ in 0..5 {
        for h2 in [true, false] {
            let (status, again, set) = curl(&url, h2, Some(&cookie));
            assert_eq!((status, &again, set), (200, &backend, None));
        }
    }
    // A cookie naming no backend of the pool is replaced.
    let (_, _, set) = curl(&url, false, Some("SRV=0123456789abcdef"));
    assert!(set.is_some());
}
