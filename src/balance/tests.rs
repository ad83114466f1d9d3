//! Tests that hold for every algorithm, and helpers for the per-algorithm tests.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Algorithm, Backend, BuildSelector, Selector};

/// Backends with the given weights, at distinct addresses 10.0.x.y:8000.
pub(super) fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8000));
            Arc::new(Backend::new(format!("b{i}"), addr, w, false))
        })
        .collect()
}

/// How many of `picks` picks (keys `0..picks`) went to each backend.
pub(super) fn counts(sel: &dyn Selector, bs: &[Arc<Backend>], picks: u64) -> Vec<usize> {
    let mut c = vec![0; bs.len()];
    for k in 0..picks {
        c[sel.pick(bs, k).expect("a backend is available")] += 1;
    }
    c
}

fn all() -> Vec<Algorithm> {
    Algorithm::NAMES
        .iter()
        .map(|name| Algorithm::from_name(name).unwrap())
        .collect()
}

#[test]
fn every_name_parses_to_a_distinct_algorithm() {
    let algorithms = all();
    for (i, a) in algorithms.iter().enumerate() {
        assert!(!algorithms[..i].contains(a), "{a:?} named twice");
    }
    assert_eq!(algorithms.len(), 9);
    assert_eq!(Algorithm::from_name("random"), Some(Algorithm::Random));
    assert_eq!(
        Algorithm::from_name("weighted_round_robin"),
        Some(Algorithm::WeightedRoundRobin)
    );
    assert_eq!(Algorithm::from_name("p2c"), Some(Algorithm::PowerOfTwo));
    assert_eq!(
        Algorithm::from_name("leastconn"),
        Some(Algorithm::LeastConnections)
    );
    assert_eq!(Algorithm::from_name("hash"), Some(Algorithm::Hash));
    assert_eq!(Algorithm::from_name("Random"), None);
    assert_eq!(Algorithm::from_name("nope"), None);
    assert_eq!(Algorithm::from_name(""), None);
    let keyed: Vec<_> = algorithms.iter().filter(|a| a.uses_key()).collect();
    assert_eq!(keyed, [&Algorithm::Hash, &Algorithm::ConsistentHash]);
}

#[test]
fn every_algorithm_returns_none_when_nothing_is_available() {
    for a in all() {
        assert_eq!(a.build(&[]).pick(&[], 1), None, "{a:?}, no backends");
        let bs = backends(&[1, 2, 3, 4, 5]);
        let sel = a.build(&bs);
        for b in &bs {
            b.set_available(false);
        }
        for k in 0..100 {
            assert_eq!(sel.pick(&bs, k), None, "{a:?}");
        }
        // And recovers when one comes back.
        bs[3].set_available(true);
        for k in 0..100 {
            assert_eq!(sel.pick(&bs, k), Some(3), "{a:?}");
        }
    }
}

#[test]
fn every_algorithm_falls_back_to_the_available_backends() {
    for a in all() {
        let bs = backends(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let sel = a.build(&bs);
        let down = [0, 2, 5, 7];
        for &i in &down {
            bs[i].set_available(false);
        }
        let c = counts(sel.as_ref(), &bs, 4000);
        for (i, &n) in c.iter().enumerate() {
            if down.contains(&i) {
                assert_eq!(n, 0, "{a:?} picked unavailable backend {i}: {c:?}");
            } else {
                assert!(n > 0, "{a:?} never picked backend {i}: {c:?}");
            }
        }
    }
}

#[test]
fn every_algorithm_handles_a_single_backend() {
    for a in all() {
        let bs = backends(&[7]);
        let sel = a.build(&bs);
        assert!((0..50).all(|k| sel.pick(&bs, k) == Some(0)), "{a:?}");
        bs[0].set_available(false);
        assert_eq!(sel.pick(&bs, 0), None, "{a:?}");
    }
}

#[test]
fn selectors_are_shared_between_threads() {
    for a in all() {
        let bs = backends(&[1, 2, 3]);
        let sel = a.build(&bs);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for k in 0..2000 {
                        let i = sel.pick(&bs, k).unwrap();
                        let _g = bs[i].begin();
                    }
                });
            }
        });
        assert!(bs.iter().all(|b| b.in_flight() == 0));
        assert_eq!(bs.iter().map(|b| b.served()).sum::<u64>(), 8000, "{a:?}");
    }
}
