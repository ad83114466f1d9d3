//! Least response time: the available backend with the lowest expected wait, estimated
//! as `(in_flight + 1) * ewma_us`, relative to weight.
//!
//! `ewma_us` is the backend's moving average of the time to the response head
//! ([`Backend::record_latency`]); multiplying by the in-flight count plus one makes a fast
//! backend that is already busy lose against a slightly slower idle one. Scores are
//! divided by weight through cross multiplication (`score_a * weight_b` against
//! `score_b * weight_a`, in `u128` so nothing overflows).
//!
//! A backend with fewer than [`WARMUP_SAMPLES`] samples is still being measured: while it
//! has no request in flight it is preferred to every measured one, so that it gets
//! measured (and one cold first request cannot condemn it); while it has one, it is used
//! only if no measured backend is available, so a backend that hangs cannot soak up the
//! traffic before it has a measurement. Failed requests (502, 504) count as samples at
//! least as slow as the connect timeout.
//! Measured backends whose score is within 3/2 of the best one count as tied with it, and
//! tied backends take turns (a second pass picks the next of them in rotation), so
//! backends of about the same speed share the traffic while a clearly slower one is
//! avoided.
//!
//! Averages age: without new samples a backend's average halves every [`HALF_LIFE_US`]
//! (2 s), so a backend that was slow once is tried again later
//! rather than starved for ever; if it is still slow, its fresh samples push it back out.
//!
//! What it does not do: probe backends itself.

use std::sync::Arc;

use super::backend::coarse_now_us;
use super::turns::Turns;
use super::{Backend, Selector};

/// Half-life of an unrefreshed average, in microseconds (the decay of Finagle's and
/// Linkerd's peak-EWMA): after this long without a sample, a backend's average counts for
/// half its value, so a backend that was once slow is tried again.
pub const HALF_LIFE_US: u64 = 2_000_000;

/// `ewma` decayed by `age_us` without a new sample: halved per [`HALF_LIFE_US`], linear in
/// between (integer arithmetic only, as it runs for every backend on every pick).
#[inline]
fn decayed(ewma: u64, age_us: u64) -> u64 {
    if ewma == 0 || age_us < 1000 {
        return ewma;
    }
    let halvings = age_us / HALF_LIFE_US;
    if halvings >= 64 {
        return 1;
    }
    let base = ewma >> halvings;
    let into = age_us % HALF_LIFE_US;
    // From `base` down towards `base / 2` across one half-life.
    let value =
        base - ((u128::from(base) * u128::from(into)) / u128::from(2 * HALF_LIFE_US)) as u64;
    value.max(1)
}

#[cfg(test)]
mod decay_tests {
    use super::*;

    #[test]
    fn halves_every_half_life() {
        assert_eq!(decayed(1000, 0), 1000);
        assert_eq!(decayed(1000, HALF_LIFE_US), 500);
        assert_eq!(decayed(1000, 2 * HALF_LIFE_US), 250);
        assert_eq!(decayed(1000, HALF_LIFE_US / 2), 750);
        assert_eq!(decayed(1000, u64::MAX), 1);
        assert_eq!(decayed(0, 5), 0);
    }
}

/// Least-response-time selector.
#[derive(Debug, Default)]
pub struct LeastResponseTime {
    /// Rotates through tied backends.
    turns: Turns,
}

impl LeastResponseTime {
    /// A new selector.
    pub fn new() -> Self {
        LeastResponseTime {
            turns: Turns::default(),
        }
    }
}

/// Where a backend stands, best first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Still being measured and idle: gets the next request, to be measured.
    Probe,
    /// Measured: ranked by `(in_flight + 1) * ewma / weight`.
    Measured,
    /// Still being measured but already has a request in flight: used only when nothing
    /// else is, so that a backend that hangs cannot soak up the traffic while unmeasured.
    Waiting,
}

/// What a backend is ranked on: its class, then `cost / weight`.
#[derive(Clone, Copy)]
struct Score {
    class: Class,
    /// Measured: `(in_flight + 1) * ewma_us`; otherwise the in-flight count.
    cost: u128,
    weight: u128,
}

impl Score {
    #[inline]
    fn of(b: &Backend, now_us: u64) -> Score {
        let ewma = decayed(b.ewma_us(), now_us.saturating_sub(b.sampled_at_us()));
        let in_flight = u128::from(b.in_flight());
        let weight = u128::from(b.effective_weight());
        let (class, cost) = if ewma != 0 && b.latency_samples() >= WARMUP_SAMPLES {
            (Class::Measured, (in_flight + 1) * u128::from(ewma))
        } else if in_flight == 0 {
            (Class::Probe, 0)
        } else {
            (Class::Waiting, in_flight)
        };
        Score {
            class,
            cost,
            weight,
        }
    }

    /// How `self` ranks against `other`: `Less` is better.
    #[inline]
    fn rank(&self, other: &Score) -> std::cmp::Ordering {
        self.class
            .cmp(&other.class)
            .then_with(|| (self.cost * other.weight).cmp(&(other.cost * self.weight)))
    }

    /// Whether `self` is as good as `best` for sharing purposes: within [`TOLERANCE`] when
    /// both are measured (so backends of about the same speed share the traffic instead of
    /// the one that measured a few microseconds faster taking all), else equal.
    #[inline]
    fn close_to(&self, best: &Score) -> bool {
        match (self.class, best.class) {
            (Class::Measured, Class::Measured) => {
                self.cost * best.weight * TOLERANCE.1 <= best.cost * self.weight * TOLERANCE.0
            }
            _ => self.rank(best) == std::cmp::Ordering::Equal,
        }
    }
}

