//! Route tables built from config text, checked against requests described in tests.

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::config::Config;

/// A request as a test describes it.
struct Req {
    method: &'static str,
    host: Option<&'static str>,
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    ip: IpAddr,
}

fn get(host: &'static str, target: &'static str) -> Req {
    Req {
        method: "GET",
        host: Some(host),
        target,
        headers: Vec::new(),
        ip: "192.0.2.7".parse().unwrap(),
    }
}

impl Req {
    fn with(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.push((name, value));
        self
    }
}

impl RequestView for Req {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn host(&self) -> Option<&[u8]> {
        self.host.map(str::as_bytes)
    }
    fn path(&self) -> &[u8] {
        self.target.split('?').next().unwrap().as_bytes()
    }
    fn query(&self) -> Option<&[u8]> {
        self.target.split_once('?').map(|(_, q)| q.as_bytes())
    }
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
    fn client_ip(&self) -> IpAddr {
        self.ip
    }
}

const POOLS: &str = r#"
[pools.web]
backends = [{ address = "127.0.0.1:9001" }]
[pools.api]
backends = [{ address = "127.0.0.1:9002" }]
[pools.v2]
backends = [{ address = "127.0.0.1:9003" }]
[pools.sorry]
backends = [{ address = "127.0.0.1:9004" }]
"#;

fn table(routes: &str, default_pool: bool) -> (RouteTable, Config) {
    let pool = if default_pool { "pool = \"web\"\n" } else { "" };
    let text = format!("[[listeners]]\nbind = \"127.0.0.1:0\"\n{pool}{routes}\n{POOLS}");
    let config = Config::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    (RouteTable::new(&config.listeners[0], &config.pools), config)
}

fn pool_of(t: &RouteTable, c: &Config, req: &Req) -> String {
    match t.select(req, false).target {
        Target::Pool { pool, .. } => c.pools[pool].name.clone(),
        other => format!("{other:?}"),
    }
}

#[test]
fn first_matching_route_decides() {
    let (t, c) = table(
        r#"
[[listeners.routes]]
host = ["api.example.com", "*.api.example.com"]
pool = "api"
[[listeners.routes]]
path_prefix = "/v2/"
method = ["GET", "HEAD"]
pool = "v2"
[[listeners.routes]]
path_regex = "^/reports/[0-9]+$"
pool = "sorry"
"#,
        true,
    );
    assert_eq!(pool_of(&t, &c, &get("API.example.com:8080", "/x")), "api");
    assert_eq!(pool_of(&t, &c, &get("eu.api.example.com", "/x")), "api");
    assert_eq!(pool_of(&t, &c, &get("example.com", "/v2/items")), "v2");
    let mut post = get("example.com", "/v2/items");
    post.method = "POST";
    assert_eq!(pool_of(&t, &c, &post), "web", "method mismatch: default");
    assert_eq!(pool_of(&t, &c, &get("x", "/reports/42")), "sorry");
    assert_eq!(pool_of(&t, &c, &get("x", "/reports/42/a")), "web");
    assert_eq!(pool_of(&t, &c, &get("x", "/")), "web");
}

#[test]
fn headers_cookies_query_and_clients() {
    let (t, c) = table(
        r#"
[[listeners.routes]]
headers = { "x-canary" = "1" }
pool = "v2"
[[listeners.routes]]
cookies = { beta = { present = true } }
pool = "api"
[[listeners.routes]]
query = { version = { regex = "^2" } }
pool = "v2"
[[listeners.routes]]
client = ["10.0.0.0/8", "2001:db8::/32"]
pool = "sorry"
"#,
        false,
    );
    assert_eq!(pool_of(&t, &c, &get("h", "/").with("X-Canary", "1")), "v2");
    assert_eq!(
        pool_of(&t, &c, &get("h", "/").with("cookie", "a=1; beta=yes")),
        "api"
    );
    assert_eq!(pool_of(&t, &c, &get("h", "/?a=1&version=2.1")), "v2");
    let mut inside = get("h", "/");
    inside.ip = "10.3.4.5".parse().unwrap();
    assert_eq!(pool_of(&t, &c, &inside), "sorry");
    inside.ip = "2001:db8::1".parse().unwrap();
    assert_eq!(pool_of(&t, &c, &inside), "sorry");
    assert_eq!(pool_of(&t, &c, &get("h", "/")), "NotFound");
}

