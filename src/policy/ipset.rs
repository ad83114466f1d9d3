//! Sets of IP addresses written as CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, or a
//! single address), kept as sorted, merged ranges so that a lookup is one binary
//! search however many blocks were listed (tens of thousands for a deny list). IPv4
//! clients seen through an IPv6 socket (`::ffff:a.b.c.d`) match the IPv4 blocks.

use std::net::IpAddr;

/// A set of addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// Parses one block: `ADDRESS` or `ADDRESS/BITS`.
pub fn parse_block(text: &str) -> Result<(IpAddr, u8), String> {
    let text = text.trim();
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
            format!("`/{b}` is not a prefix length for this address (0 to {max})")
        })?,
    };
    Ok((ip, bits))
}

impl IpSet {
    /// The set of `blocks` (as [`parse_block`] gives them).
    pub fn new(blocks: &[(IpAddr, u8)]) -> IpSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(ip, bits) in blocks {
            match ip {
                IpAddr::V4(a) => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    let lo = u32::from(a) & mask;
                    v4.push((lo, lo | !mask));
                }
                IpAddr::V6(a) => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u128::MAX << (128 - bits)
                    };
                    let lo = u128::from(a) & mask;
                    v6.push((lo, lo | !mask));
                }
            }
        }
        IpSet {
            v4: merge(v4, |hi, lo| lo <= hi.saturating_add(1)),
            v6: merge(v6, |hi, lo| lo <= hi.saturating_add(1)),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in the set.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u32::from(v4)),
                None => within(&self.v6, u128::from(a)),
            },
        }
    }
}

/// Sorts ranges and merges those that overlap or touch (`touches(hi, lo)`: a range
/// ending at `hi` and one starting at `lo` make one).
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, touches: impl Fn(T, T) -> bool) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if touches(last.1, lo) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

/// Whether `x` falls in one of the sorted, disjoint `ranges`.
#[inline]
fn within<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.1 < x);
    ranges.get(i).is_some_and(|r| r.0 <= x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(blocks: &[&str]) -> IpSet {
        let parsed: Vec<_> = blocks.iter().map(|b| parse_block(b).unwrap()).collect();
        IpSet::new(&parsed)
    }

    #[test]
    fn blocks_of_both_families() {
        let s = set(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "10.1.0.0/16"]);
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.168.1.7",
            "2001:db8::1",
            "::ffff:10.2.3.4",
        ] {
            assert!(s.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "11.0.0.0",
            "9.255.255.255",
            "192.168.1.8",
            "2001:db9::",
            "::1",
        ] {
            assert!(!s.contains(no.parse().unwrap()), "{no}");
        }
        // 10.1/16 is inside 10/8: merged into one range.
        assert_eq!(s.v4.len(), 2);
        assert!(set(&["0.0.0.0/0"]).contains("203.0.113.9".parse().unwrap()));
        assert!(set(&[]).is_empty());
    }

    #[test]
    fn adjacent_blocks_merge_and_bad_ones_are_refused() {
        let s = set(&["10.0.0.0/25", "10.0.0.128/25", "255.255.255.255"]);
        assert_eq!(s.v4, vec![(0x0a00_0000, 0x0a00_00ff), (u32::MAX, u32::MAX)]);
        assert!(parse_block("10.0.0.0/33").is_err());
        assert!(parse_block("example.com").is_err());
        assert!(parse_block("::/129").is_err());
    }

    #[test]
    fn ten_thousand_blocks() {
        let blocks: Vec<_> = (0..10_000u32)
            .map(|i| (IpAddr::V4((0x0b00_0000 + i * 256).into()), 24))
            .collect();
        let s = IpSet::new(&blocks);
        assert!(s.contains("11.0.39.1".parse().unwrap()));
        assert!(!s.contains("12.0.0.1".parse().unwrap()));
    }
}
