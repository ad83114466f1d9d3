//! Consistent hashing on a ring with virtual nodes (ketama).
//!
//! Each backend is placed on a 64-bit ring at many points, `hash_bytes("{addr}-{i}")` for
//! `i` in `0..points`; a key goes to the owner of the first point at or after `mix(key)`,
//! wrapping around, and if that backend is unavailable, to the next available owner
//! clockwise. Because a backend's points depend only on its own address (and weight),
//! removing one of N backends moves only the ~1/N keys it owned, each to the backend
//! that follows on the ring; the other keys keep their backend. Marking a backend
//! unavailable moves exactly the keys it owned, the same way, and they come back when it
//! does.
//!
//! Points are proportional to weight: 160 per unit of weight, after dividing every weight
//! by the greatest common divisor of the pool's weights (so equal weights, whatever their
//! value, give ketama's 160 points each). The ring is capped at [`MAX_RING_POINTS`]; above
//! that, point counts are scaled down in proportion (at least one per backend). Picking is
//! a binary search over the sorted points plus a short walk.
//!
//! What it does not do: keep every key in place when *weights* change, or when a change
//! of backends changes the weights' common divisor or crosses the cap (the point counts
//! are then rescaled and more keys move); and it balances less evenly than `key_hash`
//! (each of 10 equal backends receives its share within about ±25%, not ±1%).

use std::fmt::Write as _;
use std::sync::Arc;

use super::hash::{hash_bytes, mix};
use super::{Backend, Selector};

/// Virtual nodes per unit of (gcd-reduced) weight, as ketama.
pub const POINTS_PER_WEIGHT: u64 = 160;

/// Upper bound on the ring's size, give or take one point per backend (12 bytes a point).
pub const MAX_RING_POINTS: u64 = 1 << 18;

/// Ring steps tried before checking whether any backend is available at all, so that a
/// pick with every backend down costs one pass over the backends, not over the ring.
const WALK_BEFORE_CHECK: usize = 64;

/// Ketama ring selector.
#[derive(Debug)]
pub struct ConsistentHash {
    /// The ring's points, sorted.
    points: Box<[u64]>,
    /// `owners[i]` is the index of the backend that owns `points[i]`.
    owners: Box<[u32]>,
}

