//! A response body streamed through a content coding: bytes go in as they arrive from
//! the backend and what the coder has produced so far is taken out after each step, so a
//! body of any size passes with the coder's own state only (never the whole body).
//!
//! [`Encoder::flush`] pushes out everything given so far (a sync flush), for a backend
//! that pauses: a stream of events reaches the client as it is written, at a small cost
//! in size. The engines call it only when the backend has nothing more to read yet.
//!
//! Memory per response is bounded by the coder's window: gzip's 32 KiB (with its tables,
//! about 270 KiB at level 6), Brotli's and Zstandard's at most 1 MiB, and smaller when
//! the body's length is known (the window need not exceed the body).

use std::io::Write;

use super::coding::Coding;

/// Largest window: 2^20 bytes (1 MiB) for Brotli and Zstandard.
const MAX_WINDOW_LOG: u32 = 20;

/// A body coder writing into its own output buffer.
pub struct Encoder {
    coder: Coder,
    /// Bytes given since the last flush.
    unflushed: bool,
    /// Bytes in and out, for the metrics.
    bytes_in: u64,
    bytes_out: u64,
}

enum Coder {
    Gzip(super::gzip::Gzip),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// Finished: the last output.
    Done(Vec<u8>),
}

impl Encoder {
    /// A coder for `coding` at `level` (gzip 1-9, br 0-11, zstd 1-19), for a body of
    /// `length` bytes when known.
    pub fn new(coding: Coding, level: i32, length: Option<u64>) -> Encoder {
        // The window needs to be no longer than the body.
        let window = length.map_or(MAX_WINDOW_LOG, |n| {
            (64 - n.max(1).leading_zeros()).clamp(10, MAX_WINDOW_LOG)
        });
        let coder = match coding {
            Coding::Gzip => Coder::Gzip(super::gzip::Gzip::new(level.clamp(1, 9) as u32)),
            Coding::Br => Coder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                level.clamp(0, 11) as u32,
                window.max(16),
            ))),
            Coding::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(Vec::new(), level.clamp(1, 19))
                    .expect("zstd encoder");
                // Errors here only mean the parameter is left at its default.
                let _ = z.window_log(window);
                if let Some(n) = length {
                    let _ = z.set_pledged_src_size(Some(n));
                    let _ = z.include_contentsize(true);
                }
                Coder::Zstd(z)
            }
        };
        Encoder {
            coder,
            unflushed: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Codes `input`; what came out so far is in [`Encoder::output`].
    pub fn write(&mut self, input: &[u8]) -> std::io::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        self.bytes_in += input.len() as u64;
        self.unflushed = true;
        match &mut self.coder {
            Coder::Gzip(w) => w.write(input),
            Coder::Br(w) => w.write_all(input),
            Coder::Zstd(w) => w.write_all(input),
            Coder::Done(_) => Err(std::io::Error::other("body coder already finished")),
        }
    }

    /// Whether bytes were given since the last flush.
    pub fn unflushed(&self) -> bool {
        self.unflushed
    }

    /// Pushes out everything given so far, so that the client can decode it all.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.unflushed = false;
        match &mut self.coder {
            Coder::Gzip(w) => w.flush(),
            Coder::Br(w) => w.flush(),
            Coder::Zstd(w) => w.flush(),
            Coder::Done(_) => Ok(()),
        }
    }

    /// Ends the coded stream (its trailer goes to the output).
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.unflushed = false;
        let coder = std::mem::replace(&mut self.coder, Coder::Done(Vec::new()));
        let rest = match coder {
            Coder::Gzip(mut w) => {
                w.finish()?;
                w.out
            }
            Coder::Br(w) => w.into_inner(),
            Coder::Zstd(w) => w.finish()?,
            Coder::Done(v) => v,
        };
        self.coder = Coder::Done(rest);
        Ok(())
    }

    /// Hands the coded bytes produced since the last call to `f` (not called when there
    /// are none).
    pub fn drain(&mut self, f: impl FnOnce(&[u8])) {
        let output = self.output();
        if output.is_empty() {
            return;
        }
        let n = output.len() as u64;
        f(output);
        output.clear();
        self.bytes_out += n;
    }

    /// Coded bytes handed out so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.coder {
            Coder::Gzip(w) => &mut w.out,
            Coder::Br(w) => w.get_mut(),
            Coder::Zstd(w) => w.get_mut(),
            Coder::Done(v) => v,
        }
    }

    /// Body bytes given so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
        }
        out
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"the quick brown fox "[i % 20] ^ ((i / 997) as u8 & 3))
            .collect()
    }

    #[test]
    fn every_coding_round_trips_in_pieces() {
        for coding in Coding::ALL {
            for n in [0, 1, 100, 70_000, 300_000] {
                let input = body(n);
                for length in [None, Some(n as u64)] {
                    let mut e = Encoder::new(coding, 5, length);
                    let mut coded = Vec::new();
                    for piece in input.chunks(8191) {
                        e.write(piece).unwrap();
                        e.drain(|b| coded.extend_from_slice(b));
                    }
                    e.finish().unwrap();
                    e.drain(|b| coded.extend_from_slice(b));
                    assert_eq!(decode(coding, &coded), input, "{coding:?} {n} {length:?}");
                    if n >= 70_000 {
                        assert!(coded.len() < n / 4, "{coding:?} {n}: {}", coded.len());
                    }
                }
            }
        }
    }

    #[test]
    fn a_flush_makes_everything_given_decodable() {
        for coding in Coding::ALL {
            let mut e = Encoder::new(coding, 5, None);
            e.write(b"data: first event\n\n").unwrap();
            assert!(e.unflushed());
            e.flush().unwrap();
            assert!(!e.unflushed());
            let mut coded = Vec::new();
            e.drain(|b| coded.extend_from_slice(b));
            assert!(!coded.is_empty());
            // A streaming decoder sees the whole event before the end of the stream.
            let mut seen = vec![0u8; 19];
            match coding {
                Coding::Gzip => flate2::read::GzDecoder::new(&coded[..])
                    .read_exact(&mut seen)
                    .unwrap(),
                Coding::Br => brotli::Decompressor::new(&coded[..], 4096)
                    .read_exact(&mut seen)
                    .unwrap(),
                Coding::Zstd => zstd::stream::read::Decoder::new(&coded[..])
                    .unwrap()
                    .read_exact(&mut seen)
                    .unwrap(),
            }
            assert_eq!(&seen, b"data: first event\n\n", "{coding:?}");
        }
    }
}
