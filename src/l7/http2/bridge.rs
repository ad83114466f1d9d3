//! The HTTP/1.1 engine's requests to pools speaking HTTP/2. The engine reads, routes and
//! rewrites such a request as it does for any pool (its head for the backend is written
//! as HTTP/1.1 bytes); here that head becomes a hyper request and goes through the same
//! upstream phase as the requests of HTTP/2 clients ([`forward::upstream`]: the tries
//! and their retry rules, the response's rules, compression and the cache), and the
//! engine writes the response back in HTTP/1.1.

use std::sync::Arc;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response};

pub use super::client_body::{ClientBody, Piped};
pub use super::forward::{Body, BodyError};

use super::activity::Busy;
use super::forward::{self, Trace};
use crate::balance::Backend;
use crate::pipeline::Forward;
use crate::pipeline::cache::Fill;
use crate::pipeline::error::Error;
use crate::pipeline::upstream::Trail;
use crate::runtime::{Frontend, Pool};

/// Header lines of the engine's backend head read without allocating: the client's (at
/// most `limits.max_headers`) and the ones Fulcrum adds (a route's header rules may add
/// more: then the slots are counted and allocated).
const SLOTS: usize = crate::l7::request::HEADER_SLOTS + 16;

/// What the tries of a request left for the engine's access log.
pub struct Tried {
    pub backend: Option<Arc<Backend>>,
    pub retries: u32,
    pub trail: Trail,
}

/// The hyper request for `head` (a request head as the engine writes it for a backend:
/// origin-form target, `Host`, rewrites and forwarding headers applied, its blank line
/// included) with `body`, in the form a backend of `pool` takes. HTTP/1.1's own
/// connection and framing headers are left out (HTTP/2 frames the body itself).
pub fn request(head: &[u8], body: ClientBody, pool: &Pool) -> Result<Request<ClientBody>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; SLOTS];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => build(parsed, body, pool),
        Err(httparse::Error::TooManyHeaders) => {
            let lines = head.iter().filter(|&&b| b == b'\n').count();
            let mut slots = vec![httparse::EMPTY_HEADER; lines];
            let mut parsed = httparse::Request::new(&mut slots);
            match parsed.parse(head) {
                Ok(httparse::Status::Complete(_)) => build(parsed, body, pool),
                _ => Err(invalid()),
            }
        }
        _ => Err(invalid()),
    }
}

fn invalid() -> Error {
    Error::bad_request("invalid request head")
}

/// The hyper request of a parsed head (see [`request`]).
fn build(
    parsed: httparse::Request<'_, '_>,
    body: ClientBody,
    pool: &Pool,
) -> Result<Request<ClientBody>, Error> {
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return Err(invalid());
    };
    let mut req = Request::new(body);
    *req.method_mut() = Method::from_bytes(method.as_bytes()).map_err(|_| invalid())?;
    let mut authority = None;
    let headers = req.headers_mut();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| invalid())?;
        if name == header::HOST {
            authority = std::str::from_utf8(h.value).ok();
        } else if name == header::CONTENT_LENGTH
            || !crate::headers::is_hop_by_hop(name.as_str().as_bytes())
        {
            let value = HeaderValue::from_bytes(h.value).map_err(|_| invalid())?;
            headers.append(name, value);
        }
    }
    super::prepare::set_target(&mut req, authority, path.to_owned(), pool)?;
    Ok(req)
}

/// Sends `req` to `fwd`'s pool: its tries, then the response phase; `fill` and
/// `outcome` are the cache's (a response to store, and the lookup's result).
pub async fn send(
    req: Request<ClientBody>,
    fwd: &Forward,
    (frontend, tls): (&Arc<Frontend>, bool),
    (fill, outcome): (Option<Box<Fill>>, Option<&'static str>),
) -> (Result<Response<Body>, Error>, Tried) {
    let mut trace = Trace::default();
    // The engine keeps its own connection's timeouts.
    let busy = Busy::unwatched();
    let to = (frontend, tls);
    let result = forward::upstream(req, fwd, to, &mut trace, busy, (fill, outcome)).await;
    let tried = Tried {
        backend: trace.backend,
        retries: trace.retries,
        trail: trace.trail,
    };
    (result, tried)
}
