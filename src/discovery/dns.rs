//! A small DNS stub client: A, AAAA and SRV questions over UDP to the configured name
//! servers (each in turn until one answers), with the answers' TTLs. Enough to follow
//! backends by name, as HAProxy's `resolvers` do; no cache (the caller asks again when
//! the TTL runs out), no TCP fallback (a truncated answer is used as far as it goes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Record types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IPv4 addresses.
    A = 1,
    /// IPv6 addresses.
    Aaaa = 28,
    /// Service records: target, port, priority, weight.
    Srv = 33,
}

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An address of the name asked for (A or AAAA).
    Address(IpAddr, u32),
    /// A service record: priority, weight, port, target host, TTL.
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Share among records of the same priority.
        weight: u16,
        /// The service's port.
        port: u16,
        /// The host giving the service.
        target: String,
        /// Seconds the record may be kept.
        ttl: u32,
    },
}

/// Why a question got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The name does not exist (NXDOMAIN).
    NoSuchName,
    /// Every name server failed or stayed silent; the last reason.
    Unanswered(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoSuchName => f.write_str("no such name"),
            Failure::Unanswered(why) => f.write_str(why),
        }
    }
}

/// Asks `servers` (in turn) for the `kind` records of `name`, waiting `timeout` for
/// each. An empty list: the name exists with no such record.
pub fn query(
    servers: &[SocketAddr],
    name: &str,
    kind: Kind,
    timeout: Duration,
) -> Result<Vec<Record>, Failure> {
    let id = fastrand::u16(..);
    let question = encode(id, name, kind).map_err(|e| Failure::Unanswered(e.into()))?;
    let mut last = String::from("no name server configured");
    for server in servers {
        match ask(*server, &question, timeout) {
            Ok(reply) => match decode(&reply, id, kind) {
                Ok(records) => return Ok(records),
                Err(Failure::NoSuchName) => return Err(Failure::NoSuchName),
                Err(Failure::Unanswered(why)) => last = format!("{server}: {why}"),
            },
            Err(e) => last = format!("{server}: {e}"),
        }
    }
    Err(Failure::Unanswered(last))
}

fn ask(server: SocketAddr, question: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(question)?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            std::io::Error::new(e.kind(), "no answer in time")
        }
        _ => e,
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// The question message: one question, recursion desired.
pub fn encode(id: u16, name: &str, kind: Kind) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("not a valid DNS name");
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&(kind as u16).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    Ok(out)
}

/// The records of type `kind` in the answer (and, for SRV, nothing else: targets'
/// addresses are asked for separately).
pub fn decode(msg: &[u8], id: u16, kind: Kind) -> Result<Vec<Record>, Failure> {
    let bad = |why: &str| Failure::Unanswered(format!("malformed answer ({why})"));
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err(bad("not the answer to the question"));
    }
    if msg[2] & 0x80 == 0 {
        return Err(bad("not a response"));
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Err(Failure::NoSuchName),
        2 => return Err(Failure::Unanswered("server failure (SERVFAIL)".into())),
        5 => return Err(Failure::Unanswered("refused (REFUSED)".into())),
        code => return Err(Failure::Unanswered(format!("error code {code}"))),
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([msg[i], msg[i + 1]]));
    let (questions, answers) = (count(4), count(6));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at).ok_or_else(|| bad("question"))? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at).ok_or_else(|| bad("record name"))?;
        let head = msg.get(at..at + 10).ok_or_else(|| bad("record"))?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let ttl = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let len = usize::from(u16::from_be_bytes([head[8], head[9]]));
        let data_at = at + 10;
        let data = msg
            .get(data_at..data_at + len)
            .ok_or_else(|| bad("record data"))?;
        at = data_at + len;
        if rtype != kind as u16 {
            // A CNAME on the way, or another type: the records that matter follow.
            continue;
        }
        match kind {
            Kind::A if len == 4 => {
                let ip = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
                out.push(Record::Address(ip.into(), ttl));
            }
            Kind::Aaaa if len == 16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                out.push(Record::Address(Ipv6Addr::from(b).into(), ttl));
            }
            Kind::Srv if len > 6 => {
                let word = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
                let target = read_name(msg, data_at + 6).ok_or_else(|| bad("SRV target"))?;
                out.push(Record::Srv {
                    priority: word(0),
                    weight: word(2),
                    port: word(4),
                    target,
                    ttl,
                });
            }
            _ => return Err(bad("record length")),
        }
    }
    Ok(out)
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// The name at `at`, following compression pointers (a bounded number of them).
fn read_name(msg: &[u8], mut at: usize) -> Option<String> {
    let mut name = String::new();
    for _ in 0..64 {
        let len = *msg.get(at)?;
        if len == 0 {
            return Some(if name.is_empty() { ".".into() } else { name });
        }
        if len & 0xc0 == 0xc0 {
            at = usize::from(u16::from_be_bytes([len & 0x3f, *msg.get(at + 1)?]));
            continue;
        }
        let label = msg.get(at + 1..at + 1 + usize::from(len))?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(label).ok()?);
        at += 1 + usize::from(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `question` with the given records (type, TTL, data), the name of
    /// each a pointer to the question's.
    fn answer(question: &[u8], rcode: u8, records: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut m = question.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (rtype, ttl, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn addresses_and_their_ttls() {
        let q = encode(7, "api.test.", Kind::A).unwrap();
        assert_eq!(&q[12..22], b"\x03api\x04test\x00");
        let cname = (5, 60, b"\x03web\xc0\x10".to_vec());
        let a = answer(
            &q,
            0,
            &[
                cname,
                (1, 30, vec![10, 0, 0, 1]),
                (1, 20, vec![10, 0, 0, 2]),
            ],
        );
        assert_eq!(
            decode(&a, 7, Kind::A).unwrap(),
            vec![
                Record::Address("10.0.0.1".parse().unwrap(), 30),
                Record::Address("10.0.0.2".parse().unwrap(), 20)
            ]
        );
        assert_eq!(
            decode(&a, 8, Kind::A).unwrap_err(),
            Failure::Unanswered("malformed answer (not the answer to the question)".into())
        );
        assert_eq!(
            decode(&answer(&q, 3, &[]), 7, Kind::A),
            Err(Failure::NoSuchName)
        );
        assert!(encode(1, "a..b", Kind::A).is_err());
    }

    #[test]
    fn service_records_with_compressed_targets() {
        let q = encode(9, "_http._tcp.svc.test", Kind::Srv).unwrap();
        // Target "b1" + pointer to "svc.test" inside the question (offset 12 + 6 + 5).
        let mut data = vec![0, 10, 0, 5, 0x1f, 0x90];
        data.extend_from_slice(b"\x02b1\xc0\x17");
        let a = answer(&q, 0, &[(33, 15, data)]);
        assert_eq!(
            decode(&a, 9, Kind::Srv).unwrap(),
            vec![Record::Srv {
                priority: 10,
                weight: 5,
                port: 8080,
                target: "b1.svc.test".into(),
                ttl: 15
            }]
        );
        // Truncated data is an error, never a panic.
        for cut in 12..a.len() {
            let _ = decode(&a[..cut], 9, Kind::Srv);
        }
    }
}
