//! Connections parked between requests on this worker thread, so that a graceful stop
//! reaches them without each one holding a notification of its own.
//!
//! A kept-alive connection waiting for its next request ([`crate::l7::proxy`]) takes a
//! [`Place`] here: one slot in a thread-local list of wakers, left when the wait ends.
//! When a graceful stop begins, each worker runs [`wake_all`] once (see
//! `listener::worker`), and every parked connection on it looks at the stop flag. This
//! costs an idle connection 8 bytes instead of a `Notified` future (64 bytes and a lock
//! on a notification shared by every worker).
//!
//! Worker threads run single-threaded event loops: a connection is always polled on the
//! thread that parked it, so the list needs no lock.

use std::cell::RefCell;
use std::task::Waker;

thread_local! {
    static PARKED: RefCell<Slots> = const {
        RefCell::new(Slots { wakers: Vec::new(), free: Vec::new() })
    };
}

struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<u32>,
}

/// A parked connection's slot in its worker's list; dropping it leaves the list.
#[derive(Debug, Default)]
pub struct Place(Option<u32>);

impl Place {
    /// Puts the connection's `waker` in the list (or refreshes it); call on every poll
    /// of the wait, before looking at the stop flag.
    pub fn enter(&mut self, waker: &Waker) {
        PARKED.with(|p| {
            let mut p = p.borrow_mut();
            match self.0 {
                Some(i) => {
                    let slot = &mut p.wakers[i as usize];
                    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        *slot = Some(waker.clone());
                    }
                }
                None => {
                    let i = match p.free.pop() {
                        Some(i) => i,
                        None => {
                            p.wakers.push(None);
                            (p.wakers.len() - 1) as u32
                        }
                    };
                    p.wakers[i as usize] = Some(waker.clone());
                    self.0 = Some(i);
                }
            }
        });
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(i) = self.0.take() {
            // `try_with`: a connection dropped while its thread ends has nothing to leave.
            let _ = PARKED.try_with(|p| {
                let mut p = p.borrow_mut();
                p.wakers[i as usize] = None;
                p.free.push(i);
            });
        }
    }
}

/// Wakes every connection parked on this thread. Returns how many there were.
pub fn wake_all() -> usize {
    let wakers: Vec<Waker> = PARKED.with(|p| {
        let mut p = p.borrow_mut();
        p.wakers.iter_mut().filter_map(Option::take).collect()
    });
    let n = wakers.len();
    // Woken outside the borrow: a waker may poll nothing here, but stays safe if it did.
    for w in wakers {
        w.wake();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn places_are_woken_once_and_reused() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut a = Place::default();
        let mut b = Place::default();
        a.enter(&waker);
        a.enter(&waker);
        b.enter(&waker);
        drop(b);
        assert_eq!(wake_all(), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Woken slots are empty until entered again; a left slot is reused.
        assert_eq!(wake_all(), 0);
        let mut c = Place::default();
        c.enter(&waker);
        assert_eq!(c.0, Some(1));
        a.enter(&waker);
        assert_eq!(wake_all(), 2);
    }
}
