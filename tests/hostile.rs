//! Hostile input is answered 400/431/501 and the connection closed; nothing reaches a
//! backend, and other clients are unaffected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Backend, Fulcrum, config, raw};

/// (request, expected status line prefix)
const CASES: &[(&str, &[u8], &str)] = &[
    (
        "CL + TE",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        "HTTP/1.1 400",
    ),
    (
        "TE + CL",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
        "HTTP/1.1 400",
    ),
    (
        "duplicate differing Content-Length",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "HTTP/1.1 400",
    ),
    (
        "bad chunk size",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "chunk size overflow",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "chunk data longer than its size",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "bare CR in a header",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Evil: a\rb\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Evil: a\r\n  folded\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "space before colon",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "unknown transfer coding",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 501",
    ),
    (
        "no Host",
        b"GET / HTTP/1.1\r\n\r\n",
        "HTTP/1.1 400",
    ),
    (
        "garbage method",
        b"\x16\x03\x01\x02\x00\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",
        "HTTP/1.1 400",
    ),
];

#[test]
fn each_hostile_request_is_refused_and_never_forwarded() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    for (name, request, expected) in CASES {
        let out = raw(f.addr, request, Duration::from_secs(5));
        assert!(out.starts_with(expected), "{name}: got {out:?}");
        assert!(out.contains("Connection: close"), "{name}: {out:?}");
    }
    // Bytes with no HTTP/1.x version (here a TLS ClientHello on a plain port) are no
    // HTTP/1 request: the listener also speaks HTTP/2, whose preface they fail, so they
    // get its connection error: SETTINGS, then GOAWAY(PROTOCOL_ERROR).
    let out = raw(
        f.addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        out.as_bytes(),
        fulcrum::l7::http2::BAD_PREFACE_GOAWAY,
        "{out:?}"
    );
    assert_eq!(b.requests(), 0, "a hostile request reached the backend");
    // The server is still fine.
    let out = raw(
        f.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
}

#[test]
fn oversized_heads_get_431() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config(
        "[limits]\nmax_header_size = \"8k\"\nmax_headers = 20",
        &[&b],
        "",
    ));
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    let out = raw(f.addr, &big, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..30 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let out = raw(f.addr, &many, Duration::from_secs(5));
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert_eq!(b.requests(), 0);
}

#[test]
fn smuggling_attempt_on_a_kept_alive_connection_closes_it() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    // A valid request, then an ambiguous one on the same connection: the first is
    // answered, the second refused, and nothing after it is read.
    let out = raw(
        f.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("HTTP/1.1 400 Bad Request"), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 2, "{out}");
    assert_eq!(b.requests(), 1);
}

#[test]
fn a_slow_or_hostile_client_does_not_affect_others() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("[timeouts]\nrequest_header = \"1s\"", &[&b], ""));
    // A client that sends half a head and stalls (slowloris) ...
    let mut stalled = TcpStream::connect(f.addr).unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // ... and one sending garbage, while a normal client keeps working.
    let garbage = raw(f.addr, b"\x00\x01\x02\r\n\r\n", Duration::from_secs(5));
    assert_eq!(garbage.as_bytes(), fulcrum::l7::http2::BAD_PREFACE_GOAWAY);
    let http09 = raw(f.addr, b"GET /\r\n\r\n", Duration::from_secs(5));
    assert!(http09.starts_with("HTTP/1.1 400"), "{http09}");
    let counts = common::tally(&f.url("/"), 20, &[]);
    assert_eq!(counts.get("b1"), Some(&20));
    // The stalled client is answered 408 and closed once the header timeout passes.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = String::new();
    let _ = stalled.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout"), "{out}");
}
