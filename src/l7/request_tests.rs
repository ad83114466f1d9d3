//! Unit tests of request-head parsing and rewriting.

use super::*;

fn fwd() -> Forwarding<'static> {
    Forwarding {
        client_ip: "192.0.2.7".parse().unwrap(),
        proto: "http",
        hash_key: None,
        max_headers: 100,
    }
}

fn parse_str(raw: &str) -> Result<(RequestHead, String), HeadError> {
    let mut out = Vec::new();
    let (mut m, mut t) = (String::new(), String::new());
    let head = parse(raw.as_bytes(), &fwd(), &mut out, &mut m, &mut t)?;
    Ok((head, String::from_utf8(out).unwrap()))
}

#[test]
fn rewrites_head_for_the_backend() {
    let (head, out) = parse_str(
        "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\nUser-Agent: t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.body, BodyFraming::Empty);
    assert!(head.keep_alive && !head.http10);
    assert_eq!(
        out,
        "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Forwarded-For: 10.9.9.9, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nForwarded: for=192.0.2.7;proto=http\r\nVia: 1.0 edge, 1.1 fulcrum\r\n\r\n"
    );
}

#[test]
fn framing_is_reemitted() {
    let (head, out) = parse_str(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    assert_eq!(head.body, BodyFraming::Length(5));
    assert_eq!(out.matches("Content-Length: 5\r\n").count(), 1);
    let (head, out) =
        parse_str("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
    assert_eq!(head.body, BodyFraming::Chunked);
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
}

#[test]
fn http10_defaults_to_close() {
    let (head, _) = parse_str("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(head.http10 && !head.keep_alive);
    let (head, _) = parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert!(head.keep_alive);
    let (head, _) = parse_str("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap();
    assert!(!head.keep_alive);
}

#[test]
fn rejects_smuggling_and_malformed_heads() {
    let bad = [
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        "GET nothing HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for raw in bad {
        assert!(
            matches!(parse_str(raw), Err(HeadError::Bad(_))),
            "accepted: {raw:?}"
        );
    }
    assert!(matches!(
        parse_str("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Err(HeadError::NotImplemented(_))
    ));
    assert!(matches!(
        parse_str("GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n"),
        Err(HeadError::ExpectationFailed)
    ));
    let (head, _) = parse_str("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap();
    assert!(!head.expect_continue, "HTTP/1.0 expectations are ignored");
    assert!(head.missing_host);
    let many: String = (0..20).map(|i| format!("x-{i}, ")).collect();
    assert!(matches!(
        parse_str(&format!(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: {many}\r\n\r\n"
        )),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        parse_str("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err(HeadError::MethodNotAllowed)
    ));
    assert!(matches!(
        parse_str("GET / HTTP/1.1\r\nHost: h\r\n"),
        Err(HeadError::Partial)
    ));
}

#[test]
fn too_many_headers() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..150 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert!(matches!(parse_str(&raw), Err(HeadError::TooManyHeaders)));
}

#[test]
fn hash_keys() {
    let key = HashKey::Cookie("sid".into());
    let f = Forwarding {
        hash_key: Some(&key),
        ..fwd()
    };
    let parse_key = |raw: &str| {
        let mut out = Vec::new();
        let (mut m, mut t) = (String::new(), String::new());
        parse(raw.as_bytes(), &f, &mut out, &mut m, &mut t)
            .unwrap()
            .key
    };
    let a = parse_key("GET / HTTP/1.1\r\nHost: h\r\nCookie: x=1; sid=abc\r\n\r\n");
    let b = parse_key("GET /other HTTP/1.1\r\nHost: h\r\nCookie: sid=abc\r\n\r\n");
    let c = parse_key("GET / HTTP/1.1\r\nHost: h\r\nCookie: sid=xyz\r\n\r\n");
    let none = parse_key("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(none, hash_ip("192.0.2.7".parse().unwrap()));
}
