//! Moving bodies for the HTTP/1.1 engine: the rest of a request body to the backend
//! (re-chunked or counted), the response body to the client (de-chunked for HTTP/1.0
//! clients), and the byte tunnel after a 101 (WebSocket and other upgrades).

use bytes::Buf;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use super::chunked::ChunkedDecoder;
use super::proxy::{Conn, READ_CHUNK, backend_broke, write_timed};
use super::response::ResponseFraming;
use super::upstream::Upstream;
use crate::pipeline::error::Error;
use crate::tls::Stream;

/// A response body with at least this much left to read goes by `splice` (when it can):
/// below it, a read and a write cost less than the pipe's two calls and its wake-ups.
const SPLICE_FROM: u64 = 64 * 1024;

impl Conn {
    /// A chunked body is within the route's `max_body_size` (its declared length was
    /// checked by the admission phase): past it, 413, before the excess is sent on.
    pub(super) fn check_body_size(&mut self, d: &ChunkedDecoder) -> Result<(), Error> {
        let max = self
            .route
            .and_then(|i| self.frontend.routes.routes().get(i))
            .and_then(|r| r.request_limits.max_body_size);
        match max {
            Some(max) if d.announced() > max => {
                self.trail.refused = Some(("denied", "body"));
                Err(Error::client(413, "the request body is too large"))
            }
            _ => Ok(()),
        }
    }

