//! A client's request body on the HTTP/2 path: Fulcrum's own HTTP/2 server's, the
//! HTTP/1.1 engine's (a request to a pool speaking HTTP/2, [`Piped`] from the client
//! connection), or none (a request whose HEADERS ended the stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::forward::BodyError;
use super::server::RecvBody;

/// A request body, whichever server read the request.
#[derive(Debug)]
pub enum ClientBody {
    Own(RecvBody),
    Piped(Piped),
    Empty,
}

/// A body the HTTP/1.1 engine reads from its client connection and passes on in pieces
/// (decoded from chunked framing, if it was).
#[derive(Debug)]
pub struct Piped {
    pieces: mpsc::Receiver<Result<Bytes, BodyError>>,
    /// The bytes still to come, when the client declared a length.
    left: Option<u64>,
    ended: bool,
}

impl Piped {
    /// A body of `length` bytes (`None`: chunked), and where its pieces are sent.
    pub fn new(length: Option<u64>) -> (mpsc::Sender<Result<Bytes, BodyError>>, Piped) {
        let (tx, rx) = mpsc::channel(4);
        let body = Piped {
            pieces: rx,
            left: length,
            ended: false,
        };
        (tx, body)
    }
}

impl Body for Piped {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.pieces.poll_recv(cx) {
            Poll::Ready(Some(Ok(piece))) => {
                if let Some(left) = &mut this.left {
                    *left = left.saturating_sub(piece.len() as u64);
                    this.ended = *left == 0;
                }
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.left == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ClientBody::Piped(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Own(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Piped(b) => b.is_end_stream(),
            ClientBody::Own(b) => b.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Piped(b) => b.size_hint(),
            ClientBody::Own(b) => b.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
        }
    }
}
