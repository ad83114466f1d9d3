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
use std::time::Instant;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chunked::ChunkedDecoder;
use super::errors::{self, ProxyError};
use super::proxy::{Conn, Failure, READ_CHUNK, connect};
use super::request::{BodyFraming, RequestHead};
use super::response::{self, ClientSide, ResponseError, ResponseFraming, ResponseHead};
use super::retry::{self, Tried};
use super::upstream::{self, Upstream};
use crate::balance::Backend;
use crate::health;

/// The part of the request body that had not arrived with the head: the bytes still
/// expected (with a length) or the chunked decoder's state.
type RestOfBody = Option<(u64, Option<ChunkedDecoder>)>;

/// How one try at a backend ended, when it did not end the exchange.
enum Attempt {
    /// A final response head: the head for the client is in `rhead`, the backend's bytes
    /// (head first) in `ubuf`.
    Response {
        up: Upstream,
        resp: ResponseHead,
        keep_client: bool,
    },
    /// No response byte came back, and the request can be sent elsewhere; `error` is
    /// what the client gets if it is not. `unsent`: the request never reached the
    /// backend (connecting failed), so repeating it costs the backends nothing.
    Failed { error: ProxyError, unsent: bool },
}

/// Why a try is repeated, for the log.
enum Why {
    Failed(&'static str),
    Status(u16),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Failed(reason) => f.write_str(reason),
            Why::Status(status) => write!(f, "the backend answered {status}"),
        }
    }
}

