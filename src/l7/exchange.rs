//! One request's trip to the backends: pick one, send it the request, read the response
//! head; if that try failed in a way that is safe to repeat, and the pool's retry policy
//! and budget allow it ([`super::retry`]), try again on another backend of the pool; then
//! stream the response that is kept back to the client.
//!
//! A try is repeated when the connection could not be made (refused, `connect` timeout),
//! when the backend closed or reset the connection before sending any response byte, or
//! when the response status is one of the pool's `on_status`. Only idempotent requests are
//! repeated, and only when the whole request (head and body) is still in `out`, i.e. it
//! arrived with its head and nothing had to be streamed from the client. A response that
//! is retried never reaches the client: its connection goes back to the idle pool if its
//! whole body had arrived with the head, and is closed otherwise.
//!
//! The client gets the last try's outcome: its response, or the 502/504 of its failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chunked::ChunkedDecoder;
use super::proxy::{Conn, connect};
use super::request::{BodyFraming, RequestHead};
use super::response::{self, ClientSide, ResponseError, ResponseFraming, ResponseHead};
use super::upstream::{self, Upstream};
use crate::balance::Backend;
use crate::balance::backend::InFlight;
use crate::content::encoder::Encoder;
use crate::pipeline::Forward;
use crate::pipeline::error::{Error, Retry};
use crate::pipeline::upstream::{Admitted, Attempts, Why};
use crate::runtime::Pool;

/// The part of the request body that had not arrived with the head: the bytes still
/// expected (with a length) or the chunked decoder's state.
type RestOfBody = Option<(u64, Option<ChunkedDecoder>)>;

/// A final response head from one try: the head for the client is in `rhead`, the
/// backend's bytes (head first) in `ubuf`; and whether the client connection stays open.
type Answered = (Upstream, ResponseHead, bool);

