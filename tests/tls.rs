//! TLS termination and TLS to backends, driven by curl and openssl s_client against the
//! real binary: certificates by SNI with a default, TLS 1.2 and 1.3 only, reload when the
//! files change, `check` errors for bad files, re-encryption with and without
//! verification, and garbage instead of a ClientHello.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::{Leaf, Pki};
use common::{Backend, Fulcrum};

/// A config with one TLS listener serving `certs` in front of `backend`; `tls_extra`
/// goes into the listener's tls table, `pool_extra` into the pool.
fn tls_config(certs: &[&Leaf], tls_extra: &str, backends: &[&Backend], pool_extra: &str) -> String {
    let certs: Vec<String> = certs
        .iter()
        .map(|c| format!("{{ cert = {:?}, key = {:?} }}", c.cert, c.key))
        .collect();
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name, b.addr))
        .collect();
    format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\n[listeners.tls]\ncertificates = [{}]\n{tls_extra}\n\n[pools.app]\nbackends = [{}]\n{pool_extra}\n",
        certs.join(", "),
        list.join(", ")
    )
}

/// `curl https://NAME:PORT/PATH` resolved to Fulcrum, verifying with `ca`; returns
/// (exit code, body + `-w` output).
fn curl(f: &Fulcrum, name: &str, path: &str, ca: &Path, extra: &[&str]) -> (i32, String) {
    let port = f.addr.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The subject of the certificate Fulcrum presents for `sni` (none: no SNI sent).
fn presented_subject(f: &Fulcrum, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &f.addr.to_string()]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("no certificate")
        .replace(' ', "")
}

#[test]
fn certificates_are_chosen_by_sni_with_the_first_as_default() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["*.b.test", "b.test"]);
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&tls_config(&[&a, &b], "", &[&backend], ""));

    // curl verifies the certificate against the name: success means the right one.
    for name in ["a.test", "b.test", "www.b.test"] {
        let (code, out) = curl(&f, name, "/", &pki.ca, &[]);
        assert_eq!(code, 0, "{name}: {out}");
        assert_eq!(out, "app1");
    }
    assert!(presented_subject(&f, Some("www.b.test")).contains("b.test"));
    // A wildcard covers one label only; unknown names and no SNI get the default.
    assert!(presented_subject(&f, Some("x.www.b.test")).contains("CN=a.test"));
    assert!(presented_subject(&f, Some("other.test")).contains("CN=a.test"));
    assert!(presented_subject(&f, None).contains("CN=a.test"));
    let (code, _) = curl(&f, "other.test", "/", &pki.ca, &[]);
    assert_ne!(code, 0, "curl must refuse a certificate for another name");
}

#[test]
fn tls_1_2_and_1_3_only_and_the_backend_sees_https() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&tls_config(&[&a], "", &[&backend], ""));

    let (code, out) = curl(
        &f,
        "a.test",
        "/",
        &pki.ca,
        &["--tlsv1.2", "--tls-max", "1.2"],
    );
    assert_eq!((code, out.as_str()), (0, "app1"));
    let (code, out) = curl(&f, "a.test", "/", &pki.ca, &["--tlsv1.3"]);
    assert_eq!((code, out.as_str()), (0, "app1"));
    let (code, out) = curl(
        &f,
        "a.test",
        "/",
        &pki.ca,
        &["--tlsv1.0", "--tls-max", "1.1"],
    );
    assert_ne!(code, 0, "TLS 1.1 must be refused: {out}");

    let (_, head) = curl(&f, "a.test", "/headers", &pki.ca, &[]);
    assert!(head.contains("x-forwarded-proto: https"), "{head}");
    assert!(head.contains("host: a.test:"), "{head}");

    // With min_version = "1.3", TLS 1.2 is refused.
    let f = Fulcrum::start(&tls_config(&[&a], "min_version = \"1.3\"", &[&backend], ""));
    let (code, _) = curl(
        &f,
        "a.test",
        "/",
        &pki.ca,
        &["--tlsv1.2", "--tls-max", "1.2"],
    );
    assert_ne!(code, 0);
    let (code, _) = curl(&f, "a.test", "/", &pki.ca, &["--tlsv1.3"]);
    assert_eq!(code, 0);
}

#[test]
fn certificates_are_reloaded_when_their_files_change() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let backend = Backend::start("app1");
    let f = Fulcrum::start(&tls_config(
        &[&a],
        "reload_interval = \"100ms\"",
        &[&backend],
        "",
    ));
    assert_eq!(curl(&f, "a.test", "/", &pki.ca, &[]).0, 0);
    assert_ne!(curl(&f, "c.test", "/", &pki.ca, &[]).0, 0);

    // A broken replacement (a key that does not match) is refused: the old one stays.
    let other = pki.leaf("other", &["c.test"]);
    std::fs::copy(&other.key, &a.key).unwrap();
    assert!(
        f.wait_log("cannot be loaded: keeping the previous ones"),
        "{}",
        f.log()
    );
    assert_eq!(curl(&f, "a.test", "/", &pki.ca, &[]).0, 0);

    // Renewed certificate (now also for c.test) and its key: picked up.
    let renewed = pki.leaf("renewed", &["a.test", "c.test"]);
    std::fs::copy(&renewed.key, &a.key).unwrap();
    std::fs::copy(&renewed.cert, &a.cert).unwrap();
    assert!(f.wait_log("TLS certificates reloaded"), "{}", f.log());
    let deadline = Instant::now() + Duration::from_secs(5);
    while curl(&f, "c.test", "/", &pki.ca, &[]).0 != 0 {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(curl(&f, "a.test", "/", &pki.ca, &[]).0, 0);
}