    /// Reads the whole request body (framed by `framing`), decodes it from `coding` (at
    /// most `max` bytes, else 413) and puts it in `out` after the head, whose
    /// `Content-Encoding` and framing headers become one `Content-Length`.
    pub(super) async fn decode_request_body(
        &mut self,
        framing: super::request::BodyFraming,
        coding: crate::content::coding::Coding,
        max: u64,
    ) -> Result<(), Error> {
        use super::request::BodyFraming;
        let too_large = || {
            Error::client(
                413,
                "the request body decodes to more than the route allows",
            )
        };
        let idle = self.frontend.timeouts.idle;
        let mut encoded = Vec::new();
        let mut decoder = (framing == BodyFraming::Chunked).then(|| ChunkedDecoder::new(false));
        let mut remaining = match framing {
            BodyFraming::Length(n) if n > max => return Err(too_large()),
            BodyFraming::Length(n) => n,
            _ => u64::MAX,
        };
        loop {
            let done = if let Some(d) = decoder.as_mut() {
                let used = d
                    .feed(&self.cbuf, &mut encoded)
                    .map_err(|_| Error::bad_request("invalid chunked body"))?;
                self.cbuf.advance(used);
                self.bytes_in += used as u64;
                d.is_done()
            } else {
                let take = (self.cbuf.len() as u64).min(remaining) as usize;
                encoded.extend_from_slice(&self.cbuf[..take]);
                self.cbuf.advance(take);
                self.bytes_in += take as u64;
                remaining -= take as u64;
                remaining == 0
            };
            if encoded.len() as u64 > max {
                return Err(too_large());
            }
            if done {
                break;
            }
            self.client.ack_promptly();
            self.cbuf.reserve(READ_CHUNK);
            match timeout(idle, self.client.read_buf(&mut self.cbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(Error::client_gone()),
                Err(_) => return Err(Error::client(408, "the request body stalled")),
            }
        }
        let plain =
            crate::content::decoder::decode(coding, &encoded, max).map_err(|e| match e {
                crate::content::decoder::DecodeError::TooLarge => too_large(),
                crate::content::decoder::DecodeError::Invalid => {
                    Error::bad_request("the request body is not valid in its Content-Encoding")
                }
            })?;
        for name in [
            &b"Content-Encoding"[..],
            b"Content-Length",
            b"Transfer-Encoding",
        ] {
            crate::headers::remove_lines(&mut self.out, name);
        }
        // The head ends with an empty line: the length goes before it.
        self.out.truncate(self.out.len() - 2);
        self.out.extend_from_slice(b"Content-Length: ");
        crate::headers::put_decimal(&mut self.out, plain.len() as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(&plain);
        Ok(())
    }

    /// Streams the rest of the request body from the client to the backend.
    pub(super) async fn stream_request_body(
        &mut self,
        to: &mut Stream,
        mut remaining: u64,
        mut decoder: Option<ChunkedDecoder>,
    ) -> Result<(), Error> {
        let idle = self.frontend.timeouts.idle;
        loop {
            self.client.ack_promptly();
            self.cbuf.reserve(READ_CHUNK);
            match timeout(idle, self.client.read_buf(&mut self.cbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(Error::client_gone()),
                Err(_) => return Err(Error::client(408, "the request body stalled")),
            }
            let done = if let Some(d) = decoder.as_mut() {
                self.out.clear();
                let used = d
                    .feed(&self.cbuf, &mut self.out)
                    .map_err(|_| Error::bad_request("invalid chunked body"))?;
                self.cbuf.advance(used);
                self.bytes_in += used as u64;
                self.check_body_size(d)?;
                write_timed(to, &self.out, idle)
                    .await
                    .map_err(backend_broke)?;
                d.is_done()
            } else {
                let take = (self.cbuf.len() as u64).min(remaining) as usize;
                write_timed(to, &self.cbuf[..take], idle)
                    .await
                    .map_err(backend_broke)?;
                self.cbuf.advance(take);
                self.bytes_in += take as u64;
                remaining -= take as u64;
                remaining == 0
            };
            if done {
                return Ok(());
            }
        }
    }

    /// Sends the response head in `out` with the body bytes already read, then streams
    /// the rest. Returns whether the body ended where its framing said.
    pub(super) async fn stream_response_body(
        &mut self,
        from: &mut Stream,
        framing: ResponseFraming,
        http10: bool,
    ) -> Result<bool, Error> {
        let idle = self.frontend.timeouts.idle;
        let mut remaining = match framing {
            ResponseFraming::Length(n) => n,
            _ => u64::MAX,
        };
        let mut decoder =
            (framing == ResponseFraming::Chunked).then(|| ChunkedDecoder::new(!http10));
        let mut pending = std::mem::take(&mut self.out);
        let result = async {
            if framing == ResponseFraming::Empty {
                self.write_client(&pending).await?;
                return Ok(true);
            }
            loop {
                // Move what was read into `pending` (bounded by the framing), write it.
                if let Some(d) = decoder.as_mut() {
                    let used = d
                        .feed(&self.ubuf, &mut pending)
                        .map_err(|_| Error::client_gone())?;
                    self.ubuf.advance(used);
                } else {
                    let take = (self.ubuf.len() as u64).min(remaining) as usize;
                    if pending.is_empty() {
                        self.bytes_out += take as u64;
                        super::cached::keep(&mut self.keeping, &self.ubuf[..take]);
                        write_timed(&mut self.client, &self.ubuf[..take], idle).await?;
                    } else {
                        pending.extend_from_slice(&self.ubuf[..take]);
                    }
                    self.ubuf.advance(take);
                    if remaining != u64::MAX {
                        remaining -= take as u64;
                    }
                }
                if !pending.is_empty() {
                    self.write_client(&pending).await?;
                    pending.clear();
                }
                let done = match &decoder {
                    Some(d) => d.is_done(),
                    None => remaining == 0,
                };
                if done {
                    return Ok(true);
                }
                if decoder.is_none()
                    && remaining >= SPLICE_FROM
                    && remaining != u64::MAX
                    && let Some(spliced) = self.splice_rest(from, remaining).await
                {
                    return spliced;
                }
                from.ack_promptly();
                self.ubuf.reserve(READ_CHUNK);
                match timeout(idle, from.read_buf(&mut self.ubuf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(Ok(_)) if framing == ResponseFraming::UntilClose => return Ok(false),
                    _ => return Err(Error::client_gone()),
                }
            }
        }
        .await;
        pending.clear();
        self.out = pending;
        result
    }

    /// The last `remaining` bytes of a response body, moved from the backend to the
    /// client by `splice` when both are plain TCP, nothing read is waiting in `ubuf`
    /// and no copy is kept for the cache; `None` when it does not apply (copy instead).
    async fn splice_rest(&mut self, from: &Stream, remaining: u64) -> Option<Result<bool, Error>> {
        let (Stream::Tcp(up), Stream::Tcp(client)) = (from, &mut self.client) else {
            return None;
        };
        if !self.ubuf.is_empty() || self.keeping.is_some() {
            return None;
        }
        let (Some(up), Ok(client)) = (up.polled_ref(), client.polled()) else {
            return None;
        };
        let idle = self.frontend.timeouts.idle;
        let mut moved = 0;
        let result = crate::splice::forward(up, client, remaining, idle, &mut moved).await;
        self.bytes_out += moved;
        match result {
            Ok(true) => Some(Ok(true)),
            Ok(false) => None,
            Err(_) => Some(Err(Error::client_gone())),
        }
    }

    /// After a 101 (WebSocket and other upgrades): sends the backend's head to the
    /// client, then relays bytes both ways until both sides close or the connection stays
    /// idle for `timeouts.idle`. The client connection ends with the tunnel.
    /// `head_len`: the length of the 101's head at the start of `ubuf` (copied in `rhead`).
    pub(super) async fn tunnel(
        &mut self,
        mut up: Upstream,
        head_len: usize,
    ) -> Result<bool, Error> {
        let head = std::mem::take(&mut self.rhead);
        let written = self.write_client(&head).await;
        self.rhead = head;
        written?;
        // Bytes that came with the 101 belong to the new protocol.
        let early = self.ubuf.split_off(head_len);
        self.ubuf.clear();
        if !early.is_empty() {
            self.write_client(&early).await?;
        }
        if !self.cbuf.is_empty() {
            write_timed(&mut up.stream, &self.cbuf, self.frontend.timeouts.idle).await?;
            self.cbuf.clear();
        }
        let idle = self.frontend.timeouts.idle;
        match crate::relay::relay(&mut self.client, &mut up.stream, idle).await {
            Ok((sent, received)) => {
                // To the backend, and back to the client.
                self.bytes_in += sent;
                self.bytes_out += received;
                tracing::debug!(client = %self.peer, sent, received, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(client = %self.peer, error = %e, "upgraded connection ended"),
        }
        Err(Error::client_gone())
    }
}
