//! Smooth weighted round robin, as NGINX's `ngx_http_upstream_round_robin`.
//!
//! Every backend keeps a *current weight*. On each pick, every available backend's
//! current weight grows by its weight, the backend with the largest current weight is
//! chosen (the first one on a tie), and the total weight of the available backends is
//! subtracted from the chosen one's current weight. Over every cycle of `W` picks (`W` the
//! total weight) each backend is picked exactly `weight` times, and the picks are
//! interleaved: weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`.
//!
//! The current weights are mutable state shared by every worker, kept in one
//! [`std::sync::Mutex`] held for a single pass over the backends (no allocation, no
//! waiting inside the lock).
//!
//! What it does not do: look at load or response times, or keep a client on one
//! backend. Unlike NGINX it has no *effective weight* that shrinks after failures:
//! availability is decided elsewhere, and an unavailable backend simply takes no part in
//! the rounds (its current weight is frozen until it comes back, as in NGINX).

use std::sync::{Arc, Mutex};

use super::{Backend, Selector};

/// Smooth weighted round-robin selector.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Current weight of each backend, by index.
    current: Mutex<Box<[i64]>>,
}

impl WeightedRoundRobin {
    /// A new selector for `backends`, every current weight at zero.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        WeightedRoundRobin {
            current: Mutex::new(vec![0; backends.len()].into_boxed_slice()),
        }
    }
}

impl Selector for WeightedRoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        // The state stays consistent even if a holder panicked: every update is one store.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        // (index, current weight) of the best backend so far.
        let mut best: Option<(usize, i64)> = None;
        for (i, (b, cw)) in backends.iter().zip(current.iter_mut()).enumerate() {
            if !b.is_available() {
                continue;
            }
            let w = i64::from(b.effective_weight());
            *cw += w;
            total += w;
            if best.is_none_or(|(_, max)| *cw > max) {
                best = Some((i, *cw));
            }
        }
        let (best, _) = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::backends;

    fn sequence(sel: &WeightedRoundRobin, bs: &[Arc<Backend>], n: usize) -> Vec<usize> {
        (0..n).map(|k| sel.pick(bs, k as u64).unwrap()).collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let bs = backends(&[5, 1, 1]);
        let sel = WeightedRoundRobin::new(&bs);
        assert_eq!(sequence(&sel, &bs, 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn every_window_of_total_weight_has_exact_counts() {
        let bs = backends(&[5, 1, 1]);
        let sel = WeightedRoundRobin::new(&bs);
        let seq = sequence(&sel, &bs, 7 * 100);
        for window in seq.chunks(7) {
            let mut c = [0; 3];
            for &i in window {
                c[i] += 1;
            }
            assert_eq!(c, [5, 1, 1], "window {window:?}");
        }
        // Interleaved: never five identical picks in a row.
        assert!(seq.windows(5).all(|w| w.iter().any(|&i| i != w[0])));
    }

    #[test]
    fn exact_counts_for_other_weights() {
        let weights = [3, 7, 2, 8];
        let bs = backends(&weights);
        let sel = WeightedRoundRobin::new(&bs);
        let seq = sequence(&sel, &bs, 20 * 50);
        for window in seq.chunks(20) {
            let mut c = [0u32; 4];
            for &i in window {
                c[i] += 1;
            }
            assert_eq!(c, weights);
        }
    }

    #[test]
    fn unavailable_backend_is_skipped_and_others_keep_their_ratio() {
        // Down from the start: exact 5:2 cycles over the survivors.
        let bs = backends(&[5, 3, 2]);
        let sel = WeightedRoundRobin::new(&bs);
        bs[1].set_available(false);
        let seq = sequence(&sel, &bs, 7 * 50);
        for window in seq.chunks(7) {
            let mut c = [0; 3];
            for &i in window {
                c[i] += 1;
            }
            assert_eq!(c, [5, 0, 2], "window {window:?}");
        }

        // Down in the middle of a cycle: its frozen current weight shifts the phase, but
        // each survivor stays within one pick of its share in every window.
        let bs = backends(&[5, 3, 2]);
        let sel = WeightedRoundRobin::new(&bs);
        sequence(&sel, &bs, 4);
        bs[1].set_available(false);
        let seq = sequence(&sel, &bs, 7 * 50);
        assert!(!seq.contains(&1));
        for window in seq.chunks(7) {
            let a = window.iter().filter(|&&i| i == 0).count();
            assert!((4..=6).contains(&a), "window {window:?}");
        }
        let a = seq.iter().filter(|&&i| i == 0).count();
        assert!((249..=251).contains(&a), "{a}");

        // Back again: the full ratio returns.
        bs[1].set_available(true);
        let seq = sequence(&sel, &bs, 10 * 50);
        let c: Vec<_> = (0..3)
            .map(|b| seq.iter().filter(|&&i| i == b).count())
            .collect();
        assert!(c[0].abs_diff(250) <= 2 && c[1].abs_diff(150) <= 2 && c[2].abs_diff(100) <= 2);
    }

    #[test]
    fn none_only_when_nothing_is_available() {
        let bs = backends(&[2, 1]);
        let sel = WeightedRoundRobin::new(&bs);
        bs[0].set_available(false);
        assert_eq!(sel.pick(&bs, 0), Some(1));
        bs[1].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        assert_eq!(WeightedRoundRobin::new(&[]).pick(&[], 0), None);
    }
}
