//! Plain round robin: each backend in turn, ignoring weights.
//!
//! One shared atomic counter gives the starting position of each pick; from there the
//! first available backend is taken. The counter is advanced once per pick, so the
//! selector is lock-free and fair between worker threads.
//!
//! What it does not do: honour weights (use `weighted_round_robin`), or look at load. When
//! a backend is unavailable its turn goes to the next available backend, which therefore
//! receives two turns per cycle until the first one comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, Selector};

/// Round-robin selector.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A new selector, starting at the first backend.
    pub fn new() -> Self {
        RoundRobin {
            next: AtomicUsize::new(0),
        }
    }
}

impl Selector for RoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|step| {
                let i = start + step;
                if i >= n { i - n } else { i }
            })
            .find(|&i| backends[i].is_available())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::backends;

    #[test]
    fn visits_each_backend_in_turn_ignoring_weights() {
        let bs = backends(&[1, 10, 3]);
        let sel = RoundRobin::new();
        let seq: Vec<_> = (0..9).map(|k| sel.pick(&bs, k).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn unavailable_backend_is_skipped() {
        let bs = backends(&[1, 1, 1]);
        let sel = RoundRobin::new();
        bs[1].set_available(false);
        let seq: Vec<_> = (0..6).map(|k| sel.pick(&bs, k).unwrap()).collect();
        assert_eq!(seq, [0, 2, 2, 0, 2, 2]);
        bs[0].set_available(false);
        bs[2].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None);
        bs[1].set_available(true);
        assert_eq!(sel.pick(&bs, 0), Some(1));
    }

    #[test]
    fn shared_between_threads_without_losing_turns() {
        let bs = backends(&[1, 1, 1, 1]);
        let sel = RoundRobin::new();
        let per_thread = 1000;
        let counts: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut c = vec![0; 4];
                        for k in 0..per_thread {
                            c[sel.pick(&bs, k).unwrap()] += 1;
                        }
                        c
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for i in 0..4 {
            let total: usize = counts.iter().map(|c| c[i]).sum();
            assert_eq!(total, per_thread as usize);
        }
    }
}
