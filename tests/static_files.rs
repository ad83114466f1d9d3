//! Static files (`files` routes) with curl over HTTP/1.1 (sendfile), HTTP/2 and TLS:
//! bodies byte for byte, types and validators, conditional requests (304, 412), byte
//! ranges (single, multipart, unsatisfiable, If-Range), index files and the redirect of
//! a directory without its `/`, listings only when asked, precompressed siblings, and
//! every way out of the root refused (`..`, encoded dots and slashes, a symlink out,
//! NUL, hidden files).

mod common;

use std::path::Path;
use std::process::Command;

use common::Fulcrum;

/// A site: index, a 5 MiB text file, a CSS file with gzip and Brotli siblings, a
/// directory without an index, a hidden file, and a symlink to a secret outside.
fn site(dir: &Path) {
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("docs")).unwrap();
    std::fs::create_dir_all(www.join("empty")).unwrap();
    std::fs::create_dir_all(www.join(".git")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
    std::fs::write(www.join("big.txt"), common::text(0, 5 << 20)).unwrap();
    std::fs::write(www.join("app.css"), "body { color: red }\n".repeat(100)).unwrap();
    let gz = Command::new("gzip")
        .args(["-k", "-9"])
        .arg(www.join("app.css"))
        .status()
        .unwrap();
    assert!(gz.success());
    let br = brotli_of(&std::fs::read(www.join("app.css")).unwrap());
    std::fs::write(www.join("app.css.br"), br).unwrap();
    std::fs::write(www.join(".git/config"), "secret").unwrap();
    std::fs::write(dir.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(dir, www.join("up")).unwrap();
    // A relative symlink that stays inside is served.
    std::os::unix::fs::symlink("docs/index.html", www.join("alias.html")).unwrap();
}

fn brotli_of(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 20);
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    out
}

fn start(dir: &Path, files_extra: &str, tls: &str) -> Fulcrum {
    Fulcrum::start(&format!(
        "threads = 1\naccess_log = true\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n{tls}\n\
         [[listeners.routes]]\npath_prefix = \"/site/\"\nstrip_prefix = \"/site\"\n\
         files = {{ root = {:?}{files_extra} }}\n",
        dir.join("www")
    ))
}

/// curl with `args`: (status, head, body bytes).
fn get(args: &[&str]) -> (String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-", "-o"])
        .arg(&body)
        .args(args)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    // The last response's (curl -L prints every head).
    let status = head
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("000")
        .to_owned();
    (status, head, std::fs::read(&body).unwrap_or_default())
}

fn header(head: &str, name: &str) -> Option<String> {
    common::header_of(head, name)
}

#[test]
fn files_are_served_with_types_validators_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path());
    let f = start(dir.path(), "", "");
    let big = common::text(0, 5 << 20);
    for version in ["--http1.1", "--http2-prior-knowledge", "--http1.0"] {
        let url = f.url("/site/big.txt");
        let (status, head, body) = get(&[version, &url]);
        assert_eq!(status, "200", "{head}");
        assert!(body == big, "{version}: body differs");
        assert_eq!(
            header(&head, "content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(&head, "content-length").as_deref(), Some("5242880"));
        assert_eq!(header(&head, "accept-ranges").as_deref(), Some("bytes"));
        let etag = header(&head, "etag").unwrap();
        let modified = header(&head, "last-modified").unwrap();
        // Conditional requests.
        let (status, head, body) = get(&[version, "-H", &format!("If-None-Match: {etag}"), &url]);
        assert_eq!(status, "304", "{head}");
        assert!(body.is_empty());
        assert_eq!(header(&head, "etag").as_deref(), Some(&*etag));
        let (status, ..) = get(&[
            version,
            "-H",
            &format!("If-Modified-Since: {modified}"),
            &url,
        ]);
        assert_eq!(status, "304");
        let (status, ..) = get(&[
            version,
            "-H",
            "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT",
            &url,
        ]);
        assert_eq!(status, "200");
        let (status, ..) = get(&[version, "-H", "If-Match: \"other\"", &url]);
        assert_eq!(status, "412");
        // HEAD: the head alone (curl writes it as the output), with the length.
        let (status, head, body) = get(&[version, "-I", &url]);
        assert_eq!(status, "200");
        assert!(!String::from_utf8_lossy(&body).contains("quick brown"));
        assert_eq!(header(&head, "content-length").as_deref(), Some("5242880"));
        // One range, several, none satisfiable, and a stale If-Range.
        let (status, head, body) = get(&[version, "-r", "1000-1999", &url]);
        assert_eq!(status, "206", "{head}");
        assert_eq!(
            header(&head, "content-range").as_deref(),
            Some("bytes 1000-1999/5242880")
        );
        assert!(body == big[1000..2000]);
        let (status, head, body) = get(&[version, "-r", "-10", &url]);
        assert_eq!(status, "206");
        assert!(body == big[big.len() - 10..], "{head}");
        let (status, head, body) = get(&[version, "-r", "0-9,100-109", &url]);
        assert_eq!(status, "206");
        let kind = header(&head, "content-type").unwrap();
        let boundary = kind
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-9/5242880\r\n\r\n{}\r\n", String::from_utf8_lossy(&big[..10]))), "{text}");
        assert!(
            text.contains("Content-Range: bytes 100-109/5242880"),
            "{text}"
        );
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string())
        );
        let (status, head, _) = get(&[version, "-r", "6000000-", &url]);
        assert_eq!(status, "416");
        assert_eq!(
            header(&head, "content-range").as_deref(),
            Some("bytes */5242880")
        );
        let (status, _, body) = get(&[version, "-r", "0-9", "-H", "If-Range: \"stale\"", &url]);
        assert_eq!(status, "200");
        assert_eq!(body.len(), big.len());
        let (status, _, body) = get(&[
            version,
            "-r",
            "0-9",
            "-H",
            &format!("If-Range: {etag}"),
            &url,
        ]);
        assert_eq!(status, "206");
        assert_eq!(body.len(), 10);
    }
    // Index files, and a directory without its `/`.
    let (status, _, body) = get(&[&f.url("/site/")]);
    assert_eq!(
        (status.as_str(), &body[..]),
        ("200", &b"<h1>home</h1>\n"[..])
    );
    let (status, head, _) = get(&[&f.url("/site/docs?x=1")]);
    assert_eq!(status, "301");
    assert_eq!(
        header(&head, "location").as_deref(),
        Some("/site/docs/?x=1")
    );
    let (status, _, body) = get(&["-L", &f.url("/site/docs")]);
    assert_eq!(
        (status.as_str(), &body[..]),
        ("200", &b"<h1>docs</h1>\n"[..])
    );
    // No listing unless asked.
    let (status, ..) = get(&[&f.url("/site/empty/")]);
    assert_eq!(status, "403");
    let (status, head, _) = get(&["-X", "POST", &f.url("/site/index.html")]);
    assert_eq!(status, "405");
    assert_eq!(header(&head, "allow").as_deref(), Some("GET, HEAD"));
    assert!(f.wait_log("status=206"), "{}", f.log());
}

