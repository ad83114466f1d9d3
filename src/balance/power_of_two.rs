//! Power of two random choices (P2C).
//!
//! Two distinct backends are drawn at random and the one with fewer in-flight requests
//! per unit of weight wins (`in_flight_a * weight_b` against `in_flight_b * weight_a`, so
//! no division); on a tie the first draw wins, which is itself random. Sampling two
//! instead of scanning all keeps the pick O(1) and avoids the herd effect of every worker
//! sending to the same least-loaded backend, while still steering away from busy ones.
//!
//! If only one of the two is available it wins; if neither is, the pick falls back to a
//! scan of all backends for the least loaded available one (from a random start, so ties
//! are shared). With a single backend, that backend is returned if it is available.
//!
//! What it does not do: look at response times (see `least_response_time`), guarantee
//! exact weight ratios when the backends are idle (with nothing in flight every backend
//! ties, and the draw is uniform), or keep a client on one backend.

use std::sync::Arc;

use super::{Backend, Selector};

/// Power-of-two-choices selector; it keeps no state.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl PowerOfTwo {
    /// A new selector.
    pub fn new() -> Self {
        PowerOfTwo
    }
}

/// Whether `a` is strictly less loaded than `b`, per unit of weight.
#[inline]
fn less_loaded(a: &Backend, b: &Backend) -> bool {
    u64::from(a.in_flight()) * u64::from(b.effective_weight())
        < u64::from(b.in_flight()) * u64::from(a.effective_weight())
}

impl Selector for PowerOfTwo {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        let n = backends.len();
        match n {
            0 => return None,
            1 => return backends[0].is_available().then_some(0),
            _ => {}
        }
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        match (backends[a].is_available(), backends[b].is_available()) {
            (true, true) => Some(if less_loaded(&backends[b], &backends[a]) {
                b
            } else {
                a
            }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => least_loaded_available(backends, fastrand::usize(..n)),
        }
    }
}

/// Scans every backend from `start` (wrapping) for the least loaded available one.
fn least_loaded_available(backends: &[Arc<Backend>], start: usize) -> Option<usize> {
    let n = backends.len();
    let mut best: Option<usize> = None;
    for step in 0..n {
        let i = (start + step) % n;
        let b = &backends[i];
        if !b.is_available() {
            continue;
        }
        match best {
            Some(j) if !less_loaded(b, &backends[j]) => {}
            _ => best = Some(i),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{backends, counts};

    #[test]
    fn busy_backend_is_avoided() {
        fastrand::seed(11);
        let bs = backends(&[1, 1]);
        let _busy: Vec<_> = (0..3).map(|_| bs[0].begin()).collect();
        let sel = PowerOfTwo::new();
        // With two backends both are always drawn, so the idle one always wins.
        assert!((0..1000).all(|k| sel.pick(&bs, k) == Some(1)));
    }

    #[test]
    fn least_loaded_of_two_wins_but_every_backend_is_used() {
        fastrand::seed(12);
        let bs = backends(&[1, 1, 1, 1]);
        let _busy: Vec<_> = (0..5).map(|_| bs[3].begin()).collect();
        let sel = PowerOfTwo::new();
        let c = counts(&sel, &bs, 30_000);
        // Backend 3 loses every draw it is in; the others share the picks evenly.
        assert_eq!(c[3], 0);
        assert!(
            c[..3].iter().all(|&x| (9_000..11_000).contains(&x)),
            "{c:?}"
        );
    }

    #[test]
    fn load_is_compared_per_unit_of_weight() {
        fastrand::seed(13);
        let bs = backends(&[4, 1]);
        // 3 in flight on weight 4 (0.75 each) beats 1 in flight on weight 1.
        let _a: Vec<_> = (0..3).map(|_| bs[0].begin()).collect();
        let _b = bs[1].begin();
        let sel = PowerOfTwo::new();
        assert!((0..100).all(|k| sel.pick(&bs, k) == Some(0)));
    }

    #[test]
    fn single_backend_and_unavailable_ones() {
        let one = backends(&[1]);
        let sel = PowerOfTwo::new();
        assert_eq!(sel.pick(&one, 0), Some(0));
        one[0].set_available(false);
        assert_eq!(sel.pick(&one, 0), None);

        let bs = backends(&[1, 1, 1, 1, 1]);
        for i in [0, 1, 3, 4] {
            bs[i].set_available(false);
        }
        // Most draws hit two unavailable backends and go through the scan.
        assert!((0..1000).all(|k| sel.pick(&bs, k) == Some(2)));
        bs[2].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        assert_eq!(sel.pick(&[], 0), None);
    }
}
