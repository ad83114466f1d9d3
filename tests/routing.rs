//! Routing through the real binary: host, path, header, cookie and method routes send to
//! the right pool over HTTP/1.1, HTTP/2 and TLS alike (curl); a 90/10 split keeps each of
//! 1,000 clients on its side; redirects, fixed responses, header rules, prefix strip; a
//! fallback pool while the route's pool is down; 404 when nothing routes; kept backend
//! connections are never shared between pools with different TLS settings.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::pki::Pki;
use common::{Backend, Fulcrum, curl, header_of};

fn backends(list: &[(&str, &Backend)]) -> String {
    list.iter()
        .map(|(pool, b)| {
            format!(
                "[pools.{pool}]\nbackends = [{{ name = \"{}\", address = \"{}\" }}]\n",
                b.name, b.addr
            )
        })
        .collect()
}

const ROUTES: &str = r#"
[[listeners.routes]]
name = "api"
host = ["api.test", "*.api.test"]
pool = "api"

[[listeners.routes]]
name = "v2"
path_prefix = "/v2/"
pool = "v2"

[[listeners.routes]]
name = "canary"
headers = { "x-canary" = "1" }
pool = "v2"

[[listeners.routes]]
name = "beta"
cookies = { beta = { present = true } }
pool = "beta"

[[listeners.routes]]
name = "writes"
method = ["POST", "PUT", "DELETE"]
pool = "writes"
"#;

/// (status, x-backend) of a curl request with `args`.
fn who(args: &[&str]) -> (String, String) {
    let mut all = vec!["-o", "/dev/null", "-D", "-"];
    all.extend_from_slice(args);
    let (code, head, err) = curl(&all);
    assert_eq!(code, 0, "curl {args:?}: {err}");
    let status = head.split_whitespace().nth(1).unwrap_or("").to_string();
    (status, header_of(&head, "x-backend").unwrap_or_default())
}

#[test]
fn routes_choose_the_pool_over_http1_http2_and_tls() {
    let web = Backend::start("web");
    let api = Backend::start("api");
    let v2 = Backend::start("v2");
    let beta = Backend::start("beta");
    let writes = Backend::start("writes");
    let pki = Pki::new();
    let cert = pki.leaf("site", &["api.test", "*.api.test", "www.test"]);
    let pools = backends(&[
        ("web", &web),
        ("api", &api),
        ("v2", &v2),
        ("beta", &beta),
        ("writes", &writes),
    ]);
    let config = format!(
        "threads = 1\n[[listeners]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n{ROUTES}\n\
         [[listeners]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n\
         [listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n{ROUTES}\n{pools}",
        cert.cert, cert.key
    );
    let f = Fulcrum::start(&config);
    let plain = f.listener_addr("plain");
    let tls = f.listener_addr("tls");
    let ca = pki.ca.to_str().unwrap().to_string();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["-H", "Host: api.test"], "/x", "api"),
        (&["-H", "Host: eu.api.test"], "/x", "api"),
        (&["-H", "Host: www.test"], "/v2/items", "v2"),
        (&["-H", "Host: www.test", "-H", "X-Canary: 1"], "/", "v2"),
        (&["-H", "Host: www.test", "-b", "beta=yes"], "/", "beta"),
        (&["-H", "Host: www.test", "-X", "POST"], "/", "writes"),
        (&["-H", "Host: www.test"], "/", "web"),
    ];
    for (extra, path, want) in cases {
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let url = format!("http://{plain}{path}");
            let mut args = vec![version, url.as_str()];
            args.extend_from_slice(extra);
            assert_eq!(who(&args), ("200".into(), want.to_string()), "{args:?}");
        }
        // Over TLS the host is the one the client asked for (SNI and Host agree).
        let host = extra[1].trim_start_matches("Host: ");
        let resolve = format!("{host}:{}:127.0.0.1", tls.port());
        let url = format!("https://{host}:{}{path}", tls.port());
        for version in ["--http1.1", "--http2"] {
            let mut args = vec![
                version,
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
                url.as_str(),
            ];
            args.extend_from_slice(&extra[2..]);
            assert_eq!(who(&args), ("200".into(), want.to_string()), "{args:?}");
        }
    }
    // Access log lines reach the log within a tenth of a second (they are batched).
    assert!(f.wait_log("route=api pool=api backend=api"), "{}", f.log());
    assert!(f.wait_log("route=- pool=web backend=web"), "{}", f.log());
}

