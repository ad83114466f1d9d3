//! Hostile HTTP/2 traffic, sent by the `h2` Python package with its own validation off
//! (tests/peers/h2_raw.py): requests that would smuggle a second request through the
//! downgrade to HTTP/1.1 are refused before reaching a backend; floods of RST_STREAM and
//! SETTINGS frames, empty DATA frames or endless CONTINUATION frames close that connection
//! while other clients carry on; a bad preface (on a listener that speaks HTTP/2 with prior
//! knowledge) gets GOAWAY(PROTOCOL_ERROR); a client that gives no window for the response
//! body has its stream reset once `timeouts.idle` passes.

mod common;

use std::thread;
use std::time::Duration;

use common::peers;
use common::{Backend, Fulcrum};

fn h2_raw(f: &Fulcrum, case: &str) -> String {
    let port = f.addr.port().to_string();
    peers::run_ok("h2_raw.py", &["127.0.0.1", &port, case])
}

#[test]
fn smuggling_through_the_downgrade_never_reaches_the_backend() {
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config("", &[&backend], ""));
    let ok = h2_raw(&f, "ok");
    assert!(ok.contains("\"status\":200"), "{ok}");
    assert_eq!(backend.requests(), 1);
    // What docs/http2.md says: a malformed request is a stream error (RFC 9113 8.1.1),
    // CR/LF/NUL in a field value included; the connection's other streams carry on.
    for (case, outcome) in [
        ("smuggle-te", "stream_reset"),
        ("smuggle-crlf", "stream_reset"),
        ("connection-header", "stream_reset"),
    ] {
        let out = h2_raw(&f, case);
        assert!(
            out.contains(&format!("\"outcome\":\"{outcome}\"")),
            "{case}: {out}"
        );
        assert!(out.contains("PROTOCOL_ERROR"), "{case}: {out}");
        assert_eq!(backend.requests(), 1, "{case} reached the backend");
    }
    // More DATA than content-length: the stream is reset; the backend never gets the
    // extra bytes as a request of their own.
    let out = h2_raw(&f, "smuggle-cl");
    assert!(out.contains("\"outcome\":\"stream_reset\""), "{out}");
    assert!(!backend.last_head.lock().unwrap().contains("smuggled"));
    assert!(backend.requests() <= 2);
    let head = backend.last_head.lock().unwrap().clone();
    assert!(!head.contains("GET /smuggled"), "{head}");
}

#[test]
fn floods_and_bad_prefaces_close_only_their_connection() {
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config("", &[&backend], ""));
    let url = f.url("/");
    // A well-behaved client keeps making requests during the attacks.
    let bystander = thread::spawn(move || {
        let mut ok = 0;
        for _ in 0..40 {
            let out = std::process::Command::new("curl")
                .args(["-s", "--http2-prior-knowledge", "--max-time", "5", &url])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout) == "app1" {
                ok += 1;
            }
            thread::sleep(Duration::from_millis(25));
        }
        ok
    });
    let rst = h2_raw(&f, "rst-flood");
    assert!(
        rst.contains("\"closed\":true") || rst.contains("\"outcome\":\"goaway\""),
        "{rst}"
    );
    assert!(rst.contains("\"still_serving\":false"), "{rst}");
    let settings = h2_raw(&f, "settings-flood");
    assert!(settings.contains("\"closed\":true"), "{settings}");
    // Frames that do nothing: empty DATA (CVE-2019-9518), a header block that never
    // ends (CONTINUATION flood). The connection ends (GOAWAY ENHANCE_YOUR_CALM, then
    // closed: the client, still sending, may see only the close).
    for case in ["empty-data-flood", "continuation-flood"] {
        let out = h2_raw(&f, case);
        assert!(
            out.contains("\"closed\":true") || out.contains("ENHANCE_YOUR_CALM"),
            "{case}: {out}"
        );
        assert!(!out.contains("\"outcome\":\"open\""), "{case}: {out}");
    }
    let before = backend.requests();
    // A bad preface is a connection error: SETTINGS, GOAWAY(PROTOCOL_ERROR), closed
    // (RFC 9113 3.4), as h2spec 3.5/2 expects.
    let preface = h2_raw(&f, "bad-preface");
    assert!(preface.contains("\"closed\":true"), "{preface}");
    assert!(
        preface.contains("\"goaway\":{\"error_code\":\"PROTOCOL_ERROR\",\"last_stream_id\":0"),
        "{preface}"
    );
    // h2spec's own invalid preface, and a first line with no HTTP/1.x version: the same.
    // Malformed HTTP/1.1 still gets an HTTP/1.1 400.
    let goaway = std::str::from_utf8(fulcrum::l7::http2::BAD_PREFACE_GOAWAY).unwrap();
    for bytes in [
        &b"INVALID CONNECTION PREFACE\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(common::raw(f.addr, bytes, Duration::from_secs(5)), goaway);
    }
    let http1 = common::raw(
        f.addr,
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(http1.starts_with("HTTP/1.1 400"), "{http1}");
    assert_eq!(bystander.join().unwrap(), 40);
    assert!(backend.requests() >= before);
    assert!(h2_raw(&f, "ok").contains("\"status\":200"));
}

#[test]
fn a_client_that_gives_no_window_has_its_stream_reset_after_the_idle_timeout() {
    // A slow-read client: the response head goes out, the body cannot (the stream's
    // window is 0 and never grows). The stream is reset (CANCEL) once `idle` passes.
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&common::config(
        "[timeouts]\nidle = \"1s\"",
        &[&backend],
        "",
    ));
    let out = h2_raw(&f, "no-window");
    assert!(out.contains("\"status\":200"), "{out}");
    assert!(out.contains("\"error_code\":\"CANCEL\""), "{out}");
    let ms: u64 = out
        .split("\"elapsed_ms\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!((900..5000).contains(&ms), "{out}");
    let ok = h2_raw(&f, "ok");
    assert!(ok.contains("\"status\":200"), "{ok}");
}
