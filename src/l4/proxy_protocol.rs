//! The PROXY protocol (versions 1 and 2, as specified by HAProxy): a header at the start
//! of a TCP connection carrying the original client's address, so that a backend behind a
//! layer 4 balancer still knows who the client is. Fulcrum can send it to backends and
//! accept it from a balancer in front.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// Longest v2 header accepted (addresses and TLVs).
const V2_MAX: usize = 16 + 536;

pub use crate::config::ProxyVersion as Version;

/// Why a header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection does not start with a PROXY protocol header.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header is malformed.
    #[error("malformed PROXY protocol header")]
    Malformed,
}

/// Appends the header announcing a connection from `source` to `destination`.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let same_family = source.is_ipv4() == destination.is_ipv4();
    match version {
        Version::V1 if !same_family => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
        Version::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            let _ = write!(
                out,
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            );
        }
        Version::V2 => {
            out.extend_from_slice(V2_SIGNATURE);
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    out.extend_from_slice(&[0x21, 0x21, 0, 36]);
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                // Mixed families: a LOCAL header carries no address.
                _ => {
                    out.extend_from_slice(&[0x20, 0x00, 0, 0]);
                    return;
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
}

/// Parses a header at the start of `buf`: `Ok(None)` if more bytes are needed, else the
/// client's address (`None` for LOCAL/UNKNOWN connections) and the header's length.
pub fn parse(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyHeaderError> {
    let prefix = buf.len().min(V2_SIGNATURE.len());
    if buf[..prefix] == V2_SIGNATURE[..prefix] {
        return parse_v2(buf);
    }
    let prefix = buf.len().min(6);
    if buf[..prefix] == b"PROXY "[..prefix] {
        return parse_v1(buf);
    }
    Err(ProxyHeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyHeaderError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyHeaderError::Malformed)
        } else {
            Ok(None)
        };
    };
    if end + 2 > V1_MAX {
        return Err(ProxyHeaderError::Malformed);
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyHeaderError::Malformed)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            let _: IpAddr = dst.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            let sport: u16 = sport.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            let _: u16 = dport.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            if src.is_ipv4() != (*family == "TCP4") {
                return Err(ProxyHeaderError::Malformed);
            }
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(ProxyHeaderError::Malformed),
    };
    Ok(Some((source, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyHeaderError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (version_command, family) = (buf[12], buf[13]);
    let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 || 16 + length > V2_MAX {
        return Err(ProxyHeaderError::Malformed);
    }
    if buf.len() < 16 + length {
        return Ok(None);
    }
    let body = &buf[16..16 + length];
    let source = match (version_command & 0x0f, family) {
        // LOCAL: a health check from the balancer itself; no address.
        (0, _) => None,
        (1, 0x11) if length >= 12 => {
            let ip: [u8; 4] = body[0..4].try_into().expect("4 bytes");
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (1, 0x21) if length >= 36 => {
            let ip: [u8; 16] = body[0..16].try_into().expect("16 bytes");
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        (1, 0x00) => None,
        _ => return Err(ProxyHeaderError::Malformed),
    };
    Ok(Some((source, 16 + length)))
}

/// Reads the header a balancer in front sent at the start of `stream` (within `limit`),
/// consuming exactly its bytes. Returns the client's address (`None` for LOCAL/UNKNOWN).
pub async fn read_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let decided = super::peek_until(stream, V2_MAX, limit, |buf| match parse(buf) {
        Ok(None) => None,
        done => Some(done),
    });
    let (source, len) = decided
        .await
        .ok_or(ProxyHeaderError::Missing)??
        .ok_or(ProxyHeaderError::Missing)?;
    let mut header = [0u8; V2_MAX];
    stream
        .read_exact(&mut header[..len])
        .await
        .map_err(|_| ProxyHeaderError::Malformed)?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trips_both_versions_and_families() {
        for (src, dst) in [
            ("192.0.2.7:51000", "198.51.100.1:443"),
            ("[2001:db8::7]:51000", "[2001:db8::1]:443"),
        ] {
            for version in [Version::V1, Version::V2] {
                let mut out = Vec::new();
                encode(version, addr(src), addr(dst), &mut out);
                out.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let (source, len) = parse(&out).unwrap().unwrap();
                assert_eq!(source, Some(addr(src)), "{version:?}");
                assert_eq!(&out[len..], b"GET / HTTP/1.1\r\n");
            }
        }
        let mut v1 = Vec::new();
        encode(
            Version::V1,
            addr("192.0.2.7:1"),
            addr("198.51.100.1:2"),
            &mut v1,
        );
        assert_eq!(v1, b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n");
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let mut out = Vec::new();
        encode(
            Version::V2,
            addr("192.0.2.7:1"),
            addr("198.51.100.1:2"),
            &mut out,
        );
        for cut in [1, 12, 15, out.len() - 1] {
            assert_eq!(parse(&out[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(b"PROXY TCP4 1.2"), Ok(None));
    }

    #[test]
    fn rejects_what_is_not_a_header() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyHeaderError::Missing));
        for bad in [
            &b"PROXY TCP4 nonsense 1.2.3.4 1 2\r\n"[..],
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyHeaderError::Malformed));
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(parse(&long), Err(ProxyHeaderError::Malformed));
        assert_eq!(parse(b"PROXY UNKNOWN\r\nrest"), Ok(Some((None, 15))));
    }
}