impl ConsistentHash {
    /// Builds the ring for `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let counts = point_counts(backends);
        let mut ring: Vec<(u64, u32)> = Vec::with_capacity(counts.iter().sum::<u64>() as usize);
        let mut label = String::new();
        for (index, (b, &count)) in backends.iter().zip(&counts).enumerate() {
            for i in 0..count {
                label.clear();
                let _ = write!(label, "{}-{}", b.addr, i);
                ring.push((hash_bytes(label.as_bytes()), index as u32));
            }
        }
        ring.sort_unstable();
        let (points, owners) = ring.into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        ConsistentHash {
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
        }
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no points (no backends).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Points of each backend: 160 per gcd-reduced unit of weight, scaled down to the cap.
fn point_counts(backends: &[Arc<Backend>]) -> Vec<u64> {
    let g = backends
        .iter()
        .map(|b| u64::from(b.weight()))
        .fold(0, gcd)
        .max(1);
    let units: Vec<u64> = backends.iter().map(|b| u64::from(b.weight()) / g).collect();
    let total_units: u64 = units.iter().sum();
    if total_units * POINTS_PER_WEIGHT <= MAX_RING_POINTS {
        units.iter().map(|u| u * POINTS_PER_WEIGHT).collect()
    } else {
        units
            .iter()
            .map(|u| (u * MAX_RING_POINTS / total_units).max(1))
            .collect()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Selector for ConsistentHash {
    fn pick(&self, backends: &[Arc<Backend>], key: u64) -> Option<usize> {
        let len = self.points.len();
        if len == 0 || backends.is_empty() {
            return None;
        }
        let h = mix(key);
        let start = self.points.partition_point(|&p| p < h);
        let available = |step: usize| {
            let at = (start + step) % len;
            let owner = self.owners[at] as usize;
            backends
                .get(owner)
                .is_some_and(|b| b.is_available())
                .then_some(owner)
        };
        if let Some(i) = (0..len.min(WALK_BEFORE_CHECK)).find_map(available) {
            return Some(i);
        }
        if !backends.iter().any(|b| b.is_available()) {
            return None;
        }
        (WALK_BEFORE_CHECK..len)
            .find_map(available)
            // Reached only when `backends` is not the slice the ring was built for.
            .or_else(|| backends.iter().position(|b| b.is_available()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::backends;

    const KEYS: u64 = 10_000;

    /// The address each key lands on.
    fn owners(bs: &[Arc<Backend>], keys: u64) -> Vec<std::net::SocketAddr> {
        let sel = ConsistentHash::new(bs);
        (0..keys)
            .map(|k| bs[sel.pick(bs, k).unwrap()].addr)
            .collect()
    }

    #[test]
    fn same_key_same_backend() {
        let bs = backends(&[1; 5]);
        let sel = ConsistentHash::new(&bs);
        for k in 0..1000 {
            assert_eq!(sel.pick(&bs, k), sel.pick(&bs, k));
        }
        // A ring built anew, or over the same backends listed in another order, agrees.
        let mut reversed = bs.clone();
        reversed.reverse();
        assert_eq!(owners(&bs, KEYS), owners(&reversed, KEYS));
    }

    #[test]
    fn unavailable_backend_moves_only_its_own_keys() {
        let bs = backends(&[1; 10]);
        let sel = ConsistentHash::new(&bs);
        let before: Vec<_> = (0..KEYS).map(|k| sel.pick(&bs, k).unwrap()).collect();
        bs[4].set_available(false);
        let after: Vec<_> = (0..KEYS).map(|k| sel.pick(&bs, k).unwrap()).collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if a != b {
                assert_eq!(*b, 4, "a key moved between two surviving backends");
                moved += 1;
            }
        }
        assert!(moved <= KEYS * 13 / 100, "{moved} keys moved");
        assert!(after.iter().all(|&i| i != 4));
        // And they come back.
        bs[4].set_available(true);
        let back: Vec<_> = (0..KEYS).map(|k| sel.pick(&bs, k).unwrap()).collect();
        assert_eq!(before, back);
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_the_keys() {
        let n = 10;
        let all = backends(&[1; 10]);
        let before = owners(&all, KEYS);
        for removed in 0..n {
            let rest: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != removed)
                .map(|(_, b)| b.clone())
                .collect();
            let after = owners(&rest, KEYS);
            let gone = all[removed].addr;
            let mut moved = 0;
            for (b, a) in before.iter().zip(&after) {
                if a != b {
                    assert_eq!(*b, gone, "a key moved between two surviving backends");
                    moved += 1;
                }
            }
            assert!(
                moved <= KEYS * 13 / 100,
                "removing {removed}: {moved} moved"
            );
        }
    }

    #[test]
    fn equal_backends_get_an_even_share() {
        let bs = backends(&[1; 10]);
        let sel = ConsistentHash::new(&bs);
        assert_eq!(sel.len(), 1600);
        let keys = 100_000;
        let mut c = [0u64; 10];
        for k in 0..keys {
            c[sel.pick(&bs, k).unwrap()] += 1;
        }
        let mean = keys / 10;
        assert!(
            c.iter().all(|&x| x.abs_diff(mean) <= mean / 4),
            "{c:?} not within 25% of {mean}"
        );
        // Equal weights of another value give the same ring.
        let heavy = backends(&[7; 10]);
        assert_eq!(ConsistentHash::new(&heavy).points, sel.points);
    }

    #[test]
    fn keys_spread_by_weight() {
        let bs = backends(&[1, 3]);
        let sel = ConsistentHash::new(&bs);
        assert_eq!(sel.len(), 640);
        let keys = 100_000u64;
        let light = (0..keys).filter(|&k| sel.pick(&bs, k) == Some(0)).count() as f64;
        let share = light / keys as f64;
        assert!((0.18..0.32).contains(&share), "{share}");
    }

    #[test]
    fn ring_size_is_capped() {
        let sel = ConsistentHash::new(&backends(&[1000, 999]));
        assert!(sel.len() as u64 <= MAX_RING_POINTS + 2, "{}", sel.len());
        let many = backends(&[1; 3000]);
        let sel = ConsistentHash::new(&many);
        assert!(sel.len() as u64 <= MAX_RING_POINTS + 3000, "{}", sel.len());
        assert!(sel.len() >= 3000);
    }

    #[test]
    fn walks_to_an_available_backend_and_none_only_when_nothing_is() {
        let bs = backends(&[1; 300]);
        let sel = ConsistentHash::new(&bs);
        for (i, b) in bs.iter().enumerate() {
            b.set_available(i == 123);
        }
        // Most walks are longer than WALK_BEFORE_CHECK.
        assert!((0..200).all(|k| sel.pick(&bs, k) == Some(123)));
        bs[123].set_available(false);
        assert_eq!(sel.pick(&bs, 1), None);
        assert_eq!(ConsistentHash::new(&[]).pick(&[], 1), None);
    }
}
