//! HTTP/2 from clients, served by Fulcrum's own HTTP/2 server; and HTTP/2 to backends,
//! for them and for the HTTP/1.1 engine's requests to pools speaking HTTP/2.
//!
//! A client speaks HTTP/2 when it chose `h2` with ALPN on a TLS listener, or when its
//! clear-text connection starts with the HTTP/2 preface (prior knowledge, "h2c"): the
//! HTTP/1.1 engine notices the preface and hands the connection over with the bytes it
//! has read, and [`server`] serves it: framing, HPACK ([`hpack`], [`frame`]), flow
//! control, the stream limit (`limits.max_concurrent_streams`), the checks that make a
//! request malformed (connection-specific headers, `te` other than `trailers`, CR, LF or
//! NUL in a value, DATA longer or shorter than `content-length`) and floods, all in one
//! task per connection.
//!
//! Every request of an HTTP/2 client takes one path: [`forward`], which runs the same
//! pipeline phases as the HTTP/1.1 engine, then [`tries`], the upstream phase with the
//! engine's retry rules. The HTTP/1.1 engine's requests to pools speaking HTTP/2 join
//! that path at the upstream phase ([`bridge`]). Requests to HTTP/1.1 backends are written by Fulcrum on the HTTP/1.1
//! engine's own backend connections ([`to_http1`], [`origin`]); HTTP/2 backends are
//! reached with hyper's HTTP/2 client ([`senders`]). What is sent to a backend is
//! re-framed by Fulcrum, so nothing a client sends can smuggle a second request into an
//! HTTP/1.1 backend connection.

mod activity;
pub mod bridge;
mod client_body;
mod files;
pub(crate) mod finish;
pub mod flood;
mod forward;
pub mod frame;
mod grpc;
pub mod hpack;
mod origin;
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

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

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
