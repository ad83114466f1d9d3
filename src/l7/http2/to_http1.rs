//! One try of a hyper-path request (an HTTP/2 client's stream, or an HTTP/1.1 client of a
//! listener that also routes to HTTP/2 pools) at an HTTP/1.1 backend, over the HTTP/1.1
//! engine's own backend connections: the same per-worker idle pool ([`upstream`]), the
//! same response head parser and checks ([`response::parse`]), so that both engines
//! share kept connections and treat backends alike.
//!
//! The request is written by Fulcrum as HTTP/1.1: its head, then the body, whole with
//! `Content-Length` when it is in memory (then the try can be repeated), else streamed as
//! it arrives (`Content-Length` when the client declared one, chunks otherwise). A kept
//! connection that the backend had closed is replaced by a new one, once, as on the
//! HTTP/1.1 engine. The response head is read within the request timeout, counted from the
//! request having been sent in full; interim (1xx) heads are skipped. The body is read by
//! the client's stream itself ([`Origin`]).

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::Body as _;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::origin::Origin;
use super::respond::Source;
use super::tries::Payload;
use super::upload::Upload;
use crate::headers::{put, put_decimal};
use crate::l7::buffers::{self, Side};
use crate::l7::chunked::write_hex;
use crate::l7::exchange::send_head;
use crate::l7::response::{self, ClientSide, ResponseError};
use crate::l7::upstream::Upstream;
use crate::pipeline::error::Error;
use crate::pipeline::upstream::{Admitted, Attempts};

/// The largest response head accepted from a backend (as on the HTTP/1.1 engine).
const MAX_HEAD: usize = 64 * 1024;

/// Headers of the client's request that Fulcrum writes itself (framing), or that only
/// concern the client's hop (`expect`: the body is sent without waiting).
fn written_by_fulcrum(name: &HeaderName) -> bool {
    name == http::header::CONTENT_LENGTH
        || name == http::header::TRANSFER_ENCODING
        || name == http::header::EXPECT
        || name == http::header::CONNECTION
        || name == http::header::TE
}

/// Writes the request head for an HTTP/1.1 backend (and a body in memory after it).
pub(super) fn write_request(parts: &Parts, body: &Payload, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if !written_by_fulcrum(name) {
            put(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    match body {
        Payload::Whole(b) => {
            let declared = parts.headers.contains_key(http::header::CONTENT_LENGTH);
            if !b.is_empty()
                || declared
                || matches!(parts.method.as_str(), "POST" | "PUT" | "PATCH")
            {
                out.extend_from_slice(b"content-length: ");
                put_decimal(out, b.len() as u64);
                out.extend_from_slice(b"\r\n");
            }
        }
        Payload::Stream(upload) => match upload.as_ref().and_then(|u| u.size_hint().exact()) {
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                put_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        },
    }
    out.extend_from_slice(b"\r\n");
    if let Payload::Whole(b) = body {
        out.extend_from_slice(b);
    }
}

/// Where and how one try goes.
pub(super) struct Try<'a> {
    /// The request head (and the body in memory) for the backend.
    pub(super) out: &'a [u8],
    /// The request's method is HEAD (the response has no body).
    pub(super) is_head: bool,
    /// Connect, and the response head's wait.
    pub(super) timeouts: (Duration, Duration),
    /// Set when the client's body went past the route's bound.
    pub(super) oversize: Option<&'a std::sync::atomic::AtomicBool>,
    /// The longest a streamed body may stall, either way (`timeouts.idle`).
    pub(super) idle: Duration,
}

/// One try at `admitted`'s backend: the request sent, the response head read.
pub(super) async fn attempt(
    attempts: &mut Attempts<'_>,
    admitted: &Admitted,
    body: &mut Payload,
    t: Try<'_>,
) -> Result<Response<Source>, Error> {
    let whole = matches!(body, Payload::Whole(_));
    let mut up = send_head(attempts, admitted, t.out, false, t.timeouts.0).await?;
    // A backend that stops reading the body may have answered already (a 413, a 503):
    // its answer is read, and relayed if there is one.
    let mut cut_off = None;
    if let Payload::Stream(upload) = body
        && let Some(upload) = upload.take()
    {
        match stream_body(&mut up, upload, t.oversize, t.idle).await {
            Err(e) if e.status == 502 => cut_off = Some(e),
            sent => sent?,
        }
    }
    let sent = Instant::now();
    let deadline = sent + t.timeouts.1;
    let mut ubuf = buffers::take_bytes(Side::Backend);
    let client = ClientSide {
        load_header: attempts.load_header(),
        learn_cookie: attempts.learns(),
        ..ClientSide::plain(t.is_head)
    };
    let mut interim_seen = false;
    let result = loop {
        if !ubuf.is_empty() {
            let mut headers = HeaderMap::new();
            let mut field = |name: &[u8], value: &[u8]| {
                if let (Ok(n), Ok(v)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    headers.append(n, v);
                }
            };
            match response::read(&ubuf, client, &mut field) {
                Ok((resp, _)) if (100..200).contains(&resp.status) => {
                    interim_seen = true;
                    ubuf.advance(resp.head_len);
                    continue;
                }
                Ok((resp, _)) => {
                    attempts.answered(admitted, sent.elapsed());
                    if let Some(load) = resp.load {
                        attempts.reported(admitted, load);
                    }
                    if let Some(key) = resp.learned {
                        attempts.learned(admitted, key);
                    }
                    ubuf.advance(resp.head_len);
                    let key = attempts.pool().conn_key(&admitted.backend);
                    let origin = Origin::new(up, ubuf, resp.framing, key, resp.reusable);
                    let mut r = Response::new(Source::Origin(origin));
                    *r.status_mut() =
                        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::OK);
                    *r.headers_mut() = headers;
                    return Ok(r);
                }
                Err(ResponseError::Partial) if ubuf.len() > MAX_HEAD => {
                    break Err(Error::bad_gateway("response head too large"));
                }
                Err(ResponseError::Partial) => {}
                Err(ResponseError::Invalid(reason)) => break Err(Error::bad_gateway(reason)),
            }
        }
        ubuf.reserve(buffers::READ);
        let read = tokio::time::timeout_at(deadline.into(), up.stream.read_buf(&mut ubuf));
        match read.await {
            Err(_) => break Err(Error::gateway_timeout("the backend did not answer in time")),
            Ok(Ok(n)) if n > 0 => {}
            Ok(result) => {
                let reason = match result {
                    Ok(_) => "the backend closed the connection",
                    Err(_) => "the backend reset the connection",
                };
                if let Some(e) = cut_off {
                    break Err(e);
                }
                if interim_seen || !ubuf.is_empty() {
                    break Err(Error::bad_gateway(reason));
                }
                if up.reused && whole {
                    // A stale kept connection closed before answering: the request
                    // again, on a new connection to the same backend.
                    match send_head(attempts, admitted, t.out, true, t.timeouts.0).await {
                        Ok(fresh) => {
                            up = fresh;
                            continue;
                        }
                        Err(e) => break Err(e),
                    }
                }
                break Err(Error::no_response(502, reason));
            }
        }
    };
    buffers::give_bytes(Side::Backend, ubuf);
    result
}