#[test]
fn a_split_keeps_each_client_on_its_side() {
    let stable = Backend::start("stable");
    let canary = Backend::start("canary");
    let config = format!(
        "threads = 1\naccess_log = false\n[[listeners]]\nbind = \"127.0.0.1:0\"\n\
         [[listeners.routes]]\nname = \"release\"\nsplit = [{{ pool = \"stable\", weight = 90 }}, {{ pool = \"canary\", weight = 10 }}]\n{}",
        backends(&[("stable", &stable), ("canary", &canary)])
    );
    let f = Fulcrum::start(&config);
    let url = f.url("/");
    let rt = common::rt();
    let c = common::client();
    let (sides, moved) = rt.block_on(async {
        let mut tasks = Vec::new();
        for chunk in 0..20 {
            let (c, url) = (c.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut sides = BTreeMap::new();
                let mut moved = 0;
                // 50 clients per task, 1,000 in all; each makes three requests.
                for _ in 0..50 {
                    let r = c.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let side = r.headers()["x-backend"].to_str().unwrap().to_string();
                    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
                    assert!(cookie.starts_with("fulcrum_split_release="), "{cookie}");
                    assert!(cookie.contains("HttpOnly"), "{cookie}");
                    let pair = cookie.split(';').next().unwrap().to_string();
                    for _ in 0..2 {
                        let again = c.get(&url).header("cookie", &pair).send().await.unwrap();
                        assert!(again.headers().get("set-cookie").is_none());
                        if again.headers()["x-backend"].to_str().unwrap() != side {
                            moved += 1;
                        }
                    }
                    *sides.entry(side).or_insert(0) += 1;
                }
                let _ = chunk;
                (sides, moved)
            }));
        }
        let mut sides = BTreeMap::new();
        let mut moved = 0;
        for t in tasks {
            let (s, m) = t.await.unwrap();
            for (k, v) in s {
                *sides.entry(k).or_insert(0) += v;
            }
            moved += m;
        }
        (sides, moved)
    });
    assert_eq!(moved, 0, "clients changed sides");
    let stable_share = sides.get("stable").copied().unwrap_or(0);
    assert!(
        (850..=950).contains(&stable_share),
        "90 % +/- 5 % of 1,000 clients expected on stable: {sides:?}"
    );
}

#[test]
fn redirects_fixed_responses_header_rules_and_prefix_strip() {
    let app = Backend::start("app");
    let config = format!(
        r#"threads = 1
[[listeners]]
bind = "127.0.0.1:0"
pool = "app"

[[listeners.routes]]
name = "to-https"
host = "secure.test"
redirect = {{ scheme = "https", status = 308 }}

[[listeners.routes]]
name = "moved"
path_prefix = "/old/"
redirect = {{ prefix = "/new/", status = 301 }}

[[listeners.routes]]
name = "maintenance"
path_prefix = "/shop/"
respond = {{ status = 503, body = "The shop is closed for maintenance.\n" }}

[[listeners.routes]]
name = "api"
path_prefix = "/api/"
strip_prefix = "/api"
pool = "app"
request_headers = {{ set = {{ "x-env" = "prod" }}, add = {{ "x-route" = "api" }}, remove = ["x-debug"] }}
response_headers = {{ set = {{ "x-served-by" = "fulcrum" }}, remove = ["x-backend-secret"] }}

{}"#,
        backends(&[("app", &app)])
    );
    let f = Fulcrum::start(&config);
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (code, head, _) = curl(&[
            version,
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Host: secure.test",
            &f.url("/pay?x=1"),
        ]);
        assert_eq!(code, 0);
        assert!(head.contains(" 308"), "{head}");
        assert_eq!(
            header_of(&head, "location").unwrap(),
            "https://secure.test/pay?x=1"
        );
        let (_, head, _) = curl(&[
            version,
            "-D",
            "-",
            "-o",
            "/dev/null",
            &f.url("/old/a/b?q=2"),
        ]);
        assert!(head.contains(" 301"), "{head}");
        let port = f.addr.port();
        assert_eq!(
            header_of(&head, "location").unwrap(),
            format!("http://127.0.0.1:{port}/new/a/b?q=2")
        );
        let (_, out, _) = curl(&[version, "-i", &f.url("/shop/cart")]);
        assert!(out.contains(" 503"), "{out}");
        assert!(
            out.ends_with("The shop is closed for maintenance.\n"),
            "{out}"
        );
        let (_, out, _) = curl(&[
            version,
            "-i",
            "-H",
            "X-Debug: 1",
            "-H",
            "X-Env: dev",
            &f.url("/api/headers?id=7"),
        ]);
        assert!(out.contains(" 200"), "{out}");
        assert!(
            out.to_ascii_lowercase().contains("x-served-by: fulcrum"),
            "{out}"
        );
        // The backend saw the stripped path and the rewritten headers.
        let seen = app.last_head.lock().unwrap().clone();
        assert!(seen.starts_with("GET /headers?id=7 "), "{seen}");
        assert!(
            seen.contains("x-env: prod") && !seen.contains("dev"),
            "{seen}"
        );
        assert!(seen.contains("x-route: api"), "{seen}");
        assert!(!seen.contains("x-debug"), "{seen}");
    }
    // Fulcrum's answers keep the connection: two redirects on one connection.
    let out = common::raw(
        f.addr,
        b"GET /old/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /old/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        out.matches("HTTP/1.1 301 Moved Permanently").count(),
        2,
        "{out}"
    );
    assert!(out.contains("Location: http://h/new/2"), "{out}");
}

