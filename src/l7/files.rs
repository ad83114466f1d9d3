//! The HTTP/1.1 engine's side of static files: writes a `content::files::FileAnswer`,
//! its head then its pieces. On plain TCP the file's bytes go from the page cache to the
//! socket with `sendfile(2)`, never through Fulcrum's buffers; over TLS they are read
//! into one buffer at a time and encrypted.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use tokio::io::Interest;

use super::proxy::{Conn, write_timed};
use crate::content::files::{FileAnswer, Piece};
use crate::pipeline::error::{Error, status_title};
use crate::tls::Stream;

/// Bytes read per step when the file is encrypted (TLS).
const STEP: usize = 64 * 1024;

/// Bodies up to this size are read and sent with the head in one write.
const SMALL: u64 = 32 * 1024;

impl Conn {
    /// Sends `answer`: the head (with `Connection: close` unless `keep`), and the body
    /// unless `head_only`.
    pub(super) async fn send_file(
        &mut self,
        answer: &FileAnswer,
        head_only: bool,
        keep: bool,
    ) -> Result<(), Error> {
        self.own_head(answer.status, answer.length, keep, |put| {
            for (name, value) in &answer.headers {
                put(name, value.as_bytes());
            }
        });
        // A small body goes with the head, in one write (one packet).
        let small = !head_only && answer.length.is_some_and(|n| n <= SMALL);
        if small && !self.inline_body(answer) {
            return Err(Error::client_gone());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write_client(&out).await;
        self.out = out;
        written?;
        if head_only || small {
            return Ok(());
        }
        for piece in &answer.body {
            match piece {
                Piece::Bytes(b) => self.write_client(b).await?,
                Piece::File(offset, len) => {
                    let Some(file) = &answer.file else {
                        return Err(Error::client_gone());
                    };
                    self.bytes_out += len;
                    match &mut self.client {
                        Stream::Tcp(tcp) => {
                            let tcp = tcp.polled().map_err(|_| Error::client_gone())?;
                            sendfile(tcp, file, *offset, *len, self.frontend.timeouts.idle).await?
                        }
                        _ => self.copy_file(file, *offset, *len).await?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes in `out` the head of an answer of Fulcrum's own (a file, a stored
    /// response): the status line, the headers `headers` gives to its `put`, the length
    /// if any, and `Connection: close` unless `keep`.
    pub(super) fn own_head(
        &mut self,
        status: u16,
        length: Option<u64>,
        keep: bool,
        headers: impl FnOnce(&mut dyn FnMut(&str, &[u8])),
    ) {
        self.status = status;
        self.out.clear();
        let _ = write!(self.out, "HTTP/1.1 {status} {}\r\n", status_title(status));
        let out = &mut self.out;
        headers(&mut |name, value| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        });
        if let Some(n) = length {
            let _ = write!(self.out, "Content-Length: {n}\r\n");
        }
        if !keep {
            self.out.extend_from_slice(b"Connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Appends the whole body of `answer` to `out`; false if the file came up short.
    fn inline_body(&mut self, answer: &FileAnswer) -> bool {
        for piece in &answer.body {
            match piece {
                Piece::Bytes(b) => self.out.extend_from_slice(b),
                Piece::File(offset, len) => {
                    let Some(file) = &answer.file else {
                        return false;
                    };
                    let at = self.out.len();
                    let len = *len as usize;
                    self.out.resize(at + len, 0);
                    let mut done = 0;
                    while done < len {
                        match file.read_at(&mut self.out[at + done..], offset + done as u64) {
                            Ok(n) if n > 0 => done += n,
                            _ => return false,
                        }
                    }
                }
            }
        }
        true
    }

    /// Reads `len` bytes of `file` from `offset` and writes them, a step at a time.
    async fn copy_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<(), Error> {
        let idle = self.frontend.timeouts.idle;
        let mut buf = std::mem::take(&mut self.out);
        let mut at = offset;
        let end = offset + len;
        let result = async {
            while at < end {
                buf.resize(STEP.min((end - at) as usize), 0);
                let n = file
                    .read_at(&mut buf, at)
                    .map_err(|_| Error::client_gone())?;
                if n == 0 {
                    // The file shrank under us: the client sees a short body.
                    return Err(Error::client_gone());
                }
                write_timed(&mut self.client, &buf[..n], idle).await?;
                at += n as u64;
            }
            Ok(())
        }
        .await;
        buf.clear();
        self.out = buf;
        result
    }
}

/// `sendfile(2)` of `len` bytes of `file` from `offset` to the socket, waiting for it to
/// be writable whenever its buffer is full.
async fn sendfile(
    tcp: &mut tokio::net::TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    idle: std::time::Duration,
) -> Result<(), Error> {
    let mut off = offset as libc::off_t;
    let end = (offset + len) as libc::off_t;
    let (socket, fd) = (tcp.as_raw_fd(), file.as_raw_fd());
    while off < end {
        let count = ((end - off) as usize).min(1 << 30);
        let step = tcp.async_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the call; `off` is ours.
            let n = unsafe { libc::sendfile(socket, fd, &mut off, count) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        let sent = match tokio::time::timeout(idle, step).await {
            Ok(Ok(n)) => n,
            _ => return Err(Error::client_gone()),
        };
        if sent == 0 {
            // The file shrank under us.
            return Err(Error::client_gone());
        }
    }
    Ok(())
}
