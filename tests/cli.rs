//! The command line: `check` reports FILE:LINE:COL with a hint and exits 2, `run` with a
//! bad file starts nothing, `serve` and `demo` balance real traffic.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Backend, bin, raw};

/// Runs `fulcrum check` on `text`; returns (exit code, stdout + stderr, file path).
fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, text).unwrap();
    let out = common::check_file(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text, path.display().to_string())
}

const GOOD: &str = r#"
[[listeners]]
bind = "127.0.0.1:0"
pool = "app"

[pools.app]
algorithm = "least_connections"
backends = [{ address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }]
"#;

#[test]
fn a_valid_file_checks_ok() {
    let (code, out, _) = check(GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 listener, 1 pool, 2 backends)"), "{out}");
}

#[test]
fn every_example_config_checks_ok() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = common::check_file(&path);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert!(seen >= 2, "examples/ has no configs");
}

/// Each bad file: (text, expected "LINE:COL: message" fragment, expected hint fragment).
const BAD: &[(&str, &str, &str)] = &[
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nalgoritm = \"random\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
        ":5:1: unknown key `algoritm`",
        "did you mean `algorithm`?",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1\" }]\n",
        ":5:25: bad address `127.0.0.1`",
        "write IP:PORT",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nalgorithm = \"least_conections\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
        ":5:13: unknown algorithm `least_conections`",
        "did you mean `least_connections`?",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = []\n",
        ":5:12: pool `app` has no backends",
        "add at least one",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\", weight = 0 }]\n",
        ":5:49: weight must be between 1 and 1000, not 0",
        "remove it or mark it `backup = true`",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ name = \"a\", address = \"127.0.0.1:1\" }, { name = \"a\", address = \"127.0.0.1:2\" }]\n",
        ":5:63: duplicate backend name `a`",
        "distinct `name`",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n[pools.app]\nbackends = [{ address = \"127.0.0.1:2\" }]\n",
        ":6:",
        "may appear only once",
    ),
    (
        "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:80\"\npool = \"app\"\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:81\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
        ":6:8: duplicate listener name `web`",
        "distinct `name`",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"ap\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
        ":3:8: listener uses pool `ap`, which is not defined",
        "did you mean `app`?",
    ),
    (
        "[timeouts]\nconnect = \"5 seconds\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
        ":2:11: `timeouts.connect` is not a valid duration",
        "\"250ms\"",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" ]\n",
        ":5:",
        "",
    ),
    ("", ":1:1: no listeners", "add [[listeners]]"),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n[pools.app.health]\ncheck = \"icmp\"\n",
        ":7:9: unknown health check `icmp`",
        "checks: http, tcp",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n[pools.app.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
        ":8:11: `pools.app.health.timeout` is longer than the interval",
        "lower it or raise `interval`",
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n[pools.app.health]\nexpect_status = \"2xx\"\nfal = 3\n",
        ":8:1: unknown key `fal`",
        "did you mean `fall`?",
    ),
];

#[test]
fn bad_files_get_file_line_column_and_a_hint() {
    for (text, message, hint) in BAD {
        let (code, out, path) = check(text);
        assert_eq!(code, 2, "{text}\n{out}");
        assert!(
            out.contains(&format!("{path}{message}")),
            "expected {message:?} in:\n{out}"
        );
        assert!(out.contains(hint), "expected hint {hint:?} in:\n{out}");
    }
}

#[test]
fn several_problems_are_all_reported() {
    let (code, out, _) = check(
        "[[listeners]]\nbind = \"nowhere\"\npool = \"app\"\n[pools.app]\nalgorithm = \"fastest\"\nbackends = [{ address = \"127.0.0.1:1\", weight = 5000 }]\n",
    );
    assert_eq!(code, 2);
    assert!(out.contains(":2:8: bad address `nowhere`"), "{out}");
    assert!(out.contains(":5:13: unknown algorithm `fastest`"), "{out}");
    assert!(out.contains(":6:49: weight must be between"), "{out}");
}

#[test]
fn values_of_the_wrong_type_are_all_reported_in_file_order_with_the_fix() {
    let (code, out, _) = check(
        "threads = \"2\"\n[timeouts]\nconnect = 5\n[[listeners]]\nbind = 8080\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\", weight = \"2\" }]\n",
    );
    assert_eq!(code, 2, "{out}");
    let expected = [
        (
            ":1:11: `threads` must be a number, not a string",
            "write it without quotes: threads = 2",
        ),
        (
            ":3:11: `connect` must be a string, not a number",
            "connect = \"5s\"",
        ),
        (
            ":5:8: `bind` must be a string, not a number",
            "write it in quotes: bind = \"8080\"",
        ),
        (
            ":8:49: `weight` must be a number, not a string",
            "weight = 2",
        ),
    ];
    let mut at = 0;
    for (message, hint) in expected {
        let found = out[at..].find(message).map(|i| i + at);
        assert!(
            found.is_some(),
            "expected {message:?} after byte {at} in:\n{out}"
        );
        at = found.unwrap();
        assert!(
            out[at..].contains(hint),
            "expected hint {hint:?} in:\n{out}"
        );
    }
}

#[test]
fn a_host_name_that_does_not_resolve_is_said_so() {
    let (code, out, _) = check(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"no-such-host.invalid:80\" }]\n",
    );
    assert_eq!(code, 2);
    assert!(
        out.contains(":5:25: the host name `no-such-host.invalid` did not resolve"),
        "{out}"
    );
}

/// Runs `fulcrum run` on `text` until it exits (for files that make it exit).
fn run_file(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(bin())
        .arg("run")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn run_with_a_bad_file_exits_2_and_listens_on_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_file(&format!(
        "[[listeners]]\nbind = \"127.0.0.1:{port}\"\npool = \"app\"\n[pools.app]\nbackends = [{{ address = \"127.0.0.1:1\", weight = 0 }}]\n"
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight must be between"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn run_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run_file(&format!(
        "[[listeners]]\nbind = \"{addr}\"\npool = \"app\"\n[pools.app]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn serve_balances_without_a_config_file() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--backend",
            &a.addr.to_string(),
            "--backend",
            &format!("{}*3", b.addr),
        ])
        .args(["--algorithm", "weighted_round_robin", "--threads", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("listening")));
    let counts = common::tally(&format!("http://127.0.0.1:{port}/"), 40, &[]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(counts.get("a"), Some(&10));
    assert_eq!(counts.get("b"), Some(&30));
}

#[test]
fn serve_without_an_access_log_still_logs_failed_requests() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens on the backend's port: every request gets a 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--backend", &dead.to_string(), "--threads", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("listening")));
    let (_, status, _) = common::curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{port}/x"),
    ]);
    assert_eq!(status, "502");
    let line = lines
        .map_while(Result::ok)
        .find(|l| l.contains("request failed"))
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains("status=502") && line.contains("path=/x"),
        "{line}"
    );
}

