//! Moving bytes between two TCP sockets without copying them through Fulcrum's memory:
//! `splice(2)` takes one socket's bytes into a pipe (the kernel hands over its pages)
//! and from the pipe to the other socket. [`Pipe`] and [`splice`] serve the TCP relay
//! (`l4::splice`); [`forward`] serves the HTTP/1.1 engine, for response bodies of known
//! length between plain TCP connections, where a read and a write would each copy every
//! byte. Each worker thread keeps a few empty pipes for the next body, and holds at most
//! [`IN_USE`] at once: past that, bodies are copied as before.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// What a body's pipe is asked to hold (`F_SETPIPE_SZ`); the kernel's 64 KiB if refused.
const PIPE_SIZE: usize = 256 * 1024;
/// A pipe's capacity when none is asked for.
pub const DEFAULT_PIPE: usize = 64 * 1024;
/// Empty pipes kept per worker thread between bodies.
const KEPT: usize = 8;
/// Pipes in use per worker thread at most (two file descriptors each).
pub const IN_USE: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static USED: Cell<usize> = const { Cell::new(0) };
}

/// A non-blocking pipe (empty when taken from and given back to the worker's pool).
#[derive(Debug)]
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Its capacity in bytes.
    pub size: usize,
}

impl Pipe {
    /// A new pipe of `size` bytes if the system grants it, else of [`DEFAULT_PIPE`].
    pub fn open(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        if size <= DEFAULT_PIPE {
            return Ok(Pipe {
                read,
                write,
                size: DEFAULT_PIPE,
            });
        }
        // SAFETY: F_SETPIPE_SZ/F_GETPIPE_SZ on a pipe we own.
        let size = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        Ok(Pipe {
            read,
            write,
            size: usize::try_from(size).unwrap_or(0).max(4096),
        })
    }
}

/// A pipe of this worker thread's, given back when dropped (also when the body's future
/// is dropped half-way): kept for the next body if empty, closed if it may hold bytes.
struct Lease {
    /// Always `Some` until dropped.
    pipe: Option<Pipe>,
    /// Bytes in the pipe.
    held: usize,
}

impl Lease {
    fn pipe(&self) -> &Pipe {
        self.pipe
            .as_ref()
            .expect("a lease holds its pipe until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        USED.set(USED.get() - 1);
        if let Some(pipe) = self.pipe.take()
            && self.held == 0
        {
            FREE.with_borrow_mut(|free| {
                if free.len() < KEPT {
                    free.push(pipe);
                }
            });
        }
    }
}

/// A pipe of this worker thread's, or `None` when it has [`IN_USE`] out or the system
/// gives no more (the caller copies instead).
fn take() -> Option<Lease> {
    if USED.get() >= IN_USE {
        return None;
    }
    let pipe = FREE
        .with_borrow_mut(|free| free.pop())
        .or_else(|| Pipe::open(PIPE_SIZE).ok())?;
    USED.set(USED.get() + 1);
    Some(Lease {
        pipe: Some(pipe),
        held: 0,
    })
}

/// Moves `len` bytes from `from` to `to`, each wait bounded by `idle`; adds what reached
/// `to` to `moved`. `Ok(false)`: no pipe could be had, nothing was moved (copy instead).
/// An error: `from` ended early or failed, `to` failed, or a side stayed idle too long.
pub async fn forward(
    from: &TcpStream,
    to: &TcpStream,
    mut len: u64,
    idle: Duration,
    moved: &mut u64,
) -> io::Result<bool> {
    let Some(mut lease) = take() else {
        return Ok(false);
    };
    while len > 0 {
        // Fill the pipe from `from` (only when it is empty: a pipe's slots can run out
        // before its bytes do, and that refusal would read as `from` having nothing).
        crate::tls::ack_promptly(from);
        let want = len.min(lease.pipe().size as u64) as usize;
        let filled = from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), lease.pipe().write.as_raw_fd(), want)
        });
        let n = match filled {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                waited(timeout(idle, from.readable()).await)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        lease.held = n;
        len -= n as u64;
        // Empty it into `to`.
        while lease.held > 0 {
            let emptied = to.try_io(Interest::WRITABLE, || {
                splice(lease.pipe().read.as_raw_fd(), to.as_raw_fd(), lease.held)
            });
            match emptied {
                Ok(n) => {
                    lease.held -= n;
                    *moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    waited(timeout(idle, to.writable()).await)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(true)
}

/// A readiness wait's result: its own error, or a timeout as `TimedOut`.
fn waited(r: Result<io::Result<()>, tokio::time::error::Elapsed>) -> io::Result<()> {
    r.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// One non-blocking `splice(2)` of up to `len` bytes between a socket and a pipe.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call; null offsets (sockets and pipes).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_reused_and_bounded() {
        let a = take().unwrap();
        let size = a.pipe().size;
        assert!(size >= 64 * 1024, "pipe of {size} bytes");
        let fd = a.pipe().read.as_raw_fd();
        drop(a);
        let mut b = take().unwrap();
        assert_eq!(b.pipe().read.as_raw_fd(), fd, "the empty pipe is reused");
        // One that may hold bytes is closed, not kept.
        b.held = 1;
        drop(b);
        assert!(FREE.with_borrow(|f| f.is_empty()));
        let held: Vec<Lease> = (0..IN_USE).map(|_| take().unwrap()).collect();
        assert!(take().is_none());
        drop(held);
        assert_eq!(USED.get(), 0, "every lease gave its place back");
        assert_eq!(FREE.with_borrow(|f| f.len()), KEPT);
    }
}
