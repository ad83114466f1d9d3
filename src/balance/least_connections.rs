//! Least connections: the available backend with the fewest in-flight requests relative
//! to its weight, as NGINX's `least_conn`.
//!
//! Loads are compared by cross multiplication (`in_flight_a * weight_b` against
//! `in_flight_b * weight_a`), so a backend of weight 2 with 2 requests in flight ties with
//! a backend of weight 1 with 1. Each pick scans every backend once to find the lowest
//! load and count the backends tied at it; on a tie, a second pass takes the next tied
//! backend in turn (a shared counter rotates through them), so equally loaded backends
//! share the traffic evenly instead of the first one taking it all.
//!
//! What it does not do: look at response times (see `least_response_time`), or sample
//! (see `power_of_two`, O(1) instead of O(n)). Weights only matter once requests are in
//! flight: when every backend is idle they all tie and take turns, as in NGINX.

use std::sync::Arc;

use super::turns::Turns;
use super::{Backend, Selector};

/// Least-connections selector.
#[derive(Debug, Default)]
pub struct LeastConnections {
    /// Rotates through tied backends.
    turns: Turns,
}

impl LeastConnections {
    /// A new selector.
    pub fn new() -> Self {
        LeastConnections {
            turns: Turns::default(),
        }
    }
}

impl Selector for LeastConnections {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        // (index, in_flight, weight) of the first least loaded backend, and the number of
        // available backends tied with it.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut ties = 0usize;
        for (i, b) in backends.iter().enumerate() {
            if !b.is_available() {
                continue;
            }
            let (load, weight) = (u64::from(b.in_flight()), u64::from(b.effective_weight()));
            match best {
                Some((_, best_load, best_weight)) => {
                    let (this, other) = (load * best_weight, best_load * weight);
                    if this < other {
                        best = Some((i, load, weight));
                        ties = 1;
                    } else if this == other {
                        ties += 1;
                    }
                }
                None => {
                    best = Some((i, load, weight));
                    ties = 1;
                }
            }
        }
        let (first, best_load, best_weight) = best?;
        if ties == 1 {
            return Some(first);
        }
        Some(self.turns.pick(backends, first, ties, |b| {
            u64::from(b.in_flight()) * best_weight == best_load * u64::from(b.effective_weight())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{backends, counts};

    #[test]
    fn busy_backend_is_avoided() {
        let bs = backends(&[1, 1, 1]);
        let _busy: Vec<_> = (0..4).map(|_| bs[1].begin()).collect();
        let sel = LeastConnections::new();
        let c = counts(&sel, &bs, 300);
        assert_eq!(c, [150, 0, 150]);
    }

    #[test]
    fn fewest_in_flight_wins() {
        let bs = backends(&[1, 1, 1]);
        let _a: Vec<_> = (0..3).map(|_| bs[0].begin()).collect();
        let _b: Vec<_> = (0..1).map(|_| bs[1].begin()).collect();
        let _c: Vec<_> = (0..2).map(|_| bs[2].begin()).collect();
        let sel = LeastConnections::new();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
    }

    #[test]
    fn load_is_relative_to_weight() {
        // Weight 2 with 2 in flight ties with weight 1 with 1 in flight: both are used.
        let bs = backends(&[2, 1]);
        let _a: Vec<_> = (0..2).map(|_| bs[0].begin()).collect();
        let _b = bs[1].begin();
        let sel = LeastConnections::new();
        assert_eq!(counts(&sel, &bs, 100), [50, 50]);

        // One more on the weight-2 backend (1.5 per weight) still beats 2 on weight 1.
        let _a2 = bs[0].begin();
        let _b2 = bs[1].begin();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
    }

    #[test]
    fn load_follows_the_guards() {
        // Holding the guard of each pick spreads requests evenly by weight.
        let bs = backends(&[3, 1]);
        let sel = LeastConnections::new();
        let mut guards = Vec::new();
        for k in 0..40 {
            let i = sel.pick(&bs, k).unwrap();
            guards.push(bs[i].begin());
        }
        assert_eq!((bs[0].in_flight(), bs[1].in_flight()), (30, 10));
        drop(guards);
        assert_eq!(bs[0].in_flight() + bs[1].in_flight(), 0);
    }

    #[test]
    fn unavailable_backend_is_skipped() {
        let bs = backends(&[1, 1, 1]);
        let _busy: Vec<_> = (0..4).map(|_| bs[0].begin()).collect();
        bs[1].set_available(false);
        let sel = LeastConnections::new();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(2)));
        bs[2].set_available(false);
        // The busy backend is still better than nothing.
        assert_eq!(sel.pick(&bs, 0), Some(0));
        bs[0].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        assert_eq!(sel.pick(&[], 0), None);
    }
}