/// Sends the client's body as it arrives: as is with a declared length, else in chunks.
/// A client that sends nothing for `idle` gets 408, as on the HTTP/1.1 engine; a backend
/// that reads nothing for `idle` ends the upload with 502 (its answer, if it gave one
/// already, is relayed instead).
async fn stream_body(
    up: &mut Upstream,
    mut upload: Upload,
    oversize: Option<&std::sync::atomic::AtomicBool>,
    idle: Duration,
) -> Result<(), Error> {
    let chunked = upload.size_hint().exact().is_none();
    let mut framed = Vec::new();
    let backend_gone = || Error::bad_gateway("the backend closed the connection during the upload");
    let not_reading = || Error::bad_gateway("the backend stopped reading the request body");
    loop {
        let Ok(frame) = tokio::time::timeout(idle, upload.frame()).await else {
            return Err(Error::client(408, "the request body stalled"));
        };
        let Some(frame) = frame else {
            break;
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) if oversize.is_some_and(|o| o.load(std::sync::atomic::Ordering::Relaxed)) => {
                return Err(Error::client(413, "the request body is too large"));
            }
            Err(_) => return Err(Error::client_gone()),
        };
        let Ok(data) = frame.into_data() else {
            // Trailers: an HTTP/1.1 backend gets none.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let write = if chunked {
            framed.clear();
            write_hex(&mut framed, data.len() as u64);
            framed.extend_from_slice(b"\r\n");
            framed.extend_from_slice(&data);
            framed.extend_from_slice(b"\r\n");
            tokio::time::timeout(idle, up.stream.write_all(&framed)).await
        } else {
            tokio::time::timeout(idle, up.stream.write_all(&data)).await
        };
        write
            .map_err(|_| not_reading())?
            .map_err(|_| backend_gone())?;
    }
    if chunked {
        up.stream
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(|_| backend_gone())?;
    }
    Ok(())
}

/// Reads a body that declared a small length into memory (so that the request can be
/// sent again), within `limit`.
pub(super) async fn collect(upload: &mut Upload, limit: Duration) -> Result<Bytes, Error> {
    let mut whole = BytesMut::new();
    let read = async {
        while let Some(frame) = upload.frame().await {
            let frame = frame.map_err(|_| ())?;
            if let Ok(data) = frame.into_data() {
                whole.extend_from_slice(&data);
            }
        }
        Ok::<(), ()>(())
    };
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(())) => Ok(whole.freeze()),
        Ok(Err(())) => Err(Error::client_gone()),
        Err(_) => Err(Error::client(
            408,
            "the request body did not arrive in time",
        )),
    }
}
