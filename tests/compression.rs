//! Response compression (`compression` on listeners and routes) with real clients: curl
//! decodes gzip, Brotli and Zstandard bodies of 1 byte to 50 MiB byte for byte over
//! HTTP/1.1, HTTP/1.0 and HTTP/2, with the body sent by length or in chunks; Python's
//! decoders and Chromium do the same (tests/peers); memory stays flat while 50 MiB bodies
//! stream; server-sent events are flushed as they come; responses that must not be
//! compressed (already encoded, ranges, no-transform, other types, small, HEAD, a route
//! that turns it off) are sent as they are; the access log, metrics, reload and config
//! errors.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Fulcrum};

const CODINGS: [&str; 3] = ["gzip", "br", "zstd"];

/// A listener compressing everything (min_size 0) by default, with one route per coding
/// (`/gzip/...` and so on, prefix stripped) and a route without compression (`/plain/`).
fn start(backend: &Backend, extra: &str) -> Fulcrum {
    let mut routes = String::new();
    for c in CODINGS {
        routes.push_str(&format!(
            "[[listeners.routes]]\npath_prefix = \"/{c}/\"\nstrip_prefix = \"/{c}\"\npool = \"app\"\n\
             compression = {{ algorithms = [\"{c}\"], min_size = 0 }}\n"
        ));
    }
    Fulcrum::start(&format!(
        "threads = 1\naccess_log = true\n{extra}\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [listeners.compression]\nmin_size = 0\n\
         {routes}\
         [[listeners.routes]]\npath_prefix = \"/plain/\"\nstrip_prefix = \"/plain\"\npool = \"app\"\n\
         compression = {{ enabled = false }}\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        backend.addr
    ))
}

/// Fetches `url` with curl decoding `coding` (`extra` args first) into a file; the
/// response head and the decoded body.
fn fetch(url: &str, coding: &str, extra: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let mut args: Vec<&str> = extra.to_vec();
    let accept = format!("Accept-Encoding: {coding}");
    let body_path = body.to_str().unwrap();
    args.extend([
        "--compressed",
        "-H",
        &accept,
        "-D",
        "-",
        "-o",
        body_path,
        url,
    ]);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn header(head: &str, name: &str) -> Option<String> {
    common::header_of(head, name)
}

#[test]
fn curl_decodes_every_coding_byte_for_byte() {
    let a = Backend::start("a");
    let f = start(&a, "");
    for version in ["--http1.1", "--http2-prior-knowledge", "--http1.0"] {
        for coding in CODINGS {
            for size in [1usize, 1000, 70_000, 1 << 20] {
                for framing in ["", "?chunked=1"] {
                    let url = f.url(&format!("/{coding}/text/{size}{framing}"));
                    let (head, body) = fetch(&url, coding, &[version]);
                    let what = format!("{version} {coding} {size} {framing}");
                    assert_eq!(
                        header(&head, "content-encoding").as_deref(),
                        Some(coding),
                        "{what}: {head}"
                    );
                    assert_eq!(header(&head, "content-length"), None, "{what}: {head}");
                    assert!(
                        header(&head, "vary").is_some_and(|v| v.contains("ccept-")),
                        "{what}: {head}"
                    );
                    assert!(body == common::text(0, size), "{what}: body differs");
                }
            }
        }
    }
    // The listener's default: the client's preference, then the configured order
    // (zstd first).
    let (head, body) = fetch(&f.url("/text/5000"), "gzip, br, zstd", &[]);
    assert_eq!(header(&head, "content-encoding").as_deref(), Some("zstd"));
    assert!(body == common::text(0, 5000));
    let (head, _) = fetch(&f.url("/text/5000"), "gzip;q=1, br;q=0.5", &[]);
    assert_eq!(header(&head, "content-encoding").as_deref(), Some("gzip"));
    assert!(f.wait_log("compressed=br"), "{}", f.log());
}

#[test]
fn fifty_mib_bodies_stream_through_every_coding_with_flat_memory() {
    let a = Backend::start("a");
    let f = start(&a, "[admin]\nbind = \"127.0.0.1:0\"\n");
    let size = 50 << 20;
    let expected = common::text(0, size);
    // Warm up (buffers, the first coder of each kind), then measure.
    for coding in CODINGS {
        fetch(&f.url(&format!("/{coding}/text/100000")), coding, &[]);
    }
    let before = f.peak_rss_kib();
    for (coding, version) in
        CODINGS
            .iter()
            .zip(["--http1.1", "--http2-prior-knowledge", "--http1.1"])
    {
        let url = f.url(&format!("/{coding}/text/{size}?chunked=1"));
        let (head, body) = fetch(&url, coding, &[version]);
        assert_eq!(header(&head, "content-encoding").as_deref(), Some(*coding));
        assert!(
            body.len() == size && body == expected,
            "{coding}: body differs"
        );
    }
    let grown = f.peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grown} KiB over three 50 MiB bodies");
    assert!(grown < 16 * 1024, "peak RSS grew by {grown} KiB");
    let metrics = common::scrape(f.admin_addr());
    for coding in CODINGS {
        let into = common::value(
            &metrics,
            &format!("fulcrum_compression_in_bytes_total{{coding=\"{coding}\"}}"),
        );
        let out = common::value(
            &metrics,
            &format!("fulcrum_compression_out_bytes_total{{coding=\"{coding}\"}}"),
        );
        assert!(into >= size as f64, "{coding}: {into}");
        assert!(out * 5.0 < into, "{coding}: {out} of {into}");
    }
}

