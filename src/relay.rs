//! Copying bytes both ways between two connections until both directions have ended:
//! half-close passed on (a side that finishes sending gets its peer's write side shut
//! down), and an idle timeout. Used by TCP listeners and by WebSocket (upgraded HTTP)
//! connections.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Size of each direction's buffer.
pub const BUFFER: usize = 16 * 1024;

/// Copies both ways with half-close; returns the bytes sent to the backend and back to
/// the client, or an error if a side failed or the connection stayed idle too long.
pub async fn relay<A, B>(client: &mut A, upstream: &mut B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut to_backend = vec![0u8; BUFFER];
    let mut to_client = vec![0u8; BUFFER];
    let (mut up_open, mut down_open) = (true, true);
    let (mut up, mut down) = (0u64, 0u64);
    let mut deadline = Instant::now() + idle;
    while up_open || down_open {
        tokio::select! {
            read = client.read(&mut to_backend), if up_open => {
                let n = read?;
                if n == 0 {
                    up_open = false;
                    let _ = upstream.shutdown().await;
                } else {
                    upstream.write_all(&to_backend[..n]).await?;
                    up += n as u64;
                }
            }
            read = upstream.read(&mut to_client), if down_open => {
                let n = read?;
                if n == 0 {
                    down_open = false;
                    let _ = client.shutdown().await;
                } else {
                    client.write_all(&to_client[..n]).await?;
                    down += n as u64;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
            }
        }
        deadline = Instant::now() + idle;
    }
    Ok((up, down))
}