/// A backend with fewer samples than this is still being measured: it is preferred while
/// idle, one request at a time.
pub const WARMUP_SAMPLES: u32 = 4;

/// Measured scores within this ratio (numerator, denominator) of the best one count as
/// tied: 3/2, half as slow again. Loopback and LAN timings jitter by tens of percent, so a
/// tighter band would hand all traffic to whichever backend measured luckiest.
const TOLERANCE: (u128, u128) = (3, 2);

impl Selector for LeastResponseTime {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        let now = coarse_now_us();
        // The first best backend and its score, and the number of backends tied with it.
        let mut best: Option<(usize, Score)> = None;
        let mut ties = 0usize;
        for (i, b) in backends.iter().enumerate() {
            if !b.is_available() {
                continue;
            }
            let score = Score::of(b, now);
            match best.as_ref().map(|(_, s)| score.rank(s)) {
                Some(std::cmp::Ordering::Greater) | Some(std::cmp::Ordering::Equal) => {}
                Some(std::cmp::Ordering::Less) | None => best = Some((i, score)),
            }
        }
        let (best_index, best_score) = best?;
        let mut first = best_index;
        for (i, b) in backends.iter().enumerate() {
            if b.is_available() && Score::of(b, now).close_to(&best_score) {
                if ties == 0 {
                    first = i;
                }
                ties += 1;
            }
        }
        if ties <= 1 {
            return Some(best_index);
        }
        Some(self.turns.pick(backends, first, ties, |b| {
            Score::of(b, now).close_to(&best_score)
        }))
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

    /// Records enough samples of `d` for `b` to count as measured.
    fn measure(b: &Backend, d: Duration) {
        for _ in 0..WARMUP_SAMPLES {
            b.record_latency(d);
        }
    }

    #[test]
    fn slow_backend_is_avoided() {
        let bs = backends(&[1, 1, 1]);
        measure(&bs[0], ms(2));
        measure(&bs[1], ms(500));
        measure(&bs[2], ms(2));
        let sel = LeastResponseTime::new();
        let c = counts(&sel, &bs, 100);
        assert_eq!(c, [50, 0, 50]);
    }

    #[test]
    fn in_flight_counts_matter() {
        let bs = backends(&[1, 1]);
        measure(&bs[0], ms(10));
        measure(&bs[1], ms(40));
        let sel = LeastResponseTime::new();
        // Idle: the faster one wins (10 against 40).
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
        // Six in flight on the fast one: 7 x 10 > 1.5 x 40, so the slower idle one wins.
        let _g: Vec<_> = (0..6).map(|_| bs[0].begin()).collect();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
        // Two on the slow one too: 7 x 10 < 3 x 40, back to the fast one.
        let _h: Vec<_> = (0..2).map(|_| bs[1].begin()).collect();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
    }

    #[test]
    fn load_follows_speed_when_guards_are_held() {
        // Holding each pick's guard, a backend twice as fast takes more of the load (about
        // twice as much, less what the tolerance band shares).
        let bs = backends(&[1, 1]);
        measure(&bs[0], ms(10));
        measure(&bs[1], ms(20));
        let sel = LeastResponseTime::new();
        let mut guards = Vec::new();
        for k in 0..60 {
            let i = sel.pick(&bs, k).unwrap();
            guards.push(bs[i].begin());
        }
        assert!(
            (33..=42).contains(&bs[0].in_flight()),
            "{}",
            bs[0].in_flight()
        );
    }

    #[test]
    fn unmeasured_backend_is_preferred() {
        let bs = backends(&[1, 1, 1]);
        measure(&bs[0], ms(1));
        measure(&bs[2], ms(1));
        let sel = LeastResponseTime::new();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
        // Among unmeasured ones, the least loaded wins.
        let bs = backends(&[1, 1]);
        let _g = bs[0].begin();
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(1)));
    }

    #[test]
    fn unmeasured_backend_gets_one_request_at_a_time() {
        // A backend that hangs: its first request never completes.
        let bs = backends(&[1, 1]);
        measure(&bs[0], ms(5));
        let sel = LeastResponseTime::new();
        assert_eq!(sel.pick(&bs, 0), Some(1));
        let _hung = bs[1].begin();
        // While its probe is in flight, the measured backend takes everything.
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
        // Unless nothing else is available.
        bs[0].set_available(false);
        assert_eq!(sel.pick(&bs, 0), Some(1));
    }

    #[test]
    fn score_is_relative_to_weight() {
        let bs = backends(&[4, 1]);
        measure(&bs[0], ms(20));
        measure(&bs[1], ms(10));
        let sel = LeastResponseTime::new();
        // 20 / 4 is well below 10 / 1.
        assert!((0..10).all(|k| sel.pick(&bs, k) == Some(0)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let bs = backends(&[1000, 1]);
        measure(&bs[0], Duration::from_secs(u64::MAX / 1_000_000));
        measure(&bs[1], Duration::from_secs(u64::MAX / 2_000_000));
        let _g: Vec<_> = (0..100).map(|_| bs[1].begin()).collect();
        let sel = LeastResponseTime::new();
        assert_eq!(sel.pick(&bs, 0), Some(0));
    }

    #[test]
    fn unavailable_backend_is_skipped() {
        let bs = backends(&[1, 1]);
        measure(&bs[0], ms(1));
        measure(&bs[1], ms(100));
        bs[0].set_available(false);
        let sel = LeastResponseTime::new();
        assert_eq!(sel.pick(&bs, 0), Some(1));
        bs[1].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        assert_eq!(sel.pick(&[], 0), None);
    }
}