#[test]
fn responses_that_must_stay_as_they_are_are_not_compressed() {
    let a = Backend::start("a");
    let f = start(&a, "");
    let cases = [
        ("/gzip/text/5000?ce=gzip", "already encoded"),
        ("/gzip/text/5000?cc=no-transform", "no-transform"),
        ("/gzip/text/5000?cr=bytes%200-4999/9000", "a range"),
        ("/gzip/text/5000?type=image/png", "not a listed type"),
        ("/plain/text/5000", "route without compression"),
    ];
    for (path, why) in cases {
        let (_, head, _) = common::curl(&[
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept-Encoding: gzip",
            &f.url(path),
        ]);
        assert_eq!(
            header(&head, "content-encoding").as_deref(),
            if why == "already encoded" {
                Some("gzip")
            } else {
                None
            },
            "{why}: {head}"
        );
        assert_eq!(
            header(&head, "content-length").as_deref(),
            Some("5000"),
            "{why}: {head}"
        );
    }
    // Below the route's minimum size (the listener's default of 512 applies to a route
    // with its own settings that leave it out).
    let small = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[listeners.compression]\n\
         [pools.app]\nbackends = [{{ address = \"{}\" }}]\n",
        a.addr
    ));
    let (_, head, _) = common::curl(&[
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Accept-Encoding: gzip",
        &small.url("/text/511"),
    ]);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert!(header(&head, "vary").is_none(), "{head}");
    let (_, head, _) = common::curl(&[
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Accept-Encoding: gzip",
        &small.url("/text/512"),
    ]);
    assert_eq!(
        header(&head, "content-encoding").as_deref(),
        Some("gzip"),
        "{head}"
    );
    // HEAD: as it is, over both protocols.
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (_, head, _) = common::curl(&[
            version,
            "-s",
            "-I",
            "-H",
            "Accept-Encoding: gzip",
            &f.url("/gzip/text/5000"),
        ]);
        assert_eq!(header(&head, "content-encoding"), None, "{head}");
        assert_eq!(
            header(&head, "content-length").as_deref(),
            Some("5000"),
            "{head}"
        );
    }
    // A client that takes no coding: identity, with Vary for caches on the way.
    let (_, body, _) = common::curl(&[&f.url("/gzip/text/600")]);
    assert!(body.as_bytes() == common::text(0, 600));
    let (_, head, _) = common::curl(&[
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Accept-Encoding: identity",
        &f.url("/gzip/text/600"),
    ]);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert!(
        header(&head, "vary").is_some_and(|v| v.eq_ignore_ascii_case("accept-encoding")),
        "{head}"
    );
    // A strong ETag is made weak once the bytes differ, a weak one stays.
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (head, _) = fetch(&f.url("/gzip/text/5000?etag=%22v1%22"), "gzip", &[version]);
        assert_eq!(header(&head, "etag").as_deref(), Some("W/\"v1\""), "{head}");
        let (head, _) = fetch(
            &f.url("/gzip/text/5000?etag=W/%22v2%22"),
            "gzip",
            &[version],
        );
        assert_eq!(header(&head, "etag").as_deref(), Some("W/\"v2\""), "{head}");
    }
}

#[test]
fn server_sent_events_are_flushed_as_they_come() {
    let a = Backend::start("a");
    let f = start(&a, "");
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        for coding in CODINGS {
            let started = Instant::now();
            let mut child = Command::new("curl")
                .args(["-sS", "-N", "--max-time", "20", "--compressed", version])
                .args(["-H", &format!("Accept-Encoding: {coding}")])
                .arg(f.url(&format!("/{coding}/events/3/1500")))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = child.stdout.take().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            // The first event is written at once, the second 1.5 s later: the first
            // must be decodable before the second exists.
            while !String::from_utf8_lossy(&seen).contains("event 0") {
                let n = std::io::Read::read(&mut out, &mut buf).unwrap();
                assert!(n > 0, "{version} {coding}: stream ended: {seen:?}");
                seen.extend_from_slice(&buf[..n]);
            }
            let first = started.elapsed();
            assert!(
                first < Duration::from_millis(1400),
                "{version} {coding}: the first event took {first:?}"
            );
            std::io::Read::read_to_end(&mut out, &mut seen).unwrap();
            assert!(child.wait().unwrap().success());
            assert_eq!(
                String::from_utf8_lossy(&seen),
                "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n"
            );
        }
    }
}

