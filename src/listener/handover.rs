//! Handing listening sockets to a new Fulcrum process (`fulcrum run --takeover`), as
//! HAProxy's `-x` does: the running process sends every listening socket's file
//! descriptor over its control socket (SCM_RIGHTS), with a line per socket naming its
//! listener, address and kind; the new process accepts on the very same sockets, so no
//! connection attempt is refused while one process hands over to the other (connections
//! wait in the shared accept queue).
//!
//! The message is one `sendmsg` carrying every descriptor (at most [`MAX_SOCKETS`]) and a
//! text payload: `fulcrum-sockets N\n` then N lines `NAME ADDR tcp|udp`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::socket::Bound;

/// Most sockets one hand-over carries (the kernel's limit per message is 253).
pub const MAX_SOCKETS: usize = 200;

/// A listening socket received from the previous process.
#[derive(Debug)]
pub struct Inherited {
    /// The listener's name.
    pub name: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The socket.
    pub socket: Bound,
}

/// Sends `sockets` (name, address, socket) over `stream`.
pub fn send(stream: &UnixStream, sockets: &[(&str, SocketAddr, &Bound)]) -> io::Result<()> {
    if sockets.len() > MAX_SOCKETS {
        return Err(io::Error::other(format!(
            "{} listening sockets: at most {MAX_SOCKETS} can be handed over",
            sockets.len()
        )));
    }
    let mut payload = format!("fulcrum-sockets {}\n", sockets.len());
    for (name, addr, socket) in sockets {
        let kind = match socket {
            Bound::Tcp(_) => "tcp",
            Bound::Udp(_) => "udp",
        };
        payload.push_str(&format!("{name} {addr} {kind}\n"));
    }
    let fds: Vec<RawFd> = sockets.iter().map(|(_, _, s)| s.as_raw_fd()).collect();
    send_with_fds(stream, payload.as_bytes(), &fds)
}

/// Receives the sockets sent by [`send`].
pub fn receive(stream: &mut UnixStream) -> io::Result<Vec<Inherited>> {
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fds) = recv_with_fds(stream, &mut buf)?;
    let mut text = buf[..n].to_vec();
    // The payload may arrive in several reads; the descriptors came with its start.
    let header_end = |t: &[u8]| t.iter().position(|&b| b == b'\n');
    while header_end(&text).is_none() {
        let mut more = [0u8; 4096];
        let m = stream.read(&mut more)?;
        if m == 0 {
            return Err(io::Error::other("the running Fulcrum closed the hand-over"));
        }
        text.extend_from_slice(&more[..m]);
    }
    let first = String::from_utf8_lossy(&text[..header_end(&text).unwrap_or(0)]).into_owned();
    if first.starts_with("error") {
        let mut rest = String::from_utf8_lossy(&text).into_owned();
        let _ = stream.read_to_string(&mut rest);
        return Err(io::Error::other(rest.trim().to_owned()));
    }
    let count: usize = first
        .strip_prefix("fulcrum-sockets ")
        .and_then(|c| c.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected answer `{first}`")))?;
    while text.iter().filter(|&&b| b == b'\n').count() < count + 1 {
        let mut more = [0u8; 4096];
        let m = stream.read(&mut more)?;
        if m == 0 {
            break;
        }
        text.extend_from_slice(&more[..m]);
    }
    if fds.len() != count {
        return Err(io::Error::other(format!(
            "expected {count} sockets, received {}",
            fds.len()
        )));
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut out = Vec::with_capacity(count);
    for (line, fd) in text.lines().skip(1).zip(fds) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(addr), Some(kind)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(io::Error::other(format!("bad hand-over line `{line}`")));
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| io::Error::other(format!("bad address in `{line}`")))?;
        let socket = match kind {
            "tcp" => Bound::Tcp(std::net::TcpListener::from(fd)),
            _ => Bound::Udp(std::net::UdpSocket::from(fd)),
        };
        out.push(Inherited {
            name: name.to_owned(),
            addr,
            socket,
        });
    }
    Ok(out)
}

fn send_with_fds(stream: &UnixStream, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let data_len = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is CMSG_SPACE(data_len) bytes, room for one header
        // and `fds`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(cmsg),
                data_len,
            );
        }
    }
    // SAFETY: `msg` is fully initialised and points at live buffers.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let rest = &payload[sent as usize..];
    if !rest.is_empty() {
        use std::io::Write;
        (&*stream).write_all(rest)?;
    }
    Ok(())
}

fn recv_with_fds(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let data_len = MAX_SOCKETS * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` with `msg.msg_controllen` bytes of cmsgs; each
    // SCM_RIGHTS payload is an array of descriptors now owned by this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = bytes / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds))
}
