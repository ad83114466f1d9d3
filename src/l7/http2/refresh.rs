//! Background refreshes of the response cache (`stale-while-revalidate`): a stale
//! response served at once is fetched again off the request's path, through the same
//! pick/admit/retry loop as any request on the HTTP/2 path, to the pool the request was
//! routed to. Its response is stored as a miss's is (a 304 to its revalidation refreshes
//! the stored one). The cache's turn for the key ([`crate::pipeline::cache::Fill`]) makes
//! it one refresh per key at a time; requests meanwhile get the stale response.
//!
//! Both engines start refreshes here: the HTTP/1.1 engine with the head it would have
//! sent ([`from_h1_head`]), the HTTP/2 path with its request prepared for the backend.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request};

use super::activity::Busy;
use super::forward::Trace;
use super::tries::{Upstream, tries};
use super::upload::Upload;
use crate::pipeline::cache::Refresh;
use crate::pipeline::upstream::Attempts;
use crate::runtime::Frontend;

/// The client's conditions: the refresh asks for the whole response (or with the stored
/// response's own validators).
const CONDITIONS: [HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

/// Starts the refresh of `refresh`'s stale response with `req` (a request as its backend
/// would get it; made a plain GET here).
pub fn spawn(frontend: Arc<Frontend>, refresh: Box<Refresh>, req: Request<()>) {
    tokio::spawn(run(frontend, refresh, req));
}

/// A request for the refresh from the HTTP/1.1 head `head` (as written for the backend,
/// ending with the blank line); `None` if it does not parse (it always should).
pub fn from_h1_head(head: &[u8], refresh: &Refresh) -> Option<Request<()>> {
    let mut slots = [httparse::EMPTY_HEADER; crate::l7::request::HEADER_SLOTS];
    let mut parsed = httparse::Request::new(&mut slots);
    parsed.parse(head).ok()?;
    let mut req = Request::new(());
    let mut host = None;
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        if name == header::HOST {
            host = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if !matches!(
            name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::EXPECT
        ) {
            req.headers_mut().append(name, value);
        }
    }
    let path = parsed.path?.to_owned();
    super::prepare::set_target(&mut req, host.as_deref(), path, &refresh.fwd.pool).ok()?;
    Some(req)
}

/// A request for the refresh from the HTTP/2 path's request (its head only), prepared
/// for the backend as the request itself would have been.
pub fn from_request<B>(
    req: &Request<B>,
    refresh: &Refresh,
    frontend: &Frontend,
    client: std::net::IpAddr,
    tls: bool,
) -> Option<Request<()>> {
    let mut copy = Request::new(());
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy.headers_mut().remove(header::CONTENT_LENGTH);
    let fwd = &refresh.fwd;
    let rewrites = super::prepare::Rewrites {
        path: fwd.rewrite(frontend),
        headers: fwd.request_headers(frontend),
    };
    super::prepare::prepare(&mut copy, client, tls, &fwd.pool, &rewrites).ok()?;
    Some(copy)
}

async fn run(frontend: Arc<Frontend>, refresh: Box<Refresh>, mut req: Request<()>) {
    let Refresh { fill, fwd } = *refresh;
    *req.method_mut() = Method::GET;
    for name in CONDITIONS {
        req.headers_mut().remove(name);
    }
    for (name, value) in fill.revalidation() {
        if let Some(value) = value {
            req.headers_mut().insert(name, value);
        }
    }
    let req = req.map(|()| Upload::ready(Bytes::new()));
    let (connect_timeout, request_timeout) = fwd.timeouts(&frontend);
    let mut attempts = Attempts::new(&fwd.pool, fwd.key, fwd.retries(&frontend))
        .stick_to(fwd.sticky, fwd.stick_key);
    let to = Upstream {
        fwd: &fwd,
        frontend: &frontend,
        tls: false,
        timeouts: (connect_timeout, request_timeout),
        oversize: None,
    };
    let mut trace = Trace::default();
    let mut fill = Some(fill);
    let busy = Busy::unwatched();
    let result = tries(req, &mut attempts, &mut trace, to, busy, &mut fill).await;
    let target = &*fwd.pool.name;
    match (result, fill) {
        // The stored response is still good: refreshed with the 304's headers.
        (Ok(resp), Some(fill)) if resp.status() == 304 && fill.revalidating() => {
            let refreshed = fill.refreshed_by(resp.headers());
            tracing::debug!(
                pool = target,
                kept = refreshed.is_some(),
                "cache refresh: not modified"
            );
        }
        // A new response, kept as its body is read (stored when it ends).
        (Ok(resp), None) => {
            let status = resp.status();
            let read = tokio::time::timeout(request_timeout, resp.into_body().collect()).await;
            tracing::debug!(pool = target, %status, complete = matches!(read, Ok(Ok(_))), "cache refresh");
        }
        // A failure: the stale response stays, to be refreshed by a later request.
        (Ok(resp), Some(_)) => {
            tracing::debug!(pool = target, status = %resp.status(), "cache refresh failed");
        }
        (Err(e), _) => {
            tracing::debug!(pool = target, reason = e.reason, "cache refresh failed");
        }
    }
}
