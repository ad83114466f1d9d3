//! Flood protection for HTTP/2 client connections: a client that sends SETTINGS or PING
//! frames faster than any real client does (each one makes the server answer with an
//! ACK, CVE-2019-9512 and CVE-2019-9515) has its connection closed.
//!
//! The guard watches the bytes the client sends, frame header by frame header, without
//! copying or buffering them: after the 24-byte preface, each 9-byte frame header gives
//! the type and the payload length to skip. Every SETTINGS or PING that is not an ACK
//! takes a token from a bucket of [`BURST`] tokens refilled at [`PER_SECOND`]; when the
//! bucket is empty, reading fails and hyper closes the connection. (RST_STREAM floods are
//! hyper's: `max_pending_accept_reset_streams` ends them with a GOAWAY.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::PREFACE;

/// Control frames a client may send at once.
pub const BURST: u32 = 200;
/// Control frames a client may send per second, sustained.
pub const PER_SECOND: u32 = 20;

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// The client went over its budget of control frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood;

/// Frame-by-frame accounting of what a client sends.
#[derive(Debug)]
pub struct FrameBudget {
    /// Bytes of the preface still to come; `None` once the connection turned out not to
    /// be HTTP/2 (then nothing is counted).
    preface_left: Option<usize>,
    header: [u8; 9],
    have: usize,
    skip: u64,
    tokens: u32,
    refilled: Instant,
}

impl Default for FrameBudget {
    fn default() -> Self {
        FrameBudget {
            preface_left: Some(PREFACE.len()),
            header: [0; 9],
            have: 0,
            skip: 0,
            tokens: BURST,
            refilled: Instant::now(),
        }
    }
}

impl FrameBudget {
    /// Accounts for bytes received; `Err` when the client exceeded its budget.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Flood> {
        self.feed_at(bytes, None)
    }

    /// [`feed`](Self::feed), with the clock stopped at `now` when given (the fuzz
    /// target's property holds only if no refill happens between two pieces).
    pub fn feed_at(&mut self, mut bytes: &[u8], now: Option<Instant>) -> Result<(), Flood> {
        while !bytes.is_empty() {
            match self.preface_left {
                None => return Ok(()),
                Some(0) => {}
                Some(left) => {
                    let n = left.min(bytes.len());
                    let at = PREFACE.len() - left;
                    if bytes[..n] != PREFACE[at..at + n] {
                        self.preface_left = None;
                        return Ok(());
                    }
                    self.preface_left = Some(left - n);
                    bytes = &bytes[n..];
                    continue;
                }
            }
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.header;
                self.skip = u64::from(u32::from_be_bytes([0, h[0], h[1], h[2]]));
                if matches!(h[3], SETTINGS | PING) && h[4] & ACK == 0 {
                    self.spend_at(now)?;
                }
            }
        }
        Ok(())
    }

    /// Takes one token; `Err` when the bucket is empty.
    pub fn spend(&mut self) -> Result<(), Flood> {
        self.spend_at(None)
    }

    fn spend_at(&mut self, now: Option<Instant>) -> Result<(), Flood> {
        if self.tokens == 0 {
            let now = now.unwrap_or_else(Instant::now);
            let earned =
                now.duration_since(self.refilled).as_millis() as u64 * u64::from(PER_SECOND) / 1000;
            if earned == 0 {
                return Err(Flood);
            }
            self.tokens = earned.min(u64::from(BURST)) as u32;
            self.refilled = now;
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// A client connection whose incoming frames are accounted for. `prefix` holds bytes
/// already read from it (by the HTTP/1.1 engine, before it saw the HTTP/2 preface):
/// they are read again first.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    prefix: Bytes,
    budget: FrameBudget,
}

impl<S> Guarded<S> {
    /// Watches what the client sends on `inner`, starting with `prefix`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Guarded {
            inner,
            prefix,
            budget: FrameBudget::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = if this.prefix.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            Poll::Ready(Ok(()))
        };
        if let Poll::Ready(Ok(())) = polled
            && this.budget.feed(&buf.filled()[before..]).is_err()
        {
            tracing::info!("HTTP/2 client sends control frames too fast (flood): closing");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP/2 control frame flood",
            )));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            ty,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_settings_flood_runs_out_of_budget_acks_and_data_do_not_count() {
        let mut b = FrameBudget::default();
        b.feed(PREFACE).unwrap();
        // Real traffic: SETTINGS, ACKs, headers and large DATA frames.
        b.feed(&frame(SETTINGS, 0, &[0; 6])).unwrap();
        for _ in 0..10_000 {
            b.feed(&frame(SETTINGS, ACK, &[])).unwrap();
            b.feed(&frame(0x0, 0, &[7; 100])).unwrap();
        }
        let flood: Vec<u8> = (1..BURST).flat_map(|_| frame(SETTINGS, 0, &[])).collect();
        // Byte by byte: frame headers split across reads are still read right.
        for byte in flood.chunks(1) {
            b.feed(byte).unwrap();
        }
        assert!(b.feed(&frame(PING, 0, &[0; 8])).is_err());
    }

    #[test]
    fn not_http2_is_not_counted() {
        let mut b = FrameBudget::default();
        b.feed(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let flood: Vec<u8> = (0..1000).flat_map(|_| frame(SETTINGS, 0, &[])).collect();
        b.feed(&flood).unwrap();
    }
}
