//! Forward authentication per route, as Traefik's ForwardAuth and NGINX's
//! `auth_request`: before a request goes on, an auth service is asked with a `GET` that
//! carries the request's credentials (the headers the route names, `Authorization` and
//! `Cookie` by default) and what it was (`X-Forwarded-Method`, `-Proto`, `-Host`,
//! `-Uri`, `-For`). A 2xx answer lets the request through, with the headers the route
//! names copied from that answer (`X-User`...); any other answer is what the client
//! gets (its status, body and `WWW-Authenticate`, `Location`, `Set-Cookie`,
//! `Content-Type`: a login redirect works); no answer in time is a 503 (it fails
//! closed). The service is reached over plain HTTP with kept-alive connections.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::routing::RequestView;

/// Most bytes of a denial's body passed on to the client.
const MOST_BODY: usize = 64 * 1024;

/// The headers of a denial passed on to the client.
const DENIAL_HEADERS: [&str; 4] = ["www-authenticate", "location", "set-cookie", "content-type"];

/// A route's auth service.
#[derive(Debug)]
pub struct ForwardAuth {
    url: Uri,
    send: Vec<HeaderName>,
    copy: Vec<HeaderName>,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// What the service said.
#[derive(Debug)]
pub enum Answer {
    /// Go on, with these headers set on the request: every header the route copies,
    /// with the service's value, or none (the client's own is removed either way, so
    /// that a client cannot pass for someone else).
    Pass(Vec<(HeaderName, Option<HeaderValue>)>),
    /// This is the client's answer.
    Deny(Box<Denied>),
    /// The service did not answer (in time): 503.
    Unavailable,
}

/// An auth service's refusal, passed on to the client.
#[derive(Debug, Clone)]
pub struct Denied {
    /// Its status.
    pub status: u16,
    /// The headers passed on (see the module doc).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Its body (up to 64 KiB).
    pub body: Bytes,
}

/// A question to ask (built from the request, while its head is at hand).
#[derive(Debug)]
pub struct Question {
    request: Request<Empty<Bytes>>,
}

impl ForwardAuth {
    /// The service at `url` (`http://...`), sent the request headers `send`, whose
    /// headers `copy` are added to passing requests.
    pub fn new(
        url: &str,
        send: &[String],
        copy: &[String],
        timeout: Duration,
    ) -> Option<ForwardAuth> {
        let names = |list: &[String]| -> Option<Vec<HeaderName>> {
            list.iter()
                .map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect()
        };
        Some(ForwardAuth {
            url: url.parse().ok()?,
            send: names(send)?,
            copy: names(copy)?,
            timeout,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http(),
        })
    }

    /// The question for `req` (`tls`: it came over TLS; `target`: its path and query).
    pub fn question<V: RequestView + ?Sized>(&self, req: &V, tls: bool) -> Question {
        let mut b = Request::get(self.url.clone());
        for name in &self.send {
            for value in req.header_values(name.as_str()) {
                if let Ok(v) = HeaderValue::from_bytes(value) {
                    b = b.header(name, v);
                }
            }
        }
        let text = |bytes: &[u8]| HeaderValue::from_bytes(bytes).ok();
        if let Some(v) = text(req.method()) {
            b = b.header("x-forwarded-method", v);
        }
        b = b.header("x-forwarded-proto", if tls { "https" } else { "http" });
        if let Some(v) = req.host().and_then(text) {
            b = b.header("x-forwarded-host", v);
        }
        let mut uri = req.path().to_vec();
        if let Some(q) = req.query() {
            uri.push(b'?');
            uri.extend_from_slice(q);
        }
        if let Some(v) = text(&uri) {
            b = b.header("x-forwarded-uri", v);
        }
        if let Ok(v) = HeaderValue::from_str(&req.client_ip().to_string()) {
            b = b.header("x-forwarded-for", v);
        }
        let request = b
            .body(Empty::new())
            .unwrap_or_else(|_| Request::new(Empty::new()));
        Question { request }
    }

    /// Asks the service.
    pub async fn ask(&self, question: Question) -> Answer {
        let asked = async {
            let response = self.client.request(question.request).await.ok()?;
            let status = response.status();
            if status.is_success() {
                let headers = self
                    .copy
                    .iter()
                    .map(|n| (n.clone(), response.headers().get(n).cloned()))
                    .collect();
                return Some(Answer::Pass(headers));
            }
            let headers = response
                .headers()
                .iter()
                .filter(|(n, _)| DENIAL_HEADERS.contains(&n.as_str()))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            let limited = http_body_util::Limited::new(response.into_body(), MOST_BODY);
            let body = limited
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Some(Answer::Deny(Box::new(Denied {
                status: status.as_u16(),
                headers,
                body,
            })))
        };
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(Some(answer)) => answer,
            _ => Answer::Unavailable,
        }
    }
}

impl Denied {
    /// The denial as an HTTP/1.1 response (`close`: the connection closes after it).
    pub fn write_h1(&self, out: &mut Vec<u8>, head_only: bool, close: bool) {
        use std::io::Write as _;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            crate::pipeline::error::status_title(self.status)
        );
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }

    /// The denial as an `http` response (for hyper).
    pub fn to_http(&self) -> http::Response<Bytes> {
        let mut r = http::Response::new(self.body.clone());
        *r.status_mut() =
            http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::FORBIDDEN);
        for (n, v) in &self.headers {
            r.headers_mut().append(n.clone(), v.clone());
        }
        r
    }
}
