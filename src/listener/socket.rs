//! Listening sockets: bound once per listener (so a port already in use is an error, not
//! a silent share), then cloned into every worker thread.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

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
        match self {
            Bound::Tcp(s) => s.as_raw_fd(),
            Bound::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// Binds `addr` for `protocol` (and listens, for TCP); with `freebind`, even if the
/// address is not on this host (yet); with `defer_accept`, connections are handed over
/// only once their first bytes have arrived (see [`set_defer_accept`]).
pub fn bind(
    addr: SocketAddr,
    protocol: Protocol,
    freebind: bool,
    defer_accept: bool,
) -> io::Result<Bound> {
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
    if defer_accept {
        set_defer_accept(&socket, true)?;
    }
    Ok(Bound::Tcp(socket.into()))
}

/// Linux `TCP_DEFER_ACCEPT`: the kernel wakes the listener for a connection only once
/// the client's first bytes have arrived (or, for a client that sends nothing, after
/// about a second, when it re-sends the handshake's SYN-ACK and the client answers).
/// The worker then reads the request at once, with no event-loop registration and no
/// wake-up in between (see `LazyTcp`): a connection that asks one thing and is closed
/// costs 8 system calls instead of 12 (bench/compare, `close` row). Only for
/// client-speaks-first protocols: HTTP, TLS, the PROXY protocol. NGINX's
/// `listen ... deferred`, HAProxy's `bind ... defer-accept`.
pub fn set_defer_accept(socket: &impl AsRawFd, on: bool) -> io::Result<()> {
    let seconds: libc::c_int = on.into();
    // SAFETY: `socket` is an open socket; the option's value is a C int, passed by
    // pointer with its size, and only read by the kernel.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
