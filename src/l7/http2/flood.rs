//! Flood protection for HTTP/2 client connections: the frames that cost the server work
//! and give the client nothing (SETTINGS and PING, which the server must acknowledge,
//! CVE-2019-9512 and CVE-2019-9515; streams reset as soon as opened, CVE-2023-44487;
//! empty DATA, HEADERS and CONTINUATION frames, CVE-2019-9518; streams the server resets)
//! each take a token from a bucket of [`BURST`] tokens refilled at [`PER_SECOND`]. The
//! server (`server::inbound`) spends them; when the bucket is empty it ends the
//! connection with GOAWAY `ENHANCE_YOUR_CALM`.

use std::time::Instant;

/// Such frames a client may send at once.
pub const BURST: u32 = 200;
/// Such frames a client may send per second, sustained.
pub const PER_SECOND: u32 = 20;

/// The client went over its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood;

/// One connection's bucket.
#[derive(Debug)]
pub struct FrameBudget {
    tokens: u32,
    refilled: Instant,
}

impl Default for FrameBudget {
    fn default() -> Self {
        FrameBudget {
            tokens: BURST,
            refilled: Instant::now(),
        }
    }
}

impl FrameBudget {
    /// Takes one token; `Err` when the bucket is empty.
    pub fn spend(&mut self) -> Result<(), Flood> {
        self.spend_at(Instant::now())
    }

    fn spend_at(&mut self, now: Instant) -> Result<(), Flood> {
        if self.tokens == 0 {
            let earned = now.saturating_duration_since(self.refilled).as_millis() as u64
                * u64::from(PER_SECOND)
                / 1000;
            if earned == 0 {
                return Err(Flood);
            }
            self.tokens = earned.min(u64::from(BURST)) as u32;
            self.refilled = now;
        }
        self.tokens -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_burst_is_spent_then_refilled_at_the_sustained_rate() {
        let mut b = FrameBudget::default();
        let t0 = b.refilled;
        for _ in 0..BURST {
            b.spend_at(t0).unwrap();
        }
        assert_eq!(b.spend_at(t0), Err(Flood));
        // 100 ms earn 2 tokens at 20/s, no more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.spend_at(t1).is_ok() && b.spend_at(t1).is_ok());
        assert_eq!(b.spend_at(t1), Err(Flood));
        // A long pause refills the burst, never more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..BURST {
            b.spend_at(t2).unwrap();
        }
        assert_eq!(b.spend_at(t2), Err(Flood));
    }
}
