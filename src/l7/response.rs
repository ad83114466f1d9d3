//! Reading a backend's response head and writing the head sent to the client: the
//! framing is validated, hop-by-hop headers are removed, and the `Connection` header
//! reflects what Fulcrum will do with the client connection.

use std::mem::MaybeUninit;

use super::request::HEADER_SLOTS;
use crate::content::coding::Coding;
use crate::headers::{ConnectionTokens, is_chunked, is_hop_by_hop, parse_content_length, put};
use crate::pipeline::compress::{Facts, Offer, Plan, weak_etag};
use crate::routing::HeaderRules;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead {
    /// Bytes of the head in the input.
    pub head_len: usize,
    /// The status code.
    pub status: u16,
    /// Body framing.
    pub framing: ResponseFraming,
    /// The backend connection may be reused after the body.
    pub reusable: bool,
    /// The load the backend reported in the pool's load header (thousandths), if any.
    pub load: Option<u32>,
    /// The stick table key of the session cookie the response sets (sticky `learn`).
    pub learned: Option<u64>,
    /// The coding the body is compressed with on its way to the client: the client
    /// head then says so and is chunked (HTTP/1.0: ends with the connection).
    pub encode: Option<Coding>,
}

/// Why a backend's response head was not accepted (the client gets a 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// More bytes are needed.
    Partial,
    /// Not a valid HTTP/1.x response, with the reason for the log.
    Invalid(&'static str),
}

/// What the client side needs from the response head.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide<'a> {
    /// The request was HEAD.
    pub is_head: bool,
    /// The client speaks HTTP/1.0 (no chunked encoding).
    pub http10: bool,
    /// Fulcrum intends to keep the client connection open.
    pub keep_alive: bool,
    /// The client asked to switch protocols: a 101 is expected.
    pub upgrade: bool,
    /// The route's response header rules.
    pub rules: Option<&'a HeaderRules>,
    /// A `Set-Cookie` value to add (a split side).
    pub set_cookie: Option<&'a str>,
    /// Another: the pool's sticky cookie, naming the backend that answers.
    pub sticky_cookie: Option<&'a str>,
    /// The header (lower case) in which the pool's backends report their load.
    pub load_header: Option<&'a str>,
    /// The application's session cookie whose `Set-Cookie` is learnt (sticky `learn`).
    pub learn_cookie: Option<&'a str>,
    /// The application's session cookie and the prefix its `Set-Cookie` values get
    /// (sticky `prefix`).
    pub prefix_cookie: Option<(&'a str, &'a str)>,
    /// The route's compression offer (see `pipeline::compress`).
    pub compress: Option<Offer<'a>>,
}

/// Writes an interim (1xx) response's head for the client: its fields as they came, in
/// a head written anew (CRLF line endings whatever the backend used: a client must not
/// read it differently from Fulcrum; found by fuzzing).
fn interim(out: &mut Vec<u8>, status: u16, reason: Option<&str>, headers: &[httparse::Header<'_>]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    crate::headers::put_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        put(out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"\r\n");
}

impl ClientSide<'_> {
    /// A kept-alive HTTP/1.1 client with no rule, cookie or compression offer: the head
    /// is read for its framing and checks (the HTTP/2 path writes its own head).
    pub fn plain(is_head: bool) -> ClientSide<'static> {
        ClientSide {
            is_head,
            http10: false,
            keep_alive: true,
            upgrade: false,
            rules: None,
            set_cookie: None,
            sticky_cookie: None,
            load_header: None,
            learn_cookie: None,
            prefix_cookie: None,
            compress: None,
        }
    }
}

/// Parses the response head at the start of `buf`. A complete final response's client
/// head is appended to `out`; an interim (1xx) response is appended for HTTP/1.1
/// clients (except `100 Continue`, which Fulcrum already answered itself).
/// Returns the head and whether the client connection stays open.
pub fn parse(
    buf: &[u8],
    client: ClientSide<'_>,
    out: &mut Vec<u8>,
) -> Result<(ResponseHead, bool), ResponseError> {
    read_into(buf, client, Some(out), None)
}

