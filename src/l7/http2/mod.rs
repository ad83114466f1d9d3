//! HTTP/2 from clients, served by Fulcrum's own HTTP/2 server; and the hyper path for
//! HTTP/1.1 clients of listeners that route to pools speaking HTTP/2 to their backends.
//!
//! A client speaks HTTP/2 when it chose `h2` with ALPN on a TLS listener, or when its
//! clear-text connection starts with the HTTP/2 preface (prior knowledge, "h2c"): the
//! HTTP/1.1 engine notices the preface and hands the connection over with the bytes it
//! has read, and [`server`] serves it: framing, HPACK ([`hpack`], [`frame`]), flow
//! control, the stream limit (`limits.max_concurrent_streams`), the checks that make a
//! request malformed (connection-specific headers, `te` other than `trailers`, CR, LF or
//! NUL in a value, DATA longer or shorter than `content-length`) and floods, all in one
//! task per connection. HTTP/1.1 clients of a listener that routes to a pool speaking
//! HTTP/2 are served by hyper's HTTP/1.1 server.
//!
//! Every request of both takes one path: [`forward`], which runs the same pipeline
//! phases as the HTTP/1.1 engine, then [`tries`], the upstream phase with the engine's
//! retry rules. Requests to HTTP/1.1 backends are written by Fulcrum on the HTTP/1.1
//! engine's own backend connections ([`to_http1`], [`origin`]); HTTP/2 backends are
//! reached with hyper's HTTP/2 client ([`senders`]). What is sent to a backend is
//! re-framed by Fulcrum, so nothing a client sends can smuggle a second request into an
//! HTTP/1.1 backend connection.

mod activity;
mod client_body;
mod files;
pub(crate) mod finish;
pub mod flood;
mod forward;
pub mod frame;
mod grpc;
pub mod hpack;
mod origin;
mod prefixed;
mod prepare;
pub(super) mod refresh;
mod respond;
mod senders;
pub mod server;
mod to_http1;
mod tries;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use self::prefixed::Prefixed;
use crate::runtime::{Frontend, Live};
use crate::tls::TlsInfo;

/// The first bytes of every HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a listener that speaks HTTP/2 with prior knowledge answers a connection whose
/// first bytes are neither HTTP/1.x nor the HTTP/2 preface (RFC 9113 3.4: a connection
/// error of type PROTOCOL_ERROR): its SETTINGS, then GOAWAY (last stream 0,
/// PROTOCOL_ERROR).
pub const BAD_PREFACE_GOAWAY: &[u8] = &[
    0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 8, 7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, 0, 0, 0, 1, // last stream 0, PROTOCOL_ERROR
];

/// Whether the first line in `buf` ends with an HTTP/1.x version (or may still: it is not
/// complete), or is an HTTP/0.9 `GET /path` (refused as HTTP/1 is). A first line that is
/// neither is no HTTP/1 request: on a connection that may be HTTP/2, it is a bad preface.
pub fn may_be_http1(buf: &[u8]) -> bool {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return true;
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let mut words = line.split(|&b| b == b' ');
    let http09 = matches!(
        (words.next(), words.next(), words.next()),
        (Some(m), Some(t), None) if !m.is_empty() && m.iter().all(u8::is_ascii_uppercase) && t.starts_with(b"/")
    );
    http09
        || line
            .rsplit(|&b| b == b' ')
            .next()
            .is_some_and(|v| v.starts_with(b"HTTP/1."))
}

/// Serves an HTTP/2 client connection until it ends; `read` are the bytes already read
/// from it (the preface, when the HTTP/1.1 engine hands a connection over).
pub async fn serve_h2<S>(
    io: S,
    read: Bytes,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    live: Arc<Live>,
    frontend: Arc<Frontend>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = server::Peer {
        addr: peer,
        tls,
        live,
        frontend,
    };
    server::serve(io, read, peer).await
}

/// Serves a client connection of a listener that routes to pools speaking HTTP/2:
/// HTTP/1.1, or HTTP/2 if it starts with the preface.
pub async fn serve_h1<S>(
    mut io: S,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    live: Arc<Live>,
    frontend: Arc<Frontend>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A client with prior knowledge of HTTP/2 is served by Fulcrum's own HTTP/2 server;
    // the bytes read to find out are read again by whichever server serves it.
    let Ok(Some(first)) =
        tokio::time::timeout(frontend.timeouts.request_header, sniff(&mut io)).await
    else {
        return;
    };
    if first.starts_with(PREFACE) {
        let peer = server::Peer {
            addr: peer,
            tls,
            live,
            frontend,
        };
        return server::serve(io, first, peer).await;
    }
    let conn = Conn {
        peer,
        tls,
        live,
        frontend,
    };
    serve(Prefixed::new(first, io), conn).await
}

/// Reads until the first bytes are the HTTP/2 preface or cannot be; `None` when the
/// client closed first.
async fn sniff<S: AsyncRead + Unpin>(io: &mut S) -> Option<Bytes> {
    use tokio::io::AsyncReadExt as _;
    let mut first = bytes::BytesMut::with_capacity(4096);
    loop {
        match io.read_buf(&mut first).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let n = first.len().min(PREFACE.len());
        if n == PREFACE.len() || first[..n] != PREFACE[..n] {
            return Some(first.freeze());
        }
    }
}

/// Who a connection is with, and the config it is served with.
struct Conn {
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    live: Arc<Live>,
    frontend: Arc<Frontend>,
}

async fn serve<S>(io: Prefixed<S>, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        peer,
        tls,
        live,
        frontend,
    } = conn;
    let settings = Arc::clone(&frontend);
    let limits = settings.limits;
    let activity = Arc::new(activity::Activity::default());
    let stop = Arc::clone(&live);
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let responded = forward::respond(
                req.map(forward::ClientBody::Hyper),
                peer,
                tls.clone(),
                Arc::clone(&live),
                Arc::clone(&frontend),
                Arc::clone(&activity),
            );
            // Logged when the head is ready, with the body's declared length: hyper
            // sends the body on its own.
            async move {
                let (response, mut finish) = responded.await;
                finish.bytes_out = hyper::body::Body::size_hint(response.body())
                    .exact()
                    .unwrap_or(0);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.timeouts.request_header)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_size.max(8192));
    let builder = builder.http1_only();
    let io = TokioIo::new(io);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // The connection is closed (gracefully: GOAWAY for HTTP/2) once it has had no
    // request in progress for `timeouts.idle`, or none at all for `request_header`.
    let timeouts = settings.timeouts;
    let result = loop {
        let (idle, served) = activity.idle_for();
        let limit = if served {
            timeouts.idle
        } else {
            timeouts.request_header
        };
        if idle >= limit {
            tracing::debug!(listener = %settings.name, client = %peer, "idle HTTP connection closed");
            conn.as_mut().graceful_shutdown();
            break tokio::time::timeout(Duration::from_secs(5), conn.as_mut())
                .await
                .unwrap_or(Ok(()));
        }
        tokio::select! {
            result = conn.as_mut() => break result,
            () = tokio::time::sleep(limit - idle) => {}
            // A graceful stop: GOAWAY, then the streams in progress finish.
            () = stop.stopped() => {
                conn.as_mut().graceful_shutdown();
                break conn.as_mut().await;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = %settings.name, client = %peer, error = %e, "HTTP connection ended with an error");
    }
}
