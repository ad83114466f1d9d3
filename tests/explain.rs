//! `fulcrum explain` on a config file, and `fulcrum ctl explain` on a running instance:
//! each route in order with why it does not match, the decision (pool, split, redirect,
//! fixed response, 404), the pool's backends and the one the algorithm would pick, with
//! the live state when asked of a running Fulcrum.

mod common;

use std::process::Command;

use common::{Backend, Fulcrum};

const CONFIG: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[listeners.routes]]
name = "legacy"
path_prefix = "/old"
redirect = { status = 301, prefix = "/new" }

[[listeners.routes]]
name = "api"
host = ["api.example.com"]
path_prefix = "/v1"
method = ["GET", "POST"]
pool = "api"

[[listeners.routes]]
name = "beta"
host = ["*.example.com"]
headers = { "x-beta" = "1" }
split = [{ pool = "api", weight = 90 }, { pool = "web", weight = 10 }]

[[listeners.routes]]
name = "maint"
path = "/status"
respond = { status = 503, body = "down\n" }

[pools.api]
algorithm = "consistent_hash"
hash_key = "header:x-user"
backends = [{ name = "api1", address = "127.0.0.1:9001" }, { name = "api2", address = "127.0.0.1:9002" }]

[pools.web]
backends = [{ name = "web1", address = "127.0.0.1:9101" }]
"#;

fn explain(file: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .args(["explain", "-c"])
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_walks_the_routes_and_names_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.toml");
    std::fs::write(&file, CONFIG).unwrap();

    let (code, out, err) = explain(
        &file,
        &[
            "GET",
            "http://api.example.com/v1/users?id=3",
            "-H",
            "x-user: 42",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1. legacy       no: needs path starting with `/old`"),
        "{out}"
    );
    assert!(out.contains("2. api          MATCHES"), "{out}");
    assert!(
        out.contains("decision: forward to pool `api` (route `api`)"),
        "{out}"
    );
    assert!(out.contains("hash key `header:x-user`"), "{out}");
    let pick = out
        .lines()
        .find(|l| l.starts_with("would pick: "))
        .unwrap()
        .to_owned();
    // Consistent hashing: the same user always lands on the same backend.
    for _ in 0..3 {
        let (_, again, _) = explain(
            &file,
            &["GET", "http://api.example.com/v1/users", "-H", "x-user: 42"],
        );
        assert!(again.contains(&pick), "{again}");
    }

    let (_, out, _) = explain(&file, &["POST", "http://api.example.com/v2/x"]);
    assert!(
        out.contains("2. api          no: needs path starting with `/v1`"),
        "{out}"
    );
    let (_, out, _) = explain(&file, &["DELETE", "http://api.example.com/v1/x"]);
    assert!(out.contains("no: needs method GET or POST"), "{out}");

    let (_, out, _) = explain(
        &file,
        &["GET", "http://shop.example.com/", "-H", "X-Beta: 1"],
    );
    assert!(out.contains("3. beta         MATCHES"), "{out}");
    assert!(out.contains("split: a new client"), "{out}");
    let (_, out, _) = explain(&file, &["GET", "http://shop.example.com/"]);
    assert!(out.contains("no: needs header `x-beta` = `1`"), "{out}");

    let (_, out, _) = explain(&file, &["GET", "http://x.test/old/page"]);
    assert!(
        out.contains("decision: redirect 301 to http://x.test/new/page"),
        "{out}"
    );
    let (_, out, _) = explain(&file, &["GET", "http://x.test/status"]);
    assert!(
        out.contains("decision: fixed response 503 (route `maint`)"),
        "{out}"
    );
    let (_, out, _) = explain(&file, &["GET", "http://x.test/nothing"]);
    assert!(out.contains("no route matches"), "{out}");
    assert!(out.contains("decision: 404"), "{out}");

    let (code, _, err) = explain(&file, &["GET", "x.test/nothing"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a URL"), "{err}");
    let (code, _, err) = explain(&file, &["GET", "http://x.test/", "-H", "no-colon"]);
    assert_eq!(code, 2);
    assert!(err.contains("Name: value"), "{err}");
}

#[test]
fn ctl_explain_uses_the_running_state() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let top = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    let f = Fulcrum::start(&common::config(&top, &[&a, &b], ""));
    let admin = f.admin_addr().to_string();
    let ctl = |args: &[&str]| {
        let out = Command::new(common::bin())
            .args(["ctl", "--admin", &admin, "--token-file"])
            .arg(&token)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ctl(&["drain", "app", "a"]);
    let url = f.url("/x");
    for _ in 0..4 {
        let out = ctl(&["explain", "GET", &url]);
        assert!(out.contains("decision: forward to pool `app`"), "{out}");
        assert!(out.contains("draining"), "{out}");
        assert!(
            out.contains("would pick: b (with the running state)"),
            "{out}"
        );
    }
}
