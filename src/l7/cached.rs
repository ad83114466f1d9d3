//! The HTTP/1.1 engine's side of the cache phase (`pipeline::cache`): writing an answer
//! from the cache, and on a miss keeping what is sent to the client (the body after the
//! head, de-chunked at the end) for the cache to store; background refreshes of stale
//! answers start here (`http2::refresh`).

use std::io::Write as _;

use super::chunked::ChunkedDecoder;
use super::proxy::Conn;
use crate::pipeline::cache::{Capture, Fill, Hit, Refresh};
use crate::pipeline::error::Error;

/// Stored bodies up to this size are copied after the head and sent in one write.
const INLINE: usize = 16 * 1024;

/// The response being kept on a miss.
pub(super) struct Keeping {
    capture: Box<Capture>,
    /// Bytes of the head still to skip in what is written.
    skip: usize,
    /// The client's body is chunked: de-chunk it before storing.
    chunked: bool,
}

impl Conn {
    /// Starts the background refresh of a stale answer, with the head this request
    /// would have sent its backend (still in `out`).
    pub(super) fn refresh(&self, refresh: Box<Refresh>) {
        if let Some(req) = super::http2::refresh::from_h1_head(&self.out, &refresh) {
            super::http2::refresh::spawn(std::sync::Arc::clone(&self.frontend), refresh, req);
        }
    }

    /// Sends `hit` (a head only for HEAD requests and 304s), with `Connection: close`
    /// unless `keep`.
    pub(super) async fn send_cached(
        &mut self,
        hit: &Hit,
        head_only: bool,
        keep: bool,
    ) -> Result<(), Error> {
        let length = (hit.status != 304).then_some(hit.entry.body.len() as u64);
        self.own_head(hit.status, length, keep, |put| hit.head(put));
        let body = hit.body(head_only);
        // A small body goes with the head in one write; a large one is written from
        // the stored bytes themselves, not copied.
        let inline = body.filter(|b| b.len() <= INLINE);
        if let Some(body) = inline {
            self.out.extend_from_slice(body);
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write_client(&out).await;
        self.out = out;
        written?;
        match body {
            Some(body) if inline.is_none() => self.write_client(body).await,
            _ => Ok(()),
        }
    }

    /// On a miss: keeps the response whose client head is in `rhead` if it may be
    /// stored, and says so in its `Cache-Status`.
    pub(super) fn begin_keeping(&mut self, fill: Box<Fill>) {
        let mut slots = [httparse::EMPTY_HEADER; super::request::HEADER_SLOTS];
        let mut res = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(_)) = res.parse(&self.rhead) else {
            return;
        };
        let status = res.code.unwrap_or(0);
        let chunked = res.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding") && crate::headers::is_chunked(h.value)
        });
        let headers = res.headers.iter().map(|h| (h.name.as_bytes(), h.value));
        let (line, capture) = match fill.capture(status, headers) {
            Ok(capture) => (capture.status_line(), Some(capture)),
            Err(fill) => (fill.status_line(false), None),
        };
        // The head ends with an empty line: the header goes before it.
        self.rhead.truncate(self.rhead.len() - 2);
        let _ = write!(self.rhead, "Cache-Status: {line}\r\n\r\n");
        self.keeping = capture.map(|capture| {
            Box::new(Keeping {
                capture,
                skip: self.rhead.len(),
                chunked,
            })
        });
    }

    /// Stores what was kept if the body ended where its framing said.
    pub(super) fn end_keeping(&mut self, finished: bool) {
        let Some(k) = self.keeping.take() else {
            return;
        };
        if !finished {
            return;
        }
        let Keeping {
            mut capture,
            chunked,
            ..
        } = *k;
        if chunked {
            let mut d = ChunkedDecoder::new(false);
            let mut plain = Vec::new();
            let ok = capture.with_body(|body| d.feed(body, &mut plain).is_ok() && d.is_done());
            if !ok {
                return;
            }
            capture.replace_body(plain);
        }
        capture.store();
    }
}

/// Keeps the body part of `bytes`, written to the client, if a response is being kept.
#[inline]
pub(super) fn keep(keeping: &mut Option<Box<Keeping>>, bytes: &[u8]) {
    if let Some(k) = keeping.as_mut() {
        let skipped = k.skip.min(bytes.len());
        k.skip -= skipped;
        k.capture.push(&bytes[skipped..]);
    }
}
