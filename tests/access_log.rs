//! The access log: JSON and template formats written to a file, reopened on SIGUSR1 as
//! logrotate needs, errors-only and sampling, HTTP/2 requests logged like HTTP/1.1 ones,
//! and a template with an unknown variable refused with its position.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum};

fn config(backends: &[&Backend], log: &str) -> String {
    common::config(&format!("[access_log]\n{log}\n"), backends, "")
}

/// The lines of `path` once it has at least `n` (waits up to 5 s: lines are batched).
fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(f: &Fulcrum, path: &str) {
    let (code, _, err) = common::curl(&["-o", "/dev/null", &f.url(path)]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn json_lines_to_a_file_reopened_on_sigusr1() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let f = Fulcrum::start(&config(
        &[&a],
        &format!("format = \"json\"\npath = \"{}\"", file.display()),
    ));
    get(&f, "/one?x=1");
    get(&f, "/two");
    let got = lines(&file, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    for (line, path) in got.iter().zip(["/one?x=1", "/two"]) {
        assert!(line.starts_with("{\"time\":\""), "{line}");
        for field in [
            "\"kind\":\"http\"",
            "\"listener\":",
            "\"method\":\"GET\"",
            &format!("\"path\":\"{path}\""),
            "\"http\":\"1.1\"",
            "\"pool\":\"app\"",
            "\"algorithm\":\"weighted_round_robin\"",
            "\"backend\":\"a\"",
            "\"status\":200",
            "\"retries\":0",
            "\"ms\":",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
    // HTTP/2 (prior knowledge) is logged the same way.
    let (code, _, _) = common::curl(&["--http2-prior-knowledge", "-o", "/dev/null", &f.url("/h2")]);
    assert_eq!(code, 0);
    let got = lines(&file, 3);
    assert!(
        got[2].contains("\"http\":\"2\"") && got[2].contains("\"path\":\"/h2\""),
        "{got:?}"
    );

    // logrotate: move the file away, SIGUSR1, and new lines go to a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    f.signal("USR1");
    assert!(f.wait_log("reopening the access log"), "{}", f.log());
    std::thread::sleep(Duration::from_millis(100));
    get(&f, "/after");
    let fresh = lines(&file, 1);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh[0].contains("\"path\":\"/after\""), "{fresh:?}");
    assert_eq!(lines(&rotated, 3).len(), 3);
}

#[test]
fn templates_errors_only_and_sampling() {
    let a = Backend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let text = |log: &str| config(&[&a], &format!("path = \"{}\"\n{log}", file.display()));
    let f = Fulcrum::start(&text("format = \"$method $path $status $backend\""));
    get(&f, "/t");
    assert_eq!(lines(&file, 1), vec!["GET /t 200 a".to_owned()]);

    // Errors only: a 200 is not logged, a 502 is (the pool is pointed at a closed port).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut broken = text("format = \"$path $status\"\nerrors_only = true");
    broken = broken.replace(&a.addr.to_string(), &dead.to_string());
    std::fs::remove_file(&file).unwrap();
    let g = Fulcrum::start(&broken);
    get(&g, "/fails");
    assert_eq!(lines(&file, 1), vec!["/fails 502".to_owned()]);
    drop(g);

    // Sample 0: successes are never logged, errors always.
    std::fs::remove_file(&file).unwrap();
    let h = Fulcrum::start(&text("format = \"$path $status\"\nsample = 0.0"));
    for _ in 0..5 {
        get(&h, "/ok");
    }
    get(&h, "/status/503");
    let got = lines(&file, 1);
    assert_eq!(got, vec!["/status/503 503".to_owned()], "{got:?}");
}

#[test]
fn an_unknown_template_variable_is_refused_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(
        &path,
        "[access_log]\nformat = \"$client $bogus\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[pools.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .unwrap();
    let out = common::check_file(&path);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text.contains(":2:10: unknown log variable(s): $bogus"),
        "{text}"
    );
    assert!(text.contains("variables: $time"), "{text}");
}
