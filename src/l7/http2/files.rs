//! The HTTP/2 path's side of static files: a `content::files::FileAnswer` as a response whose body reads the file a
//! piece at a time (64 KiB per frame), from the page cache, on the worker.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::{Frame, SizeHint};
use hyper::header::HeaderValue;

use super::forward::Body;
use crate::content::files::{FileAnswer, Piece};

/// Bytes read per frame.
const STEP: u64 = 64 * 1024;

/// `answer` as a response (`head_only`: a HEAD, no body).
pub(super) fn response(answer: FileAnswer, head_only: bool) -> Response<Body> {
    let FileAnswer {
        status,
        headers,
        file,
        body,
        length,
    } = answer;
    let pieces = if head_only { Vec::new() } else { body };
    let mut r = Response::new(
        FileBody {
            file,
            pieces: pieces.into_iter(),
            current: None,
            left: length.unwrap_or(0),
        }
        .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let h = r.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    if let Some(n) = length {
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

struct FileBody {
    file: Option<std::fs::File>,
    pieces: std::vec::IntoIter<Piece>,
    /// The file range being sent: (offset, bytes left).
    current: Option<(u64, u64)>,
    /// Body bytes left in all.
    left: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = super::forward::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::forward::BodyError>>> {
        let this = self.get_mut();
        loop {
            if let Some((offset, left)) = this.current {
                if left == 0 {
                    this.current = None;
                    continue;
                }
                let Some(file) = &this.file else {
                    return Poll::Ready(None);
                };
                let mut buf = BytesMut::zeroed(left.min(STEP) as usize);
                match file.read_at(&mut buf, offset) {
                    Ok(n) if n > 0 => {
                        buf.truncate(n);
                        this.current = Some((offset + n as u64, left - n as u64));
                        this.left = this.left.saturating_sub(n as u64);
                        return Poll::Ready(Some(Ok(Frame::data(buf.freeze()))));
                    }
                    // The file shrank or failed under us: the body ends short.
                    _ => return Poll::Ready(None),
                }
            }
            match this.pieces.next() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(b)) => {
                    this.left = this.left.saturating_sub(b.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(b)))));
                }
                Some(Piece::File(offset, len)) => this.current = Some((offset, len)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.current.is_none() && self.pieces.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
