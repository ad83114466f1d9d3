//! Opening connections to backends, for every protocol: TCP with Nagle off, then the TLS
//! handshake when the pool encrypts, all within the connect timeout.
//!
//! [`ConnKey`] names what makes a connection reusable for another request: the backend's
//! address and the TLS settings it was made with, so that two pools that reach the same
//! address with different TLS settings (or SNI names) never share kept connections.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::tls::Stream;
use crate::tls::client::BackendConnector;

/// Why a backend could not be reached.
#[derive(Debug)]
pub enum ConnectError {
    /// The connect timeout elapsed.
    Timeout,
    /// The connection was refused or failed.
    Failed(io::Error),
    /// The TLS handshake failed (for instance the certificate did not verify).
    Tls(io::Error),
}

/// What a kept connection is for: an address, reached in clear text (`tls == 0`) or with
/// the TLS settings whose [`BackendConnector::key`] is `tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnKey {
    /// The backend's address.
    pub addr: SocketAddr,
    /// 0, or the TLS settings' key.
    pub tls: u64,
}

/// A map keyed by [`ConnKey`], hashed by [`ConnKey`]'s own mix (one multiplication)
/// rather than SipHash, which cost 330 instructions per lookup, two lookups per
/// request. The keys are the configuration's backends, not chosen by clients.
pub type ConnMap<V> = std::collections::HashMap<
    ConnKey,
    V,
    std::hash::BuildHasherDefault<crate::policy::shards::AsIs>,
>;

impl std::hash::Hash for ConnKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let ip = match self.addr.ip() {
            std::net::IpAddr::V4(a) => u64::from(a.to_bits()),
            std::net::IpAddr::V6(a) => {
                let b = a.to_bits();
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let key = ip ^ (u64::from(self.addr.port()) << 32) ^ self.tls.rotate_left(17);
        state.write_u64(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}

impl ConnKey {
    /// The key of connections to `addr` made with `tls`.
    #[inline]
    pub fn new(addr: SocketAddr, tls: Option<&BackendConnector>) -> ConnKey {
        ConnKey {
            addr,
            tls: tls.map_or(0, |t| t.key),
        }
    }
}

/// Opens a new connection to `addr`, with its TLS handshake if `tls`, within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&BackendConnector>,
) -> Result<Stream, ConnectError> {
    within(timeout, async {
        let tcp = open(addr).await?;
        Ok(match tls {
            None => Stream::tcp(tcp),
            Some(tls) => Stream::Client(Box::new(
                tls.connect(addr.ip(), tcp)
                    .await
                    .map_err(ConnectError::Tls)?,
            )),
        })
    })
    .await
}

/// Opens a new plain TCP connection to `addr` within `timeout` (layer 4).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    within(timeout, open(addr)).await
}

/// A TCP connection to `addr`, with Nagle's algorithm off.
async fn open(addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(ConnectError::Failed)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `connecting`, or [`ConnectError::Timeout`] after `timeout`.
async fn within<T>(
    timeout: Duration,
    connecting: impl Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}
