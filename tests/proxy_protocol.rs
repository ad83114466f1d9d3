//! PROXY protocol: a TCP listener sends it to its backends, an HTTP listener accepts it
//! from a balancer in front, and the backend sees the original client's address.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Backend, Fulcrum};

/// Connects to `to` from the loopback address 127.0.0.2 (a client distinct from the
/// balancers, which use 127.0.0.1).
fn connect_from_127_0_0_2(to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

fn chain(version: &str) -> (Backend, Fulcrum, Fulcrum) {
    let app = Backend::start("app");
    let inner = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\npool = \"app\"\naccept_proxy = true\n[pools.app]\nbackends = [{{ address = \"{}\" }}]\n",
        app.addr
    ));
    let outer = Fulcrum::start(&format!(
        "threads = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"edge\"\n[pools.edge]\nsend_proxy = \"{version}\"\nbackends = [{{ address = \"{}\" }}]\n",
        inner.addr
    ));
    (app, inner, outer)
}

#[test]
fn the_backend_sees_the_original_client_through_two_balancers() {
    for version in ["v1", "v2"] {
        let (app, _inner, outer) = chain(version);
        let mut s = connect_from_127_0_0_2(outer.addr);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{version}: {out}");
        let seen = app.last_head.lock().unwrap().clone();
        assert!(
            seen.contains("x-forwarded-for: 127.0.0.2\n"),
            "{version}: {seen}"
        );
        assert!(
            seen.contains("forwarded: for=127.0.0.2;proto=http"),
            "{version}: {seen}"
        );
    }
}

#[test]
fn a_listener_expecting_the_header_drops_connections_without_it() {
    let (app, inner, _outer) = chain("v2");
    let out = common::raw(
        inner.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(out, "", "answered without a PROXY header");
    assert_eq!(app.requests(), 0);
}
