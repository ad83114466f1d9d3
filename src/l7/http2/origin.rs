//! The body of an HTTP/1.1 backend's response on its way to a client of the HTTP/2 path,
//! read from the HTTP/1.1 engine's backend connection ([`crate::l7::upstream`]) by the
//! task that sends it: no task per backend connection and no hand-off between tasks.
//!
//! The bytes are delimited as the response head said (a length, chunks, or the end of
//! the connection); chunks are decoded, since HTTP/2 frames the data itself. Once the
//! body has been read in full, the connection goes back to the worker's idle pool, where
//! the next request, on either engine, takes it. A body dropped before its end (the
//! client went away, the response was retried) closes its connection.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};

use crate::connect::ConnKey;
use crate::l7::buffers::{self, Side};
use crate::l7::chunked::ChunkedDecoder;
use crate::l7::response::ResponseFraming;
use crate::l7::upstream::{self, Upstream};

/// How much a body read asks for at most (the HTTP/1.1 engine's body read size).
const READ_CHUNK: usize = 64 * 1024;

/// The error of a body that broke off: the backend closed, reset, or sent invalid chunks.
pub type OriginError = Box<dyn std::error::Error + Send + Sync>;

/// What is left to read of the body.
#[derive(Debug)]
enum Left {
    /// This many bytes.
    Length(u64),
    /// Chunks, until the last one and the trailers.
    Chunked(Box<ChunkedDecoder>),
    /// Everything until the backend closes.
    UntilClose,
    /// Nothing: the body has ended.
    Done,
}

/// A response body read from a backend connection of the HTTP/1.1 engine.
#[derive(Debug)]
pub struct Origin {
    up: Option<Upstream>,
    /// Bytes read and not yet given out (the head's leftovers first).
    buf: BytesMut,
    left: Left,
    key: ConnKey,
    /// The backend keeps the connection open after this response.
    reusable: bool,
    /// Decoded chunk data (chunked bodies only).
    decoded: Vec<u8>,
}

impl Origin {
    /// The body that follows a response head: `buf` holds what was read after the head,
    /// `framing` says where the body ends. `reusable`: the backend keeps the connection.
    pub fn new(
        up: Upstream,
        buf: BytesMut,
        framing: ResponseFraming,
        key: ConnKey,
        reusable: bool,
    ) -> Origin {
        let left = match framing {
            ResponseFraming::Empty => Left::Done,
            ResponseFraming::Length(n) => Left::Length(n),
            ResponseFraming::Chunked => Left::Chunked(Box::new(ChunkedDecoder::new(false))),
            ResponseFraming::UntilClose => Left::UntilClose,
        };
        let mut origin = Origin {
            up: Some(up),
            buf,
            left,
            key,
            reusable,
            decoded: Vec::new(),
        };
        if matches!(origin.left, Left::Done) {
            origin.ended();
        }
        origin
    }

    /// Throws the body away (its response is being retried): the connection is kept if
    /// the whole body had arrived, closed otherwise.
    pub fn discard(mut self) {
        if let Left::Length(n) = self.left
            && self.buf.len() as u64 == n
        {
            self.buf.clear();
            self.left = Left::Done;
            self.ended();
        }
    }

    /// The body has been read: the connection goes back to the idle pool when the
    /// backend keeps it and sent nothing more; the read buffer goes back to the worker's.
    fn ended(&mut self) {
        self.left = Left::Done;
        if let Some(up) = self.up.take()
            && self.reusable
            && self.buf.is_empty()
        {
            upstream::put_idle(self.key, up.stream);
        }
        buffers::give_bytes(Side::Backend, std::mem::take(&mut self.buf));
    }

    /// Gives out what the buffer holds of the body, if anything.
    fn next_from_buffer(&mut self) -> Result<Option<Bytes>, OriginError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let data = match &mut self.left {
            Left::Done => return Ok(None),
            Left::Length(n) => {
                let take = (*n).min(self.buf.len() as u64) as usize;
                *n -= take as u64;
                let data = self.buf.split_to(take).freeze();
                if *n == 0 {
                    self.ended();
                }
                data
            }
            Left::UntilClose => self.buf.split().freeze(),
            Left::Chunked(decoder) => {
                self.decoded.clear();
                let used = decoder
                    .feed(&self.buf, &mut self.decoded)
                    .map_err(|_| "the backend sent an invalid chunked body")?;
                self.buf.advance(used);
                if decoder.is_done() {
                    self.ended();
                }
                if self.decoded.is_empty() {
                    return Ok(None);
                }
                Bytes::copy_from_slice(&self.decoded)
            }
        };
        Ok(Some(data))
    }
}

impl hyper::body::Body for Origin {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, OriginError>>> {
        let this = self.get_mut();
        loop {
            match this.next_from_buffer() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if matches!(this.left, Left::Done) => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let Some(up) = this.up.as_mut() else {
                return Poll::Ready(None);
            };
            up.stream.ack_promptly();
            if this.buf.capacity() - this.buf.len() < 4096 {
                this.buf.reserve(READ_CHUNK);
            }
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut up.stream),
                cx,
                &mut this.buf
            ));
            match read {
                Ok(n) if n > 0 => {}
                Ok(_) if matches!(this.left, Left::UntilClose) => {
                    this.reusable = false;
                    this.ended();
                    return Poll::Ready(None);
                }
                Ok(_) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(
                        "the backend closed the connection before the body's end".into(),
                    )));
                }
                Err(e) => {
                    this.up = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.left {
            Left::Done => SizeHint::with_exact(0),
            Left::Length(n) => SizeHint::with_exact(*n),
            _ => SizeHint::default(),
        }
    }
}
