//! Zero-copy relaying of TCP connections on Linux with `splice(2)`: bytes go from one
//! socket into a pipe and from the pipe into the other socket inside the kernel, never
//! through a buffer of Fulcrum's (HAProxy's `option splice-auto`, NGINX has no
//! equivalent for streams). Each direction has its own pipe; half-close and the idle
//! timeout behave as in [`super::relay`].
//!
//! It saves the copies in and out of user space, which pays off for bulk transfers; for
//! small exchanges the two extra pipes per connection cost more than they save, so it is
//! off by default (`splice = true` on a TCP listener turns it on).

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::splice::{DEFAULT_PIPE, Pipe, splice};

/// Relays both ways with splice; returns the bytes sent to the backend and back to the
/// client. An error creating the pipes is returned as is.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
) -> io::Result<(u64, u64)> {
    let (up_pipe, down_pipe) = (Pipe::open(DEFAULT_PIPE)?, Pipe::open(DEFAULT_PIPE)?);
    let activity = Activity {
        start: Instant::now(),
        last_us: AtomicU64::new(0),
    };
    let up = one_way(client, upstream, &up_pipe, &activity);
    let down = one_way(upstream, client, &down_pipe, &activity);
    let watchdog = async {
        loop {
            let deadline = activity.last() + idle;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        both = async { tokio::try_join!(up, down) } => both,
        () = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

/// When bytes last moved, shared by both directions.
struct Activity {
    start: Instant,
    last_us: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let us = self.start.elapsed().as_micros() as u64;
        self.last_us.store(us, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_micros(self.last_us.load(Ordering::Relaxed))
    }
}

/// Moves everything `from` sends to `to` until `from` finishes, then shuts `to`'s
/// write side (half-close).
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    activity: &Activity,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe.write.as_raw_fd(), pipe.size)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
            return Ok(total);
        }
        activity.touch();
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        activity.touch();
        total += n as u64;
    }
}
