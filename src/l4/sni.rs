//! Reading the server name (SNI) from a TLS ClientHello without terminating TLS, so that a
//! TCP listener can route encrypted connections by name (TLS passthrough).
//!
//! Only the first TLS record is read; a ClientHello split over several records (very
//! large ones) is treated as having no name.

use std::time::Duration;

use tokio::net::TcpStream;

/// Most bytes peeked for the ClientHello: a TLS record header plus its largest body.
const MAX_PEEK: usize = 5 + 16_384;

/// What the start of a connection says about its server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Partial,
    /// A ClientHello naming this server (lower-cased).
    Name(String),
    /// A ClientHello without a server name, or not TLS at all.
    NoName,
}

/// Parses the server name out of the TLS record at the start of `buf`.
pub fn parse(buf: &[u8]) -> Hello {
    if buf.is_empty() {
        return Hello::Partial;
    }
    if buf[0] != 0x16 {
        return Hello::NoName;
    }
    if buf.len() < 5 {
        return Hello::Partial;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if buf.len() < 5 + record_len {
        return if 5 + record_len > MAX_PEEK {
            Hello::NoName
        } else {
            Hello::Partial
        };
    }
    server_name(&buf[5..5 + record_len]).map_or(Hello::NoName, Hello::Name)
}

/// The server_name extension's host name in a handshake message holding a ClientHello.
fn server_name(handshake: &[u8]) -> Option<String> {
    let mut r = Reader(handshake);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let body = r.take(len)?;
    let mut r = Reader(body);
    r.take(2 + 32)?; // version, random
    let session = usize::from(r.u8()?);
    r.take(session)?;
    let suites = usize::from(r.u16()?);
    r.take(suites)?;
    let compression = usize::from(r.u8()?);
    r.take(compression)?;
    let extensions = usize::from(r.u16()?);
    let mut ext = Reader(r.take(extensions)?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let len = usize::from(ext.u16()?);
        let data = ext.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut names = Reader(data);
        let list = usize::from(names.u16()?);
        let mut list = Reader(names.take(list)?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let len = usize::from(list.u16()?);
            let name = list.take(len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                return Some(name.to_ascii_lowercase());
            }
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

/// Peeks at the start of `stream` (consuming nothing) until the ClientHello's server name
/// is known, within `limit`. `None`: no name (not TLS, no SNI, or too slow).
pub async fn peek_name(stream: &TcpStream, limit: Duration) -> Option<String> {
    let decided = super::peek_until(stream, MAX_PEEK, limit, |buf| match parse(buf) {
        Hello::Partial => None,
        Hello::Name(name) => Some(Some(name)),
        Hello::NoName => Some(None),
    });
    decided.await.flatten()
}

/// Whether `name` matches `pattern`: exact, or `*.example.com` for any one-or-more-label
/// subdomain of example.com.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            name.len() > domain.len() + 1 && name.ends_with(domain) && {
                name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            }
        }
        None => pattern == name,
    }
}

/// A ClientHello carrying `name`, for tests.
pub fn client_hello(name: &str) -> Vec<u8> {
    let host = name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x02, 0x00, 0x00]); // another extension first
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_name_and_needs_the_whole_record() {
        let hello = client_hello("API.Example.com");
        assert_eq!(parse(&hello), Hello::Name("api.example.com".into()));
        for cut in [1, 4, 5, hello.len() - 1] {
            assert_eq!(parse(&hello[..cut]), Hello::Partial, "cut at {cut}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NoName);
        let mut garbage = hello.clone();
        garbage[6] = 0xff; // corrupt the ClientHello length
        assert_eq!(parse(&garbage), Hello::NoName);
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(matches("a.example", "a.example"));
        assert!(matches("*.example.com", "api.example.com"));
        assert!(matches("*.example.com", "x.y.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "badexample.com"));
        assert!(!matches("a.example", "b.example"));
    }
}
