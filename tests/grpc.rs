//! gRPC through Fulcrum with grpcio (PyPI) on both ends: unary and streaming calls with
//! their trailers, balanced per call across two servers, over clear-text HTTP/2 and TLS;
//! deadlines and unreachable backends surface as gRPC statuses, not hangs.

mod common;

use std::time::{Duration, Instant};

use common::Fulcrum;
use common::peers::{self, PeerServer};
use common::pki::Pki;

fn grpc_config(backends: &[&str], listener_extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{{ name = \"g{i}\", address = \"{addr}\" }}"))
        .collect();
    format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"grpc\"\n{listener_extra}\n[pools.grpc]\nalgorithm = \"round_robin\"\nhttp_version = \"2\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn unary_and_streaming_calls_keep_their_trailers_and_are_balanced_per_call() {
    let a = PeerServer::start("grpc_server.py", &["--name", "a"]);
    let b = PeerServer::start("grpc_server.py", &["--name", "b"]);
    let f = Fulcrum::start(&grpc_config(
        &[&a.addr.to_string(), &b.addr.to_string()],
        "",
    ));
    let out = peers::run_ok("grpc_client.py", &[&f.addr.to_string()]);
    assert!(out.contains("\"ok\":true"), "{out}");
    // One client connection, calls spread over both servers.
    assert!(out.contains("\"servers\":{\"a\":5,\"b\":5}"), "{out}");
    // Each call is logged when its stream ends: the gRPC status from the trailers, the
    // bytes sent counted.
    assert!(f.wait_log("grpc_status=0"), "{}", f.log());
    let log = f.log();
    let calls: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" http=2 ") && l.contains(" pool=grpc "))
        .collect();
    assert!(calls.len() >= 10, "{log}");
    for l in calls {
        if l.contains("/fulcrum.Test/Fail") {
            // A trailers-only answer: the status is in the head.
            assert!(l.contains("grpc_status=5"), "{l}");
        } else {
            assert!(
                l.contains("grpc_status=0") && !l.contains("bytes_out=0 "),
                "{l}"
            );
        }
    }
}

#[test]
fn grpc_over_tls_with_alpn() {
    let pki = Pki::new();
    let leaf = pki.leaf("front", &["grpc.test"]);
    let a = PeerServer::start("grpc_server.py", &["--name", "a"]);
    let tls = format!(
        "[listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
        leaf.cert, leaf.key
    );
    let f = Fulcrum::start(&grpc_config(&[&a.addr.to_string()], &tls));
    let ca = pki.ca.to_str().unwrap();
    let out = peers::run_ok(
        "grpc_client.py",
        &[&f.addr.to_string(), "--tls", ca, "--authority", "grpc.test"],
    );
    assert!(out.contains("\"ok\":true"), "{out}");
}

/// One unary call through `target` with a `timeout_s` deadline; returns the status code
/// name and how long it took.
fn call_status(target: &str, method: &str, payload: &str, timeout_s: f64) -> (String, Duration) {
    let script = format!(
        r#"
import grpc, sys
ch = grpc.insecure_channel("{target}", options=[("grpc.enable_http_proxy", 0)])
call = ch.unary_unary("/fulcrum.Test/{method}")
try:
    call(b"{payload}", timeout={timeout_s})
    print("OK")
except grpc.RpcError as e:
    print(e.code().name, e.details())
"#
    );
    let started = Instant::now();
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        started.elapsed(),
    )
}

#[test]
fn deadlines_and_dead_backends_are_grpc_statuses_not_hangs() {
    let a = PeerServer::start("grpc_server.py", &["--name", "a"]);
    let f = Fulcrum::start(&grpc_config(&[&a.addr.to_string()], ""));
    let target = f.addr.to_string();
    let (status, took) = call_status(&target, "Unary", "hi", 5.0);
    assert_eq!(status, "OK");
    assert!(took < Duration::from_secs(5));
    // The server takes 3 s, the client allows 0.3 s: DEADLINE_EXCEEDED, promptly.
    let (status, took) = call_status(&target, "Sleep", "3000", 0.3);
    assert!(status.starts_with("DEADLINE_EXCEEDED"), "{status}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // An application error passes through with its details.
    let (status, _) = call_status(&target, "Fail", "", 5.0);
    assert_eq!(status, "NOT_FOUND nope");

    // Nothing listens where the only backend should be: UNAVAILABLE from Fulcrum.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let f = Fulcrum::start(&grpc_config(&[&dead], ""));
    let (status, took) = call_status(&f.addr.to_string(), "Unary", "hi", 5.0);
    assert!(status.starts_with("UNAVAILABLE"), "{status}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}
