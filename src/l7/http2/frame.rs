//! HTTP/2 framing (RFC 9113 4 and 6): the frame header, the payloads a server reads
//! (SETTINGS, WINDOW_UPDATE, RST_STREAM, GOAWAY, PRIORITY, padding), and the frames it
//! writes, appended to one output buffer without allocating per frame.
//!
//! Reading checks what belongs to a frame on its own (sizes, reserved values, stream 0
//! or not); what depends on the connection's state (which stream, which order) is the
//! connection's.

/// The size of a frame header.
pub const HEADER_LEN: usize = 9;

/// The largest frame payload a peer must accept (SETTINGS_MAX_FRAME_SIZE's default).
pub const DEFAULT_MAX_FRAME: u32 = 16_384;

/// The initial flow-control window of a stream and of a connection.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// The largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored (RFC 9113 4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let l = self.len.to_be_bytes();
        let s = self.stream.to_be_bytes();
        out.extend_from_slice(&[
            l[1], l[2], l[3], self.kind, self.flags, s[0], s[1], s[2], s[3],
        ]);
    }
}

/// What is wrong with a frame, and how far it reaches (RFC 9113 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection ends: GOAWAY with this reason.
    Connection(Reason, &'static str),
    /// Only the stream ends: RST_STREAM with this reason.
    Stream(Reason, &'static str),
}

/// The payload without its padding (DATA, HEADERS and PUSH_PROMISE with PADDED).
pub fn unpad<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], Fault> {
    if !head.has(flag::PADDED) {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(Fault::Connection(
            Reason::FRAME_SIZE_ERROR,
            "padded frame without a pad length",
        ));
    };
    if pad as usize > rest.len() {
        return Err(Fault::Connection(
            Reason::PROTOCOL_ERROR,
            "padding longer than the frame",
        ));
    }
    Ok(&rest[..rest.len() - pad as usize])
}

/// A stream's priority (RFC 9113 5.3.2, deprecated: read and ignored, except that a
/// stream may not depend on itself).
pub fn check_priority(stream: u32, fields: &[u8]) -> Result<(), Fault> {
    let dep = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]) & MAX_WINDOW;
    if dep == stream {
        return Err(Fault::Stream(
            Reason::PROTOCOL_ERROR,
            "stream depends on itself",
        ));
    }
    Ok(())
}

/// A HEADERS payload's header block fragment (padding and priority removed), and the
/// stream error of a stream depending on itself: reported by the caller once the block
/// has been decoded (the connection's HPACK table must still take it in).
pub fn headers_fragment<'a>(
    head: &Head,
    payload: &'a [u8],
) -> Result<(&'a [u8], Option<Fault>), Fault> {
    let body = unpad(head, payload)?;
    if !head.has(flag::PRIORITY) {
        return Ok((body, None));
    }
    if body.len() < 5 {
        return Err(Fault::Connection(
            Reason::FRAME_SIZE_ERROR,
            "HEADERS too short for its priority",
        ));
    }
    Ok((&body[5..], check_priority(head.stream, body).err()))
}

/// Settings (RFC 9113 6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// The settings a peer sent that a server acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSettings {
    pub header_table_size: u32,
    pub initial_window: u32,
    pub max_frame: u32,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            header_table_size: 4096,
            initial_window: DEFAULT_WINDOW,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// Applies a SETTINGS payload (not an ACK) to `to`, checking every value.
pub fn read_settings(payload: &[u8], to: &mut PeerSettings) -> Result<(), Fault> {
    if !payload.len().is_multiple_of(6) {
        return Err(Fault::Connection(
            Reason::FRAME_SIZE_ERROR,
            "SETTINGS not a multiple of 6 bytes",
        ));
    }
    for s in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([s[0], s[1]]);
        let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
        match id {
            setting::HEADER_TABLE_SIZE => to.header_table_size = value,
            setting::ENABLE_PUSH if value > 1 => {
                return Err(Fault::Connection(
                    Reason::PROTOCOL_ERROR,
                    "ENABLE_PUSH not 0 or 1",
                ));
            }
            setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => {
                return Err(Fault::Connection(
                    Reason::FLOW_CONTROL_ERROR,
                    "INITIAL_WINDOW_SIZE over 2^31-1",
                ));
            }
            setting::INITIAL_WINDOW_SIZE => to.initial_window = value,
            setting::MAX_FRAME_SIZE if !(DEFAULT_MAX_FRAME..=16_777_215).contains(&value) => {
                return Err(Fault::Connection(
                    Reason::PROTOCOL_ERROR,
                    "MAX_FRAME_SIZE out of range",
                ));
            }
            setting::MAX_FRAME_SIZE => to.max_frame = value,
            // Unknown settings are ignored (RFC 9113 6.5.2).
            _ => {}
        }
    }
    Ok(())
}

