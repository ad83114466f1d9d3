//! Hash of the request key modulo the total weight, as NGINX's (non-consistent) `hash`.
//!
//! Each backend owns a range of `weight` consecutive slots out of `W` (the total weight);
//! a key goes to the owner of slot `mix(key) % W`. The same key always reaches the same
//! backend while the set of backends and their availability do not change, and keys are
//! spread in proportion to weight.
//!
//! When the owner is unavailable the key is rehashed with `mix(key ^ attempt)` for
//! attempts 1 to 20, as NGINX retries 20 times, and if every candidate was unavailable the
//! backends are scanned linearly from the last one tried. The fallback is deterministic
//! too, so a key whose backend is down still sticks to one replacement.
//!
//! What it does not do: limit how many keys move when the backends change. Adding or
//! removing a backend, or changing a weight, changes `W` and remaps almost every key; use
//! `consistent_hash` when that matters. (Marking a backend unavailable does not change
//! `W`: only the keys it owned move.)

use std::sync::Arc;

use super::hash::mix;
use super::weight_ranges::WeightRanges;
use super::{Backend, Selector};

/// Rehashes tried after the first, before the linear scan (NGINX's limit).
const REHASH_ATTEMPTS: u64 = 20;

/// Modulo-hash selector.
#[derive(Debug)]
pub struct KeyHash {
    /// Each backend's range of slots.
    ranges: WeightRanges,
}

impl KeyHash {
    /// Precomputes the slot ranges of `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        KeyHash {
            ranges: WeightRanges::new(backends),
        }
    }

    /// The backend owning the slot that `hash` falls in (availability ignored).
    #[inline]
    fn owner(&self, hash: u64) -> usize {
        self.ranges.owner(hash % self.ranges.total())
    }
}

impl Selector for KeyHash {
    fn pick(&self, backends: &[Arc<Backend>], key: u64) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let mut last = 0;
        if n == self.ranges.len() {
            for attempt in 0..=REHASH_ATTEMPTS {
                let i = self.owner(mix(key ^ attempt));
                if backends[i].is_available() {
                    return Some(i);
                }
                last = i;
            }
        }
        (1..=n)
            .map(|step| (last + step) % n)
            .find(|&i| backends[i].is_available())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::backends;

    fn owners(sel: &KeyHash, bs: &[Arc<Backend>], keys: u64) -> Vec<usize> {
        (0..keys).map(|k| sel.pick(bs, k).unwrap()).collect()
    }

    #[test]
    fn same_key_same_backend() {
        let bs = backends(&[1, 2, 3]);
        let sel = KeyHash::new(&bs);
        let first = owners(&sel, &bs, 1000);
        assert_eq!(first, owners(&sel, &bs, 1000));
        // A selector built anew (another worker, a restart) agrees.
        assert_eq!(first, owners(&KeyHash::new(&bs), &bs, 1000));
    }

    #[test]
    fn keys_spread_by_weight() {
        let weights = [1u32, 2, 3, 4];
        let bs = backends(&weights);
        let sel = KeyHash::new(&bs);
        let n = 100_000;
        let mut c = [0usize; 4];
        for i in owners(&sel, &bs, n) {
            c[i] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            let expected = n as f64 * f64::from(w) / 10.0;
            assert!((c[i] as f64 - expected).abs() < expected * 0.05, "{c:?}");
        }
    }

    #[test]
    fn only_keys_of_an_unavailable_backend_move() {
        let bs = backends(&[1, 1, 1, 1, 1]);
        let sel = KeyHash::new(&bs);
        let before = owners(&sel, &bs, 10_000);
        bs[2].set_available(false);
        let after = owners(&sel, &bs, 10_000);
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(*a, 2);
            if *b != 2 {
                assert_eq!(a, b);
            }
        }
        // The moved keys are spread over the survivors, not all sent to one neighbour.
        let mut c = [0usize; 5];
        for (b, a) in before.iter().zip(&after) {
            if *b == 2 {
                c[*a] += 1;
            }
        }
        let moved: usize = c.iter().sum();
        assert!(
            c.iter().enumerate().all(|(i, &x)| i == 2 || x > moved / 8),
            "{c:?}"
        );
    }

    #[test]
    fn falls_back_to_a_scan_and_none_only_when_nothing_is_available() {
        let bs = backends(&[1; 64]);
        let sel = KeyHash::new(&bs);
        for (i, b) in bs.iter().enumerate() {
            b.set_available(i == 37);
        }
        // With 1 of 64 up, 21 hashes usually miss it: the scan must find it.
        assert!((0..1000).all(|k| sel.pick(&bs, k) == Some(37)));
        bs[37].set_available(false);
        assert_eq!(sel.pick(&bs, 5), None);
        assert_eq!(KeyHash::new(&[]).pick(&[], 5), None);
    }
}
