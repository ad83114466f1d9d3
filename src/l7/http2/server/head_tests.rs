use super::*;

fn field<'a>(name: &'a str, value: &'a str) -> Field<'a> {
    Field {
        name: name.as_bytes(),
        value: value.as_bytes(),
        static_name: None,
    }
}

fn read(fields: &[(&str, &str)]) -> Result<Request<()>, Refused> {
    let mut head = RequestHead::new(16 * 1024, 100);
    for (n, v) in fields {
        head.field(field(n, v));
    }
    head.request()
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "example.com"),
    (":path", "/a?b=c"),
];

#[test]
fn a_request_is_read() {
    let mut fields = GET.to_vec();
    fields.extend([
        ("user-agent", "t"),
        ("cookie", "a=1"),
        ("x", "y"),
        ("cookie", "b=2"),
    ]);
    let req = read(&fields).unwrap();
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), "https://example.com/a?b=c");
    assert_eq!(req.version(), Version::HTTP_2);
    assert_eq!(req.headers()["user-agent"], "t");
    assert_eq!(req.headers()["cookie"], "a=1; b=2");
    assert_eq!(req.headers().get_all("cookie").iter().count(), 1);
}

#[test]
fn without_authority_the_target_is_the_path() {
    let req = read(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/x"),
        ("host", "h"),
    ])
    .unwrap();
    assert_eq!(req.uri(), "/x");
}

#[test]
fn malformed_requests_are_refused() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[(":method", "GET"), (":path", "/")], "no :scheme or :path"),
        (&[(":scheme", "http"), (":path", "/")], "no :method"),
        (
            &[(":method", "GET"), (":scheme", "http"), (":path", "")],
            "empty :path",
        ),
        (
            &[(":method", "GET"), (":method", "GET")],
            "repeated pseudo-header",
        ),
        (
            &[(":method", "GET"), ("a", "b"), (":path", "/")],
            "pseudo-header after a regular field",
        ),
        (&[(":status", "200")], "unknown pseudo-header"),
        (&[("X-Upper", "1")], "upper-case field name"),
        (&[("connection", "close")], "connection-specific field"),
        (&[("te", "gzip")], "te other than trailers"),
        (&[("content-length", "x")], "invalid content-length"),
        (
            &[("content-length", "1"), ("content-length", "2")],
            "invalid content-length",
        ),
        (&[("a", "b\nc")], "invalid field value"),
        (
            &[
                (":method", "CONNECT"),
                (":scheme", "http"),
                (":authority", "a:1"),
            ],
            "CONNECT with :scheme or :path, or no :authority",
        ),
    ];
    for (fields, why) in cases {
        assert_eq!(
            read(fields).unwrap_err(),
            Refused::Malformed(why),
            "{fields:?}"
        );
    }
    let mut ok = GET.to_vec();
    ok.push(("te", "trailers"));
    ok.extend([("content-length", "5"), ("content-length", "5")]);
    assert!(read(&ok).is_ok());
}

#[test]
fn too_many_or_too_large_fields() {
    let mut head = RequestHead::new(100, 100);
    head.field(field("x", &"v".repeat(80)));
    assert_eq!(head.request().unwrap_err(), Refused::TooLarge);
    let mut head = RequestHead::new(16 * 1024, 2);
    for (n, v) in GET.iter().chain(&[("a", "1"), ("b", "2"), ("c", "3")]) {
        head.field(field(n, v));
    }
    assert_eq!(head.request().unwrap_err(), Refused::TooLarge);
}

#[test]
fn a_response_head_round_trips() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("connection", HeaderValue::from_static("close"));
    headers.insert("x-a", HeaderValue::from_static("b"));
    let mut out = Vec::new();
    write_head(Some(200), &headers, Some(12), (1, false, 16_384), &mut out);
    let h = frame::Head::parse(out[..HEADER_LEN].try_into().unwrap());
    assert_eq!(
        (h.kind, h.flags, h.stream),
        (frame::kind::HEADERS, frame::flag::END_HEADERS, 1)
    );
    assert_eq!(h.len as usize, out.len() - HEADER_LEN);
    let mut fields = Vec::new();
    hpack::Decoder::new(4096)
        .decode(&out[HEADER_LEN..], |f| {
            fields.push(format!(
                "{}: {}",
                String::from_utf8_lossy(f.name),
                String::from_utf8_lossy(f.value)
            ))
        })
        .unwrap();
    assert_eq!(
        fields,
        [
            ":status: 200",
            "content-length: 12",
            "content-type: text/plain",
            "x-a: b"
        ]
    );
}
