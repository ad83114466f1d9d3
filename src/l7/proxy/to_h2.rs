//! The HTTP/1.1 engine's requests to pools speaking HTTP/2 (`http_version = "2"`). The
//! request is read, checked, routed and rewritten by the engine as for any pool; then
//! its body is piped from the client connection (the bytes that came with the head at
//! once, the rest while the backend is tried, decoded if it was chunked) to
//! `http2::bridge`, which sends it with the same tries as the requests of HTTP/2 clients;
//! and the response is written back in HTTP/1.1: with its length when it is known,
//! chunked when not (or up to the close, for HTTP/1.0 clients).
//!
//! A response that comes before the client has sent its whole body is sent, and the
//! connection closed after it (the rest of the body is not read).

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use tokio::sync::mpsc::Sender;

use super::{Conn, poll_once, read_more, within};
use crate::l7::chunked::{ChunkedDecoder, write_hex};
use crate::l7::http2::bridge::{self, Body, BodyError, ClientBody, Piped};
use crate::l7::request::{BodyFraming, RequestHead};
use crate::pipeline::Forward;
use crate::pipeline::cache::Fill;
use crate::pipeline::error::Error;
use crate::tls::Stream;

/// The largest piece of a request body passed on at once.
const PIECE: usize = 64 * 1024;

/// How much of a response body that is ready is gathered for one write to the client.
const BATCH: usize = 256 * 1024;

/// What is left of a request body to read from the client.
enum Rest {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl Conn {
    /// Forwards one request to `fwd`'s pool, which speaks HTTP/2, and its response back.
    /// Returns whether the client connection stays open for another request.
    pub(super) async fn exchange_h2(
        &mut self,
        head: RequestHead,
        fwd: &Forward,
        fill: Option<Box<Fill>>,
    ) -> Result<bool, Error> {
        self.cbuf.advance(head.head_len);
        let (rest, body, pieces) = match head.body {
            BodyFraming::Empty => (None, ClientBody::Empty, None),
            BodyFraming::Length(n) => {
                let (tx, body) = Piped::new(Some(n));
                (Some(Rest::Length(n)), ClientBody::Piped(body), Some(tx))
            }
            BodyFraming::Chunked => {
                let (tx, body) = Piped::new(None);
                let rest = Rest::Chunked(ChunkedDecoder::new(false));
                (Some(rest), ClientBody::Piped(body), Some(tx))
            }
        };
        let req = bridge::request(&self.out, body, &fwd.pool)?;
        if head.expect_continue && self.cbuf.is_empty() && rest.is_some() {
            self.write_client(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let frontend = std::sync::Arc::clone(&self.frontend);
        let tls = self.client.is_tls();
        let outcome = fwd.cache_outcome(&frontend);
        let sent = bridge::send(req, fwd, (&frontend, tls), (fill, outcome));
        let mut sent = std::pin::pin!(sent);
        // Whether the whole body was read (`None`: not yet, when the response came).
        let (result, tried, piped) = match (rest, pieces) {
            (Some(rest), Some(tx)) => {
                let idle = frontend.timeouts.idle;
                let from = (&mut self.client, &mut self.cbuf, &mut self.bytes_in);
                let mut pipe = std::pin::pin!(pipe(from, rest, tx, idle));
                let mut piped = None;
                let (result, tried) = loop {
                    tokio::select! {
                        biased;
                        sent = &mut sent => break sent,
                        p = &mut pipe, if piped.is_none() => piped = Some(p),
                    }
                };
                (result, tried, piped)
            }
            _ => {
                let (result, tried) = sent.await;
                (result, tried, Some(Ok(())))
            }
        };
        self.backend = tried.backend;
        self.retries = tried.retries;
        self.trail = tried.trail;
        // A body the client broke off or framed wrongly: its error is the answer.
        if let Some(Err(e)) = piped {
            return Err(e);
        }
        let response = result?;
        let keep = head.keep_alive && piped.is_some() && !self.live.is_stopping();
        self.respond_h1(response, head.is_head, keep).await
    }

    /// Writes `response` to the client in HTTP/1.1. Returns `keep`, unless the body has
    /// to be delimited by closing the connection.
    async fn respond_h1(
        &mut self,
        response: hyper::Response<Body>,
        is_head: bool,
        mut keep: bool,
    ) -> Result<bool, Error> {
        let (parts, mut body) = response.into_parts();
        let status = parts.status.as_u16();
        self.status = status;
        let bodiless = is_head || status < 200 || status == 204 || status == 304;
        let length = body.size_hint().exact();
        let chunked = !bodiless && length.is_none() && !self.http10;
        if !bodiless && length.is_none() && self.http10 {
            keep = false;
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            let name = name.as_str().as_bytes();
            // A bodiless response keeps the length it declares (HEAD, 304).
            if !crate::headers::is_hop_by_hop(name) || (bodiless && name == b"content-length") {
                crate::headers::put(&mut out, name, value.as_bytes());
            }
        }
        match length {
            Some(n) if !bodiless => {
                let digits = crate::digits::Digits::decimal(n);
                crate::headers::put(&mut out, b"Content-Length", digits.as_bytes());
            }
            _ if chunked => crate::headers::put(&mut out, b"Transfer-Encoding", b"chunked"),
            _ => {}
        }
        if !keep {
            crate::headers::put(&mut out, b"Connection", b"close");
        } else if self.http10 {
            crate::headers::put(&mut out, b"Connection", b"keep-alive");
        }
        out.extend_from_slice(b"\r\n");
        let idle = self.frontend.timeouts.idle;
        let mut ended = bodiless;
        // What is ready is written together (the head with a small body, in one write;
        // a large body's frames in batches): vectored, nothing copied.
        let mut batch = vec![Bytes::copy_from_slice(&out)];
        self.out = out;
        loop {
            let mut size = 0;
            while !ended && size < BATCH {
                match poll_once(body.frame()).await {
                    Some(frame) => ended = add_frame(frame, chunked, &mut batch, &mut size)?,
                    None => break,
                }
            }
            if !batch.is_empty() {
                self.write_pieces(&batch, idle).await?;
                batch.clear();
            }
            if ended {
                return Ok(keep);
            }
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| Error::client_gone())?;
            let mut size = 0;
            ended = add_frame(frame, chunked, &mut batch, &mut size)?;
        }
    }

    /// Writes `pieces` to the client, in as few vectored writes as the socket takes
    /// (counted as the request's bytes out).
    async fn write_pieces(&mut self, pieces: &[Bytes], idle: Duration) -> Result<(), Error> {
        use tokio::io::AsyncWriteExt as _;
        self.bytes_out += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
        // The first piece not written in full, and how much of it was.
        let (mut i, mut done) = (0, 0);
        while i < pieces.len() {
            if pieces[i].len() == done {
                (i, done) = (i + 1, 0);
                continue;
            }
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let n = (pieces.len() - i).min(slices.len());
            slices[0] = std::io::IoSlice::new(&pieces[i][done..]);
            for (slice, piece) in slices[1..n].iter_mut().zip(&pieces[i + 1..]) {
                *slice = std::io::IoSlice::new(piece);
            }
            let write = self.client.write_vectored(&slices[..n]);
            let mut wrote = match within(idle, write).await {
                Some(Ok(w)) if w > 0 => w,
                _ => return Err(Error::client_gone()),
            };
            while wrote > 0 {
                let step = wrote.min(pieces[i].len() - done);
                (wrote, done) = (wrote - step, done + step);
                if done == pieces[i].len() {
                    (i, done) = (i + 1, 0);
                }
            }
        }
        Ok(())
    }
}

/// Adds a response body's frame to `batch` (framed as a chunk, or not), its data's length
/// to `size`; `true` when the body ended. A body that broke off ends the connection.
fn add_frame(
    frame: Option<Result<hyper::body::Frame<Bytes>, BodyError>>,
    chunked: bool,
    batch: &mut Vec<Bytes>,
    size: &mut usize,
) -> Result<bool, Error> {
    match frame {
        None => {
            if chunked {
                batch.push(Bytes::from_static(b"0\r\n\r\n"));
            }
            Ok(true)
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "the response body broke off");
            Err(Error::client_gone())
        }
        // Trailers are not passed on.
        Some(Ok(frame)) => {
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                *size += data.len();
                if chunked {
                    let mut line = Vec::with_capacity(18);
                    write_hex(&mut line, data.len() as u64);
                    line.extend_from_slice(b"\r\n");
                    batch.push(Bytes::from(line));
                    batch.push(data);
                    batch.push(Bytes::from_static(b"\r\n"));
                } else {
                    batch.push(data);
                }
            }
            Ok(false)
        }
    }
}

