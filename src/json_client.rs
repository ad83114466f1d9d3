//! A small blocking HTTP/1.1 client for JSON APIs, one request per connection: `fulcrum
//! ctl` talking to the admin API, and the etcd follower talking to etcd's JSON gateway.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::l7::chunked::ChunkedDecoder;

/// A request's limits: connecting, and waiting for each read of the answer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connecting.
    pub connect: Duration,
    /// Each read of the answer.
    pub read: Duration,
}

/// Sends `method path` to `addr` with the JSON `body` (and `Authorization: Bearer
/// bearer`); the answer's status (0 if it has none) and body (de-chunked).
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
    limits: Limits,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, limits.connect)?;
    stream.set_read_timeout(Some(limits.read))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    parse(&answer)
}

/// The status (0 if there is none) and the body (de-chunked) of a whole answer.
fn parse(answer: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.get(split + 4..).unwrap_or_default();
    if head.contains("\r\ntransfer-encoding: chunked") {
        let mut plain = Vec::with_capacity(body.len());
        ChunkedDecoder::new(false)
            .feed(body, &mut plain)
            .map_err(|_| std::io::Error::other("a bad chunked body"))?;
        return Ok((status, plain));
    }
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_their_status_and_plain_body() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap(), (200, b"abcde".to_vec()));
        let sized = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse(sized).unwrap(), (503, b"{}".to_vec()));
        assert_eq!(parse(b"garbage").unwrap(), (0, Vec::new()));
    }
}