#[test]
fn demo_runs_with_no_setup() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(bin())
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = stdout.next().unwrap().unwrap();
    assert!(banner.contains("http://127.0.0.1:"), "{banner}");
    let addr = banner
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let out = raw(
            addr.parse().unwrap(),
            b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        let body = out.split("\r\n\r\n").nth(1).unwrap().to_string();
        assert!(body.starts_with("Hello from backend-"), "{out}");
        seen.insert(body[..20].to_string());
    }
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let logged = stderr.find(|l| l.as_ref().unwrap().contains("backend=backend-"));
    // Ctrl-C (SIGINT) stops it with a last line and exit code 0.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    assert_eq!(seen.len(), 3, "round robin over three backends: {seen:?}");
    assert!(
        logged.is_some(),
        "the demo logs which backend served each request"
    );
}

#[test]
fn sighup_does_not_stop_the_balancer() {
    let b = Backend::start("b1");
    let f = common::Fulcrum::start(&common::config("", &[&b], ""));
    let status = Command::new("kill")
        .args(["-HUP", &f.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(f.wait_log("SIGHUP received"), "{}", f.log());
    let out = raw(
        f.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
}

#[test]
fn the_manual_pages_in_man_match_the_command_line() {
    // man/ is generated by the hidden `fulcrum man DIR`; regenerate it after changing a
    // command or flag: `cargo run -- man man`.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let names = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(dir.path()),
        names(&root),
        "run `cargo run -- man man`"
    );
    for name in names(&root) {
        assert_eq!(
            std::fs::read(dir.path().join(&name)).unwrap(),
            std::fs::read(root.join(&name)).unwrap(),
            "man/{} is stale: run `cargo run -- man man`",
            name.to_string_lossy()
        );
    }
    assert!(
        String::from_utf8_lossy(&std::fs::read(root.join("fulcrum.1")).unwrap())
            .contains("fulcrum\\-ctl(1)")
    );
}