#[test]
fn check_reports_bad_keys_and_mismatched_certificates() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test"]);
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.key");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let cases = [
        (
            Leaf {
                cert: a.cert.clone(),
                key: b.key.clone(),
            },
            "does not match the certificate",
        ),
        (
            Leaf {
                cert: a.cert.clone(),
                key: garbage.clone(),
            },
            "cannot read a private key",
        ),
        (
            Leaf {
                cert: dir.path().join("missing.pem"),
                key: a.key.clone(),
            },
            "cannot read certificates",
        ),
        (
            Leaf {
                cert: a.key.clone(),
                key: a.key.clone(),
            },
            "cannot read certificates",
        ),
    ];
    let backend = Backend::start("app1");
    for (leaf, expected) in cases {
        let path = dir.path().join("f.toml");
        std::fs::write(&path, tls_config(&[&leaf], "", &[&backend], "")).unwrap();
        let out = common::check_file(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expected}: check passed");
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(
            err.contains("f.toml:6:"),
            "{expected}: no line/column: {err}"
        );
    }
    // Relative paths are relative to the config file.
    std::fs::copy(&a.cert, dir.path().join("rel.pem")).unwrap();
    std::fs::copy(&a.key, dir.path().join("rel.key")).unwrap();
    let rel = Leaf {
        cert: "rel.pem".into(),
        key: "rel.key".into(),
    };
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, tls_config(&[&rel], "", &[&backend], "")).unwrap();
    let out = common::check_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_to_backends_verified_against_a_ca_or_explicitly_not() {
    let pki = Pki::new();
    let front = pki.leaf("front", &["a.test"]);
    let back = pki.leaf("back", &["backend.internal", "127.0.0.1"]);
    let backend = Backend::start_tls("secure", back.server_config(&["http/1.1"]));
    let ca = format!("{:?}", pki.ca);

    // Verified by the backend's IP (in its certificate) and by name.
    for extra in [
        format!("[pools.app.tls]\nca = {ca}"),
        format!("[pools.app.tls]\nca = {ca}\nserver_name = \"backend.internal\""),
    ] {
        let f = Fulcrum::start(&tls_config(&[&front], "", &[&backend], &extra));
        let (code, out) = curl(&f, "a.test", "/", &pki.ca, &[]);
        assert_eq!((code, out.as_str()), (0, "secure"), "{extra}");
    }

    // Wrong name, or a CA that did not sign it: 502, and nothing reaches the backend.
    let stranger = Pki::new();
    let served = backend.requests();
    for extra in [
        format!("[pools.app.tls]\nca = {ca}\nserver_name = \"other.internal\""),
        format!("[pools.app.tls]\nca = {:?}", stranger.ca),
    ] {
        let f = Fulcrum::start(&tls_config(&[&front], "", &[&backend], &extra));
        let (_, out) = curl(
            &f,
            "a.test",
            "/",
            &pki.ca,
            &["-o", "/dev/null", "-w", "%{http_code}"],
        );
        assert_eq!(out, "502", "{extra}");
    }
    assert_eq!(backend.requests(), served);

    // verify = false: encrypted, not authenticated.
    let extra = format!("[pools.app.tls]\nverify = false\nca = {:?}", stranger.ca);
    let f = Fulcrum::start(&tls_config(&[&front], "", &[&backend], &extra));
    assert_eq!(curl(&f, "a.test", "/", &pki.ca, &[]).1, "secure");

    // Verifying without a CA is a config error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        tls_config(&[&front], "", &[&backend], "[pools.app.tls]\nverify = true"),
    )
    .unwrap();
    let out = common::check_file(&path);
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no CA"));
}

#[test]
fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let backend = Backend::start("app1");
    let config = tls_config(&[&a], "", &[&backend], "") + "[timeouts]\nrequest_header = \"1s\"\n";
    let f = Fulcrum::start(&config);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let cases: [&[u8]; 3] = [
        &garbage,
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        // A TLS record header announcing a huge handshake that never comes.
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb],
    ];
    let mut idle = std::net::TcpStream::connect(f.addr).unwrap();
    for case in cases {
        let started = Instant::now();
        let out = common::raw(f.addr, case, Duration::from_secs(15));
        assert!(!out.contains("app1"), "{out}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not closed in time"
        );
        assert_eq!(curl(&f, "a.test", "/", &pki.ca, &[]).1, "app1");
    }
    // A client that connects and says nothing is dropped after the header timeout.
    use std::io::Read;
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(backend.requests(), 3);
}

#[test]
fn health_checks_of_tls_backends_speak_tls() {
    let pki = Pki::new();
    let front = pki.leaf("front", &["a.test"]);
    let back = pki.leaf("back", &["127.0.0.1"]);
    let backend = Backend::start_tls("secure", back.server_config(&["http/1.1"]));
    let check = "[pools.app.health]\ncheck = \"http\"\npath = \"/\"\ninterval = \"200ms\"\ntimeout = \"190ms\"\nfall = 2\n";
    let good = format!("{check}[pools.app.tls]\nca = {:?}\n", pki.ca);
    let f = Fulcrum::start(&tls_config(&[&front], "", &[&backend], &good));
    std::thread::sleep(Duration::from_millis(900));
    assert!(!f.log().contains("is DOWN"), "{}", f.log());
    assert!(backend.requests() >= 3, "the checks reached the backend");
    assert_eq!(curl(&f, "a.test", "/", &pki.ca, &[]).1, "secure");

    // A backend whose certificate does not verify is taken out, with the reason.
    let stranger = Pki::new();
    let bad = format!("{check}[pools.app.tls]\nca = {:?}\n", stranger.ca);
    let f = Fulcrum::start(&tls_config(&[&front], "", &[&backend], &bad));
    assert!(f.wait_log("TLS handshake failed"), "{}", f.log());
}
