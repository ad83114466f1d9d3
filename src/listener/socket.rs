//! Listening sockets: bound once per listener (so a port already in use is an error, not
//! a silent share), then cloned into every worker thread.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

use crate::config::Protocol;

/// Length of the kernel's queue of connections not yet accepted.
const BACKLOG: i32 = 4096;

/// A bound listening socket.
#[derive(Debug)]
pub enum Bound {
    /// A TCP socket, listening.
    Tcp(std::net::TcpListener),
    /// A UDP socket.
    Udp(std::net::UdpSocket),
}

impl Bound {
    /// The address it listens on (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Tcp(s) => s.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        }
    }

    /// Another handle on the same socket.
    pub fn try_clone(&self) -> io::Result<Bound> {
        Ok(match self {
            Bound::Tcp(s) => Bound::Tcp(s.try_clone()?),
            Bound::Udp(s) => Bound::Udp(s.try_clone()?),
        })
    }

    /// The socket's file descriptor.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Bound::Tcp(s) => s.as_raw_fd(),
            Bound::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// Binds `addr` for `protocol` (and listens, for TCP); with `freebind`, even if the
/// address is not on this host (yet).
pub fn bind(addr: SocketAddr, protocol: Protocol, freebind: bool) -> io::Result<Bound> {
    let kind = match protocol {
        Protocol::Udp => Type::DGRAM,
        Protocol::Http | Protocol::Tcp => Type::STREAM,
    };
    let socket = Socket::new(Domain::for_address(addr), kind, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if freebind {
        if addr.is_ipv6() {
            socket.set_freebind_v6(true)?;
        } else {
            socket.set_freebind_v4(true)?;
        }
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    if protocol == Protocol::Udp {
        return Ok(Bound::Udp(socket.into()));
    }
    socket.listen(BACKLOG)?;
    Ok(Bound::Tcp(socket.into()))
}
