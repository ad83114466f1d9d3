//! WebSocket through Fulcrum: the HTTP/1.1 Upgrade is passed on, the 101 returned, then
//! the connection is a tunnel. Driven by the `websockets` Python package on both ends
//! (tests/peers/ws_echo.py and ws_client.py).

mod common;

use common::peers::{self, PeerServer};
use common::pki::Pki;
use common::{Backend, Fulcrum};

fn ws_config(backends: &[&PeerServer], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{{ name = \"ws{i}\", address = \"{}\" }}", b.addr))
        .collect();
    format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"ws\"\n{extra}\n[pools.ws]\nalgorithm = \"round_robin\"\nbackends = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn websocket_messages_pings_and_close_go_through_both_ways() {
    let echo = PeerServer::start("ws_echo.py", &[]);
    // Directly first: the client's checks hold against the server itself.
    let direct = peers::run_ok(
        "ws_client.py",
        &[&format!("ws://{}/chat?room=1", echo.addr)],
    );
    assert!(direct.contains("\"ok\":true"), "{direct}");

    let f = Fulcrum::start(&ws_config(&[&echo], ""));
    let url = format!("ws://{}/chat?room=1", f.addr);
    let out = peers::run_ok("ws_client.py", &[&url]);
    assert!(out.contains("\"ok\":true"), "{out}");
    assert!(out.contains("\"close_code_received\":1000"), "{out}");
    assert!(f.wait_log("status=101"), "{}", f.log());
}

#[test]
fn websocket_connections_are_balanced_and_plain_requests_still_work() {
    let a = PeerServer::start("ws_echo.py", &["--name", "A"]);
    let b = PeerServer::start("ws_echo.py", &["--name", "B"]);
    let f = Fulcrum::start(&ws_config(&[&a, &b], ""));
    for _ in 0..2 {
        let out = peers::run_ok("ws_client.py", &[&format!("ws://{}/", f.addr)]);
        assert!(out.contains("\"ok\":true"), "{out}");
    }
    assert!(
        f.wait_log("backend=ws0") && f.wait_log("backend=ws1"),
        "{}",
        f.log()
    );

    // An HTTP backend behind the same kind of listener is unaffected, and an Upgrade
    // to h2c is not passed on (the backend sees a plain request).
    let http = Backend::start("plain");
    let f = Fulcrum::start(&common::config("", &[&http], ""));
    let reply = common::raw(
        f.addr,
        b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        std::time::Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(!reply.to_lowercase().contains("upgrade"), "{reply}");
}

#[test]
fn websocket_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf("ws", &["ws.test"]);
    let echo = PeerServer::start("ws_echo.py", &[]);
    // ws clients speak HTTP/1.1 only: offer it alone with ALPN.
    let tls = format!(
        "[listeners.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\nalpn = [\"http/1.1\"]\n",
        leaf.cert, leaf.key
    );
    let f = Fulcrum::start(&ws_config(&[&echo], &tls));
    let url = format!("wss://127.0.0.1:{}/secure", f.addr.port());
    let out = peers::run_ok("ws_client.py", &[&url, "--insecure"]);
    assert!(out.contains("\"ok\":true"), "{out}");
}
