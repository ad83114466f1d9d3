//! Layer 4: TCP connections relayed byte for byte, and UDP flows relayed datagram by
//! datagram, to backends balanced by the same pools, algorithms and health checks as HTTP.

pub mod proxy_protocol;
pub mod sni;
pub mod splice;
pub mod tcp;
pub mod udp;

use std::time::Duration;

use tokio::net::TcpStream;

/// Peeks at the start of `stream` (consuming nothing, at most `max` bytes) until `decide`
/// returns `Some`, within `limit`. `decide` returns `None` while it needs more bytes.
/// `None`: the connection ended, failed, or `limit` passed first.
pub async fn peek_until<T>(
    stream: &TcpStream,
    max: usize,
    limit: Duration,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let mut buf = vec![0u8; max];
    let read = async {
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            match decide(&buf[..n]) {
                Some(decided) => return Some(decided),
                // Only part of what is needed: peeking again at once would spin.
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}
