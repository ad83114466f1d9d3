//! Reading a request head on the HTTP/1.1 engine's connection: the bytes of the next
//! request are read (within the header timeout, or the idle and warm windows between
//! requests), parsed and validated, routed and admitted by the pipeline, and written as
//! the backend's head; a connection that starts with the HTTP/2 preface is handed over,
//! and one whose first line is neither HTTP/1.x nor that preface gets HTTP/2's
//! connection error.

use std::time::Instant;

use super::{Conn, Read, STOP_LINGER, WARM, poll_once, read_more};
use crate::l7::buffers::Side;
use crate::l7::request::{self, BodyFraming, Forwarding, HeadError};
use crate::pipeline::error::Error;
use crate::pipeline::{self, Decision};

impl Conn {
    /// Reads until a complete request head is parsed and routed.
    pub(super) async fn read_head(&mut self, first: bool) -> Result<Read, Error> {
        let limits = self.frontend.limits;
        let timeouts = self.frontend.timeouts;
        let mut deadline = None;
        let mut linger: Option<Instant> = None;
        loop {
            let preface = &crate::l7::http2::PREFACE;
            let n = self.cbuf.len().min(preface.len());
            if first && n > 0 && self.cbuf[..n] == preface[..n] {
                // HTTP/2 with prior knowledge: hand the connection over once the whole
                // preface is here.
                if n == preface.len() {
                    self.h2_preface = true;
                    return Ok(Read::Closed);
                }
            } else if !self.cbuf.is_empty() {
                let tls = self.client.is_tls();
                let mut slots = [const { std::mem::MaybeUninit::uninit() }; request::HEADER_SLOTS];
                match request::parse(&self.cbuf, &mut slots, limits.max_headers, self.peer.ip()) {
                    Ok(parsed) if parsed.head.head_len > limits.max_header_size => {
                        return Err(too_large());
                    }
                    Ok(mut parsed) => {
                        // Behind trusted proxies, the client is who their header names.
                        self.real_ip = None;
                        if let Some(real) = &self.frontend.config.real_ip {
                            use crate::routing::RequestView as _;
                            let ip =
                                real.client(self.peer.ip(), parsed.header_values(&real.header));
                            parsed.set_client_ip(ip);
                            self.real_ip = Some(ip);
                        }
                        let decision = pipeline::route(&self.frontend, &parsed, tls);
                        let declared = match parsed.head.body {
                            BodyFraming::Length(n) => Some(n),
                            _ => None,
                        };
                        let (mut decision, admitted) = pipeline::admit::admit(
                            &self.frontend,
                            decision,
                            &parsed,
                            declared,
                            tls,
                        );
                        pipeline::files(&self.frontend, &mut decision, &parsed);
                        pipeline::cache(&self.frontend, &mut decision, &parsed);
                        if self.out.capacity() == 0 {
                            self.out = crate::l7::buffers::take_vec();
                        }
                        if self.rhead.capacity() == 0 {
                            self.rhead = crate::l7::buffers::take_vec();
                        }
                        if self.ubuf.capacity() == 0 {
                            self.ubuf = crate::l7::buffers::take_bytes(Side::Backend);
                        }
                        self.out.clear();
                        if let Decision::Forward(fwd) = &decision {
                            let forwarding = Forwarding {
                                client_ip: self.peer.ip(),
                                proto: if tls { "https" } else { "http" },
                            };
                            parsed
                                .write(
                                    &forwarding,
                                    fwd.rewrite(&self.frontend),
                                    fwd.request_headers(&self.frontend),
                                    &mut self.out,
                                )
                                .map_err(head_error)?;
                            // Sticky `prefix`: the backend sees its own cookie value.
                            if let Some(name) = fwd.pool.sticky.as_ref().and_then(|s| s.prefixes())
                            {
                                crate::headers::map_lines(&mut self.out, b"Cookie", |v| {
                                    crate::pipeline::sticky::strip_cookie_prefix(v, name)
                                });
                            }
                        }
                        self.method.clear();
                        self.method.push_str(parsed.method);
                        self.target.clear();
                        self.target.push_str(parsed.target);
                        let head = parsed.head;
                        if head.missing_host && matches!(decision, Decision::Forward(_)) {
                            self.add_host();
                        }
                        return Ok(Read::Request(head, decision, admitted));
                    }
                    Err(HeadError::Partial) if self.cbuf.len() > limits.max_header_size => {
                        return Err(too_large());
                    }
                    Err(HeadError::Partial) => {}
                    // Neither HTTP/1.x nor the HTTP/2 preface where HTTP/2 with prior
                    // knowledge is spoken: answered as HTTP/2 (h2spec 3.5/2).
                    Err(HeadError::Bad(_))
                        if first && !tls && !crate::l7::http2::may_be_http1(&self.cbuf) =>
                    {
                        return Err(Error::bad_request(NOT_HTTP1));
                    }
                    Err(e) => return Err(head_error(e)),
                }
            }
            let idle = self.cbuf.is_empty();
            // A graceful stop: a connection waiting for its next request has a moment to
            // send it (answered with `Connection: close`), then closes.
            if idle && linger.is_none() && self.live.is_stopping() {
                linger = Some(Instant::now() + STOP_LINGER);
            }
            // Between requests on plain TCP, the connection waits `WARM` with its
            // buffers, then parks without them (TLS connections keep reading: rustls
            // may hold decrypted bytes).
            let warm =
                idle && !first && linger.is_none() && !self.client.is_tls() && WARM < timeouts.idle;
            let read = {
                let mut read = std::pin::pin!(read_more(&mut self.client, &mut self.cbuf));
                // The bytes are usually there already (the socket was just readable):
                // read them without arming a timer.
                match poll_once(read.as_mut()).await {
                    Some(read) => Ok(read),
                    None => {
                        // Between requests the idle timeout applies; once a request has
                        // started, the whole head must arrive within the request-header timeout.
                        let wait = match deadline {
                            Some(d) => d,
                            None if warm => Instant::now() + WARM,
                            None if idle && !first => Instant::now() + timeouts.idle,
                            None => Instant::now() + timeouts.request_header,
                        };
                        let wait = linger.map_or(wait, |l| wait.min(l));
                        tokio::time::timeout_at(wait.into(), read).await
                    }
                }
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(Read::Closed),
                Ok(Ok(_)) => {
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + timeouts.request_header);
                    }
                    // A request is arriving: it gets the whole header timeout.
                    linger = None;
                }
                Err(_) if self.cbuf.is_empty() && warm => return Ok(Read::Quiet),
                Err(_) if self.cbuf.is_empty() => return Ok(Read::Closed),
                Err(_) => {
                    return Err(Error::client(
                        408,
                        "the request head did not arrive in time",
                    ));
                }
            }
        }
    }

    /// Adds `Host: <the address the client connected to>` to the backend head in `out`
    /// (which ends with the blank line), for HTTP/1.0 requests that had none.
    fn add_host(&mut self) {
        use std::io::Write as _;
        let Ok(local) = self.client.local_addr() else {
            return;
        };
        self.out.truncate(self.out.len() - 2);
        let _ = write!(self.out, "Host: {local}\r\n\r\n");
    }
}

fn too_large() -> Error {
    Error::client(431, "the request head is too large")
}

/// Why a connection's first bytes were refused when they are neither HTTP/1.x nor the
/// HTTP/2 preface (answered with an HTTP/2 GOAWAY, not an HTTP/1.1 400).
pub(super) const NOT_HTTP1: &str = "neither HTTP/1.x nor the HTTP/2 preface";

/// The error answering a head that was not accepted.
fn head_error(e: HeadError) -> Error {
    match e {
        HeadError::Partial | HeadError::TooManyHeaders => too_large(),
        HeadError::Bad(reason) => Error::bad_request(reason),
        HeadError::NotImplemented(reason) => Error::client(501, reason),
        HeadError::ExpectationFailed => {
            Error::client(417, "only Expect: 100-continue is supported")
        }
        HeadError::MethodNotAllowed => Error::client(405, "CONNECT is not supported"),
    }
}
