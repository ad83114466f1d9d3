//! Least response time: the available backend with the lowest expected wait, estimated
//! as `(in_flight + 1) * ewma_us`, relative to weight.
//!
//! `ewma_us` is the backend's moving average of the time to the response head
//! ([`Backend::record_latency`]); multiplying by the in-flight count plus one makes a fast
//! backend that is already busy lose against a slightly slower idle one. Scores are
//! divided by weight through cross multiplication (`score_a * weight_b` against
//! `score_b * weight_a`, in `u128` so nothing overflows).
//!
//! A backend with no sample yet (EWMA 0) is preferred to every measured one, so that it
//! gets measured; among several unmeasured backends the one with the fewest in-flight
//! requests per weight wins. As in `least_connections`, tied backends take turns: a second
//! pass, run only on a tie, picks the next of them in rotation.
//!
//! What it does not do: probe backends itself or age the averages. An unmeasured backend
//! receives every pick until its first response is recorded, so a burst arriving just after
//! a backend is added lands on it; and a backend whose average is high keeps it until new
//! samples bring it down, which only happens when it is picked (for instance once the
//! others' in-flight counts make it the lowest score again).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, Selector};

/// Least-response-time selector.
#[derive(Debug, Default)]
pub struct LeastResponseTime {
    /// Rotates through tied backends: the n-th tie goes to tied backend `n % ties`.
    turn: AtomicUsize,
}

impl LeastResponseTime {
    /// A new selector.
    pub fn new() -> Self {
        LeastResponseTime {
            turn: AtomicUsize::new(0),
        }
    }
}

/// What a backend is ranked on: unmeasured before measured, then `cost / weight`.
#[derive(Clone, Copy)]
struct Score {
    measured: bool,
    /// Unmeasured: in-flight count; measured: `(in_flight + 1) * ewma_us`.
    cost: u128,
    weight: u128,
}

impl Score {
    #[inline]
    fn of(b: &Backend) -> Score {
        let ewma = b.ewma_us();
        let in_flight = u128::from(b.in_flight());
        let weight = u128::from(b.weight);
        if ewma == 0 {
            Score {
                measured: false,
                cost: in_flight,
                weight,
            }
        } else {
            Score {
                measured: true,
                cost: (in_flight + 1) * u128::from(ewma),
                weight,
            }
        }
    }

    /// How `self` ranks against `other`: `Less` is better.
    #[inline]
    fn rank(&self, other: &Score) -> std::cmp::Ordering {
        match (self.measured, other.measured) {
            (false, true) => std::cmp::Ordering::Less,
            (true, false) => std::cmp::Ordering::Greater,
            _ => (self.cost * other.weight).cmp(&(other.cost * self.weight)),
        }
    }
}

impl Selector for LeastResponseTime {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        // The first best backend and its score, and the number of backends tied with it.
        let mut best: Option<(usize, Score)> = None;
        let mut ties = 0usize;
        for (i, b) in backends.iter().enumerate() {
            if !b.is_available() {
                continue;
            }
            let score = Score::of(b);
            match best.as_ref().map(|(_, s)| score.rank(s)) {
                Some(std::cmp::Ordering::Greater) => {}
                Some(std::cmp::Ordering::Equal) => ties += 1,
                Some(std::cmp::Ordering::Less) | None => {
                    best = Some((i, score));
                    ties = 1;
                }
            }
        }
        let (first, best_score) = best?;
        if ties == 1 {
            return Some(first);
        }
        let mut turn = self.turn.fetch_add(1, Ordering::Relaxed) % ties;
        let tied = backends[first..].iter().enumerate().filter(|(_, b)| {
            b.is_available() && Score::of(b).rank(&best_score) == std::cmp::Ordering::Equal
        });
        for (offset, _) in tied {
            if turn == 0 {
                return Some(first + offset);
            }
            turn -= 1;
        }
        // The counters moved between the two passes; the first pass's answer is still good.
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::balance::tests::{backends, counts};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn slow_backend_is_avoided() {
        let bs = backends(&[1, 1, 1]);
        bs[0].record_latency(ms(2));
        bs[1].record_latency(ms(500));
        bs[2].record_latency(ms(2));
        let sel = LeastResponseTime::new();
        let c = counts(&sel, &bs, 100);
        assert_eq!(c, [50, 0, 50]);
    }

    #[test]
    fn in_flight_counts_matter() {
        let bs = backends(&[1, 1]);
        bs[0].record_latency(ms(10));
        bs[1].record_latency(ms(15));
        let sel = LeastResponseTime::new();
        // Idle: the faster one wins (10 < 15).
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
        // One in flight on the fast one: 2 x 10 > 1 x 15, so the slower idle one wins.
        let _g = bs[0].begin();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
        // One on each: 2 x 10 < 2 x 15, back to the fast one.
        let _h = bs[1].begin();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
    }

    #[test]
    fn load_follows_speed_when_guards_are_held() {
        // Holding each pick's guard, a backend twice as fast takes about twice the load.
        let bs = backends(&[1, 1]);
        bs[0].record_latency(ms(10));
        bs[1].record_latency(ms(20));
        let sel = LeastResponseTime::new();
        let mut guards = Vec::new();
        for k in 0..60 {
            let i = sel.pick(&bs, k).unwrap();
            guards.push(bs[i].begin());
        }
        assert!(bs[0].in_flight().abs_diff(40) <= 1, "{}", bs[0].in_flight());
    }

    #[test]
    fn unmeasured_backend_is_preferred() {
        let bs = backends(&[1, 1, 1]);
        bs[0].record_latency(ms(1));
        bs[2].record_latency(ms(1));
        let sel = LeastResponseTime::new();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
        // Among unmeasured ones, the least loaded wins.
        let bs = backends(&[1, 1]);
        let _g = bs[0].begin();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
    }

    #[test]
    fn score_is_relative_to_weight() {
        let bs = backends(&[4, 1]);
        bs[0].record_latency(ms(30));
        bs[1].record_latency(ms(10));
        let sel = LeastResponseTime::new();
        // 30 / 4 < 10 / 1.
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let bs = backends(&[1000, 1]);
        bs[0].record_latency(Duration::from_secs(u64::MAX / 1_000_000));
        bs[1].record_latency(Duration::from_secs(u64::MAX / 2_000_000));
        let _g: Vec<_> = (0..100).map(|_| bs[1].begin()).collect();
        let sel = LeastResponseTime::new();
        assert_eq!(sel.pick(&bs, 0), Some(0));
    }

    #[test]
    fn unavailable_backend_is_skipped() {
        let bs = backends(&[1, 1]);
        bs[0].record_latency(ms(1));
        bs[1].record_latency(ms(100));
        bs[0].set_available(false);
        let sel = LeastResponseTime::new();
        assert_eq!(sel.pick(&bs, 0), Some(1));
        bs[1].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        assert_eq!(sel.pick(&[], 0), None);
    }
}
