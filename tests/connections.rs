//! Plain HTTP/1.1 client connections are read and answered directly and join the event
//! loop only when they must wait (`LazyTcp`): every way a connection can come to wait
//! (its request late or in pieces, its answer larger than the socket buffers, the next
//! request of a keep-alive connection) is served as before. HTTP listeners defer
//! accepting a connection until its first bytes (`defer_accept`).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::{Backend, Fulcrum, config, scrape, value};

fn connect(f: &Fulcrum) -> TcpStream {
    let s = TcpStream::connect(f.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response with a Content-Length: its head and its body.
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = common::header_of(&head, "content-length")
        .expect("a content-length")
        .parse()
        .unwrap();
    let mut body = data.split_off(head_end);
    while body.len() < length {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} of {length} body bytes", body.len());
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}

#[test]
fn a_request_that_comes_after_the_connection_is_served() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let mut s = connect(&f);
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"GET /text/100 HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"\r\n").unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, common::text(0, 100));
}

#[test]
fn an_answer_larger_than_the_socket_buffers_reaches_a_slow_reader() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let mut s = connect(&f);
    let n = 8 << 20;
    write!(s, "GET /text/{n} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    // Nothing is read for a while: Fulcrum's writes to this connection must wait.
    std::thread::sleep(Duration::from_millis(500));
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body == common::text(0, n), "the body differs");
    // The connection goes on with the next request.
    s.write_all(b"GET /text/10 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, common::text(0, 10));
}

/// Decodes a chunked body (no trailers).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line]).unwrap(), 16).unwrap();
        data = &data[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[test]
fn a_chunked_answer_larger_than_the_socket_buffers_reaches_a_slow_reader() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let mut s = connect(&f);
    let n = 8 << 20;
    write!(
        s,
        "GET /text/{n}?chunked=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..at]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        dechunk(&all[at..]) == common::text(0, n),
        "the body differs"
    );
}

#[test]
fn a_keep_alive_connection_serves_requests_that_come_later() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let mut s = connect(&f);
    for (i, pause) in [0, 50, 300].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(pause));
        write!(s, "GET /text/{} HTTP/1.1\r\nHost: a\r\n\r\n", 10 + i).unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        assert_eq!(body, common::text(0, 10 + i));
    }
    assert_eq!(b.requests(), 3);
}

#[test]
fn connections_closed_before_their_request_leave_the_listener_serving() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    for _ in 0..20 {
        let s = connect(&f);
        s.shutdown(Shutdown::Both).unwrap();
    }
    let mut s = connect(&f);
    s.write_all(b"GET /text/5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, common::text(0, 5));
    // Then the connection is closed.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    assert_eq!(b.requests(), 1);
}

fn listener_config(b: &Backend, extra: &str) -> String {
    format!(
        "threads = 1\n[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n{extra}\n[pools.app]\nbackends = [{{ address = \"{}\" }}]\n",
        b.addr
    )
}

const OPEN: &str = r#"fulcrum_listener_connections_open{listener="web"}"#;

/// `fulcrum_listener_connections_open` once it has stayed the same for 300 ms.
fn settled_open(admin: std::net::SocketAddr) -> f64 {
    let mut last = value(&scrape(admin), OPEN);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = value(&scrape(admin), OPEN);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn an_http_listener_takes_a_connection_once_its_first_bytes_arrive() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&listener_config(&b, ""));
    let admin = f.admin_addr();
    let mut s = connect(&f);
    // Connected, silent: the kernel keeps it; Fulcrum has not taken it yet.
    assert_eq!(settled_open(admin), 0.0);
    s.write_all(b"GET /text/7 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, common::text(0, 7));
    assert_eq!(settled_open(admin), 1.0);
}

#[test]
fn a_silent_connection_is_still_taken_and_timed_out() {
    let b = Backend::start("b1");
    let config = listener_config(&b, "") + "[timeouts]\nrequest_header = \"1s\"\n";
    let f = Fulcrum::start(&config);
    let mut s = connect(&f);
    // The kernel hands it over after about a second; the header timeout then closes it.
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(900) && waited < Duration::from_secs(9),
        "{waited:?}"
    );
}

#[test]
fn defer_accept_can_be_turned_off_and_on_by_a_reload() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&listener_config(&b, "defer_accept = false"));
    let admin = f.admin_addr();
    let _silent = connect(&f);
    assert_eq!(settled_open(admin), 1.0);
    let out = f.reload(&listener_config(&b, ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _silent_too = connect(&f);
    assert_eq!(settled_open(admin), 1.0);
}

#[test]
fn defer_accept_on_a_udp_listener_is_a_config_error() {
    let err = common::config_error(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nprotocol = \"udp\"\npool = \"app\"\ndefer_accept = true\n[pools.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    assert!(
        err.contains("fulcrum.toml:5:16")
            && err.contains("`defer_accept` needs a TCP-based listener"),
        "{err}"
    );
}