impl Conn {
    /// Forwards one request and its response (the head for the backend is in `out`).
    /// Returns whether the client connection stays open for another request.
    pub(super) async fn exchange(
        &mut self,
        mut head: RequestHead,
        fwd: &Forward,
        mut fill: Option<Box<crate::pipeline::cache::Fill>>,
    ) -> Result<bool, Error> {
        self.cbuf.advance(head.head_len);
        if let Some(f) = &fill {
            // A stale stored response: the backend is asked whether it is still good.
            self.add_headers(&f.revalidation());
        }
        if let Some((coding, max)) = fwd.decoding(&self.frontend)
            && head.body != BodyFraming::Empty
        {
            // The route decodes compressed request bodies: read, decoded, then sent
            // whole (and so repeatable).
            if head.expect_continue && self.cbuf.is_empty() {
                self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            if let Err(e) = self.decode_request_body(head.body, coding, max).await {
                if e.status == 413 {
                    self.trail.refused = Some(("denied", "body"));
                }
                return Err(e);
            }
            head.body = BodyFraming::Empty;
        }

        // Whatever part of the body has already arrived is validated before any backend
        // is contacted, so a malformed body usually never reaches one.
        let mut remaining = 0u64;
        let mut decoder = None;
        match head.body {
            BodyFraming::Empty => {}
            BodyFraming::Length(n) => {
                let take = (self.cbuf.len() as u64).min(n) as usize;
                self.out.extend_from_slice(&self.cbuf[..take]);
                self.cbuf.advance(take);
                self.bytes_in += take as u64;
                remaining = n - take as u64;
            }
            BodyFraming::Chunked => {
                let mut d = ChunkedDecoder::new(true);
                let used = d
                    .feed(&self.cbuf, &mut self.out)
                    .map_err(|_| Error::bad_request("invalid chunked body"))?;
                self.cbuf.advance(used);
                self.bytes_in += used as u64;
                self.check_body_size(&d)?;
                decoder = Some(d);
            }
        }
        let body_complete = remaining == 0 && decoder.as_ref().is_none_or(|d| d.is_done());
        let mut rest: RestOfBody = (!body_complete).then_some((remaining, decoder));
        // Everything that will be sent is in `out` and can be sent again.
        let repeatable = head.idempotent && body_complete;

        let frontend = Arc::clone(&self.frontend);
        let pool = &*fwd.pool;
        let timeouts = fwd.timeouts(&frontend);
        let set_cookie = fwd.set_cookie(&frontend, self.client.is_tls());
        let client = ClientSide {
            is_head: head.is_head,
            http10: head.http10,
            keep_alive: head.keep_alive,
            upgrade: head.upgrade,
            rules: fwd.response_headers(&frontend),
            set_cookie: set_cookie.as_deref(),
            sticky_cookie: None,
            load_header: None,
            learn_cookie: None,
            prefix_cookie: None,
            compress: fwd.offer(&frontend),
        };
        let mut attempts = Attempts::new(pool, fwd.key, fwd.retries(&frontend))
            .stick_to(fwd.sticky, fwd.stick_key);
        let tried = self
            .tries(
                &mut attempts,
                &head,
                client,
                &mut rest,
                timeouts,
                repeatable,
            )
            .await;
        self.retries = attempts.retries;
        self.trail = std::mem::take(&mut attempts.trail);
        if let Err(e) = &tried
            && e.status == 413
        {
            // The body went past the route's max_body_size while it streamed.
            self.trail.refused = Some(("denied", "body"));
        }
        if let Some(f) = fill.take_if(|f| {
            let status = match &tried {
                Ok((_, resp, ..)) => resp.status,
                Err(e) => e.status,
            };
            f.wants(status)
        }) {
            return self.answer_from_cache(f, tried, &head).await;
        }
        let (mut up, resp, keep_client, _in_flight) = tried?;

        self.status = resp.status;
        if resp.status == 101 {
            return self.tunnel(up, resp.head_len).await;
        }
        self.ubuf.advance(resp.head_len);
        if let Some(fill) = fill {
            self.begin_keeping(fill);
        }
        std::mem::swap(&mut self.out, &mut self.rhead);
        let finished = match (resp.encode, fwd.offer(&frontend)) {
            (Some(coding), Some(offer)) => {
                self.trail.compressed = Some(coding.token());
                let length = match resp.framing {
                    ResponseFraming::Length(n) => Some(n),
                    _ => None,
                };
                let mut encoder = Encoder::new(coding, offer.config.level(coding), length);
                let finished = self
                    .stream_encoded(&mut up.stream, resp.framing, head.http10, &mut encoder)
                    .await;
                crate::metrics::compressed(coding, encoder.bytes_in(), encoder.bytes_out());
                finished?
            }
            _ => {
                self.stream_response_body(&mut up.stream, resp.framing, head.http10)
                    .await?
            }
        };
        self.end_keeping(finished);
        if resp.reusable
            && finished
            && self.ubuf.is_empty()
            && let Some(backend) = &self.backend
        {
            upstream::put_idle(pool.conn_key(backend), up.stream);
        }
        Ok(keep_client && finished)
    }

    /// The cache phase's turn after a try: a 304 to its revalidation (the stored response
    /// is refreshed and served), or a failure with a stale response that may be served
    /// instead. Otherwise the failure goes to the client.
    async fn answer_from_cache(
        &mut self,
        fill: Box<crate::pipeline::cache::Fill>,
        tried: Result<(Upstream, ResponseHead, bool, Option<InFlight>), Error>,
        head: &RequestHead,
    ) -> Result<bool, Error> {
        let keep = head.keep_alive && !head.http10 && !self.live.is_stopping();
        let hit = match &tried {
            Ok((_, resp, ..)) if resp.status == 304 && fill.revalidating() => {
                let mut slots = [httparse::EMPTY_HEADER; super::request::HEADER_SLOTS];
                let mut parsed = httparse::Response::new(&mut slots);
                let _ = parsed.parse(&self.ubuf[..resp.head_len]);
                self.trail.cache = Some("revalidated");
                fill.refreshed(parsed.headers.iter().map(|h| (h.name.as_bytes(), h.value)))
            }
            Ok((_, resp, ..)) => {
                self.trail.cache = Some("stale");
                fill.stale_on_error(resp.status)
            }
            Err(e) => {
                self.trail.cache = Some("stale");
                fill.stale_on_error(e.status)
            }
        };
        let Some(hit) = hit else {
            self.trail.cache = None;
            return match tried {
                Err(e) => Err(e),
                // A 5xx without a usable stale response: sent as it came.
                Ok(_) => Err(Error::bad_gateway(
                    "the backend failed and nothing stale may be served",
                )),
            };
        };
        if let Ok((up, resp, ..)) = tried {
            // A 304 has no body: its connection may serve another request.
            self.ubuf.advance(resp.head_len);
            if resp.status == 304
                && resp.reusable
                && self.ubuf.is_empty()
                && let (Some(backend), Some(pool)) = (&self.backend, &self.pool)
            {
                upstream::put_idle(pool.conn_key(backend), up.stream);
            }
        }
        self.ubuf.clear();
        self.send_cached(&hit, head.is_head, keep).await?;
        Ok(keep)
    }

    /// The tries of one request: the first backend, then others while a failed try may
    /// be repeated. Gives the kept response (and the backend's in-flight count, held
    /// until its body has been relayed).
    async fn tries(
        &mut self,
        attempts: &mut Attempts<'_>,
        head: &RequestHead,
        client: ClientSide<'_>,
        rest: &mut RestOfBody,
        timeouts: (Duration, Duration),
        repeatable: bool,
    ) -> Result<(Upstream, ResponseHead, bool, Option<InFlight>), Error> {
        let pool = attempts.pool();
        let mut admitted = attempts.first().await?;
        loop {
            self.backend = Some(Arc::clone(&admitted.backend));
            let started = Instant::now();
            let result = self
                .attempt(attempts, &admitted, head, client, rest, timeouts)
                .await;
            match result {
                Ok((up, resp, keep_client)) => {
                    // Passive health: every try's outcome feeds the backend's circuit.
                    attempts.report(&mut admitted, resp.status < 500);
                    let retried = attempts
                        .retries_status(resp.status)
                        .then(|| {
                            attempts.retry(
                                &admitted,
                                Retry::Budgeted,
                                repeatable,
                                Why::Status(resp.status),
                            )
                        })
                        .flatten();
                    match retried {
                        None => {
                            attempts.kept(&admitted);
                            return Ok((up, resp, keep_client, admitted.take_in_flight()));
                        }
                        Some(next) => {
                            self.discard(pool, &admitted.backend, up, &resp);
                            admitted = next;
                        }
                    }
                }
                // The client left: no verdict on the backend.
                Err(e) if e.is_silent() => return Err(e),
                Err(e) if e.status < 500 => return Err(e),
                Err(e) => {
                    attempts.failed(&mut admitted, started.elapsed(), timeouts.0);
                    match attempts.retry(&admitted, e.retry, repeatable, Why::Failed(e.reason)) {
                        Some(next) => admitted = next,
                        None => return Err(e),
                    }
                }
            }
        }
    }

    /// Drops a response that is retried: the connection is kept for reuse only if the
    /// whole body came with the head.
    fn discard(&mut self, pool: &Pool, backend: &Backend, up: Upstream, resp: &ResponseHead) {
        let body = (self.ubuf.len() - resp.head_len) as u64;
        let complete = match resp.framing {
            ResponseFraming::Empty => body == 0,
            ResponseFraming::Length(n) => body == n,
            ResponseFraming::Chunked | ResponseFraming::UntilClose => false,
        };
        if resp.reusable && complete {
            upstream::put_idle(pool.conn_key(backend), up.stream);
        }
        self.ubuf.clear();
    }

    /// One try: sends the request to `backend` (streaming the `rest` of its body, on the
    /// first try only) and reads up to the final response head. Interim (1xx) responses
    /// are relayed to the client on the way. `timeouts`: connect and request.
    async fn attempt(
        &mut self,
        attempts: &mut Attempts<'_>,
        admitted: &Admitted,
        head: &RequestHead,
        client: ClientSide<'_>,
        rest: &mut RestOfBody,
        timeouts: (Duration, Duration),
    ) -> Result<Answered, Error> {
        let whole_request_in_out = rest.is_none();
        let mut up = send_head(attempts, admitted, &self.out, false, timeouts.0).await?;
        if let Some((remaining, decoder)) = rest.take() {
            if head.expect_continue && self.cbuf.is_empty() {
                self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            self.stream_request_body(&mut up.stream, remaining, decoder)
                .await?;
        }

        // Response time, and the request timeout, run from the request being sent in full,
        // so that connecting and uploading do not count against the backend.
        // A client served by another backend than its sticky cookie names gets the
        // cookie of this one.
        let client = ClientSide {
            sticky_cookie: attempts.sticky_cookie(admitted, self.client.is_tls()),
            load_header: attempts.load_header(),
            learn_cookie: attempts.learns(),
            prefix_cookie: attempts.prefix_cookie(admitted),
            ..client
        };
        let sent = Instant::now();
        let deadline = sent + timeouts.1;
        let mut interim_seen = false;
        self.ubuf.clear();
        loop {
            if !self.ubuf.is_empty() {
                self.rhead.clear();
                // Stopping: the response says the connection closes after it.
                let client = ClientSide {
                    keep_alive: client.keep_alive && !self.live.is_stopping(),
                    ..client
                };
                match response::parse(&self.ubuf, client, &mut self.rhead) {
                    Ok((resp, _)) if (100..200).contains(&resp.status) && resp.status != 101 => {
                        interim_seen = true;
                        self.ubuf.advance(resp.head_len);
                        if !self.rhead.is_empty() {
                            let interim = std::mem::take(&mut self.rhead);
                            let written = self.write_client(&interim).await;
                            self.rhead = interim;
                            written?;
                        }
                        continue;
                    }
                    Ok((resp, keep_client)) => {
                        attempts.answered(admitted, sent.elapsed());
                        if let Some(load) = resp.load {
                            attempts.reported(admitted, load);
                        }
                        if let Some(key) = resp.learned {
                            attempts.learned(admitted, key);
                        }
                        return Ok((up, resp, keep_client));
                    }
                    Err(ResponseError::Partial) if self.ubuf.len() > 64 * 1024 => {
                        return Err(Error::bad_gateway("response head too large"));
                    }
                    Err(ResponseError::Partial) => {}
                    Err(ResponseError::Invalid(reason)) => {
                        return Err(Error::bad_gateway(reason));
                    }
                }
            }
            // Room for a head and a small body; a large body's reads grow the buffer to
            // READ_CHUNK once (see `body`), and the worker's pool keeps it so.
            self.ubuf.reserve(super::buffers::READ);
            let read = tokio::time::timeout_at(deadline.into(), up.stream.read_buf(&mut self.ubuf));
            match read.await {
                Err(_) => {
                    return Err(Error::gateway_timeout("the backend did not answer in time"));
                }
                Ok(Ok(n)) if n > 0 => {}
                Ok(result) => {
                    let reason = match result {
                        Ok(_) => "the backend closed the connection",
                        Err(_) => "the backend reset the connection",
                    };
                    if interim_seen || !self.ubuf.is_empty() {
                        return Err(Error::bad_gateway(reason));
                    }
                    if up.reused && whole_request_in_out && head.idempotent {
                        // A stale keep-alive connection closed before answering: send the
                        // request again on a new connection to the same backend (the
                        // request timeout is not restarted).
                        up = send_head(attempts, admitted, &self.out, true, timeouts.0).await?;
                        continue;
                    }
                    // Nothing came back: another backend may be tried.
                    return Err(Error::no_response(502, reason));
                }
            }
        }
    }
}

/// Gets a connection to the backend (a new one if `fresh`, else a kept one if any) and
/// writes `out` to it: the request head, plus the body bytes it holds. A failed write on a
/// kept connection is tried once more on a new one. Both engines send requests to
/// HTTP/1.1 backends this way.
pub(super) async fn send_head(
    attempts: &mut Attempts<'_>,
    admitted: &Admitted,
    out: &[u8],
    fresh: bool,
    connect_timeout: Duration,
) -> Result<Upstream, Error> {
    let key = attempts.pool().conn_key(&admitted.backend);
    let idle = if fresh {
        None
    } else {
        upstream::take_idle(key)
    };
    let mut up = match idle {
        Some(up) => up,
        // Connecting is the rare path: boxed, so that its state (a TLS handshake) does
        // not make every connection's task larger.
        None => Box::pin(connect(attempts, admitted, connect_timeout)).await?,
    };
    if up.stream.write_all(out).await.is_ok() {
        return Ok(up);
    }
    let reset = Error::no_response(502, "the backend reset the connection");
    if !up.reused {
        return Err(reset);
    }
    up = Box::pin(connect(attempts, admitted, connect_timeout)).await?;
    match up.stream.write_all(out).await {
        Ok(()) => Ok(up),
        Err(_) => Err(reset),
    }
}