#[test]
fn the_fallback_pool_serves_while_the_route_pool_is_down() {
    let sorry = Backend::start("sorry");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        r#"threads = 1
[[listeners]]
bind = "127.0.0.1:0"
[[listeners.routes]]
name = "shop"
path_prefix = "/"
pool = "shop"
fallback = "sorry"

[pools.shop]
backends = [{{ name = "dead", address = "{dead}" }}]
[pools.shop.health]
check = "tcp"
interval = "100ms"
fall = 1
rise = 1

{}"#,
        backends(&[("sorry", &sorry)])
    );
    let f = Fulcrum::start(&config);
    assert!(f.wait_log("backend is DOWN"), "{}", f.log());
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        assert_eq!(
            who(&[version, &f.url("/buy")]),
            ("200".into(), "sorry".into())
        );
    }
    assert!(
        f.wait_log("route=shop pool=sorry backend=sorry"),
        "{}",
        f.log()
    );
}

#[test]
fn no_route_and_no_default_pool_is_a_404() {
    let app = Backend::start("app");
    let config = format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[[listeners.routes]]\nhost = \"app.test\"\npool = \"app\"\n{}",
        backends(&[("app", &app)])
    );
    let f = Fulcrum::start(&config);
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (_, out, _) = curl(&[version, "-i", &f.url("/")]);
        assert!(out.contains(" 404"), "{out}");
        assert!(out.contains("no route matches this request"), "{out}");
        assert_eq!(
            who(&[version, "-H", "Host: app.test", &f.url("/")]).1,
            "app"
        );
    }
    assert_eq!(app.requests(), 2);
    // A Host that is not a host is refused on both paths, before any routing: 400 over
    // HTTP/1.1; over HTTP/2 curl sends it as `:authority`, which the HTTP/2 layer
    // refuses as malformed (a stream error) before Fulcrum sees it.
    let (_, out, _) = curl(&["--http1.1", "-i", "-H", "Host: app.test/evil", &f.url("/")]);
    assert!(out.contains(" 400"), "{out}");
    let (code, out, err) = curl(&[
        "--http2-prior-knowledge",
        "-i",
        "-H",
        "Host: app.test/evil",
        &f.url("/"),
    ]);
    assert!(out.contains(" 400") || code != 0, "{out}{err}");
    assert_eq!(app.requests(), 2);
}

#[test]
fn kept_connections_are_not_shared_between_pools_with_different_tls() {
    // One TLS backend, reached by pool `tls` over TLS and by pool `plain` in clear text.
    // The clear-text requests must fail: a kept TLS connection of the other pool to the
    // same address must never be reused for them.
    let pki = Pki::new();
    let leaf = pki.leaf("backend", &["127.0.0.1"]);
    let backend = Backend::start_tls("secure", leaf.server_config(&["http/1.1"]));
    let config = format!(
        r#"threads = 1
[[listeners]]
bind = "127.0.0.1:0"
[[listeners.routes]]
path_prefix = "/tls/"
strip_prefix = "/tls"
pool = "tls"
[[listeners.routes]]
path_prefix = "/"
pool = "plain"

[pools.tls]
backends = [{{ address = "{0}" }}]
[pools.tls.tls]
ca = {1:?}

[pools.plain]
backends = [{{ address = "{0}" }}]
[pools.plain.retries]
attempts = 0
"#,
        backend.addr, pki.ca
    );
    let f = Fulcrum::start(&config);
    let rt = common::rt();
    let c = common::client();
    rt.block_on(async {
        for _ in 0..5 {
            let r = c.get(f.url("/tls/")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-backend"], "secure");
            let r = c.get(f.url("/plain")).send().await.unwrap();
            assert_eq!(r.status(), 502, "a TLS connection was reused in clear text");
        }
    });
    std::thread::sleep(Duration::from_millis(10));
}