#[test]
fn no_path_leaves_the_root() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path());
    let f = start(dir.path(), ", listing = true", "");
    let attempts = [
        ("/site/../secret.txt", "400"),
        ("/site/docs/../../secret.txt", "400"),
        ("/site/%2e%2e/secret.txt", "400"),
        ("/site/%2E%2E%2Fsecret.txt", "400"),
        ("/site/docs/..%2f..%2fsecret.txt", "400"),
        ("/site/index.html%00.txt", "400"),
        ("/site/%zz", "400"),
        ("/site/escape.txt", "404"),
        ("/site/up/secret.txt", "404"),
        ("/site/up/", "404"),
        ("/site/.git/config", "404"),
        ("/site/%2egit/config", "404"),
    ];
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        for (path, expected) in attempts {
            let (status, _, body) = get(&[version, "--path-as-is", &f.url(path)]);
            assert_eq!(status, expected, "{version} {path}");
            assert!(
                !String::from_utf8_lossy(&body).contains("secret"),
                "{version} {path}"
            );
        }
    }
    let (status, _, body) = get(&[&f.url("/site/alias.html")]);
    assert_eq!(
        (status.as_str(), &body[..]),
        ("200", &b"<h1>docs</h1>\n"[..])
    );
    // The listing shows neither hidden entries nor anything above the root.
    let (status, _, body) = get(&[&f.url("/site/")]);
    assert_eq!(status, "200");
    let _ = body;
    let (status, _, body) = get(&[&f.url("/site/empty/")]);
    assert_eq!(status, "200");
    assert!(String::from_utf8_lossy(&body).contains("Index of /site/empty/"));
}

#[test]
fn precompressed_siblings_go_to_clients_that_take_them() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path());
    let f = start(dir.path(), ", precompressed = true", "");
    let css = std::fs::read(dir.path().join("www/app.css")).unwrap();
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let url = f.url("/site/app.css");
        for (accept, coding) in [
            ("br, gzip", Some("br")),
            ("gzip", Some("gzip")),
            ("zstd", None),
            ("identity", None),
        ] {
            let (status, head, body) = get(&[
                version,
                "--compressed",
                "-H",
                &format!("Accept-Encoding: {accept}"),
                &url,
            ]);
            assert_eq!(status, "200");
            assert_eq!(
                header(&head, "content-encoding").as_deref(),
                coding,
                "{accept}: {head}"
            );
            assert_eq!(
                header(&head, "content-type").as_deref(),
                Some("text/css; charset=utf-8")
            );
            assert!(header(&head, "vary").is_some());
            assert!(body == css, "{accept}: decoded body differs");
        }
    }
}

#[test]
fn files_over_tls_are_read_and_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path());
    let pki = common::pki::Pki::new();
    let leaf = pki.leaf("site", &["site.test"]);
    let tls = format!(
        "[listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
        leaf.cert, leaf.key
    );
    let f = start(dir.path(), "", &tls);
    let port = f.addr.port();
    let big = common::text(0, 5 << 20);
    for version in ["--http1.1", "--http2"] {
        let (status, head, body) = get(&[
            version,
            "--cacert",
            pki.ca.to_str().unwrap(),
            "--resolve",
            &format!("site.test:{port}:127.0.0.1"),
            &format!("https://site.test:{port}/site/big.txt"),
        ]);
        assert_eq!(status, "200", "{head}");
        assert!(body == big, "{version}: body differs");
    }
}

#[test]
fn a_missing_root_is_a_config_error_at_its_position() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[listeners.routes]]\npath_prefix = \"/\"\nfiles = { root = \"/nonexistent/www\" }\n",
    );
    assert!(
        err.contains("fulcrum.toml:5:18") && err.contains("cannot be served"),
        "{err}"
    );
}
