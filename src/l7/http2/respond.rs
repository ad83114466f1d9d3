//! The backend's response on its way to the client (HTTP/2 path): hop-by-hop headers
//! out, the route's response rules, split and sticky cookies in, then the compress phase
//! (the body through a coder) and, on a cache miss, the body kept for the cache; the
//! request stays counted in flight (at the backend and on the client connection) until
//! the body has been sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};

use super::origin::Origin;
use hyper::header::{self, HeaderValue};

use super::activity::Busy;
use super::forward::{Body, BodyError};
use super::prepare;
use crate::balance::backend::InFlight;
use crate::content::coding::Coding;
use crate::content::encoder::Encoder;
use crate::pipeline::cache::{Capture, Fill};
use crate::pipeline::compress::{Facts, Offer, Plan, weak_etag};
use crate::routing::HeaderRules;

/// What the backend's response gets on its way to the client.
pub(super) struct Finish<'a> {
    pub(super) in_flight: Option<InFlight>,
    pub(super) busy: Busy,
    pub(super) rules: Option<&'a HeaderRules>,
    pub(super) set_cookie: Option<HeaderValue>,
    pub(super) sticky_cookie: Option<HeaderValue>,
    /// Sticky `prefix`: the application's cookie and the backend's prefix.
    pub(super) prefix_cookie: Option<(&'a str, &'a str)>,
    /// The route's compression offer.
    pub(super) offer: Option<Offer<'a>>,
    /// A miss of the route's cache: the response is stored if it may be.
    pub(super) fill: Option<Box<Fill>>,
}

impl Finish<'_> {
    /// The backend's response for the client: hop-by-hop headers out, the route's
    /// response rules and split cookie in, the body kept "in flight" until it has been
    /// sent; compressed when the compress phase says so (with the coding used).
    pub(super) fn apply(self, response: Response<Source>) -> (Response<Body>, Option<Coding>) {
        let (mut parts, body) = response.into_parts();
        prepare::strip_hop_by_hop(&mut parts.headers);
        if let Some(rules) = self.rules {
            rules.apply(&mut parts.headers);
        }
        if let Some((cookie, prefix)) = self.prefix_cookie {
            crate::pipeline::sticky::prefix_set_cookies(&mut parts.headers, cookie, prefix);
        }
        for cookie in [self.set_cookie, self.sticky_cookie].into_iter().flatten() {
            parts.headers.append(header::SET_COOKIE, cookie);
        }
        let length = body.size_hint().exact();
        let plan = self.offer.map_or(Plan::Leave, |offer| {
            offer.plan(&Facts::of(parts.status.as_u16(), &parts.headers, length))
        });
        if plan.adds_vary() {
            parts
                .headers
                .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        let coded = match (plan.coding(), self.offer) {
            (Some(coding), Some(offer)) => {
                let h = &mut parts.headers;
                h.remove(header::CONTENT_LENGTH);
                h.remove(header::ACCEPT_RANGES);
                if let Some(tag) = h.get(header::ETAG) {
                    let mut weak = Vec::with_capacity(tag.len() + 2);
                    weak_etag(tag.as_bytes(), &mut weak);
                    if let Ok(v) = HeaderValue::from_bytes(&weak) {
                        h.insert(header::ETAG, v);
                    }
                }
                h.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(coding.token()),
                );
                Some(Box::new(Coded {
                    encoder: Encoder::new(coding, offer.config.level(coding), length),
                    coding,
                    done: false,
                    trailers: None,
                    since_flush: 0,
                }))
            }
            _ => None,
        };
        let coding = plan.coding();
        let capture = self.fill.and_then(|fill| {
            let status = parts.status.as_u16();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
            let (line, capture) = match fill.capture(status, headers) {
                Ok(capture) => (capture.status_line(), Some(capture)),
                Err(fill) => (fill.status_line(false), None),
            };
            if let Ok(v) = HeaderValue::from_str(&line) {
                parts.headers.insert("cache-status", v);
            }
            capture
        });
        let body = Guarded {
            inner: body,
            capture,
            coded,
            _in_flight: self.in_flight,
            _busy: self.busy,
        };
        (Response::from_parts(parts, body.boxed()), coding)
    }
}

