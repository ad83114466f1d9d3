//! A named pool of backends: the primaries and the backups, each tier with its own
//! selector built from the pool's algorithm.

use std::sync::Arc;

use super::{Algorithm, Backend, BuildSelector, HashKey, Selector};

/// The backends of one tier (primary or backup) and the selector built for them.
#[derive(Debug)]
struct Tier {
    backends: Vec<Arc<Backend>>,
    selector: Box<dyn Selector>,
}

impl Tier {
    fn new(backends: Vec<Arc<Backend>>, algorithm: Algorithm) -> Self {
        let selector = algorithm.build(&backends);
        Tier { backends, selector }
    }

    #[inline]
    fn pick(&self, key: u64) -> Option<&Arc<Backend>> {
        if self.backends.is_empty() {
            return None;
        }
        self.selector
            .pick(&self.backends, key)
            .map(|i| &self.backends[i])
    }
}

/// A named set of backends balanced by one algorithm.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name in the config.
    pub name: Box<str>,
    /// The algorithm both tiers use.
    pub algorithm: Algorithm,
    /// What the hashing algorithms hash on.
    pub hash_key: HashKey,
    primaries: Tier,
    backups: Tier,
}

impl Pool {
    /// Builds a pool; backends flagged `backup` form the backup tier.
    pub fn new(
        name: impl Into<Box<str>>,
        algorithm: Algorithm,
        hash_key: HashKey,
        backends: Vec<Arc<Backend>>,
    ) -> Self {
        let (backups, primaries): (Vec<_>, Vec<_>) =
            backends.into_iter().partition(|b| b.is_backup());
        Pool {
            name: name.into(),
            algorithm,
            hash_key,
            primaries: Tier::new(primaries, algorithm),
            backups: Tier::new(backups, algorithm),
        }
    }

    /// Whether picking needs the request's hash key.
    #[inline]
    pub fn uses_key(&self) -> bool {
        self.algorithm.uses_key()
    }

    /// Picks an available primary; else, only if no primary is up at all, an available
    /// backup (as in HAProxy, backups replace primaries that are down, they do not take
    /// the overflow of primaries that are merely full); else `None`.
    #[inline]
    pub fn pick(&self, key: u64) -> Option<&Arc<Backend>> {
        self.primaries.pick(key).or_else(|| {
            if self.primaries.backends.iter().any(|b| b.is_up()) {
                None
            } else {
                self.backups.pick(key)
            }
        })
    }

    /// Whether some backend is up but none has room for another request: a request
    /// should wait in the queue rather than get a 503.
    pub fn is_saturated(&self) -> bool {
        let tier = if self.primaries.backends.iter().any(|b| b.is_up()) {
            &self.primaries
        } else {
            &self.backups
        };
        tier.backends.iter().any(|b| b.is_up()) && !tier.backends.iter().any(|b| b.is_available())
    }

    /// All backends, primaries first.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.primaries
            .backends
            .iter()
            .chain(self.backups.backends.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, port: u16, backup: bool) -> Arc<Backend> {
        let notify = Arc::new(tokio::sync::Notify::new());
        Arc::new(
            Backend::new(name, ([127, 0, 0, 1], port).into(), 1, backup)
                .with_max_in_flight(1, notify),
        )
    }

    #[test]
    fn backups_replace_primaries_that_are_down_not_full_ones() {
        let primary = backend("p", 1, false);
        let backup = backend("b", 2, true);
        let pool = Pool::new(
            "app",
            Algorithm::RoundRobin,
            HashKey::default(),
            vec![Arc::clone(&primary), Arc::clone(&backup)],
        );
        assert_eq!(&*pool.pick(0).unwrap().name, "p");
        let busy = primary.try_begin().unwrap();
        assert!(
            pool.pick(0).is_none(),
            "a full primary does not spill to the backup"
        );
        assert!(pool.is_saturated());
        drop(busy);
        primary.set_available(false);
        assert_eq!(&*pool.pick(0).unwrap().name, "b");
    }
}
