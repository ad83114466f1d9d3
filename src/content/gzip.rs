//! gzip (RFC 1952) over a raw deflate stream whose state is kept for the next body: a
//! deflate state is about 300 KiB that zlib-rs zeroes when it is made, which for a 1 KiB
//! response costs as much as compressing it. Each worker thread keeps a few finished
//! states ([`POOLED`]), reset and ready, so a response takes one instead of making one.

use std::cell::RefCell;
use std::io;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Deflate states kept per thread (each about 300 KiB).
const POOLED: usize = 4;

thread_local! {
    static POOL: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// The 10-byte gzip header: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A gzip coder writing into `out`.
pub struct Gzip {
    deflate: Option<Compress>,
    level: u32,
    crc: Crc,
    /// The coded bytes not taken yet.
    pub out: Vec<u8>,
}

impl Gzip {
    /// A coder at `level` (1-9), its deflate state from the thread's pool if one fits.
    pub fn new(level: u32) -> Gzip {
        let pooled = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let at = p.iter().position(|(l, _)| *l == level)?;
            Some(p.swap_remove(at).1)
        });
        let deflate = pooled.unwrap_or_else(|| Compress::new(Compression::new(level), false));
        Gzip {
            deflate: Some(deflate),
            level,
            crc: Crc::new(),
            out: HEADER.to_vec(),
        }
    }

    /// Codes `input`.
    pub fn write(&mut self, input: &[u8]) -> io::Result<()> {
        self.crc.update(input);
        self.run(input, FlushCompress::None)
    }

    /// Pushes out everything given so far (a sync flush).
    pub fn flush(&mut self) -> io::Result<()> {
        self.run(&[], FlushCompress::Sync)
    }

    /// Ends the stream: the last block and the trailer (CRC-32 and length).
    pub fn finish(&mut self) -> io::Result<()> {
        self.run(&[], FlushCompress::Finish)?;
        self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
        self.out.extend_from_slice(&self.crc.amount().to_le_bytes());
        // Done with the state: back to the pool for the next body.
        if let Some(mut deflate) = self.deflate.take() {
            deflate.reset();
            let level = self.level;
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOLED {
                    p.push((level, deflate));
                }
            });
        }
        Ok(())
    }

    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let Some(deflate) = self.deflate.as_mut() else {
            return Err(io::Error::other("gzip stream already finished"));
        };
        loop {
            self.out.reserve(input.len() / 2 + 4096);
            let before = deflate.total_in();
            let status = deflate
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(deflate.total_in() - before) as usize..];
            let room_left = self.out.len() < self.out.capacity();
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                FlushCompress::None => input.is_empty(),
                _ => input.is_empty() && room_left,
            };
            if done {
                return Ok(());
            }
        }
    }
}
