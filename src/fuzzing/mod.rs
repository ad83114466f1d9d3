//! What the fuzz targets (fuzz/, `cargo fuzz`) run on each input, kept in the library so
//! that the corpora they grow are replayed by an ordinary test (tests/fuzz_corpus.rs) in
//! CI, on the stable toolchain. Each function takes arbitrary bytes, must never panic or
//! hang, and checks properties that hold for every input:
//!
//! - [`http1_request`]: a head Fulcrum accepts is forwarded as bytes that a second,
//!   independent parser ([`strict`]) reads as the same request (method, target, framing),
//!   and when both parsers accept the client's bytes they agree on the framing: Fulcrum
//!   never forwards something two parsers read differently (request smuggling);
//! - [`http1_response`]: the head sent to the client parses, strictly, with the framing
//!   Fulcrum will use;
//! - [`chunked`]: decoding in pieces gives what decoding at once gives, and a re-encoded
//!   body decodes to the same data;
//! - [`proxy_protocol`], [`client_hello`]: no panic, consistent results on a prefix;
//! - [`h2_server`]: a client's frames, whatever they are, end in a connection that
//!   closes once the client's side has, having written well-formed server frames (the
//!   flood budget, flow control, stream states and HPACK on the way);
//! - [`config`]: any text is a config or a list of errors with positions inside the text;
//! - [`hpack`]: header blocks decode on one connection's table without a panic, into a
//!   request or a refusal; a field Fulcrum accepts encodes and decodes back to itself;
//!   Huffman strings decode, re-encode and decode to the same bytes.

mod h2_server;
pub mod strict;

pub use h2_server::h2_server;

use std::mem::MaybeUninit;
use std::net::IpAddr;

