//! Fulcrum's own HTTP/2 server: one task per client connection, which reads the frames,
//! runs each stream's request through the pipeline ([`forward`]) and writes the
//! responses, with no task per stream, no channel and no lock between them.
//!
//! The task loops over three steps until none makes progress: read what the client sent
//! and act on each frame ([`inbound`]); poll the streams whose waker fired ([`streams`]):
//! a request still in the pipeline, or a response body being sent under flow control;
//! write what is buffered. Flow control is kept both ways, per stream and per
//! connection: Fulcrum sends no more than the client's windows allow, and gives window
//! back to the client as the pipeline reads a request body ([`recv`]), so that what is
//! buffered per connection stays bounded.
//!
//! Errors follow RFC 9113 5.4: a stream error resets that stream only (RST_STREAM); a
//! connection error sends GOAWAY and closes. Floods (SETTINGS, PING, resets, empty
//! frames) spend tokens of a bucket ([`flood`](super::flood)); an empty bucket ends
//! the connection with ENHANCE_YOUR_CALM. Responses that stop moving for
//! `timeouts.idle` are reset, and clients that stop reading are let go ([`stall`]).

pub mod head;
mod inbound;
mod recv;
mod stall;
mod streams;

pub use recv::{Broken, RecvBody};

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::Response;
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};

use self::streams::{Phase, Ready, Slots, Stream};
use super::activity::Activity;
use super::flood::FrameBudget;
use super::forward::Body;
use super::frame::{self, PeerSettings, Reason, setting};
use super::hpack::Decoder;
use crate::runtime::{Frontend, Live};
use crate::tls::TlsInfo;

/// The window a client gets per stream for its request bodies.
const STREAM_WINDOW: u32 = 1 << 20;
/// The window a client gets per connection.
const CONN_WINDOW: u32 = 4 << 20;
/// Read bytes given back at once, per stream and per connection.
const STREAM_CREDIT: i64 = 64 * 1024;
const CONN_CREDIT: usize = 256 * 1024;
/// Response bodies are not polled while this much is waiting to be written.
const WRITE_HIGH: usize = 64 * 1024;
/// How long a connection with no request in progress keeps its buffers.
const RELEASE_AFTER: Duration = Duration::from_secs(2);
/// Rounds of the loop in one poll, before giving other tasks their turn.
const ROUNDS: usize = 32;

/// Who a connection is with, and the config it is served with.
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: Option<TlsInfo>,
    pub live: Arc<Live>,
    pub frontend: Arc<Frontend>,
}

/// Serves an HTTP/2 client connection until it ends; `read` are the bytes already read
/// from it (the preface, when the HTTP/1.1 engine hands a connection over).
pub async fn serve<S>(io: S, read: Bytes, peer: Peer)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeouts = peer.frontend.timeouts;
    let name = peer.frontend.name.clone();
    let client = peer.addr;
    let live = Arc::clone(&peer.live);
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(io, read, peer, Arc::clone(&activity));
    let stop = live.stopped();
    tokio::pin!(stop);
    // Stalls are swept on a clock of their own, every half `idle` (not at every wake:
    // the buffers' release wakes the task every two seconds while streams run).
    let sweep_every = timeouts.idle / 2;
    let mut next_sweep = tokio::time::Instant::now() + sweep_every;
    // The connection is closed (GOAWAY first) once it has had no request in progress
    // for `timeouts.idle`, or none at all for `request_header`.
    loop {
        let (idle, served) = activity.idle_for();
        let limit = if served {
            timeouts.idle
        } else {
            timeouts.request_header
        };
        if idle >= limit && conn.streams.is_empty() {
            tracing::debug!(listener = %name, client = %client, "idle HTTP/2 connection closed");
            conn.go_away(Reason::NO_ERROR);
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                std::future::poll_fn(|cx| conn.poll(cx)),
            )
            .await;
            return;
        }
        let idle_now = conn.streams.is_empty() && idle >= RELEASE_AFTER;
        if idle_now && conn.holds_buffers() {
            conn.release_buffers();
        }
        let mut wake = limit.saturating_sub(idle);
        if conn.holds_buffers() && idle < RELEASE_AFTER {
            wake = wake.min(RELEASE_AFTER - idle);
        }
        let now = tokio::time::Instant::now();
        wake = wake.min(next_sweep.saturating_duration_since(now));
        tokio::select! {
            () = std::future::poll_fn(|cx| conn.poll(cx)) => return,
            () = tokio::time::sleep(wake.max(Duration::from_millis(1))) => {
                let now = tokio::time::Instant::now();
                if now >= next_sweep {
                    next_sweep = now + sweep_every;
                    if conn.sweep_stalled() {
                        tracing::debug!(listener = %name, client = %client, "HTTP/2 client stopped reading: connection closed");
                        return;
                    }
                }
            }
            // A graceful stop: GOAWAY, then the streams in progress finish.
            () = &mut stop => {
                conn.go_away(Reason::NO_ERROR);
                std::future::poll_fn(|cx| conn.poll(cx)).await;
                return;
            }
        }
    }
}