/// Reads the rest of a request body from the client (what is in `cbuf` first; the bytes
/// taken from it, framing included, counted in `read`) and sends it on in pieces. A
/// piece the other side no longer wants ends it early (`Ok`).
async fn pipe(
    (client, cbuf, read): (&mut Stream, &mut BytesMut, &mut u64),
    mut rest: Rest,
    pieces: Sender<Result<Bytes, BodyError>>,
    idle: Duration,
) -> Result<(), Error> {
    let failed = |e: Error, pieces: Sender<Result<Bytes, BodyError>>| async move {
        let _ = pieces.send(Err(e.reason.into())).await;
        Err(e)
    };
    loop {
        let (piece, done) = match &mut rest {
            Rest::Length(left) => {
                let n = cbuf.len().min(PIECE).min(*left as usize);
                let piece = Bytes::copy_from_slice(&cbuf[..n]);
                cbuf.advance(n);
                *read += n as u64;
                *left -= n as u64;
                (piece, *left == 0)
            }
            Rest::Chunked(decoder) => {
                let mut plain = Vec::new();
                let input = cbuf.len().min(PIECE);
                match decoder.feed(&cbuf[..input], &mut plain) {
                    Ok(used) => {
                        cbuf.advance(used);
                        *read += used as u64;
                    }
                    Err(_) => {
                        let e = Error::bad_request("invalid chunked request body");
                        return failed(e, pieces).await;
                    }
                }
                (Bytes::from(plain), decoder.is_done())
            }
        };
        if !piece.is_empty() && pieces.send(Ok(piece)).await.is_err() {
            return Ok(());
        }
        if done {
            return Ok(());
        }
        if cbuf.is_empty() {
            match within(idle, read_more(client, cbuf)).await {
                Some(Ok(n)) if n > 0 => {}
                Some(_) => return failed(Error::client_gone(), pieces).await,
                None => {
                    let e = Error::client(408, "the request body stalled");
                    return failed(e, pieces).await;
                }
            }
        }
    }
}
