//! One active health check of one backend: a TCP connect, or an HTTP request whose status
//! (and optionally body) must match. Returns what happened, never an error.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::Stream;
use crate::tls::client::BackendConnector;

use crate::config::{CheckKind, HttpCheck};

/// Most bytes of a check response that are read (head and body).
const MAX_RESPONSE: usize = 64 * 1024;

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend passed.
    Passed,
    /// The connection was refused.
    Refused,
    /// The check did not finish within its timeout.
    Timeout,
    /// The connection failed or was closed before a complete answer.
    Reset,
    /// The backend answered with a status outside the expected range.
    Status(u16),
    /// The body did not contain the expected text.
    BodyMismatch,
    /// The answer was not HTTP.
    BadResponse,
    /// The TLS handshake failed (certificate not trusted, wrong name, not TLS).
    TlsFailed,
}

impl Outcome {
    /// Whether this outcome counts as a success.
    pub fn passed(self) -> bool {
        self == Outcome::Passed
    }

    /// A compact code for storing in an atomic (see [`Outcome::decode`]); never 0.
    pub fn encode(self) -> u32 {
        match self {
            Outcome::Passed => 1,
            Outcome::Refused => 2,
            Outcome::Timeout => 3,
            Outcome::Reset => 4,
            Outcome::BodyMismatch => 5,
            Outcome::BadResponse => 6,
            Outcome::TlsFailed => 7,
            Outcome::Status(code) => 1000 + u32::from(code),
        }
    }

    /// The outcome stored by [`Outcome::encode`]; `None` for 0 (never checked).
    pub fn decode(code: u32) -> Option<Outcome> {
        Some(match code {
            1 => Outcome::Passed,
            2 => Outcome::Refused,
            3 => Outcome::Timeout,
            4 => Outcome::Reset,
            5 => Outcome::BodyMismatch,
            6 => Outcome::BadResponse,
            7 => Outcome::TlsFailed,
            c if c > 1000 => Outcome::Status((c - 1000) as u16),
            _ => return None,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => f.write_str("check passed"),
            Outcome::Refused => f.write_str("connection refused"),
            Outcome::Timeout => f.write_str("check timed out"),
            Outcome::Reset => f.write_str("connection reset or closed"),
            Outcome::Status(code) => write!(f, "status {code}"),
            Outcome::BodyMismatch => f.write_str("body did not match"),
            Outcome::BadResponse => f.write_str("not an HTTP response"),
            Outcome::TlsFailed => f.write_str("TLS handshake failed"),
        }
    }
}

/// Runs one check of `addr` within `timeout`, over TLS if the pool encrypts (`tls`).
pub async fn run(
    kind: &CheckKind,
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&BackendConnector>,
) -> Outcome {
    match tokio::time::timeout(timeout, check(kind, addr, tls)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Timeout,
    }
}

async fn check(kind: &CheckKind, addr: SocketAddr, tls: Option<&BackendConnector>) -> Outcome {
    let tcp = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(_) => return Outcome::Reset,
    };
    let mut stream = match tls {
        None => Stream::tcp(tcp),
        Some(tls) => match tls.connect(addr.ip(), tcp).await {
            Ok(s) => Stream::Client(Box::new(s)),
            Err(_) => return Outcome::TlsFailed,
        },
    };
    match kind {
        CheckKind::Tcp => Outcome::Passed,
        CheckKind::Http(http) => check_http(&mut stream, http, addr).await,
    }
}

async fn check_http(stream: &mut Stream, http: &HttpCheck, addr: SocketAddr) -> Outcome {
    let host = http.host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fulcrum-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        http.method, http.path
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Outcome::Reset;
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut closed = false;
    // Read the head.
    let (status, head_len, length) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let Some(code) = response.code else {
                    return Outcome::BadResponse;
                };
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    });
                break (code, n, length);
            }
            Ok(httparse::Status::Partial) if !closed && buf.len() < MAX_RESPONSE => {}
            Ok(httparse::Status::Partial) => return Outcome::Reset,
            Err(_) => return Outcome::BadResponse,
        }
        match stream.read(&mut chunk).await {
            Ok(0) => closed = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Outcome::Reset,
        }
    };
    if !(http.expect_status.0..=http.expect_status.1).contains(&status) {
        return Outcome::Status(status);
    }
    let Some(expected) = &http.expect_body else {
        return Outcome::Passed;
    };
    // Read the body (up to the limit) and look for the text.
    let wanted = length.map_or(MAX_RESPONSE, |l| (head_len + l).min(MAX_RESPONSE));
    while buf.len() < wanted && !closed {
        match stream.read(&mut chunk).await {
            Ok(0) => closed = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let body = &buf[head_len.min(buf.len())..];
    let found = body
        .windows(expected.len().max(1))
        .any(|w| w == expected.as_bytes());
    if found || expected.is_empty() {
        Outcome::Passed
    } else {
        Outcome::BodyMismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for o in [
            Outcome::Passed,
            Outcome::Refused,
            Outcome::Timeout,
            Outcome::Reset,
            Outcome::Status(503),
            Outcome::BodyMismatch,
            Outcome::BadResponse,
        ] {
            assert_eq!(Outcome::decode(o.encode()), Some(o));
        }
        assert_eq!(Outcome::decode(0), None);
        assert_eq!(Outcome::Status(500).to_string(), "status 500");
    }
}
