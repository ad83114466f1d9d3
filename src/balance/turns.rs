//! Tie-breaking by rotation: when several backends are equally good, the n-th tie goes to
//! the (n mod ties)-th of them, so that equal backends share the load exactly evenly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Backend;

/// A shared rotation counter.
#[derive(Debug, Default)]
pub struct Turns(AtomicUsize);

impl Turns {
    /// Among the `ties` available backends from index `first` on for which `tied` holds,
    /// returns the one whose turn it is. If the counters moved since the ties were
    /// counted and fewer match now, returns `first`.
    #[inline]
    pub fn pick(
        &self,
        backends: &[Arc<Backend>],
        first: usize,
        ties: usize,
        tied: impl Fn(&Backend) -> bool,
    ) -> usize {
        let mut turn = self.0.fetch_add(1, Ordering::Relaxed) % ties.max(1);
        let candidates = backends[first..]
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_available() && tied(b));
        for (offset, _) in candidates {
            if turn == 0 {
                return first + offset;
            }
            turn -= 1;
        }
        first
    }
}
