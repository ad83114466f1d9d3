//! Large response bodies between plain TCP connections go by splice(2): every byte
//! arrives in order through back-pressure on both sides, the connection stays usable for
//! the next request, and a backend that stops early ends the client's connection after
//! exactly the bytes it sent.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::{Fulcrum, retry_config};

/// The body's byte at `i`: a pattern that shows a lost, repeated or reordered piece.
fn byte(i: u64) -> u8 {
    (i * 7 % 251) as u8
}

/// A backend of raw sockets: `GET /pattern/N` answers N pattern bytes in uneven pieces
/// with pauses; `GET /cut/N` promises N bytes, sends half, and closes; anything else
/// gets `ok`. Connections are kept alive.
fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            thread::spawn(move || serve(conn));
        }
    });
    addr
}

fn serve(conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
        }
        let (n, cut) = match (path.strip_prefix("/pattern/"), path.strip_prefix("/cut/")) {
            (Some(n), _) => (n.parse().unwrap(), false),
            (_, Some(n)) => (n.parse().unwrap(), true),
            _ => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                continue;
            }
        };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        let send = if cut { n / 2 } else { n };
        let mut at = 0u64;
        let mut piece = 1000u64;
        while at < send {
            let len = piece.min(send - at);
            let bytes: Vec<u8> = (at..at + len).map(byte).collect();
            if out.write_all(&bytes).is_err() {
                return;
            }
            at += len;
            piece = piece * 3 % 70_001 + 1;
            if at.is_multiple_of(7) {
                thread::sleep(Duration::from_millis(2));
            }
        }
        if cut {
            return;
        }
    }
}

/// Sends a GET on `c` and reads the response head; returns its Content-Length.
fn get(c: &mut BufReader<TcpStream>, path: &str) -> u64 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: splice.test\r\n\r\n");
    c.get_mut().write_all(req.as_bytes()).unwrap();
    let mut length = None;
    let mut status = String::new();
    c.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut h = String::new();
        c.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse().unwrap());
        }
    }
    length.expect("a Content-Length")
}

/// Reads `n` body bytes and checks each against the pattern; pauses once, after the
/// first MiB, so that Fulcrum meets a full client socket.
fn read_pattern(c: &mut BufReader<TcpStream>, n: u64) {
    let mut at = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    let mut paused = false;
    while at < n {
        let want = buf.len().min((n - at) as usize);
        let got = c.read(&mut buf[..want]).unwrap();
        assert!(got > 0, "the connection ended at byte {at} of {n}");
        for (k, b) in buf[..got].iter().enumerate() {
            assert_eq!(*b, byte(at + k as u64), "byte {}", at + k as u64);
        }
        at += got as u64;
        if !paused && at > 1 << 20 {
            paused = true;
            thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn large_bodies_arrive_whole_through_back_pressure_and_the_connection_goes_on() {
    let b = start_backend();
    let f = Fulcrum::start(&retry_config(&[("raw", b)], ""));
    let stream = TcpStream::connect(f.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = BufReader::new(stream);
    for n in [8 << 20, 100_000, 65_536, 3 << 20] {
        let len = get(&mut c, &format!("/pattern/{n}"));
        assert_eq!(len, n);
        read_pattern(&mut c, n);
    }
    // A short one after, on the same connection.
    assert_eq!(get(&mut c, "/small"), 2);
}

#[test]
fn a_backend_that_stops_early_ends_the_client_connection_after_what_it_sent() {
    let b = start_backend();
    let f = Fulcrum::start(&retry_config(&[("raw", b)], ""));
    let addr = f.addr;
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = BufReader::new(stream);
    let n = 4_000_000;
    assert_eq!(get(&mut c, &format!("/cut/{n}")), n);
    let mut body = Vec::new();
    c.read_to_end(&mut body).unwrap();
    assert_eq!(
        body.len() as u64,
        n / 2,
        "exactly what the backend sent, then EOF"
    );
    assert!(body.iter().enumerate().all(|(i, b)| *b == byte(i as u64)));
    // Fulcrum goes on serving.
    let mut c = BufReader::new(TcpStream::connect(addr).unwrap());
    assert_eq!(get(&mut c, "/pattern/300000"), 300_000);
    read_pattern(&mut c, 300_000);
}
