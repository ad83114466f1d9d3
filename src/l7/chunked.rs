//! A streaming, strict decoder for `Transfer-Encoding: chunked` bodies.
//!
//! It validates the framing byte by byte (hex sizes without overflow, CRLF after every
//! size line and chunk, a bounded trailer section) and writes the data either re-encoded
//! as clean chunks (extensions and trailers dropped) or as plain bytes for an HTTP/1.0
//! peer. It stops at the end of the body, so bytes of a pipelined next message are left
//! to the caller.

use thiserror::Error;

/// Why a chunked body was rejected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A size line that is not a hexadecimal number, or one too large.
    #[error("invalid chunk size")]
    BadSize,
    /// A missing CRLF after a size line or after chunk data.
    #[error("invalid chunk framing")]
    BadFraming,
    /// A trailer section larger than the limit.
    #[error("chunked trailer section too large")]
    TrailerTooLarge,
}

const MAX_SIZE_DIGITS: u32 = 15;
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a size line.
    Size { digits: u32 },
    /// After the size: skipping a chunk extension until CR.
    Extension,
    /// Expecting LF after the CR that ends a size line.
    SizeLf,
    /// Copying chunk data.
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Inside a trailer line.
    TrailerLine,
    /// Expecting LF ending a trailer line; `last` if that line was empty.
    TrailerLf { last: bool },
    /// The whole body has been read.
    Done,
}

/// Incremental chunked-body decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    remaining: u64,
    line: usize,
    trailer: usize,
    reencode: bool,
    /// The body's length so far: the sum of the chunk sizes announced.
    announced: u64,
}

impl ChunkedDecoder {
    /// A decoder for a new body; `reencode` writes clean chunks, else the plain data.
    pub fn new(reencode: bool) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            line: 0,
            trailer: 0,
            reencode,
            announced: 0,
        }
    }

    /// The body's length so far: every chunk size announced, counted as soon as its
    /// size line is read (before its data is passed on).
    pub fn announced(&self) -> u64 {
        self.announced
    }

    /// Whether the terminating chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as belongs to the body, appending the output to `out`.
    /// Returns how many bytes of `input` were consumed (less than its length only when
    /// the body ended).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    if let Some(v) = hex_value(b) {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(ChunkError::BadSize);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkError::BadSize);
                    } else if b == b';' {
                        self.state = State::Extension;
                        self.line = 0;
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else {
                        return Err(ChunkError::BadSize);
                    }
                    i += 1;
                }
                State::Extension => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkError::BadFraming);
                    } else {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err(ChunkError::BadFraming);
                        }
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    i += 1;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.announced = self.announced.saturating_add(self.size);
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let take = (input.len() - i).min(self.remaining as usize);
                    let data = &input[i..i + take];
                    if self.reencode {
                        write_hex(out, take as u64);
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(data);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(data);
                    }
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.size = 0;
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::TrailerLf { last: true }
                    } else if b == b'\n' {
                        return Err(ChunkError::BadFraming);
                    } else {
                        State::TrailerLine
                    };
                    self.count_trailer()?;
                    i += 1;
                }
                State::TrailerLine => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { last: false };
                    } else if b == b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    self.count_trailer()?;
                    i += 1;
                }
                State::TrailerLf { last } => {
                    if b != b'\n' {
                        return Err(ChunkError::BadFraming);
                    }
                    i += 1;
                    if last {
                        self.state = State::Done;
                        if self.reencode {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                        return Ok(i);
                    }
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer += 1;
        if self.trailer > 16 * 1024 {
            return Err(ChunkError::TrailerTooLarge);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `n` in lower-case hexadecimal (a chunk size).
pub fn write_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], reencode: bool) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(reencode);
        let mut out = Vec::new();
        let n = d.feed(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_plain_and_reencoded() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (plain, used, done) = decode_all(body, false).unwrap();
        assert_eq!(plain, b"hello world");
        assert!(done);
        assert_eq!(&body[used..], b"NEXT");
        let (chunks, _, _) = decode_all(body, true).unwrap();
        assert_eq!(chunks, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new(false);
        let mut out = Vec::new();
        for b in body.chunks(1) {
            assert_eq!(d.feed(b, &mut out).unwrap(), 1);
        }
        assert!(d.is_done());
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn rejects_bad_sizes_and_framing() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"ffffffffffffffffff\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5 \r\nhello\r\n",
            b"3\r\nabc\r\n0\r\n\n",
        ] {
            assert!(
                decode_all(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn incomplete_is_not_done() {
        let (_, used, done) = decode_all(b"5\r\nhel", false).unwrap();
        assert_eq!(used, 6);
        assert!(!done);
    }
}
