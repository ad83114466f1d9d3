//! The Huffman code of HPACK (RFC 7541, Appendix B): decoding header strings a client
//! compressed, and encoding for tests and for clients that want it.
//!
//! The code is canonical (codes of one length are consecutive, in symbol order, and each
//! length's first code follows the last code of the length before), so the table is only
//! the code length of each symbol; the codes themselves are computed from it at compile
//! time. Decoding keeps up to 64 bits in hand and, for each symbol, compares the next 32
//! bits with the (left-aligned) end of each length's codes, shortest first: the common
//! characters of header values have codes of 5 to 8 bits, found in one to four steps.

/// The code length, in bits, of each symbol: the 256 byte values, then EOS.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const EOS: usize = 256;
const MAX_LEN: usize = 30;

/// Each symbol's code (right-aligned), assigned canonically from [`LENGTHS`].
const CODES: [u32; 257] = codes();

/// Per code length: the first code, one past the last code left-aligned in 32 bits, and
/// where that length's symbols start in [`BY_CODE`].
struct Lengths {
    first: [u32; MAX_LEN + 1],
    end: [u64; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
}

/// The symbols in code order (by length, then symbol).
const BY_CODE: [u16; 257] = by_code();
const TABLE: Lengths = lengths();

const fn codes() -> [u32; 257] {
    let mut codes = [0u32; 257];
    let mut code = 0u32;
    let mut len = 1;
    while len <= MAX_LEN {
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                codes[sym] = code;
                code += 1;
            }
            sym += 1;
        }
        code <<= 1;
        len += 1;
    }
    codes
}

const fn by_code() -> [u16; 257] {
    let mut out = [0u16; 257];
    let mut n = 0;
    let mut len = 1;
    while len <= MAX_LEN {
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                out[n] = sym as u16;
                n += 1;
            }
            sym += 1;
        }
        len += 1;
    }
    out
}

const fn lengths() -> Lengths {
    let mut t = Lengths {
        first: [0; MAX_LEN + 1],
        end: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
    };
    let mut n = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        let mut count = 0u32;
        let mut first = u32::MAX;
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                if first == u32::MAX {
                    first = CODES[sym];
                }
                count += 1;
            }
            sym += 1;
        }
        t.offset[len] = n;
        if count > 0 {
            t.first[len] = first;
            t.end[len] = ((first + count) as u64) << (32 - len);
        }
        n += count as u16;
        len += 1;
    }
    t
}

/// A Huffman string that is not a valid encoding: an EOS symbol, padding longer than 7
/// bits or not all ones (RFC 7541 5.2). A COMPRESSION_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHuffman;

/// Decodes `src`, appending the bytes to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), BadHuffman> {
    out.reserve(src.len() + src.len() / 2);
    let mut bits: u64 = 0; // the next `have` bits, left-aligned
    let mut have: u32 = 0;
    let mut input = src.iter();
    loop {
        while have <= 56 {
            match input.next() {
                Some(&b) => {
                    bits |= (b as u64) << (56 - have);
                    have += 8;
                }
                None => break,
            }
        }
        if have == 0 {
            return Ok(());
        }
        let peek = bits >> 32; // the next 32 bits, zero-filled past the end
        let mut len = 5;
        while len <= MAX_LEN && peek >= TABLE.end[len] {
            len += 1;
        }
        if len > MAX_LEN || len as u32 > have {
            // What is left is shorter than any code it could start: padding, which must
            // be under 8 bits and all ones (the start of EOS).
            let padding = have < 8 && bits >> (64 - have) == (1u64 << have) - 1;
            return if padding { Ok(()) } else { Err(BadHuffman) };
        }
        let code = (peek >> (32 - len)) as u32;
        let sym = BY_CODE[(TABLE.offset[len] as u32 + code - TABLE.first[len]) as usize] as usize;
        if sym == EOS {
            return Err(BadHuffman);
        }
        out.push(sym as u8);
        bits <<= len;
        have -= len as u32;
    }
}

/// The length of `src` once encoded.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| LENGTHS[b as usize] as usize).sum();
    bits.div_ceil(8)
}

/// Encodes `src`, appending the bytes to `out` (padded with ones).
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    let mut bits: u64 = 0;
    let mut have: u32 = 0;
    for &b in src {
        let len = LENGTHS[b as usize] as u32;
        bits = (bits << len) | CODES[b as usize] as u64;
        have += len;
        while have >= 8 {
            have -= 8;
            out.push((bits >> have) as u8);
        }
    }
    if have > 0 {
        out.push(((bits << (8 - have)) | ((1 << (8 - have)) - 1)) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn codes_are_the_rfc_ones() {
        // A few codes of RFC 7541 Appendix B.
        assert_eq!((CODES[b'0' as usize], LENGTHS[b'0' as usize]), (0x0, 5));
        assert_eq!((CODES[b'a' as usize], LENGTHS[b'a' as usize]), (0x3, 5));
        assert_eq!((CODES[b' ' as usize], LENGTHS[b' ' as usize]), (0x14, 6));
        assert_eq!((CODES[b'~' as usize], LENGTHS[b'~' as usize]), (0x1ffd, 13));
        assert_eq!((CODES[0], LENGTHS[0]), (0x1ff8, 13));
        assert_eq!((CODES[255], LENGTHS[255]), (0x3ffffee, 26));
        assert_eq!((CODES[EOS], LENGTHS[EOS]), (0x3fffffff, 30));
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1 to C.4.3 and C.6.1.
        for (encoded, plain) in [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
            ("6402", "302"),
            ("aec3771a4b", "private"),
            (
                "d07abe941054d444a8200595040b8166e082a62d1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29ad171863c78f0b97c8e9ae82ae43d3",
                "https://www.example.com",
            ),
        ] {
            let mut out = Vec::new();
            decode(&hex(encoded), &mut out).unwrap();
            assert_eq!(out, plain.as_bytes());
            let mut again = Vec::new();
            encode(plain.as_bytes(), &mut again);
            assert_eq!(again, hex(encoded), "{plain}");
            assert_eq!(encoded_len(plain.as_bytes()), again.len());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        let mut dec = Vec::new();
        decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, all);
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        // 'a' (00011) then 3 bits of zero padding.
        assert_eq!(decode(&[0b0001_1000], &mut out), Err(BadHuffman));
        // A whole byte of ones as padding (8 bits: too long).
        assert_eq!(decode(&[0b0001_1111, 0xff], &mut out), Err(BadHuffman));
        // EOS itself (30 ones), padded.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(BadHuffman));
        // Correct: 'a' then 111.
        out.clear();
        assert_eq!(decode(&[0b0001_1111], &mut out), Ok(()));
        assert_eq!(out, b"a");
        out.clear();
        assert_eq!(decode(&[], &mut out), Ok(()));
        assert!(out.is_empty());
    }
}
