//! A route's bounds on the request (`allowed_methods`, `max_body_size`,
//! `max_uri_length`) with curl over HTTP/1.1 and HTTP/2: the refused request gets 405
//! (with `Allow`), 413 or 414, never reaches the backend, and is logged as denied; what
//! is within the bounds goes through.

mod common;

use common::{Backend, Fulcrum};

#[test]
fn requests_outside_a_routes_bounds_are_refused_before_the_backend() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\nname = \"upload\"\npath_prefix = \"/upload\"\npool = \"app\"\n\
         allowed_methods = [\"GET\", \"put\"]\nmax_body_size = \"1k\"\nmax_uri_length = 40\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ));
    let url = f.url("/upload/file");
    let status = |args: &[String]| {
        let all: Vec<&str> = args.iter().map(String::as_str).collect();
        common::code(&all)
    };
    let small = "x".repeat(1024);
    let big = "x".repeat(1025);
    for h2 in [false, true] {
        let with = |extra: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            if h2 {
                v.push("--http2-prior-knowledge".into());
            }
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        assert_eq!(status(&with(&[&url])), "200");
        assert_eq!(
            status(&with(&["-X", "PUT", "--data-binary", &small, &url])),
            "200"
        );
        assert_eq!(
            status(&with(&["-X", "PUT", "--data-binary", &big, &url])),
            "413"
        );
        assert_eq!(status(&with(&["-X", "DELETE", &url])), "405");
        let long = f.url(&format!("/upload/{}", "a".repeat(40)));
        assert_eq!(status(&with(&[&long])), "414");
        // Other routes (the listener's default) are not bounded.
        assert_eq!(status(&with(&["-X", "DELETE", &f.url("/other")])), "200");
    }
    assert_eq!(a.requests(), 6, "a refused request reached the backend");
    let (_, head, _) = common::curl(&["-s", "-i", "-X", "POST", &url]);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert_eq!(
        common::header_of(&head, "allow").as_deref(),
        Some("GET, PUT")
    );
    for denied in ["denied=method", "denied=body", "denied=uri"] {
        assert!(f.wait_log(denied), "{denied}: {}", f.log());
    }
}

#[test]
fn bad_bounds_are_config_errors_at_their_position() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[[listeners.routes]]\npath = \"/\"\npool = \"app\"\nmax_body_size = \"10 parsecs\"\nallowed_methods = [\"GE T\"]\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:7:17") && err.contains("`max_body_size` is not a size"),
        "{err}"
    );
    assert!(
        err.contains("fulcrum.toml:8:20") && err.contains("`GE T` is not a method"),
        "{err}"
    );
}

/// PUTs `size` bytes streamed from curl's standard input (no declared length: chunked
/// over HTTP/1.1, DATA frames alone over HTTP/2); the status.
fn stream_upload(url: &str, size: usize, h2: bool) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-T",
        "-",
    ]);
    if h2 {
        cmd.arg("--http2-prior-knowledge");
    }
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(&vec![b'x'; size]);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_streamed_body_past_the_bound_gets_413_over_http1_and_http2() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\nname = \"upload\"\npath_prefix = \"/count\"\npool = \"app\"\nmax_body_size = \"64k\"\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ));
    let url = f.url("/count");
    for h2 in [false, true] {
        assert_eq!(stream_upload(&url, 60_000, h2), "200", "h2: {h2}");
        assert_eq!(stream_upload(&url, 300_000, h2), "413", "h2: {h2}");
    }
    assert!(f.wait_log("denied=body"));
    // The backend was not blamed: it is still up and serving.
    assert_eq!(stream_upload(&url, 1_000, false), "200");
}
