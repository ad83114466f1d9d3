//! What a request is hashed on, and the stable hash function used for it.
//!
//! The hash must be the same in every worker thread and across restarts, so that a client
//! keeps landing on the same backend: it is FNV-1a followed by a 64-bit finalizer
//! (splitmix64), not the randomly seeded std hasher.

pub use crate::config::{HashKey, is_token_byte};

/// Stable 64-bit hash of a byte string.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_parts(&[bytes])
}

/// [`hash_bytes`] of the concatenation of `parts`, without building it.
#[inline]
pub fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    mix(h)
}

/// splitmix64 finalizer: spreads the bits of `x` over the whole word.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_form() {
        assert_eq!(HashKey::parse("source_ip"), Some(HashKey::SourceIp));
        assert_eq!(HashKey::parse("uri"), Some(HashKey::Uri));
        assert_eq!(
            HashKey::parse("header:X-User"),
            Some(HashKey::Header("x-user".into()))
        );
        assert_eq!(
            HashKey::parse("cookie:session"),
            Some(HashKey::Cookie("session".into()))
        );
        assert_eq!(HashKey::parse("header:"), None);
        assert_eq!(HashKey::parse("header:a b"), None);
        assert_eq!(HashKey::parse("body:x"), None);
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        assert_eq!(hash_bytes(b"abc"), hash_bytes(b"abc"));
        assert_ne!(hash_bytes(b"abc"), hash_bytes(b"abd"));
    }
}
