//! Numbers and IPv4 addresses as text without the formatting machinery, for the hot
//! paths that write them per request (forwarding headers, access log lines): digits
//! into a small stack buffer, which the caller appends wherever it writes.

use std::net::Ipv4Addr;

/// Up to 20 decimal digits (a `u64`) or a dotted IPv4 address, as ASCII text.
#[derive(Debug, Clone, Copy)]
pub struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    /// The decimal digits of `n`.
    #[inline]
    pub fn decimal(mut n: u64) -> Digits {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Digits { buf, start }
    }

    /// `a.b.c.d`.
    #[inline]
    pub fn ipv4(ip: Ipv4Addr) -> Digits {
        let mut buf = [0u8; 20];
        let mut len = 0;
        for (k, octet) in ip.octets().into_iter().enumerate() {
            if k > 0 {
                buf[len] = b'.';
                len += 1;
            }
            let d = Digits::decimal(u64::from(octet));
            let digits = d.as_bytes();
            buf[len..len + digits.len()].copy_from_slice(digits);
            len += digits.len();
        }
        // Right-aligned like `decimal`'s, so that `as_bytes` is one slice.
        buf.copy_within(..len, 20 - len);
        Digits {
            buf,
            start: 20 - len,
        }
    }

    /// The text, as bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and dots were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses() {
        for n in [0, 7, 10, 255, 65_535, u64::MAX] {
            assert_eq!(Digits::decimal(n).as_str(), n.to_string());
        }
        for ip in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.3.40"] {
            let parsed: Ipv4Addr = ip.parse().unwrap();
            assert_eq!(Digits::ipv4(parsed).as_str(), ip);
        }
    }
}
