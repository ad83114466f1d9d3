//! The HTTP/2 server's frame handling (fuzz target `h2_server`): a client's bytes after
//! the preface go to a real connection of the server, in memory, on a listener whose
//! one route answers by itself (no backend, no socket). The connection must end once the
//! client's side has ended, and what it wrote must be well-formed HTTP/2 from a server.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::l7::http2::server::{Peer, serve};
use crate::runtime::{Frontend, Live, Snapshot};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const CONFIG: &str = r#"
[[listeners]]
name = "fuzz"
bind = "127.0.0.1:0"
[[listeners.routes]]
path_prefix = "/"
respond = { status = 200, body = "fuzzed\n" }
"#;

struct World {
    rt: tokio::runtime::Runtime,
    live: Arc<Live>,
    frontend: Arc<Frontend>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let path = std::path::Path::new("/nonexistent-fuzz/fulcrum.toml");
        let config = Config::parse(path, CONFIG).expect("the fuzz config is valid");
        let snapshot = Snapshot::build(config, None).expect("the fuzz config builds");
        let frontend = Arc::clone(snapshot.frontend("fuzz").expect("listener fuzz"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        World {
            rt,
            live: Arc::new(Live::new(snapshot)),
            frontend,
        }
    })
}

/// Serves `data` (after the preface) as one client connection and checks the output.
pub fn h2_server(data: &[u8]) {
    check_frames(&exchange(data));
}

/// What the server writes to a client that sends the preface, then `data`, then ends
/// its side.
fn exchange(data: &[u8]) -> Vec<u8> {
    let w = world();
    let peer = Peer {
        addr: SocketAddr::from(([192, 0, 2, 1], 40000)),
        tls: None,
        live: Arc::clone(&w.live),
        frontend: Arc::clone(&w.frontend),
    };
    w.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(serve(server, Bytes::new(), peer));
        let mut out = Vec::new();
        let exchange = async {
            // The client writes everything, then ends its side, reading all the while
            // (the server may wait for room to write).
            let (mut rd, mut wr) = tokio::io::split(&mut client);
            let write = async {
                let _ = wr.write_all(PREFACE).await;
                let _ = wr.write_all(data).await;
                let _ = wr.shutdown().await;
            };
            let read = rd.read_to_end(&mut out);
            let _ = tokio::join!(write, read);
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("the connection ends after the client's side has ended");
        served.await.expect("the connection's task does not panic");
        out
    })
}

/// The output is whole frames a server may send: SETTINGS first, connection frames on
/// stream 0, DATA and header frames on client (odd) streams.
fn check_frames(mut out: &[u8]) {
    let mut first = true;
    while !out.is_empty() {
        assert!(out.len() >= 9, "a cut frame header at the end: {out:?}");
        let len = usize::from(out[0]) << 16 | usize::from(out[1]) << 8 | usize::from(out[2]);
        let (kind, stream) = (out[3], u32::from_be_bytes([out[5], out[6], out[7], out[8]]));
        assert!(out.len() >= 9 + len, "a cut frame at the end");
        assert!(
            len <= 16_384 || kind == 0 || kind == 1 || kind == 9,
            "frame of {len} bytes"
        );
        if first {
            assert_eq!(kind, 4, "the server's first frame is SETTINGS");
            first = false;
        }
        match kind {
            // SETTINGS, PING, GOAWAY: the connection's.
            4 | 6 | 7 => assert_eq!(stream, 0, "frame type {kind} on stream {stream}"),
            // DATA, HEADERS, CONTINUATION: a client's stream.
            0 | 1 | 9 => assert!(stream % 2 == 1, "frame type {kind} on stream {stream}"),
            // RST_STREAM: a stream the client named (a bad PRIORITY frame is a stream
            // error even on an idle or even stream, RFC 9113 6.3).
            3 => assert_ne!(stream, 0, "RST_STREAM on stream 0"),
            // WINDOW_UPDATE: either.
            8 => {}
            _ => panic!("the server sent frame type {kind}"),
        }
        out = &out[9 + len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame: length, type, flags, stream, payload.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_get_is_answered_by_the_route_then_the_connection_ends() {
        // SETTINGS, then GET / (static-table indexes, :authority literal).
        let mut client = frame(4, 0, 0, &[]);
        client.extend(frame(1, 0x5, 1, b"\x82\x86\x84\x41\x09localhost"));
        let out = exchange(&client);
        check_frames(&out);
        let mut kinds = Vec::new();
        let mut rest = &out[..];
        while rest.len() >= 9 {
            let len = usize::from(rest[1]) << 8 | usize::from(rest[2]);
            kinds.push((
                rest[3],
                u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
            ));
            if rest[3] == 0 {
                assert_eq!(&rest[9..9 + len], b"fuzzed\n");
            }
            rest = &rest[9 + len..];
        }
        assert!(kinds.contains(&(1, 1)), "HEADERS on stream 1: {kinds:?}");
        assert!(kinds.contains(&(0, 1)), "DATA on stream 1: {kinds:?}");
    }
}
