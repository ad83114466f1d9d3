//! A response body compressed on its way to the client (the HTTP/1.1 engine's side of
//! the compress phase): the backend's framing is decoded, the body goes through the
//! coder, and what comes out is sent in chunks (to an HTTP/1.0 client as it is, the
//! connection ending the body).
//!
//! Each read from the backend is coded and whatever the coder has produced is sent at
//! once; when the backend has nothing more to read yet, the coder is flushed first, so
//! that a stream of events (SSE) or a slow page reaches the client as it is written,
//! while a body arriving at full speed is coded in large blocks. Memory stays the
//! coder's state and one read buffer, whatever the body's size.

use std::pin::pin;

use bytes::Buf;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use super::chunked::ChunkedDecoder;
use super::proxy::{Conn, READ_CHUNK, poll_once};
use super::response::ResponseFraming;
use crate::content::encoder::Encoder;
use crate::pipeline::error::Error;
use crate::tls::Stream;

impl Conn {
    /// Sends the response head in `out`, then the body read from `from` (framed by
    /// `framing`) through `encoder`. Returns whether the body ended where its framing
    /// said (a close-delimited body: at the backend's close).
    pub(super) async fn stream_encoded(
        &mut self,
        from: &mut Stream,
        framing: ResponseFraming,
        http10: bool,
        encoder: &mut Encoder,
    ) -> Result<bool, Error> {
        let idle = self.frontend.timeouts.idle;
        let mut remaining = match framing {
            ResponseFraming::Length(n) => n,
            ResponseFraming::Empty => 0,
            _ => u64::MAX,
        };
        let mut decoder = (framing == ResponseFraming::Chunked).then(|| ChunkedDecoder::new(false));
        let mut pending = std::mem::take(&mut self.out);
        let mut plain = Vec::new();
        let result = async {
            loop {
                // Code what was read (bounded by the framing).
                let done = if let Some(d) = decoder.as_mut() {
                    let used = d
                        .feed(&self.ubuf, &mut plain)
                        .map_err(|_| Error::client_gone())?;
                    self.ubuf.advance(used);
                    encoder.write(&plain).map_err(coder_failed)?;
                    plain.clear();
                    d.is_done()
                } else {
                    let take = (self.ubuf.len() as u64).min(remaining) as usize;
                    encoder.write(&self.ubuf[..take]).map_err(coder_failed)?;
                    self.ubuf.advance(take);
                    if remaining != u64::MAX {
                        remaining -= take as u64;
                    }
                    remaining == 0
                };
                if done {
                    encoder.finish().map_err(coder_failed)?;
                    frame(&mut pending, encoder, http10);
                    if !http10 {
                        pending.extend_from_slice(b"0\r\n\r\n");
                    }
                    self.write_client(&pending).await?;
                    return Ok(true);
                }
                from.ack_promptly();
                self.ubuf.reserve(READ_CHUNK);
                let read = match poll_once(pin!(from.read_buf(&mut self.ubuf))).await {
                    Some(read) => {
                        frame(&mut pending, encoder, http10);
                        if !pending.is_empty() {
                            self.write_client(&pending).await?;
                            pending.clear();
                        }
                        read
                    }
                    None => {
                        // The backend pauses: everything so far goes to the client.
                        if encoder.unflushed() {
                            encoder.flush().map_err(coder_failed)?;
                        }
                        frame(&mut pending, encoder, http10);
                        if !pending.is_empty() {
                            self.write_client(&pending).await?;
                            pending.clear();
                        }
                        match timeout(idle, from.read_buf(&mut self.ubuf)).await {
                            Ok(read) => read,
                            Err(_) => return Err(Error::client_gone()),
                        }
                    }
                };
                match read {
                    Ok(n) if n > 0 => {}
                    Ok(_) if framing == ResponseFraming::UntilClose => remaining = 0,
                    _ => return Err(Error::client_gone()),
                }
            }
        }
        .await;
        pending.clear();
        self.out = pending;
        result
    }
}

/// Moves the coder's output to `out`, as one chunk (or as it is, for HTTP/1.0).
fn frame(out: &mut Vec<u8>, encoder: &mut Encoder, http10: bool) {
    encoder.drain(|output| {
        if !http10 {
            super::chunked::write_hex(out, output.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(output);
        if !http10 {
            out.extend_from_slice(b"\r\n");
        }
    });
}

fn coder_failed(e: std::io::Error) -> Error {
    tracing::warn!(error = %e, "response compression failed");
    Error::client_gone()
}
