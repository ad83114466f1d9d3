//! Request bodies that clients send compressed (`Content-Encoding: gzip`, `br` or
//! `zstd`), decoded for backends that cannot read them, when a route asks
//! (`decompress_requests`). The decoded size is bounded, against compression bombs: a
//! body that would decode past the bound is refused (413) once the bound is reached,
//! without decoding the rest.

use std::io::Read;

use super::coding::Coding;

/// Why a body was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// It decodes to more than the bound (413).
    TooLarge,
    /// It is not valid in its coding (400).
    Invalid,
}

/// `input` decoded from `coding`, at most `max` bytes.
pub fn decode(coding: Coding, input: &[u8], max: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(max as usize));
    let read = match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(input)
            .take(max + 1)
            .read_to_end(&mut out),
        Coding::Br => brotli::Decompressor::new(input, 16 * 1024)
            .take(max + 1)
            .read_to_end(&mut out),
        Coding::Zstd => match zstd::stream::read::Decoder::new(input) {
            Ok(d) => d.take(max + 1).read_to_end(&mut out),
            Err(e) => Err(e),
        },
    };
    match read {
        Ok(_) if out.len() as u64 > max => Err(DecodeError::TooLarge),
        Ok(_) => Ok(out),
        Err(_) => Err(DecodeError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::encoder::Encoder;

    fn encode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(coding, 3, None);
        let mut out = Vec::new();
        e.write(data).unwrap();
        e.finish().unwrap();
        e.drain(|b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn bodies_decode_within_the_bound() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for coding in Coding::ALL {
            let coded = encode(coding, &data);
            assert_eq!(decode(coding, &coded, 1 << 20).unwrap(), data, "{coding:?}");
            assert_eq!(decode(coding, &coded, 1000), Err(DecodeError::TooLarge));
            assert_eq!(
                decode(coding, b"not compressed at all", 1000),
                Err(DecodeError::Invalid)
            );
        }
    }

    #[test]
    fn a_bomb_stops_at_the_bound() {
        // 64 MiB of zeros in about 64 KiB.
        let bomb = encode(Coding::Gzip, &vec![0u8; 64 << 20]);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        assert_eq!(
            decode(Coding::Gzip, &bomb, 1 << 20),
            Err(DecodeError::TooLarge)
        );
    }
}
