//! The rise/fall rule, as HAProxy applies it: an up backend goes down after `fall`
//! consecutive failed checks, a down backend comes back up after `rise` consecutive
//! passed ones. Pure logic, no I/O.

/// What a check result did to a backend's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// No change of state.
    None,
    /// The backend just went down.
    Down,
    /// The backend just came back up.
    Up,
}

/// The check history of one backend.
#[derive(Debug, Clone)]
pub struct RiseFall {
    up: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl RiseFall {
    /// A backend that starts up (as HAProxy's servers do), with the given thresholds.
    pub fn new(rise: u32, fall: u32) -> Self {
        RiseFall {
            up: true,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// A backend known to be down (its checks restarted by a reload).
    pub fn down(rise: u32, fall: u32) -> Self {
        RiseFall {
            up: false,
            ..RiseFall::new(rise, fall)
        }
    }

    /// Whether the backend is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Folds in one check result.
    pub fn record(&mut self, passed: bool) -> Transition {
        if passed == self.up {
            // A result confirming the current state resets the opposite streak.
            self.streak = 0;
            return Transition::None;
        }
        self.streak += 1;
        if self.up && self.streak >= self.fall {
            self.up = false;
            self.streak = 0;
            Transition::Down
        } else if !self.up && self.streak >= self.rise {
            self.up = true;
            self.streak = 0;
            Transition::Up
        } else {
            Transition::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_down_after_fall_failures_in_a_row() {
        let mut s = RiseFall::new(2, 3);
        assert_eq!(s.record(false), Transition::None);
        assert_eq!(s.record(false), Transition::None);
        assert_eq!(s.record(true), Transition::None); // streak broken
        assert_eq!(s.record(false), Transition::None);
        assert_eq!(s.record(false), Transition::None);
        assert_eq!(s.record(false), Transition::Down);
        assert!(!s.is_up());
    }

    #[test]
    fn comes_back_after_rise_successes_in_a_row() {
        let mut s = RiseFall::new(2, 1);
        assert_eq!(s.record(false), Transition::Down);
        assert_eq!(s.record(true), Transition::None);
        assert_eq!(s.record(false), Transition::None);
        assert_eq!(s.record(true), Transition::None);
        assert_eq!(s.record(true), Transition::Up);
        assert!(s.is_up());
    }
}
