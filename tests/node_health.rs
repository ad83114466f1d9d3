//! This Fulcrum as a node of an HA pair: `GET /health` and `fulcrum ctl health` (the
//! exit status keepalived's `track_script` reads) say ready, draining (drained with
//! `fulcrum ctl node drain`) or unhealthy (no backend up, or a refused reload left the
//! config stale); and `freebind` listeners bind a floating address that is not here yet.

mod common;

use common::{Backend, Fulcrum};

/// A token file for the admin API's changes.
fn token() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "node-token\n").unwrap();
    (dir, path)
}

fn config(token: &std::path::Path, backend: &str, extra: &str) -> String {
    format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = {token:?}\n\
         [[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{extra}\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{backend}\" }}]\n\
         [pools.app.health]\ncheck = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1\nrise = 1\n"
    )
}

/// `fulcrum ctl health` against `f`: (exit code, what it printed).
fn ctl(f: &Fulcrum, token: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::bin())
        .args(["ctl", "--admin", &f.admin_addr().to_string()])
        .arg("--token-file")
        .arg(token)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn health(f: &Fulcrum) -> (u16, serde_json::Value) {
    let (_, body, head) = common::curl(&[
        "-s",
        "-D",
        "/dev/stderr",
        &format!("http://{}/health", f.admin_addr()),
    ]);
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

fn wait_status(f: &Fulcrum, want: &str) -> serde_json::Value {
    for _ in 0..100 {
        let (_, body) = health(f);
        if body["status"] == want {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("health never {want}: {}", health(f).1);
}

#[test]
fn health_says_ready_draining_or_unhealthy_and_ctl_exits_accordingly() {
    let a = Backend::start("a");
    let (_dir, token) = token();
    let f = Fulcrum::start(&config(&token, &a.addr.to_string(), ""));
    let ctl = |args: &[&str]| ctl(&f, &token, args);
    wait_status(&f, "ready");
    let (status, body) = health(&f);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reasons"], serde_json::json!([]));
    assert_eq!(ctl(&["health"]), (0, "ready\n".into()));

    // Drained by an operator: a standby should take the address.
    assert_eq!(ctl(&["node", "drain"]).0, 0);
    let (status, body) = health(&f);
    assert_eq!((status, body["status"].as_str()), (503, Some("draining")));
    let (code, out) = ctl(&["health"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("draining\n  drained by an operator"),
        "{out}"
    );
    // Requests are still served meanwhile.
    let (_, body, _) = common::curl(&["-s", &f.url("/")]);
    assert_eq!(body, "a");
    assert_eq!(ctl(&["node", "ready"]).0, 0);
    assert_eq!(ctl(&["health"]).0, 0);

    // A reload refused: the node runs an older config than the file says.
    let good = std::fs::read_to_string(&f.path).unwrap();
    std::fs::write(
        &f.path,
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"nowhere\"\n",
    )
    .unwrap();
    f.signal("HUP");
    let body = wait_status(&f, "unhealthy");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("config stale: the last reload was refused"),
        "{body}"
    );
    assert_eq!(ctl(&["health"]).0, 1);
    assert!(f.reload(&good).status.success());
    wait_status(&f, "ready");

    // No backend up.
    drop(a);
    let body = wait_status(&f, "unhealthy");
    assert_eq!(
        body["reasons"],
        serde_json::json!(["no pool has a backend up"])
    );
    let (code, out) = ctl(&["health"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "unhealthy\n  no pool has a backend up\n")
    );

    // Nothing answering: 2.
    let (code, _) = std::process::Command::new(common::bin())
        .args(["ctl", "--admin", "127.0.0.1:9", "health"])
        .output()
        .map(|o| (o.status.code(), ()))
        .unwrap();
    assert_eq!(code, Some(2));
}

#[test]
fn freebind_listeners_bind_an_address_that_is_not_here_yet() {
    let a = Backend::start("a");
    // 192.0.2.0/24 is TEST-NET-1: on no interface here. Nothing is sent to it.
    let floating = "[[listeners]]\nname = \"vip\"\nbind = \"192.0.2.10:0\"\npool = \"app\"\n";
    let (_dir, token) = token();
    let f = Fulcrum::start(&config(
        &token,
        &a.addr.to_string(),
        &format!("{floating}freebind = true\n"),
    ));
    let vip = f.listener_addr("vip");
    assert_eq!(vip.ip().to_string(), "192.0.2.10");
    drop(f);
    // Without freebind the same listener cannot be bound.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fulcrum.toml");
    std::fs::write(&path, config(&token, &a.addr.to_string(), floating)).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("192.0.2.10"), "{err}");
}

#[test]
fn a_stop_with_shutdown_delay_serves_on_while_health_says_draining() {
    let a = Backend::start("a");
    let (_dir, token) = token();
    let mut f = Fulcrum::start(&format!(
        "shutdown_delay = \"2s\"\n{}",
        config(&token, &a.addr.to_string(), "")
    ));
    wait_status(&f, "ready");
    f.signal("TERM");
    let body = wait_status(&f, "draining");
    assert_eq!(body["reasons"], serde_json::json!(["stopping"]));
    // Still accepting new connections and serving them.
    let (code, body, _) = common::curl(&["-s", "--max-time", "1", &f.url("/")]);
    assert_eq!((code, body.as_str()), (0, "a"));
    assert_eq!(f.wait_exit(std::time::Duration::from_secs(10)), Some(0));
    assert!(
        f.log().contains("listeners close after shutdown_delay"),
        "{}",
        f.log()
    );
}