use crate::l7::request::{self, BodyFraming, Forwarding, HEADER_SLOTS};
use crate::l7::response::{self, ClientSide, ResponseFraming};
use crate::routing::PathRewrite;

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// The HTTP/1.1 request head parser and the head written for the backend.
pub fn http1_request(data: &[u8]) {
    let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
    let Ok(parsed) = request::parse(data, &mut slots, 100, CLIENT) else {
        return;
    };
    let mut out = Vec::new();
    let fwd = Forwarding {
        client_ip: CLIENT,
        proto: "http",
    };
    if parsed
        .write(&fwd, &PathRewrite::None, None, &mut out)
        .is_err()
    {
        return;
    }
    if parsed.head.missing_host {
        // As the engine does for HTTP/1.0 requests without one: the address it is at.
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"Host: 127.0.0.1:80\r\n\r\n");
    }
    let framing = match parsed.head.body {
        BodyFraming::Empty => strict::Framing::Length(0),
        BodyFraming::Length(n) => strict::Framing::Length(n),
        BodyFraming::Chunked => strict::Framing::Chunked,
    };
    let forwarded = strict::request(&out).unwrap_or_else(|e| {
        panic!(
            "forwarded head refused by the strict parser ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(
        forwarded.head_len,
        out.len(),
        "the forwarded head ends early"
    );
    assert_eq!(forwarded.method, parsed.method.as_bytes());
    // An origin-form target goes as it came; the backend sees one Host, the one
    // Fulcrum routed by.
    if parsed.target.starts_with('/') {
        assert_eq!(
            forwarded.target,
            parsed.target.as_bytes(),
            "the target changed"
        );
    }
    let hosts: Vec<&[u8]> = forwarded
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        .map(|(_, v)| *v)
        .collect();
    if !parsed.head.missing_host {
        use crate::routing::RequestView as _;
        assert_eq!(hosts.len(), 1, "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(
            hosts[0],
            parsed.host().unwrap_or_default().trim_ascii(),
            "the backend's Host differs from the one routed by"
        );
    }
    assert_eq!(
        forwarded.framing,
        framing,
        "framing differs: {:?}",
        String::from_utf8_lossy(&out)
    );
    // Both parsers reading the client's bytes agree on where the body ends.
    if let Ok(client) = strict::request(data) {
        assert_eq!(client.head_len, parsed.head.head_len, "head lengths differ");
        assert_eq!(
            client.framing, framing,
            "the client's framing is read differently"
        );
    }
}

/// The HTTP/1.1 response head parser and the head written for the client; the first
/// byte picks the client's side (HEAD, HTTP/1.0, keep-alive, upgrade).
pub fn http1_response(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let client = ClientSide {
        is_head: flags & 1 != 0,
        http10: flags & 2 != 0,
        keep_alive: flags & 4 != 0,
        upgrade: flags & 8 != 0,
        rules: None,
        set_cookie: (flags & 16 != 0).then_some("split=b; Path=/"),
        sticky_cookie: None,
        load_header: (flags & 32 != 0).then_some("x-load"),
        learn_cookie: (flags & 64 != 0).then_some("JSESSIONID"),
        prefix_cookie: None,
        compress: None,
    };
    let mut out = Vec::new();
    let Ok((head, _)) = response::parse(data, client, &mut out) else {
        return;
    };
    if out.is_empty() {
        return;
    }
    let sent = strict::response(&out).unwrap_or_else(|e| {
        panic!(
            "client head refused by the strict parser ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    // What the client reads as the body's end is where Fulcrum ends it.
    if (100..200).contains(&head.status) || client.is_head {
        return;
    }
    let expected = match head.framing {
        ResponseFraming::Empty if head.status == 204 || head.status == 304 => return,
        ResponseFraming::Empty => strict::Framing::Length(0),
        ResponseFraming::Length(n) => strict::Framing::Length(n),
        ResponseFraming::Chunked if client.http10 => strict::Framing::UntilClose,
        ResponseFraming::Chunked => strict::Framing::Chunked,
        ResponseFraming::UntilClose => strict::Framing::UntilClose,
    };
    // A body sent chunked to an HTTP/1.1 client whatever the backend's framing is fine.
    if !(expected == strict::Framing::UntilClose && sent.framing == strict::Framing::Chunked) {
        assert_eq!(
            sent.framing,
            expected,
            "framing differs: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// The chunked decoder: the first byte sets where the input is cut in two.
pub fn chunked(data: &[u8]) {
    use crate::l7::chunked::ChunkedDecoder;
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let decode = |pieces: &[&[u8]], reencode: bool| -> (Vec<u8>, Result<usize, String>) {
        let mut d = ChunkedDecoder::new(reencode);
        let mut out = Vec::new();
        let mut used = 0;
        for piece in pieces {
            let mut rest = *piece;
            while !rest.is_empty() && !d.is_done() {
                match d.feed(rest, &mut out) {
                    Ok(0) => break,
                    Ok(n) => {
                        used += n;
                        rest = &rest[n..];
                    }
                    Err(e) => return (out, Err(e.to_string())),
                }
            }
        }
        (
            out,
            Ok(used).map(|u| if d.is_done() { u } else { usize::MAX }),
        )
    };
    let at = usize::from(cut).min(data.len());
    let whole = decode(&[data], false);
    let split = decode(&[&data[..at], &data[at..]], false);
    assert_eq!(whole, split, "decoding in two pieces differs");
    if let (plain, Ok(used)) = &whole
        && *used != usize::MAX
    {
        let (clean, _) = decode(&[&data[..*used]], true);
        let (again, result) = decode(&[&clean], false);
        assert_eq!(result, Ok(clean.len()), "a re-encoded body does not decode");
        assert_eq!(&again, plain, "a re-encoded body decodes to other data");
    }
}

/// The PROXY protocol reader: a complete header read from a longer input is read alike
/// from exactly its bytes.
pub fn proxy_protocol(data: &[u8]) {
    use crate::l4::proxy_protocol::parse;
    if data.is_empty() {
        return;
    }
    if let Ok(Some((addr, len))) = parse(data) {
        assert!(len <= data.len());
        assert_eq!(parse(&data[..len]), Ok(Some((addr, len))));
    }
}

/// The ClientHello peeker.
pub fn client_hello(data: &[u8]) {
    use crate::l4::sni::{Hello, parse};
    if let Hello::Name(name) = parse(data) {
        assert_eq!(name, name.to_ascii_lowercase());
    }
}

/// HPACK and the HTTP/2 request head: the input is cut into header blocks (each
/// preceded by its length byte), decoded in turn with one decoder, as a connection's.
pub fn hpack(data: &[u8]) {
    use crate::l7::http2::hpack::{Decoder, encode_field, huffman};
    use crate::l7::http2::server::head::RequestHead;
    let mut decoder = Decoder::new(4096);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let block = &tail[..usize::from(len).min(tail.len())];
        rest = &tail[block.len()..];
        let mut head = RequestHead::new(16 * 1024, 100);
        let mut fields = Vec::new();
        if decoder
            .decode(block, |f| {
                fields.push((f.name.to_vec(), f.value.to_vec()));
                head.field(f);
            })
            .is_err()
        {
            return;
        }
        assert!(decoder.table_size() <= 4096, "the table outgrew its limit");
        if let Ok(req) = head.request() {
            // What Fulcrum accepted encodes and decodes back to itself.
            let mut out = Vec::new();
            for (name, value) in req.headers() {
                encode_field(name.as_str().as_bytes(), value.as_bytes(), &mut out);
            }
            let mut again = Vec::new();
            Decoder::new(4096)
                .decode(&out, |f| again.push((f.name.to_vec(), f.value.to_vec())))
                .expect("Fulcrum's own block decodes");
            assert_eq!(again.len(), req.headers().len());
            let regular = fields.iter().filter(|(n, _)| !n.starts_with(b":")).count();
            assert!(again.len() <= regular, "fields appeared");
        }
    }
    let mut plain = Vec::new();
    if huffman::decode(data, &mut plain).is_ok() {
        let mut coded = Vec::new();
        huffman::encode(&plain, &mut coded);
        let mut back = Vec::new();
        huffman::decode(&coded, &mut back).expect("own Huffman decodes");
        assert_eq!(back, plain);
    }
}

/// The config loader (texts naming a cache `disk`, which validation creates, are
/// skipped: the fuzzer would make directories; host names are not resolved).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("disk") {
        return;
    }
    // Made-up host names are not looked up (no DNS query leaves the machine).
    crate::config::RESOLVE_NAMES.store(false, std::sync::atomic::Ordering::Relaxed);
    let path = std::path::Path::new("/nonexistent-fuzz/fulcrum.toml");
    if let Err(e) = crate::config::Config::parse(path, text) {
        let shown = e.to_string();
        assert!(!shown.is_empty());
    }
}
