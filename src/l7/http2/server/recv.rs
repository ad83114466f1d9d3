//! A request body arriving in DATA frames: the connection's task puts the frames in the
//! stream's [`RecvShared`]; the pipeline reads them through [`RecvBody`] (an
//! `http_body::Body`), on the same task. Bytes read are handed back to the connection as
//! flow-control credit: once enough of a stream's window has been read, its slot is
//! marked and the task sends WINDOW_UPDATE, so a client never has more in flight than
//! Fulcrum has room for.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use super::streams::Ready;

/// Read bytes given back to the client at once, at the least (window updates for less
/// would cost more than they help).
pub const CREDIT_STEP: usize = 16 * 1024;

/// Why a body broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The client reset the stream or the connection ended.
    Reset,
    /// More or fewer bytes than its `content-length`.
    Length,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broken::Reset => "the client reset the stream",
            Broken::Length => "the request body does not match its content-length",
        })
    }
}

impl std::error::Error for Broken {}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    end: bool,
    broken: Option<Broken>,
    /// Bytes read by the pipeline and not yet given back as window.
    read: usize,
    /// The body was dropped: what arrives is thrown away at once.
    dropped: bool,
    /// The client waits for `100 Continue`: sent when the body is first read
    /// (`continue_due`), as hyper and NGINX do.
    continue_wanted: bool,
    continue_due: bool,
    /// Bytes received, against the declared `content-length`.
    received: u64,
    length: Option<u64>,
    waker: Option<Waker>,
}

/// A request body's state, between the connection and the pipeline.
#[derive(Debug)]
pub struct RecvShared {
    state: Mutex<State>,
    slot: usize,
    ready: Arc<Ready>,
}

impl RecvShared {
    pub fn new(
        slot: usize,
        ready: Arc<Ready>,
        length: Option<u64>,
        continue_wanted: bool,
    ) -> Arc<RecvShared> {
        Arc::new(RecvShared {
            state: Mutex::new(State {
                length,
                continue_wanted,
                ..State::default()
            }),
            slot,
            ready,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A DATA frame's bytes; `false` when the body was dropped (the bytes count as read).
    pub fn push(&self, data: Bytes, end: bool) -> bool {
        let mut s = self.lock();
        s.received += data.len() as u64;
        if s.dropped {
            s.read += data.len();
            return false;
        }
        if !data.is_empty() {
            s.chunks.push_back(data);
        }
        s.end |= end;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        true
    }

    /// The trailers, which end the body.
    pub fn trailers(&self, trailers: HeaderMap) {
        let mut s = self.lock();
        s.trailers = Some(trailers);
        s.end = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The body breaks off.
    pub fn break_off(&self, why: Broken) {
        let mut s = self.lock();
        s.broken.get_or_insert(why);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Whether more was received than `content-length` declared.
    pub fn over_length(&self) -> bool {
        let s = self.lock();
        s.length.is_some_and(|n| s.received > n)
    }

    /// At the end of the body: whether it had its declared length.
    pub fn check_length(&self) -> Result<(), Broken> {
        let s = self.lock();
        match s.length {
            Some(n) if n != s.received => Err(Broken::Length),
            _ => Ok(()),
        }
    }

    /// Whether the pipeline let go of the body before its end.
    pub fn is_dropped(&self) -> bool {
        self.lock().dropped
    }

    /// Whether `100 Continue` is to be sent now (once).
    pub fn take_continue(&self) -> bool {
        std::mem::take(&mut self.lock().continue_due)
    }

    /// The bytes read since the last call, to give back as window.
    pub fn take_read(&self) -> usize {
        std::mem::take(&mut self.lock().read)
    }
}

/// The request body the pipeline reads.
#[derive(Debug)]
pub struct RecvBody {
    shared: Arc<RecvShared>,
    /// The declared `content-length`.
    length: Option<u64>,
    done: bool,
}

impl RecvBody {
    pub fn new(shared: Arc<RecvShared>, length: Option<u64>) -> RecvBody {
        RecvBody {
            shared,
            length,
            done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Broken>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut s = this.shared.lock();
        if let Some(chunk) = s.chunks.pop_front() {
            s.read += chunk.len();
            let credit = s.read >= CREDIT_STEP;
            drop(s);
            if credit {
                this.shared.ready.mark(this.shared.slot);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(why) = s.broken {
            this.done = true;
            return Poll::Ready(Some(Err(why)));
        }
        if let Some(t) = s.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if s.end {
            this.done = true;
            return Poll::Ready(None);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        if std::mem::take(&mut s.continue_wanted) {
            s.continue_due = true;
            drop(s);
            this.shared.ready.mark(this.shared.slot);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        // What is buffered, and what still comes, is given back as window at once.
        s.dropped = !s.end && s.broken.is_none();
        let buffered: usize = s.chunks.drain(..).map(|c| c.len()).sum();
        s.read += buffered;
        let credit = s.read > 0 || s.dropped;
        drop(s);
        if credit {
            self.shared.ready.mark(self.shared.slot);
        }
    }
}