/// A backend's response body that keeps the request counted in flight (at the backend,
/// and on the client connection) until it ends; compressed on the way when `coded`.
struct Guarded {
    inner: Source,
    /// The body kept for the cache (a miss that may be stored), stored at its end.
    capture: Option<Box<Capture>>,
    coded: Option<Box<Coded>>,
    _in_flight: Option<InFlight>,
    _busy: Busy,
}

/// The compress phase's state for one body (see `content::encoder`): data frames go
/// through the coder; while the backend pauses the coder is flushed, so that streamed
/// events are not held back; trailers follow the coder's last bytes.
struct Coded {
    encoder: Encoder,
    coding: Coding,
    done: bool,
    trailers: Option<http::HeaderMap>,
    /// Body bytes given to the coder since it was last flushed.
    since_flush: usize,
}

/// The most body bytes given to the coder between two flushes.
const FLUSH_EVERY: usize = 256 * 1024;

impl Coded {
    /// What the coder has produced, as a data frame.
    fn take(&mut self) -> Option<Frame<Bytes>> {
        let mut frame = None;
        self.encoder
            .drain(|b| frame = Some(Frame::data(Bytes::copy_from_slice(b))));
        frame
    }

    fn poll(
        &mut self,
        inner: &mut Source,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            if self.done {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let coded = match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        // A body that never pauses is flushed every FLUSH_EVERY bytes,
                        // so that the coder does not hold a growing backlog.
                        self.since_flush += data.len();
                        let written = self.encoder.write(&data);
                        if written.is_ok() && self.since_flush >= FLUSH_EVERY {
                            self.since_flush = 0;
                            self.encoder.flush()
                        } else {
                            written
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        Ok(())
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    self.encoder.finish()
                }
                Poll::Pending if self.encoder.unflushed() => {
                    self.since_flush = 0;
                    self.encoder.flush()
                }
                Poll::Pending => return Poll::Pending,
            };
            if let Err(e) = coded {
                tracing::warn!(error = %e, "response compression failed");
                return Poll::Ready(None);
            }
            if let Some(frame) = self.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
        }
    }
}

impl Drop for Coded {
    fn drop(&mut self) {
        crate::metrics::compressed(
            self.coding,
            self.encoder.bytes_in(),
            self.encoder.bytes_out(),
        );
    }
}

impl Guarded {
    /// Whether the whole body has been given out.
    fn ended(&self) -> bool {
        match &self.coded {
            Some(c) => c.done && c.trailers.is_none(),
            None => self.inner.is_end_stream(),
        }
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match this.coded.as_mut() {
            Some(coded) => coded.poll(&mut this.inner, cx),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        if let Some(capture) = this.capture.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        capture.push(data);
                    }
                }
                Poll::Ready(Some(Err(_))) => this.capture = None,
                _ => {}
            }
            // hyper stops polling once the body says it ended: store now.
            let ended = matches!(polled, Poll::Ready(None)) || this.ended();
            if ended && let Some(capture) = this.capture.take() {
                capture.store();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.coded {
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

/// A backend's response body: from hyper's HTTP/2 client, or read by Fulcrum from an
/// HTTP/1.1 engine connection ([`Origin`]).
pub(super) enum Source {
    /// An HTTP/2 backend's stream.
    Hyper(Incoming),
    /// An HTTP/1.1 backend's body.
    Origin(Origin),
}

impl hyper::body::Body for Source {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Source::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Source::Origin(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Hyper(b) => b.is_end_stream(),
            Source::Origin(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Hyper(b) => b.size_hint(),
            Source::Origin(b) => b.size_hint(),
        }
    }
}
