//! A request body on its way to the backend (HTTP/2 path), bounded by the route's
//! `max_body_size` when the client streams it without declaring its length: past the
//! bound the body ends with an error (the backend sees an aborted request), and the
//! shared [`Oversize`] tells the caller to answer 413 and hands it the client's stream,
//! read to its end while that answer is sent (HTTP/2 resets a stream whose request side
//! is dropped early, and the client would never see the 413).

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::forward::ClientBody;

/// The body's error: the client's stream failed, or it went past the bound.
pub type UploadError = Box<dyn StdError + Send + Sync>;

/// A client's request body, counted against a bound (if any).
#[derive(Debug)]
pub struct Upload {
    inner: Option<ClientBody>,
    /// A body read and changed already (decoded), sent as one frame.
    ready: Option<Bytes>,
    /// The bound and the bytes seen so far, and what is set when it is passed.
    bound: Option<(u64, u64, Arc<Oversize>)>,
}

/// What a bounded body leaves when it goes past its bound: the flag, and the client's
/// stream, read to its end while the 413 is sent ([`drain`]).
#[derive(Debug, Default)]
pub struct Oversize {
    /// Set when the body went past the bound.
    pub passed: AtomicBool,
    /// The client's stream, taken out of the body.
    pub parked: Mutex<Option<ClientBody>>,
}

/// Most of a refused body read (and thrown away) after its 413, so that the stream ends
/// cleanly instead of being reset under the answer.
const DRAIN: u64 = 4 << 20;

/// Reads the rest of a refused request's body (up to [`DRAIN`] bytes, for at most two
/// seconds) while its 413 is sent; then lets it go.
pub async fn drain(mut body: ClientBody) {
    use http_body_util::BodyExt as _;
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read).await;
}

impl Upload {
    /// `inner` as is.
    pub fn new(inner: ClientBody) -> Upload {
        Upload {
            inner: Some(inner),
            ready: None,
            bound: None,
        }
    }

    /// A body that is all here.
    pub fn ready(body: Bytes) -> Upload {
        Upload {
            inner: None,
            // An empty body ends with the request's head.
            ready: (!body.is_empty()).then_some(body),
            bound: None,
        }
    }

    /// The body, if it is all here already (read and changed, or none at all).
    pub fn take_whole(&mut self) -> Option<Bytes> {
        if self.inner.is_some() {
            return None;
        }
        Some(self.ready.take().unwrap_or_default())
    }

    /// `inner`, bounded to `max` bytes; `over` is set when it goes past.
    pub fn bounded(inner: ClientBody, max: u64, over: Arc<Oversize>) -> Upload {
        Upload {
            inner: Some(inner),
            ready: None,
            bound: Some((max, 0, over)),
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = UploadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UploadError>>> {
        let this = self.get_mut();
        if let Some(body) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(body))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some((max, seen, over)), Some(data)) = (this.bound.as_mut(), frame.data_ref()) {
            *seen += data.len() as u64;
            if *seen > *max {
                over.passed.store(true, Ordering::Relaxed);
                // The client's stream is kept until its 413 has been sent: dropping it
                // now would reset the stream before the answer.
                *over.parked.lock().unwrap_or_else(|e| e.into_inner()) = this.inner.take();
                return Poll::Ready(Some(Err("the request body is too large".into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(body) = &self.ready {
            return SizeHint::with_exact(body.len() as u64);
        }
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |i| i.size_hint())
    }
}