/// What takes a head's fields, name and value.
pub type FieldSink<'a> = dyn FnMut(&[u8], &[u8]) + 'a;

/// Reads a response head as [`parse`] does (the same framing and checks), without
/// writing a head for an HTTP/1.1 client: for the HTTP/2 path, which sends its own. A
/// final head's end-to-end fields (not hop-by-hop, not named by `Connection`;
/// `Content-Length` included) are given to `field`.
pub fn read(
    buf: &[u8],
    client: ClientSide<'_>,
    field: &mut FieldSink<'_>,
) -> Result<(ResponseHead, bool), ResponseError> {
    read_into(buf, client, None, Some(field))
}

fn read_into(
    buf: &[u8],
    client: ClientSide<'_>,
    out: Option<&mut Vec<u8>>,
    field: Option<&mut FieldSink<'_>>,
) -> Result<(ResponseHead, bool), ResponseError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); HEADER_SLOTS];
    let mut res = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_response_with_uninit_headers(&mut res, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(ResponseError::Partial),
        Err(_) => return Err(ResponseError::Invalid("malformed response head")),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(ResponseError::Invalid("malformed status line"));
    };
    // `002` parses as a number but is no status (RFC 9110 15: 100-599 in use, three
    // digits); written again it would not be three digits either (found by fuzzing).
    if status < 100 {
        return Err(ResponseError::Invalid("a status code below 100"));
    }
    if (100..200).contains(&status) {
        if status == 101 {
            if !client.upgrade {
                return Err(ResponseError::Invalid("unexpected 101 Switching Protocols"));
            }
            // The head goes to the client with all its fields (Upgrade, Connection,
            // Sec-WebSocket-*); then the connection is a tunnel.
            if let Some(out) = out {
                interim(out, status, res.reason, res.headers);
            }
            let head = ResponseHead {
                head_len,
                status,
                framing: ResponseFraming::UntilClose,
                reusable: false,
                load: None,
                learned: None,
                encode: None,
            };
            return Ok((head, false));
        }
        if status != 100
            && !client.http10
            && let Some(out) = out
        {
            interim(out, status, res.reason, res.headers);
        }
        let head = ResponseHead {
            head_len,
            status,
            framing: ResponseFraming::Empty,
            reusable: true,
            load: None,
            learned: None,
            encode: None,
        };
        return Ok((head, client.keep_alive));
    }

    let mut tokens = ConnectionTokens::default();
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut load = None;
    let mut learned = None;
    let mut facts = Facts::default();
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        if client.compress.is_some() {
            facts.see(name, h.value);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)
                .ok_or(ResponseError::Invalid("invalid Content-Length"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(ResponseError::Invalid("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(ResponseError::Invalid("repeated Transfer-Encoding"));
            }
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            tokens.add(h.value);
        } else if let Some(cookie) = client.learn_cookie
            && name.eq_ignore_ascii_case(b"set-cookie")
            && let Some(value) = crate::pipeline::sticky::set_cookie_value(h.value, cookie)
        {
            learned = Some(crate::pipeline::sticky::key_of(value));
        } else if let Some(header) = client.load_header
            && name.eq_ignore_ascii_case(header.as_bytes())
        {
            load = std::str::from_utf8(h.value)
                .ok()
                .and_then(crate::health::agent::parse_load);
        }
    }
    if let Some(te) = transfer_encoding {
        // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing;
        // an empty one names no coding. Neither is passed on (found by fuzzing).
        if minor == 0 {
            return Err(ResponseError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        if te.trim_ascii().is_empty() {
            return Err(ResponseError::Invalid("empty Transfer-Encoding"));
        }
        // A coding other than chunked would reach an HTTP/1.0 client, which cannot
        // decode transfer codings.
        if client.http10 && !is_chunked(te) && !client.is_head && status != 204 && status != 304 {
            return Err(ResponseError::Invalid(
                "a transfer coding an HTTP/1.0 client cannot read",
            ));
        }
    }
    let no_body = client.is_head || status == 204 || status == 304;
    let framing = match (transfer_encoding, length) {
        (Some(_), Some(_)) => {
            return Err(ResponseError::Invalid(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        _ if no_body => ResponseFraming::Empty,
        (Some(te), None) if is_chunked(te) => ResponseFraming::Chunked,
        (Some(_), None) => ResponseFraming::UntilClose,
        (None, Some(0)) => ResponseFraming::Empty,
        (None, Some(n)) => ResponseFraming::Length(n),
        (None, None) => ResponseFraming::UntilClose,
    };
    let plan = match client.compress {
        Some(offer) => {
            facts.status = status;
            facts.length = length;
            facts.no_body = framing == ResponseFraming::Empty;
            // A transfer coding other than chunked is left to the client.
            facts.encoded |= transfer_encoding.is_some_and(|te| {
                framing != ResponseFraming::Chunked
                    || !te.trim_ascii().eq_ignore_ascii_case(b"chunked")
            });
            offer.plan(&facts)
        }
        None => Plan::Leave,
    };
    let encode = plan.coding();
    let backend_keeps = if minor == 0 {
        tokens.keep_alive && !tokens.close
    } else {
        !tokens.close
    };
    let reusable = backend_keeps && framing != ResponseFraming::UntilClose;
    // A close-delimited body, or chunks an HTTP/1.0 client cannot read, end the client
    // connection too.
    let keep_client = client.keep_alive
        && match framing {
            _ if encode.is_some() => !client.http10,
            ResponseFraming::UntilClose => false,
            ResponseFraming::Chunked => !client.http10,
            _ => true,
        };
    let head = ResponseHead {
        head_len,
        status,
        framing,
        reusable,
        load,
        learned,
        encode,
    };
    let Some(out) = out else {
        if let Some(field) = field {
            for h in res.headers.iter() {
                let name = h.name.as_bytes();
                let hop = is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"content-length");
                if !hop && !tokens.lists(name) {
                    field(name, h.value);
                }
            }
        }
        return Ok((head, keep_client));
    };

    out.extend_from_slice(if client.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    crate::headers::put_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        if is_hop_by_hop(name) || tokens.lists(name) {
            continue;
        }
        if client.rules.is_some_and(|r| r.drops(name)) {
            continue;
        }
        if encode.is_some() {
            if name.eq_ignore_ascii_case(b"etag") {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                weak_etag(h.value, out);
                out.extend_from_slice(b"\r\n");
                continue;
            }
            if name.eq_ignore_ascii_case(b"accept-ranges") {
                continue;
            }
        }
        if let Some((cookie, prefix)) = client.prefix_cookie
            && name.eq_ignore_ascii_case(b"set-cookie")
            && let Some(value) = crate::pipeline::sticky::prefix_set_cookie(h.value, cookie, prefix)
        {
            put(out, name, &value);
            continue;
        }
        put(out, name, h.value);
    }
    if let Some(rules) = client.rules {
        for (name, value) in rules.appended() {
            put(out, name, value);
        }
    }
    for cookie in [client.set_cookie, client.sticky_cookie]
        .into_iter()
        .flatten()
    {
        put(out, b"Set-Cookie", cookie.as_bytes());
    }
    if plan.adds_vary() {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    match framing {
        _ if encode.is_some() => {
            put(
                out,
                b"Content-Encoding",
                encode.map_or("", Coding::token).as_bytes(),
            );
            if !client.http10 {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
        }
        ResponseFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            crate::headers::put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Empty => {
            if let Some(n) = length {
                // HEAD/304 keep the length of the representation.
                out.extend_from_slice(b"Content-Length: ");
                crate::headers::put_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
        }
        ResponseFraming::Chunked if !client.http10 => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        ResponseFraming::UntilClose => {
            // A transfer coding other than chunked: the body runs until close and the
            // client needs the header to decode it.
            if let Some(te) = transfer_encoding {
                put(out, b"Transfer-Encoding", te);
            }
        }
        ResponseFraming::Chunked => {}
    }
    if !keep_client {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok((head, keep_client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientSide<'static> {
        ClientSide::plain(false)
    }

    #[test]
    fn a_compressed_head_is_chunked_and_says_its_coding() {
        let config: &'static _ = Box::leak(Box::default());
        let mut c = client();
        c.compress = Some(Offer {
            config,
            coding: Some(Coding::Br),
        });
        let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\nETag: \"x\"\r\nAccept-Ranges: bytes\r\n\r\n";
        let mut out = Vec::new();
        let (head, keep) = parse(input, c, &mut out).unwrap();
        assert_eq!(head.framing, ResponseFraming::Length(5000));
        assert_eq!(head.encode, Some(Coding::Br));
        assert!(keep);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: W/\"x\"\r\nVary: Accept-Encoding\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        // HTTP/1.0: the body ends with the connection.
        c.http10 = true;
        let mut out = Vec::new();
        let (_, keep) = parse(input, c, &mut out).unwrap();
        assert!(!keep);
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("chunked") && text.contains("Connection: close"),
            "{text}"
        );
    }

    #[test]
    fn reads_the_load_header_when_asked() {
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nX-Backend-Load: cpu=0.72\r\nContent-Length: 0\r\n\r\n";
        let asked = ClientSide {
            load_header: Some("x-backend-load"),
            ..client()
        };
        assert_eq!(parse(head, asked, &mut out).unwrap().0.load, Some(720));
        assert_eq!(parse(head, client(), &mut out).unwrap().0.load, None);
        // The header still goes to the client.
        assert!(String::from_utf8_lossy(&out).contains("X-Backend-Load: cpu=0.72"));
    }

    #[test]
    fn keeps_end_to_end_headers_and_drops_hop_by_hop() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nX-App: a\r\n\r\nhi";
        let mut out = Vec::new();
        let (head, keep) = parse(raw, client(), &mut out).unwrap();
        assert_eq!(head.framing, ResponseFraming::Length(2));
        assert!(head.reusable && keep);
        assert_eq!(head.head_len, raw.len() - 2);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nX-App: a\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn close_delimited_body_closes_the_client() {
        let mut out = Vec::new();
        let (head, keep) = parse(b"HTTP/1.0 200 OK\r\n\r\nbody", client(), &mut out).unwrap();
        assert_eq!(head.framing, ResponseFraming::UntilClose);
        assert!(!head.reusable && !keep);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Connection: close")
        );
    }

    #[test]
    fn chunked_to_http10_client_is_unchunked() {
        let mut out = Vec::new();
        let c = ClientSide {
            http10: true,
            ..client()
        };
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (head, keep) = parse(raw, c, &mut out).unwrap();
        assert_eq!(head.framing, ResponseFraming::Chunked);
        assert!(!keep);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(!text.contains("chunked"));
    }

    #[test]
    fn rejects_ambiguous_framing() {
        let mut out = Vec::new();
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"garbage\r\n\r\n",
            // Found by fuzzing: faulty or empty transfer codings are not passed on.
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            b"HTTP/1.1 002 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(matches!(
                parse(raw, client(), &mut out),
                Err(ResponseError::Invalid(_))
            ));
        }
        // A coding other than chunked reaches an HTTP/1.1 client until close, never an
        // HTTP/1.0 one.
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(parse(raw, client(), &mut out).is_ok());
        let old = ClientSide {
            http10: true,
            ..client()
        };
        assert!(parse(raw, old, &mut out).is_err());
    }

    #[test]
    fn head_and_304_have_no_body() {
        let mut out = Vec::new();
        let c = ClientSide {
            is_head: true,
            ..client()
        };
        let (head, _) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            c,
            &mut out,
        )
        .unwrap();
        assert_eq!(head.framing, ResponseFraming::Empty);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Content-Length: 99")
        );
        let (head, _) = parse(
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            client(),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(head.framing, ResponseFraming::Empty);
    }
}
