//! Backends laid end to end on a line of `total weight` slots: slot `s` belongs to the
//! backend whose range contains it. Shared by the weighted random draw and the modulo hash.

use std::sync::Arc;

use super::Backend;

/// Cumulative weights: `ends[i]` is the sum of the weights of backends `0..=i`.
#[derive(Debug)]
pub struct WeightRanges {
    ends: Box<[u64]>,
}

impl WeightRanges {
    /// The ranges of `backends`, in order.
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let mut sum = 0u64;
        let ends = backends
            .iter()
            .map(|b| {
                sum += u64::from(b.weight());
                sum
            })
            .collect();
        WeightRanges { ends }
    }

    /// How many backends.
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no backends.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The sum of all weights (0 when empty).
    #[inline]
    pub fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The backend owning `slot` (which must be below [`total`](Self::total)).
    #[inline]
    pub fn owner(&self, slot: u64) -> usize {
        self.ends.partition_point(|&end| end <= slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::backends;

    #[test]
    fn slots_map_to_weight_ranges() {
        let r = WeightRanges::new(&backends(&[2, 1, 3]));
        assert_eq!(r.total(), 6);
        let owners: Vec<usize> = (0..6).map(|s| r.owner(s)).collect();
        assert_eq!(owners, [0, 0, 1, 2, 2, 2]);
    }
}