#[test]
fn python_and_chromium_decode_every_coding() {
    let a = Backend::start("a");
    let f = start(&a, "");
    let sizes = ["1", "1000", "70000", "1048576", "52428800"];
    for coding in CODINGS {
        let base = f.url(&format!("/{coding}/text/"));
        let out = common::peers::run_ok("decode.py", &[&base, coding, &sizes.join(",")]);
        assert!(out.contains(&format!("OK {coding}")), "{out}");
    }
    let out = common::peers::run_ok("compressed_page.py", &[&f.url("/"), &sizes.join(",")]);
    for coding in CODINGS {
        assert!(out.contains(&format!("OK {coding}")), "{out}");
    }
}

#[test]
fn compression_follows_reloads() {
    let a = Backend::start("a");
    let config = |compress: &str| {
        format!(
            "threads = 1\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{compress}\
             [pools.app]\nbackends = [{{ address = \"{}\" }}]\n",
            a.addr
        )
    };
    let f = Fulcrum::start(&config(""));
    let url = f.url("/text/5000");
    let (head, _) = fetch(&url, "br", &[]);
    assert_eq!(header(&head, "content-encoding"), None);
    let out = f.reload(&config("[listeners.compression]\nalgorithms = [\"br\"]\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = fetch(&url, "br", &[]);
    assert_eq!(header(&head, "content-encoding").as_deref(), Some("br"));
    assert!(body == common::text(0, 5000));
}

#[test]
fn bad_compression_settings_are_config_errors_at_their_position() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[listeners.compression]\nalgorithms = [\"gzip\", \"deflate\"]\ngzip_level = 12\ntypes = [\"html\"]\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:5:23")
            && err.contains("`deflate` is not a compression algorithm"),
        "{err}"
    );
    assert!(
        err.contains("fulcrum.toml:6:14") && err.contains("`gzip_level` must be between 1 and 9"),
        "{err}"
    );
    assert!(
        err.contains("fulcrum.toml:7:10") && err.contains("`html` is not a media type"),
        "{err}"
    );
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"app\"\ncompression = {}\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(err.contains("no responses to compress"), "{err}");
}

/// `data` compressed with `coding` by the codec crates Fulcrum uses.
fn encoded(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 20);
                w.write_all(data).unwrap();
            }
            out
        }
        _ => zstd::stream::encode_all(data, 3).unwrap(),
    }
}

#[test]
fn compressed_request_bodies_are_decoded_within_a_bound() {
    let a = Backend::start("a");
    let f = Fulcrum::start(&format!(
        "threads = 1\naccess_log = true\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[listeners.routes]]\npath_prefix = \"/up/\"\nstrip_prefix = \"/up\"\npool = \"app\"\n\
         decompress_requests = {{ max_size = \"1m\" }}\n\
         [pools.app]\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n",
        a.addr
    ));
    let dir = tempfile::tempdir().unwrap();
    let plain = common::text(0, 300_000);
    for coding in CODINGS {
        let file = dir.path().join(coding);
        std::fs::write(&file, encoded(coding, &plain)).unwrap();
        let data = format!("@{}", file.display());
        let header = format!("Content-Encoding: {coding}");
        for extra in [
            &["--http1.1"][..],
            &["--http1.1", "-H", "Transfer-Encoding: chunked"],
            &["--http2-prior-knowledge"],
        ] {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "10"])
                .args(extra)
                .args(["--data-binary", &data, "-H", &header, &f.url("/up/echo")])
                .output()
                .unwrap();
            assert!(
                out.stdout == plain,
                "{coding} {extra:?}: {} bytes back",
                out.stdout.len()
            );
        }
        // Without the route's decoding, the backend gets the body as sent.
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--data-binary",
                &data,
                "-H",
                &header,
            ])
            .arg(f.url("/echo"))
            .output()
            .unwrap();
        assert!(
            out.stdout == std::fs::read(&file).unwrap(),
            "{coding}: passed as sent"
        );
    }
    // The backend sees a plain body with its length.
    let gz = dir.path().join("gzip");
    let (_, head, _) = common::curl(&[
        "--data-binary",
        &format!("@{}", gz.display()),
        "-H",
        "Content-Encoding: gzip",
        &f.url("/up/headers"),
    ]);
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert!(head.contains("content-length: 300000"), "{head}");
    // A bomb (64 MiB of zeros) is refused at the bound, before the backend; bad data is
    // a bad request.
    let bomb = dir.path().join("bomb");
    std::fs::write(&bomb, encoded("gzip", &vec![0u8; 64 << 20])).unwrap();
    let served = a.requests();
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let status = common::code(&[
            version,
            "--data-binary",
            &format!("@{}", bomb.display()),
            "-H",
            "Content-Encoding: gzip",
            &f.url("/up/echo"),
        ]);
        assert_eq!(status, "413", "{version}");
        let status = common::code(&[
            version,
            "--data-binary",
            "not gzip at all",
            "-H",
            "Content-Encoding: gzip",
            &f.url("/up/echo"),
        ]);
        assert_eq!(status, "400", "{version}");
    }
    assert_eq!(a.requests(), served, "a refused body reached the backend");
    assert!(f.rss_kib() < 64 * 1024, "RSS {} KiB", f.rss_kib());
    assert!(f.wait_log("denied=body"), "{}", f.log());
}