/// One client connection.
struct Connection<S> {
    io: S,
    rbuf: BytesMut,
    out: Out,
    peer: Peer,
    activity: Arc<Activity>,
    streams: Slots,
    ready: Arc<Ready>,
    decoder: Decoder,
    settings: PeerSettings,
    limits: Limits,
    /// The preface has been read; the first frame (SETTINGS) too.
    preface: bool,
    settings_seen: bool,
    /// A header block waiting for its CONTINUATION frames.
    continuation: Option<inbound::Partial>,
    /// The highest stream the client opened.
    last_stream: u32,
    /// Streams closed lately, and whether Fulcrum reset them (frames that were in
    /// flight are then ignored).
    closed: [(u32, bool); 16],
    closed_at: usize,
    /// How much the client may still send on the connection, and what was read since
    /// the last WINDOW_UPDATE.
    conn_recv: i64,
    conn_read: usize,
    /// Control frames, resets and empty frames the client may still send.
    budget: FrameBudget,
    /// GOAWAY sent: no new stream is served; close once the last one ends.
    going_away: bool,
    /// Close as soon as what is buffered is written (a connection error).
    fatal: bool,
    /// Streams that waited for the output buffer to drain.
    blocked: Vec<usize>,
    /// Output written as of the last sweep for stalls, and the sweeps since any was.
    written_seen: u64,
    write_quiet: u8,
}

/// The config limits a connection applies.
struct Limits {
    max_streams: usize,
    max_header_size: usize,
    max_headers: usize,
}

/// What is written to the client, and the connection's send window.
struct Out {
    buf: Vec<u8>,
    at: usize,
    /// Bytes written to the client since the connection began.
    written: u64,
    conn_send: i64,
    max_frame: usize,
}

