//! The admin API through `fulcrum ctl`, as an operator and a deploy script use it: the
//! state table, drain / undrain, disable / enable, weight, adding and removing a
//! backend, diff against the file and reload; the token guarding every change; and a
//! rolling deploy under load (drain, wait, restart, undrain, one backend after the
//! other) with no failed request.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Fulcrum};

struct Setup {
    f: Fulcrum,
    admin: SocketAddr,
    token: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(backends: &[&Backend], with_token: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let token_line = if with_token {
        format!("token_file = \"{}\"\n", token.display())
    } else {
        String::new()
    };
    let top = format!("[admin]\nbind = \"127.0.0.1:0\"\n{token_line}");
    let f = Fulcrum::start(&common::config(
        &top,
        backends,
        "algorithm = \"weighted_round_robin\"",
    ));
    let admin = f.admin_addr();
    Setup {
        f,
        admin,
        token,
        _dir: dir,
    }
}

/// Runs `fulcrum ctl --admin ADDR [--token-file T] ARGS`: (exit code, stdout, stderr).
fn ctl(s: &Setup, token: bool, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(["ctl", "--admin", &s.admin.to_string()]);
    if token {
        cmd.arg("--token-file").arg(&s.token);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(s: &Setup, args: &[&str]) -> String {
    let (code, out, err) = ctl(s, true, args);
    assert_eq!(code, 0, "ctl {args:?}: {out}{err}");
    out
}

/// Which backends answer `n` requests.
fn answers(f: &Fulcrum, n: usize) -> std::collections::BTreeMap<String, usize> {
    common::tally(&f.url("/"), n, &[])
}

#[test]
fn operators_steer_backends_with_ctl() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let s = start(&[&a, &b], true);

    let table = ok(&s, &["state"]);
    assert!(table.starts_with("POOL"), "{table}");
    for name in ["a", "b"] {
        let row = table
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap();
        assert!(row.contains(" up "), "{table}");
    }

    // Changes need the token.
    let (code, _, err) = ctl(&s, false, &["drain", "app", "a"]);
    assert_eq!(code, 1);
    assert!(err.contains("Authorization: Bearer"), "{err}");
    std::fs::write(&s.token, "wrong").unwrap();
    let (code, _, err) = ctl(&s, true, &["drain", "app", "a"]);
    assert_eq!(code, 1);
    assert!(err.contains("wrong token"), "{err}");
    std::fs::write(&s.token, "s3cret-token").unwrap();

    // Drain: no new request for a; undrain: back in rotation.
    assert!(ok(&s, &["drain", "app", "a"]).contains("draining"));
    assert_eq!(answers(&s.f, 10).get("b"), Some(&10));
    assert!(
        ok(&s, &["state"])
            .lines()
            .any(|l| l.contains(" a ") && l.contains("draining"))
    );
    ok(&s, &["wait", "app", "a", "--timeout", "5"]);
    ok(&s, &["undrain", "app", "a"]);
    assert_eq!(answers(&s.f, 10).get("a"), Some(&5));

    // Disable: out of service whatever its health.
    ok(&s, &["disable", "app", "b"]);
    assert_eq!(answers(&s.f, 6).get("a"), Some(&6));
    ok(&s, &["enable", "app", "b"]);

    // A weight, a backend added then removed: the running config differs from the file
    // until a reload puts the file back.
    let changed = ok(&s, &["weight", "app", "a", "3"]);
    assert!(changed.contains("weight"), "{changed}");
    let tally = answers(&s.f, 8);
    assert_eq!(
        (tally.get("a"), tally.get("b")),
        (Some(&6), Some(&2)),
        "{tally:?}"
    );
    let c = Backend::start("c");
    let added = ok(&s, &["add", "app", &c.addr.to_string(), "--name", "c"]);
    assert!(added.contains("c"), "{added}");
    assert!(answers(&s.f, 10).contains_key("c"));
    let diff = ok(&s, &["diff"]);
    assert!(diff.contains("c") && diff.contains("weight"), "{diff}");
    ok(&s, &["remove", "app", "c"]);
    let before = c.requests();
    answers(&s.f, 10);
    assert_eq!(
        c.requests(),
        before,
        "a removed backend still gets requests"
    );
    let reloaded = ok(&s, &["reload"]);
    assert!(reloaded.contains("weight"), "{reloaded}");
    assert_eq!(ok(&s, &["diff"]).trim(), "the running config is the file's");

    // Refusals say why.
    let (code, _, err) = ctl(&s, true, &["drain", "app", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("no backend `nobody`"), "{err}");
    let (code, _, err) = ctl(&s, true, &["weight", "app", "a", "5000"]);
    assert_eq!(code, 1);
    assert!(err.contains("1 to 1000"), "{err}");
    let (code, _, err) = ctl(&s, true, &["add", "app", "not-an-address"]);
    assert_eq!(code, 1);
    assert!(err.contains("IP:PORT"), "{err}");

    // Every change is logged.
    let log = s.f.log();
    assert!(log.contains("admin: drain app/a"), "{log}");
    assert!(log.contains("admin: add app/c"), "{log}");
}

#[test]
fn without_a_token_file_the_api_is_read_only() {
    let a = Backend::start("a");
    let s = start(&[&a], false);
    assert!(ok(&s, &["state"]).contains(" a "));
    let (code, _, err) = ctl(&s, true, &["drain", "app", "a"]);
    assert_eq!(code, 1);
    assert!(err.contains("read-only"), "{err}");
    // No admin at all: ctl says where to look.
    let out = Command::new(common::bin())
        .args(["ctl", "state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin"));
}

#[test]
fn a_rolling_deploy_under_load_fails_no_request() {
    let mut a = Backend::start("a");
    let mut b = Backend::start("b");
    let s = start(&[&a, &b], true);
    let url = s.f.url("/");
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // Four clients on kept-alive connections, as fast as they go.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, failed, done) =
                (url.clone(), stop.clone(), failed.clone(), done.clone());
            std::thread::spawn(move || {
                let rt = common::rt();
                let client = common::client();
                rt.block_on(async {
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // One backend after the other: drain, wait for its requests, "deploy" (stop it and
    // start it again), put it back.
    for (name, backend) in [("a", &mut a), ("b", &mut b)] {
        ok(&s, &["drain", "app", name]);
        ok(&s, &["wait", "app", name, "--timeout", "10"]);
        let addr = backend.addr;
        drop(std::mem::replace(backend, Backend::start("placeholder")));
        std::thread::sleep(Duration::from_millis(200));
        *backend = Backend::start_at(name, addr, Duration::ZERO);
        ok(&s, &["undrain", "app", name]);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests of {}", done + failed);
    assert!(done > 200, "only {done} requests");
    // Both new processes took traffic after coming back.
    assert!(a.requests() > 0 && b.requests() > 0);
}
