//! Random selection in proportion to weight.
//!
//! A backend of weight `w` is picked with probability `w / W`, where `W` is the total
//! weight of the available backends. The cumulative weights are computed once, when the
//! selector is built, so the common case (the drawn backend is available) is one random
//! number and one binary search — or no search at all when every weight is equal.
//! When the drawn backend is unavailable, the pick falls back to a weighted draw among the
//! available ones only (two linear passes over the backends), so the survivors keep their
//! relative shares.
//!
//! What it does not do: look at load or response times (see `power_of_two`), or give a
//! client the same backend twice (see `key_hash` and `consistent_hash`). Being random, it
//! only converges to the weight ratios over many picks.

use std::sync::Arc;

use super::backend::WEIGHT_SCALE;
use super::weight_ranges::WeightRanges;
use super::{Backend, Selector};

/// Weighted random selector.
#[derive(Debug)]
pub struct Random {
    /// Each backend's range of slots.
    ranges: WeightRanges,
    /// Whether every backend has the same weight (then the draw is a plain index).
    uniform: bool,
}

impl Random {
    /// Precomputes the cumulative weights of `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let ranges = WeightRanges::new(backends);
        let uniform = backends.windows(2).all(|w| w[0].weight() == w[1].weight());
        Random { ranges, uniform }
    }

    /// Draws an index in proportion to the precomputed weights (availability ignored).
    #[inline]
    fn draw(&self) -> usize {
        if self.uniform {
            return fastrand::usize(..self.ranges.len());
        }
        self.ranges.owner(fastrand::u64(..self.ranges.total()))
    }
}

impl Selector for Random {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        if backends.len() == self.ranges.len() {
            let i = self.draw();
            let b = &backends[i];
            // A backend in slow start keeps its draw with probability effective/weight.
            if b.is_available() && {
                let (w, full) = (b.effective_weight(), b.weight() * WEIGHT_SCALE);
                w == full || fastrand::u32(..full) < w
            } {
                return Some(i);
            }
        }
        pick_available_by_weight(backends)
    }
}

/// Weighted draw among the available backends only; `None` when none is available.
pub(super) fn pick_available_by_weight(backends: &[Arc<Backend>]) -> Option<usize> {
    let total: u64 = backends
        .iter()
        .filter(|b| b.is_available())
        .map(|b| u64::from(b.effective_weight()))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(..total);
    let mut last = None;
    for (i, b) in backends.iter().enumerate() {
        if !b.is_available() {
            continue;
        }
        let w = u64::from(b.effective_weight());
        if r < w {
            return Some(i);
        }
        r -= w;
        last = Some(i);
    }
    // Reached only if a backend went down between the two passes.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{backends, counts};

    #[test]
    fn picks_in_proportion_to_weight() {
        fastrand::seed(1);
        let bs = backends(&[1, 2, 3, 4]);
        let sel = Random::new(&bs);
        let n = 100_000;
        let c = counts(&sel, &bs, n);
        for (i, &w) in [1u32, 2, 3, 4].iter().enumerate() {
            let expected = n as f64 * f64::from(w) / 10.0;
            let got = c[i] as f64;
            assert!(
                (got - expected).abs() < expected * 0.05,
                "backend {i}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn equal_weights_are_uniform() {
        fastrand::seed(2);
        let bs = backends(&[5; 4]);
        let sel = Random::new(&bs);
        let c = counts(&sel, &bs, 40_000);
        assert!(c.iter().all(|&x| (9_000..11_000).contains(&x)), "{c:?}");
    }

    #[test]
    fn unavailable_backend_is_skipped_and_others_keep_their_ratio() {
        fastrand::seed(3);
        let bs = backends(&[1, 6, 3]);
        let sel = Random::new(&bs);
        bs[1].set_available(false);
        let c = counts(&sel, &bs, 40_000);
        assert_eq!(c[1], 0);
        // 1:3 between the survivors.
        let ratio = c[2] as f64 / c[0] as f64;
        assert!((2.7..3.3).contains(&ratio), "{c:?}");
    }

    #[test]
    fn none_only_when_nothing_is_available() {
        let bs = backends(&[1, 1]);
        let sel = Random::new(&bs);
        bs[0].set_available(false);
        assert_eq!(sel.pick(&bs, 0), Some(1));
        bs[1].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        assert_eq!(Random::new(&[]).pick(&[], 0), None);
    }
}