impl Out {
    fn pending(&self) -> usize {
        self.buf.len() - self.at
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(io: S, read: Bytes, peer: Peer, activity: Arc<Activity>) -> Connection<S> {
        let l = peer.frontend.limits;
        let limits = Limits {
            max_streams: l.max_concurrent_streams.max(1) as usize,
            max_header_size: l.max_header_size,
            max_headers: l.max_headers,
        };
        let ready = Ready::new(limits.max_streams);
        let mut out = Out {
            buf: Vec::with_capacity(1024),
            at: 0,
            written: 0,
            conn_send: i64::from(frame::DEFAULT_WINDOW),
            max_frame: frame::DEFAULT_MAX_FRAME as usize,
        };
        frame::write_settings(
            &[
                (setting::MAX_CONCURRENT_STREAMS, limits.max_streams as u32),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (setting::MAX_HEADER_LIST_SIZE, limits.max_header_size as u32),
            ],
            &mut out.buf,
        );
        frame::write_window_update(0, CONN_WINDOW - frame::DEFAULT_WINDOW, &mut out.buf);
        let mut rbuf = BytesMut::with_capacity(read.len().max(1024));
        rbuf.extend_from_slice(&read);
        Connection {
            io,
            rbuf,
            out,
            peer,
            activity,
            streams: Slots::new(limits.max_streams, &ready),
            ready,
            decoder: Decoder::new(4096),
            settings: PeerSettings::default(),
            limits,
            preface: false,
            settings_seen: false,
            continuation: None,
            last_stream: 0,
            closed: [(0, false); 16],
            closed_at: 0,
            conn_recv: i64::from(CONN_WINDOW),
            conn_read: 0,
            budget: FrameBudget::default(),
            going_away: false,
            fatal: false,
            blocked: Vec::new(),
            written_seen: 0,
            write_quiet: 0,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.ready.task.register(cx.waker());
        for _ in 0..ROUNDS {
            let mut progress = false;
            if !self.fatal && self.out.pending() < WRITE_HIGH {
                if !self.rbuf.is_empty() {
                    self.process();
                }
                match self.poll_read(cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(()),
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        self.process();
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            if !self.fatal {
                progress |= self.poll_streams();
                self.give_back();
            }
            match self.poll_write(cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    if self.fatal || (self.going_away && self.streams.is_empty()) {
                        return Poll::Ready(());
                    }
                    // Room again: the streams that waited for it go on.
                    for slot in self.blocked.drain(..) {
                        self.ready.mark_here(slot);
                        progress = true;
                    }
                }
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        // A connection with no stream in progress reads into a small buffer: most
        // connections are idle most of the time, and a request head is small.
        let want = if self.streams.is_empty() {
            1024
        } else {
            16 * 1024
        };
        if self.rbuf.capacity() - self.rbuf.len() < want / 4 {
            self.rbuf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    /// Writes what is buffered; `Ready(Ok)` once it all is.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.out.pending() > 0 {
            match Pin::new(&mut self.io).poll_write(cx, &self.out.buf[self.out.at..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.out.at += n;
                    self.out.written += n as u64;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.out.at > 0 {
            self.out.at = 0;
            self.out.buf.clear();
            if self.out.buf.capacity() > 1 << 20 {
                self.out.buf = Vec::with_capacity(16 * 1024);
            }
            return Pin::new(&mut self.io).poll_flush(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Whether the connection holds read or write buffers.
    fn holds_buffers(&self) -> bool {
        self.rbuf.capacity() > 0 || self.out.buf.capacity() > 0
    }

    /// A connection idle for [`RELEASE_AFTER`] keeps no buffer: they are made again by
    /// its next read.
    fn release_buffers(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
        if self.out.pending() == 0 && self.out.buf.capacity() > 0 {
            self.out.buf = Vec::new();
            self.out.at = 0;
        }
    }

    /// Window given back to the client for the connection, once enough was read.
    fn give_back(&mut self) {
        if self.conn_read >= CONN_CREDIT {
            frame::write_window_update(0, self.conn_read as u32, &mut self.out.buf);
            self.conn_recv += self.conn_read as i64;
            self.conn_read = 0;
        }
    }

    /// Polls the streams marked ready; whether any was.
    fn poll_streams(&mut self) -> bool {
        let mut any = false;
        for word in 0..self.ready.words() {
            let mut bits = self.ready.take(word);
            while bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                any = true;
                self.poll_stream(slot);
            }
        }
        any
    }

    fn poll_stream(&mut self, slot: usize) {
        let Some((stream, waker)) = self.streams.with_waker(slot) else {
            return;
        };
        // Window given back for what the pipeline read of the request body.
        if let Some(recv) = &stream.recv {
            if recv.take_continue() && matches!(stream.phase, Phase::Handling(_)) {
                let none = hyper::HeaderMap::new();
                head::write_head(
                    Some(100),
                    &none,
                    None,
                    (stream.id, false, self.out.max_frame),
                    &mut self.out.buf,
                );
            }
            let read = recv.take_read();
            if read > 0 {
                self.conn_read += read;
                stream.credit += read as i64;
            }
            if !stream.remote_done && stream.credit >= STREAM_CREDIT {
                frame::write_window_update(stream.id, stream.credit as u32, &mut self.out.buf);
                stream.recv_window += stream.credit;
                stream.credit = 0;
            }
        }
        let mut cx = Context::from_waker(waker);
        let done = match &mut stream.phase {
            Phase::Handling(handler) => match handler.as_mut().poll(&mut cx) {
                Poll::Ready((response, finish)) => {
                    stream.finish = Some(Box::new(finish));
                    start_response(stream, response, &mut self.out);
                    matches!(stream.phase, Phase::Done)
                        || send_body(stream, &mut cx, &mut self.out, slot, &mut self.blocked)
                }
                Poll::Pending => false,
            },
            Phase::Sending { .. } => {
                send_body(stream, &mut cx, &mut self.out, slot, &mut self.blocked)
            }
            Phase::Done => true,
        };
        if done {
            self.finish(slot);
        }
    }
}

impl<S> Connection<S> {
    /// Sends GOAWAY: the streams opened so far are served, no new one.
    fn go_away(&mut self, reason: Reason) {
        if !self.going_away {
            self.going_away = true;
            frame::write_goaway(self.last_stream, reason, &mut self.out.buf);
        }
    }

    /// A connection error: GOAWAY with `reason`, then the connection closes.
    fn fail(&mut self, reason: Reason, why: &str) {
        tracing::debug!(client = %self.peer.addr, reason = reason.0, why, "HTTP/2 connection error");
        self.going_away = false;
        self.go_away(reason);
        self.fatal = true;
    }

    /// Fulcrum's side of the stream in `slot` is done: the stream closes, or waits for
    /// the client's side to end.
    fn finish(&mut self, slot: usize) {
        let Some(stream) = self.streams.get_mut(slot) else {
            return;
        };
        if !stream.remote_done && !stream.reset_sent {
            // The client is still sending a body the answer did not wait for. While the
            // pipeline still reads it (an early answer drains the rest, bounded), the
            // stream stays open: a client (curl) that is reset mid-upload reports an
            // error instead of the answer it got. Then it is asked to stop (RFC 9113
            // 8.1), its window given back.
            if stream.recv.as_ref().is_some_and(|r| !r.is_dropped()) {
                return;
            }
            let id = stream.id;
            frame::write_rst(id, Reason::NO_ERROR, &mut self.out.buf);
            self.close(slot, true);
            return;
        }
        self.close(slot, false);
    }

    /// Closes the stream in `slot` (`reset`: by RST_STREAM from Fulcrum).
    fn close(&mut self, slot: usize, reset: bool) {
        let Some(stream) = self.streams.remove(slot) else {
            return;
        };
        if let Some(recv) = &stream.recv {
            recv.break_off(Broken::Reset);
            self.conn_read += recv.take_read();
        }
        self.remember_closed(stream.id, reset || stream.reset_sent);
    }
}

/// The pipeline's response: its head is written, its body (if any) follows.
fn start_response(stream: &mut Stream, response: Response<Body>, out: &mut Out) {
    let (parts, body) = response.into_parts();
    let end = stream.head_only || body.is_end_stream();
    let length = body.size_hint().exact();
    head::write_head(
        Some(parts.status.as_u16()),
        &parts.headers,
        length,
        (stream.id, end, out.max_frame),
        &mut out.buf,
    );
    stream.quiet = 0;
    stream.phase = if end {
        Phase::Done
    } else {
        Phase::Sending {
            body,
            pending: Bytes::new(),
        }
    };
}

/// Sends what the body has, within the windows; whether the stream's side is done.
fn send_body(
    stream: &mut Stream,
    cx: &mut Context<'_>,
    out: &mut Out,
    slot: usize,
    blocked: &mut Vec<usize>,
) -> bool {
    let Phase::Sending { body, pending } = &mut stream.phase else {
        return true;
    };
    loop {
        if out.pending() >= WRITE_HIGH {
            blocked.push(slot);
            return false;
        }
        if !pending.is_empty() {
            let window = stream.send_window.min(out.conn_send);
            if window <= 0 {
                // A WINDOW_UPDATE marks the stream again.
                return false;
            }
            let n = pending.len().min(window as usize).min(out.max_frame);
            let last = n == pending.len() && body.is_end_stream();
            let flags = if last { frame::flag::END_STREAM } else { 0 };
            frame::write_head(frame::kind::DATA, flags, stream.id, n, &mut out.buf);
            out.buf.extend_from_slice(&pending[..n]);
            pending.advance(n);
            if let Some(finish) = stream.finish.as_mut() {
                finish.bytes_out += n as u64;
            }
            stream.send_window -= n as i64;
            out.conn_send -= n as i64;
            stream.quiet = 0;
            if last {
                stream.phase = Phase::Done;
                return true;
            }
            continue;
        }
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => match f.into_data() {
                Ok(data) => *pending = data,
                Err(f) => {
                    if let Ok(trailers) = f.into_trailers() {
                        if let Some(finish) = stream.finish.as_mut() {
                            finish.grpc_status_from(&trailers);
                        }
                        head::write_head(
                            None,
                            &trailers,
                            None,
                            (stream.id, true, out.max_frame),
                            &mut out.buf,
                        );
                        stream.phase = Phase::Done;
                        return true;
                    }
                }
            },
            Poll::Ready(None) => {
                frame::write_head(
                    frame::kind::DATA,
                    frame::flag::END_STREAM,
                    stream.id,
                    0,
                    &mut out.buf,
                );
                stream.phase = Phase::Done;
                return true;
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(stream = stream.id, error = %e, "response body broke off: stream reset");
                frame::write_rst(stream.id, Reason::INTERNAL_ERROR, &mut out.buf);
                stream.phase = Phase::Done;
                stream.reset_sent = true;
                return true;
            }
            Poll::Pending => return false,
        }
    }
}