impl Conn {
    /// Forwards one request and its response. Returns whether the client connection
    /// stays open for another request.
    pub(super) async fn exchange(&mut self, head: RequestHead) -> Result<bool, Failure> {
        self.cbuf.advance(head.head_len);

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
                remaining = n - take as u64;
            }
            BodyFraming::Chunked => {
                let mut d = ChunkedDecoder::new(true);
                let used = d
                    .feed(&self.cbuf, &mut self.out)
                    .map_err(|_| ProxyError::bad_request("invalid chunked body"))?;
                self.cbuf.advance(used);
                decoder = Some(d);
            }
        }
        let body_complete = remaining == 0 && decoder.as_ref().is_none_or(|d| d.is_done());
        let mut rest: RestOfBody = (!body_complete).then_some((remaining, decoder));
        // Everything that will be sent is in `out` and can be sent again.
        let retryable = head.idempotent && body_complete;

        let site = Arc::clone(&self.site);
        site.retry.budget.record_request();
        let client = ClientSide {
            is_head: head.is_head,
            http10: head.http10,
            keep_alive: head.keep_alive,
            upgrade: head.upgrade,
        };
        let mut tried = Tried::default();
        let mut backend = Arc::clone(site.queue.pick(&site.pool, head.key).await?);
        let mut refusals = 0;
        let (mut up, resp, keep_client, _in_flight) = loop {
            self.backend = Some(Arc::clone(&backend));
            // Another worker may have filled the backend, or taken the last probe slot of
            // its half-open circuit, since it was picked: pick again (a few times).
            let Some((in_flight, admission)) = backend.try_admit() else {
                refusals += 1;
                if refusals > 3 {
                    return Err(errors::NO_BACKEND.into());
                }
                backend = Arc::clone(site.queue.pick(&site.pool, head.key).await?);
                continue;
            };
            tried.add(&backend);
            let started = Instant::now();
            let result = self.attempt(&backend, &head, client, &mut rest).await;
            // Passive health: every try's outcome feeds the backend's circuit breaker.
            match &result {
                Ok(Attempt::Response { resp, .. }) => {
                    health::report(&site.pool, &backend, admission, resp.status < 500)
                }
                Ok(Attempt::Failed { .. }) => {
                    health::report(&site.pool, &backend, admission, false)
                }
                Err(Failure::Respond(e)) if e.status >= 500 => {
                    health::report(&site.pool, &backend, admission, false)
                }
                Err(_) => backend.circuit.release(admission),
            }
            let (why, next) = match result? {
                Attempt::Response {
                    up,
                    resp,
                    keep_client,
                } => {
                    if !site.retry.retries_status(resp.status) {
                        break (up, resp, keep_client, in_flight);
                    }
                    let Some(next) = self.retry_to(&head, retryable, &tried, true) else {
                        break (up, resp, keep_client, in_flight);
                    };
                    self.discard(&backend, up, &resp);
                    (Why::Status(resp.status), next)
                }
                Attempt::Failed { error: e, unsent } => {
                    // A request that never reached the backend adds no load when sent
                    // elsewhere: it does not draw on the retry budget.
                    let Some(next) = self.retry_to(&head, retryable, &tried, !unsent) else {
                        return Err(e.into());
                    };
                    // As for a failure the client sees: at least as slow as the connect
                    // timeout, so that response-time balancing moves away from it.
                    backend.record_latency(started.elapsed().max(site.timeouts.connect));
                    (Why::Failed(e.reason), next)
                }
            };
            drop(in_flight);
            self.retries += 1;
            tracing::debug!(
                pool = %site.pool.name,
                from = %backend.name,
                to = %next.name,
                reason = %why,
                retry = self.retries,
                "retrying the request"
            );
            backend = next;
        };

        self.status = resp.status;
        if resp.status == 101 {
            return self.tunnel(up, resp.head_len).await;
        }
        self.ubuf.advance(resp.head_len);
        std::mem::swap(&mut self.out, &mut self.rhead);
        let finished = self
            .stream_response_body(&mut up.stream, resp.framing, head.http10)
            .await?;
        if resp.reusable && finished && self.ubuf.is_empty() {
            upstream::put_idle(backend.addr, up.stream);
        }
        Ok(keep_client && finished)
    }

    /// The backend for another try, if the request may have one: `retryable` (see
    /// [`exchange`](Self::exchange)), retries left, and, when `charge`, a retry in the
    /// pool's budget.
    fn retry_to(
        &self,
        head: &RequestHead,
        retryable: bool,
        tried: &Tried,
        charge: bool,
    ) -> Option<Arc<Backend>> {
        let policy = &self.site.retry;
        if !retryable || self.retries >= policy.attempts {
            return None;
        }
        if charge && !policy.budget.try_withdraw() {
            tracing::debug!(pool = %self.site.pool.name, "retry budget exhausted: not retrying");
            return None;
        }
        retry::pick_again(&self.site.pool, head.key, tried).cloned()
    }

    /// Drops a response that is retried: the connection is kept for reuse only if the
    /// whole body came with the head.
    fn discard(&mut self, backend: &Backend, up: Upstream, resp: &ResponseHead) {
        let body = (self.ubuf.len() - resp.head_len) as u64;
        let complete = match resp.framing {
            ResponseFraming::Empty => body == 0,
            ResponseFraming::Length(n) => body == n,
            ResponseFraming::Chunked | ResponseFraming::UntilClose => false,
        };
        if resp.reusable && complete {
            upstream::put_idle(backend.addr, up.stream);
        }
        self.ubuf.clear();
    }

    /// One try: sends the request to `backend` (streaming the `rest` of its body, on the
    /// first try only) and reads up to the final response head. Interim (1xx) responses
    /// are relayed to the client on the way.
    async fn attempt(
        &mut self,
        backend: &Backend,
        head: &RequestHead,
        client: ClientSide,
        rest: &mut RestOfBody,
    ) -> Result<Attempt, Failure> {
        let whole_request_in_out = rest.is_none();
        let mut up = match self.send_head(backend, false).await {
            Ok(up) => up,
            Err(error) => {
                return Ok(Attempt::Failed {
                    error,
                    unsent: true,
                });
            }
        };
        if let Some((remaining, decoder)) = rest.take() {
            if head.expect_continue && self.cbuf.is_empty() {
                self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            self.stream_request_body(&mut up.stream, remaining, decoder)
                .await?;
        }

        // Response time, and the request timeout, run from the request being sent in full,
        // so that connecting and uploading do not count against the backend.
        let sent = Instant::now();
        let deadline = sent + self.site.timeouts.request;
        let mut interim_seen = false;
        self.ubuf.clear();
        loop {
            if !self.ubuf.is_empty() {
                self.rhead.clear();
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
                        backend.record_latency(sent.elapsed());
                        return Ok(Attempt::Response {
                            up,
                            resp,
                            keep_client,
                        });
                    }
                    Err(ResponseError::Partial) if self.ubuf.len() > 64 * 1024 => {
                        return Err(ProxyError::bad_gateway("response head too large").into());
                    }
                    Err(ResponseError::Partial) => {}
                    Err(ResponseError::Invalid(reason)) => {
                        return Err(ProxyError::bad_gateway(reason).into());
                    }
                }
            }
            self.ubuf.reserve(READ_CHUNK);
            let read = tokio::time::timeout_at(deadline.into(), up.stream.read_buf(&mut self.ubuf));
            match read.await {
                Err(_) => {
                    return Err(
                        ProxyError::gateway_timeout("the backend did not answer in time").into(),
                    );
                }
                Ok(Ok(n)) if n > 0 => {}
                Ok(result) => {
                    let e = ProxyError::bad_gateway(match result {
                        Ok(_) => "the backend closed the connection",
                        Err(_) => "the backend reset the connection",
                    });
                    if interim_seen || !self.ubuf.is_empty() {
                        return Err(e.into());
                    }
                    if up.reused && whole_request_in_out && head.idempotent {
                        // A stale keep-alive connection closed before answering: send the
                        // request again on a new connection to the same backend (the
                        // request timeout is not restarted).
                        up = match self.send_head(backend, true).await {
                            Ok(up) => up,
                            Err(error) => {
                                return Ok(Attempt::Failed {
                                    error,
                                    unsent: true,
                                });
                            }
                        };
                        continue;
                    }
                    // Nothing came back: another backend may be tried.
                    return Ok(Attempt::Failed {
                        error: e,
                        unsent: false,
                    });
                }
            }
        }
    }

    /// Gets a connection to `backend` (a new one if `fresh`, else an idle one if any) and
    /// writes the request head plus the body bytes already in `out`. A failed write on a
    /// reused connection is retried once on a new one.
    async fn send_head(&mut self, backend: &Backend, fresh: bool) -> Result<Upstream, ProxyError> {
        let timeouts = self.site.timeouts;
        let idle = if fresh {
            None
        } else {
            upstream::take_idle(backend.addr)
        };
        let mut up = match idle {
            Some(up) => up,
            None => connect(backend, timeouts.connect, self.site.backend_tls.as_ref()).await?,
        };
        if up.stream.write_all(&self.out).await.is_ok() {
            return Ok(up);
        }
        let reset = ProxyError::bad_gateway("the backend reset the connection");
        if !up.reused {
            return Err(reset);
        }
        up = connect(backend, timeouts.connect, self.site.backend_tls.as_ref()).await?;
        match up.stream.write_all(&self.out).await {
            Ok(()) => Ok(up),
            Err(_) => Err(reset),
        }
    }
}