#[test]
fn split_keeps_clients_on_their_side() {
    let (t, c) = table(
        r#"
[[listeners.routes]]
name = "canary"
split = [{ pool = "web", weight = 90 }, { pool = "v2", weight = 10 }]
"#,
        false,
    );
    let mut v2 = 0;
    for _ in 0..2000 {
        match t.select(&get("h", "/"), false).target {
            Target::Pool { pool, new_side } => {
                assert!(new_side.is_some(), "no cookie yet: the side is given");
                if c.pools[pool].name == "v2" {
                    v2 += 1;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!((120..=280).contains(&v2), "10 % of 2000, got {v2}");
    let route = &t.routes()[0];
    assert_eq!(
        route.split_cookie(1, false).unwrap(),
        "fulcrum_split_canary=v2; Path=/; HttpOnly; SameSite=Lax"
    );
    assert!(route.split_cookie(1, true).unwrap().ends_with("; Secure"));
    let kept = get("h", "/").with("cookie", "fulcrum_split_canary=v2");
    for _ in 0..50 {
        assert_eq!(
            t.select(&kept, false).target,
            Target::Pool {
                pool: c.pools.iter().position(|p| p.name == "v2").unwrap(),
                new_side: None
            }
        );
    }
}

#[test]
fn split_by_hash_is_stable() {
    let (t, c) = table(
        r#"
[[listeners.routes]]
split = [{ pool = "web", weight = 50 }, { pool = "v2", weight = 50 }]
split_key = "header:x-user"
"#,
        false,
    );
    let mut sides = std::collections::BTreeMap::new();
    for user in ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"] {
        let req = get("h", "/").with("x-user", user);
        let first = pool_of(&t, &c, &req);
        for _ in 0..5 {
            assert_eq!(pool_of(&t, &c, &req), first);
        }
        *sides.entry(first).or_insert(0) += 1;
    }
    assert_eq!(sides.len(), 2, "{sides:?}");
}

#[test]
fn redirects_and_fixed_responses() {
    let (t, _) = table(
        r#"
[[listeners.routes]]
path_prefix = "/old/"
redirect = { prefix = "/new/", status = 301 }
[[listeners.routes]]
host = "example.com"
redirect = { scheme = "https", status = 308 }
[[listeners.routes]]
path = "/down"
respond = { status = 503, body = "back soon" }
"#,
        true,
    );
    assert_eq!(
        t.select(&get("h:8080", "/old/a?x=1"), false).target,
        Target::Redirect {
            status: 301,
            location: "http://h:8080/new/a?x=1".into()
        }
    );
    assert_eq!(
        t.select(&get("example.com:80", "/p"), false).target,
        Target::Redirect {
            status: 308,
            location: "https://example.com/p".into()
        }
    );
    let s = t.select(&get("h", "/down"), false);
    assert_eq!(s.target, Target::Respond);
    let fixed = t.routes()[s.route.unwrap()].fixed_response().unwrap();
    assert_eq!((fixed.status, fixed.body.as_str()), (503, "back soon"));
}

fn errors(routes: &str) -> String {
    let text = format!("[[listeners]]\nbind = \"127.0.0.1:0\"\n{routes}\n{POOLS}");
    Config::parse(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string()
}

#[test]
fn check_reports_shadowed_routes_unknown_pools_and_bad_weights() {
    let e = errors(
        r#"
[[listeners.routes]]
name = "all"
pool = "web"
[[listeners.routes]]
name = "api"
path_prefix = "/api/"
pool = "api"
"#,
    );
    assert!(
        e.contains("t.toml:7:1: route `api` can never match: route `all` (line 4)"),
        "{e}"
    );
    let e = errors(
        r#"
[[listeners.routes]]
path_prefix = "/api/"
pool = "api"
[[listeners.routes]]
path_prefix = "/api/v2/"
pool = "v2"
"#,
    );
    assert!(e.contains("route `route2` can never match"), "{e}");
    let e = errors(
        r#"
[[listeners.routes]]
pool = "wbe"
"#,
    );
    assert!(e.contains("uses pool `wbe`, which is not defined"), "{e}");
    assert!(e.contains("did you mean `web`?"), "{e}");
    let e = errors(
        r#"
[[listeners.routes]]
split = [{ pool = "web", weight = 0 }, { pool = "v2", weight = 0 }]
"#,
    );
    assert!(
        e.contains("every weight of route `route1`'s split is 0"),
        "{e}"
    );
    let e = errors(
        r#"
[[listeners.routes]]
split = [{ pool = "web", weight = 5000 }, { pool = "v2", weight = 1 }]
"#,
    );
    assert!(
        e.contains("split weight must be between 0 and 1000, not 5000"),
        "{e}"
    );
    let e = errors(
        r#"
[[listeners.routes]]
path_regex = "(unclosed"
pool = "web"
"#,
    );
    assert!(e.contains("bad regular expression"), "{e}");
    let e = errors(
        r#"
[[listeners.routes]]
path_prefix = "/a/"
pool = "web"
redirect = { scheme = "https" }
"#,
    );
    assert!(e.contains("has more than one action"), "{e}");
    let e = errors(
        r#"
[[listeners.routes]]
path = "/down"
respond = { status = 503 }
request_headers = { set = { "x-a" = "1" } }
fallback = "web"
"#,
    );
    assert!(
        e.contains("`request_headers` has no effect on route `route1`, which answers by itself"),
        "{e}"
    );
    assert!(e.contains("`fallback` has no effect"), "{e}");
}
