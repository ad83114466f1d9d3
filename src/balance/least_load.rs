//! Least load: balancing on what the backends say about themselves.
//!
//! Each backend's effective weight is its configured weight times the capacity its
//! agent (or load header) last reported (see `crate::health::agent`): a backend at 90 %
//! load counts for a tenth of its weight. Two backends are drawn in proportion to that,
//! and the one with fewer in-flight requests per unit of it wins
//! (`(in_flight_a + 1) * weight_b` against `(in_flight_b + 1) * weight_a`). So a lightly
//! loaded backend takes most of the traffic, a busy one a trickle, and one sending more
//! load than it reports still sheds requests through its in-flight count; drawing two
//! at random instead of taking the least loaded keeps every worker from herding onto
//! the same backend between two reports.
//!
//! Without reports it is power of two choices by weight.

use std::sync::Arc;

use super::random::pick_available_by_weight;
use super::{Backend, Selector};

/// Least-load selector; it keeps no state.
#[derive(Debug, Default)]
pub struct LeastLoad;

impl LeastLoad {
    /// A new selector.
    pub fn new() -> Self {
        LeastLoad
    }
}

/// Whether `a` has fewer requests in flight than `b` per unit of effective weight.
#[inline]
fn lighter(a: &Backend, b: &Backend) -> bool {
    (u64::from(a.in_flight()) + 1) * u64::from(b.effective_weight())
        < (u64::from(b.in_flight()) + 1) * u64::from(a.effective_weight())
}

impl Selector for LeastLoad {
    fn pick(&self, backends: &[Arc<Backend>], _key: u64) -> Option<usize> {
        let a = pick_available_by_weight(backends)?;
        let b = pick_available_by_weight(backends)?;
        Some(if lighter(&backends[b], &backends[a]) {
            b
        } else {
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{backends, counts};

    #[test]
    fn a_busy_backend_gets_a_trickle() {
        let bs = backends(&[1, 1]);
        bs[0].set_headroom(100); // 90 % load
        bs[1].set_headroom(900); // 10 % load
        let c = counts(&LeastLoad::new(), &bs, 10_000);
        assert!(c[0] < 300, "{c:?}");
        // The report changes: traffic follows.
        bs[0].set_headroom(900);
        bs[1].set_headroom(100);
        let c = counts(&LeastLoad::new(), &bs, 10_000);
        assert!(c[1] < 300, "{c:?}");
    }

    #[test]
    fn without_reports_it_spreads_by_weight_and_in_flight() {
        let bs = backends(&[1, 1, 1]);
        let c = counts(&LeastLoad::new(), &bs, 3_000);
        assert!(c.iter().all(|&n| n > 800), "{c:?}");
        let _busy: Vec<_> = (0..5).map(|_| bs[2].begin()).collect();
        let c = counts(&LeastLoad::new(), &bs, 3_000);
        assert!(c[2] < 400, "{c:?}");
    }

    #[test]
    fn agent_drain_and_down_take_a_backend_out() {
        use crate::balance::backend::AgentState;
        let bs = backends(&[1, 1]);
        assert!(bs[0].set_agent_state(AgentState::Drain));
        assert_eq!(counts(&LeastLoad::new(), &bs, 100), [0, 100]);
        assert!(bs[0].set_agent_state(AgentState::Up));
        assert!(bs[1].set_agent_state(AgentState::Down));
        assert_eq!(counts(&LeastLoad::new(), &bs, 100), [100, 0]);
        // 0 % capacity left acts as drain.
        bs[1].set_agent_state(AgentState::Up);
        bs[0].set_headroom(0);
        assert_eq!(counts(&LeastLoad::new(), &bs, 100), [0, 100]);
    }
}
