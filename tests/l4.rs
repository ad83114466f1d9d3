//! Layer 4 TCP listeners: bytes relayed both ways with half-close, balanced like HTTP,
//! failed connects tried on another backend, health checks applied.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::Fulcrum;

/// A TCP backend that reads until the client half-closes, then answers
/// "NAME:LENGTH:DATA" and closes.
fn tcp_backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let _ = s.read_to_end(&mut data);
                let _ = write!(s, "{name}:{}:", data.len());
                let _ = s.write_all(&data);
            });
        }
    });
    addr
}

fn tcp_config(backends: &[(&str, SocketAddr)], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(n, a)| format!("  {{ name = \"{n}\", address = \"{a}\" }},"))
        .collect();
    format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"db\"\n[pools.db]\nalgorithm = \"round_robin\"\nbackends = [\n{}\n]\n{extra}\n",
        list.join("\n")
    )
}

/// Sends `data`, half-closes, reads the whole answer.
fn exchange(addr: SocketAddr, data: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn bytes_are_relayed_both_ways_with_half_close_and_balanced() {
    let a = tcp_backend("a");
    let b = tcp_backend("b");
    let f = Fulcrum::start(&tcp_config(&[("a", a), ("b", b)], ""));
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..10 {
        let data = format!("message {i}");
        let out = exchange(f.addr, data.as_bytes());
        let (name, rest) = out.split_once(':').unwrap();
        assert_eq!(rest, format!("{}:{data}", data.len()));
        *seen.entry(name.to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen, [("a".to_string(), 5), ("b".to_string(), 5)].into());
    // A large stream passes whole.
    let big = vec![b'z'; 3 * 1024 * 1024];
    let out = exchange(f.addr, &big);
    assert!(out.ends_with(&"z".repeat(1000)));
    assert!(out.contains(&format!(":{}:", big.len())));
    assert!(f.wait_log("tcp listener="), "{}", f.log());
}

#[test]
fn a_refused_connect_is_tried_on_another_backend() {
    let live = tcp_backend("live");
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let f = Fulcrum::start(&tcp_config(&[("dead", dead), ("live", live)], ""));
    for _ in 0..6 {
        assert!(exchange(f.addr, b"x").starts_with("live:1:x"));
    }
}

#[test]
fn health_checks_apply_to_tcp_pools() {
    let live = tcp_backend("live");
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let f = Fulcrum::start(&tcp_config(
        &[("dead", dead), ("live", live)],
        "[pools.db.health]\ncheck = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 1",
    ));
    assert!(
        f.wait_log("backend is DOWN pool=db backend=dead"),
        "{}",
        f.log()
    );
    for _ in 0..4 {
        assert!(exchange(f.addr, b"y").starts_with("live:1:y"));
    }
    assert!(!f.log().contains("cannot connect"));
}

#[test]
fn tcp_pools_hash_only_on_the_source_ip() {
    let (code, err) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        std::fs::write(
            &path,
            tcp_config(&[("a", "127.0.0.1:1".parse().unwrap())], "").replace(
                "algorithm = \"round_robin\"",
                "algorithm = \"hash\"\nhash_key = \"header:X-User\"",
            ),
        )
        .unwrap();
        let out = common::check_file(&path);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(2));
    assert!(err.contains("which a TCP listener does not see"), "{err}");
}

#[test]
fn tls_passthrough_is_routed_by_the_server_name() {
    let a = tcp_backend("a");
    let b = tcp_backend("b");
    let other = tcp_backend("other");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"other\"\nsni_routes = {{ \"a.example\" = \"a\", \"*.b.example\" = \"b\" }}\n[pools.a]\nbackends = [{{ address = \"{a}\" }}]\n[pools.b]\nbackends = [{{ address = \"{b}\" }}]\n[pools.other]\nbackends = [{{ address = \"{other}\" }}]\n"
    ));
    for (name, expected) in [
        ("a.example", "a"),
        ("A.Example", "a"),
        ("api.b.example", "b"),
        ("b.example", "other"),
        ("c.example", "other"),
    ] {
        let hello = fulcrum::l4::sni::client_hello(name);
        let out = exchange(f.addr, &hello);
        let (backend, rest) = out.split_once(':').unwrap();
        assert_eq!(backend, expected, "{name}");
        // The ClientHello itself was relayed untouched.
        assert_eq!(rest.split_once(':').unwrap().0, hello.len().to_string());
    }
    // Not TLS at all: the default pool.
    assert!(exchange(f.addr, b"plain").starts_with("other:5:plain"));
}

#[test]
fn a_real_tls_handshake_passes_through_to_the_named_backend() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=api.b.example", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1",
            "-www",
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let other = tcp_backend("other");
    let f = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"other\"\nsni_routes = {{ \"*.b.example\" = \"tls\" }}\n[pools.tls]\nbackends = [{{ address = \"127.0.0.1:{port}\" }}]\n[pools.other]\nbackends = [{{ address = \"{other}\" }}]\n"
    ));
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &f.addr.to_string(),
            "-servername",
            "api.b.example",
            "-brief",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CONNECTION ESTABLISHED"), "{text}");
    assert!(text.contains("api.b.example"), "{text}");
}

#[test]
fn splice_relays_the_same_bytes_with_half_close() {
    let a = tcp_backend("a");
    let b = tcp_backend("b");
    let config = tcp_config(&[("a", a), ("b", b)], "")
        .replace("protocol = \"tcp\"", "protocol = \"tcp\"\nsplice = true");
    let f = Fulcrum::start(&config);
    for i in 0..4 {
        let data = format!("spliced {i}");
        let out = exchange(f.addr, data.as_bytes());
        assert!(out.ends_with(&format!(":{}:{data}", data.len())), "{out}");
    }
    // 24 MiB of varied bytes, whole and in order, after the client half-closed.
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8 + 1).collect();
    let mut s = TcpStream::connect(f.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || {
            s.write_all(&big).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    let prefix = format!("a:{}:", big.len()).into_bytes();
    let prefix_b = format!("b:{}:", big.len()).into_bytes();
    assert!(out.starts_with(&prefix) || out.starts_with(&prefix_b));
    assert!(out[prefix.len()..] == big[..], "the relayed bytes differ");

    // On an HTTP listener it is a config error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, config.replace("protocol = \"tcp\"\n", "")).unwrap();
    let err = String::from_utf8_lossy(&common::check_file(&path).stderr).to_string();
    assert!(err.contains("`splice` needs protocol = \"tcp\""), "{err}");
    // A pool speaking HTTP/2 (or TLS) to its backends cannot serve a TCP listener.
    std::fs::write(
        &path,
        config.replace("[pools.db]", "[pools.db]\nhttp_version = \"2\""),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&common::check_file(&path).stderr).to_string();
    assert!(err.contains("which a TCP listener does not"), "{err}");
}