/// A WINDOW_UPDATE's increment; 0 is an error of the stream, or of the connection on
/// stream 0 (RFC 9113 6.9).
pub fn window_increment(head: &Head, payload: &[u8]) -> Result<u32, Fault> {
    if payload.len() != 4 {
        return Err(Fault::Connection(
            Reason::FRAME_SIZE_ERROR,
            "WINDOW_UPDATE not 4 bytes",
        ));
    }
    let inc = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_WINDOW;
    match (inc, head.stream) {
        (0, 0) => Err(Fault::Connection(
            Reason::PROTOCOL_ERROR,
            "WINDOW_UPDATE of 0",
        )),
        (0, _) => Err(Fault::Stream(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0")),
        (inc, _) => Ok(inc),
    }
}

/// Writes the header of a frame whose payload the caller appends.
pub fn write_head(kind: u8, flags: u8, stream: u32, len: usize, out: &mut Vec<u8>) {
    Head {
        len: len as u32,
        kind,
        flags,
        stream,
    }
    .write(out);
}

/// Writes SETTINGS with `(id, value)` pairs.
pub fn write_settings(settings: &[(u16, u32)], out: &mut Vec<u8>) {
    write_head(kind::SETTINGS, 0, 0, settings.len() * 6, out);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(kind::SETTINGS, flag::ACK, 0, 0, out);
}

pub fn write_ping_ack(data: &[u8; 8], out: &mut Vec<u8>) {
    write_head(kind::PING, flag::ACK, 0, 8, out);
    out.extend_from_slice(data);
}

pub fn write_window_update(stream: u32, inc: u32, out: &mut Vec<u8>) {
    write_head(kind::WINDOW_UPDATE, 0, stream, 4, out);
    out.extend_from_slice(&inc.to_be_bytes());
}

pub fn write_rst(stream: u32, reason: Reason, out: &mut Vec<u8>) {
    write_head(kind::RST_STREAM, 0, stream, 4, out);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn write_goaway(last: u32, reason: Reason, out: &mut Vec<u8>) {
    write_head(kind::GOAWAY, 0, 0, 8, out);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
}

/// Writes a header block as HEADERS, then CONTINUATION frames if it is longer than
/// `max_frame`. `block` is written by the caller at `out[start..]`, after room for the
/// first frame header left at `start - HEADER_LEN`; frames after the first are
/// inserted in place.
pub fn frame_headers(
    out: &mut Vec<u8>,
    start: usize,
    stream: u32,
    end_stream: bool,
    max_frame: usize,
) {
    let end = if end_stream { flag::END_STREAM } else { 0 };
    let block_len = out.len() - start;
    if block_len <= max_frame {
        let h = header_bytes(block_len, kind::HEADERS, end | flag::END_HEADERS, stream);
        out[start - HEADER_LEN..start].copy_from_slice(&h);
        return;
    }
    // Rare (heads over 16 KiB): split by copying the block out.
    let block = out.split_off(start);
    out.truncate(start - HEADER_LEN);
    let mut chunks = block.chunks(max_frame).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let (k, mut f) = if first {
            (kind::HEADERS, end)
        } else {
            (kind::CONTINUATION, 0)
        };
        if last {
            f |= flag::END_HEADERS;
        }
        out.extend_from_slice(&header_bytes(chunk.len(), k, f, stream));
        out.extend_from_slice(chunk);
        first = false;
    }
}

fn header_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    let s = stream.to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip() {
        let h = Head {
            len: 0x01_02_03,
            kind: kind::HEADERS,
            flags: 0x25,
            stream: 7,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [1, 2, 3, 1, 0x25, 0, 0, 0, 7]);
        assert_eq!(Head::parse(out[..].try_into().unwrap()), h);
        // The reserved bit is dropped.
        let r = Head::parse(&[0, 0, 0, 0, 0, 0x80, 0, 0, 1]);
        assert_eq!(r.stream, 1);
    }

    #[test]
    fn padding_is_removed_and_checked() {
        let h = Head {
            len: 0,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(unpad(&h, &[2, b'a', b'b', 0, 0]), Ok(&b"ab"[..]));
        assert!(matches!(
            unpad(&h, &[3, b'a', 0]),
            Err(Fault::Connection(Reason::PROTOCOL_ERROR, _))
        ));
        assert!(matches!(
            unpad(&h, &[]),
            Err(Fault::Connection(Reason::FRAME_SIZE_ERROR, _))
        ));
        let plain = Head { flags: 0, ..h };
        assert_eq!(unpad(&plain, b"xy"), Ok(&b"xy"[..]));
    }

    #[test]
    fn headers_priority_is_skipped() {
        let h = Head {
            len: 0,
            kind: kind::HEADERS,
            flags: flag::PRIORITY,
            stream: 3,
        };
        assert_eq!(
            headers_fragment(&h, &[0, 0, 0, 1, 16, 0x82]),
            Ok((&[0x82][..], None))
        );
        assert!(matches!(
            headers_fragment(&h, &[0, 0, 0, 3, 16, 0x82]),
            Ok((&[0x82], Some(Fault::Stream(..))))
        ));
        assert!(matches!(
            headers_fragment(&h, &[0, 0]),
            Err(Fault::Connection(..))
        ));
    }

    #[test]
    fn settings_are_checked() {
        let mut s = PeerSettings::default();
        let mut p = Vec::new();
        for (id, v) in [
            (setting::INITIAL_WINDOW_SIZE, 1000),
            (setting::MAX_FRAME_SIZE, 32768),
            (0xff, 1),
        ] {
            p.extend_from_slice(&u16::to_be_bytes(id));
            p.extend_from_slice(&u32::to_be_bytes(v));
        }
        read_settings(&p, &mut s).unwrap();
        assert_eq!((s.initial_window, s.max_frame), (1000, 32768));
        let bad = |id: u16, v: u32| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&v.to_be_bytes());
            read_settings(&p, &mut PeerSettings::default()).unwrap_err()
        };
        assert!(matches!(
            bad(setting::ENABLE_PUSH, 2),
            Fault::Connection(Reason::PROTOCOL_ERROR, _)
        ));
        assert!(matches!(
            bad(setting::INITIAL_WINDOW_SIZE, 1 << 31),
            Fault::Connection(Reason::FLOW_CONTROL_ERROR, _)
        ));
        assert!(matches!(
            bad(setting::MAX_FRAME_SIZE, 100),
            Fault::Connection(Reason::PROTOCOL_ERROR, _)
        ));
        assert!(matches!(
            read_settings(&[0; 5], &mut s),
            Err(Fault::Connection(Reason::FRAME_SIZE_ERROR, _))
        ));
    }

    #[test]
    fn window_updates_are_checked() {
        let conn = Head {
            len: 4,
            kind: kind::WINDOW_UPDATE,
            flags: 0,
            stream: 0,
        };
        let stream = Head { stream: 1, ..conn };
        assert_eq!(window_increment(&conn, &[0, 0, 1, 0]), Ok(256));
        assert!(matches!(
            window_increment(&conn, &[0; 4]),
            Err(Fault::Connection(..))
        ));
        assert!(matches!(
            window_increment(&stream, &[0; 4]),
            Err(Fault::Stream(..))
        ));
        assert!(matches!(
            window_increment(&stream, &[0; 3]),
            Err(Fault::Connection(..))
        ));
    }

    #[test]
    fn long_heads_take_continuations() {
        let mut out = vec![0u8; HEADER_LEN];
        out.extend(std::iter::repeat_n(7u8, 25));
        frame_headers(&mut out, HEADER_LEN, 5, true, 10);
        let first = Head::parse(out[..9].try_into().unwrap());
        assert_eq!(
            (first.len, first.kind, first.flags),
            (10, kind::HEADERS, flag::END_STREAM)
        );
        let second = Head::parse(out[19..28].try_into().unwrap());
        assert_eq!(
            (second.len, second.kind, second.flags),
            (10, kind::CONTINUATION, 0)
        );
        let third = Head::parse(out[38..47].try_into().unwrap());
        assert_eq!(
            (third.len, third.kind, third.flags),
            (5, kind::CONTINUATION, flag::END_HEADERS)
        );
        assert_eq!(out.len(), 3 * HEADER_LEN + 25);
        let mut short = vec![0u8; HEADER_LEN];
        short.push(0x88);
        frame_headers(&mut short, HEADER_LEN, 1, false, 16384);
        assert_eq!(short, [0, 0, 1, 1, flag::END_HEADERS, 0, 0, 0, 1, 0x88]);
    }
}
