//! The drivers' clock: milliseconds since the Unix epoch, advanced monotonically.
//!
//! The core's state machines take the time as a plain `u64` of milliseconds. The drivers feed
//! them this clock: it starts at the wall-clock time (so stored rounds carry Unix times) and
//! then advances with [`Instant`], so a wall-clock jump never fires or delays a deadline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic millisecond clock anchored at the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    origin_unix_ms: u64,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    /// A clock anchored at the current wall-clock time.
    pub fn new() -> Clock {
        let origin_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            origin: Instant::now(),
            origin_unix_ms,
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.origin_unix_ms + self.origin.elapsed().as_millis() as u64
    }

    /// The instant at which this clock reads `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms.saturating_sub(self.origin_unix_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_convertible() {
        let c = Clock::new();
        let a = c.now_ms();
        let b = c.now_ms();
        assert!(b >= a);
        assert!(a > 1_600_000_000_000, "anchored at the Unix epoch");
        let at = c.instant_at(a + 1000);
        assert!(at > Instant::now());
        assert!(at <= Instant::now() + Duration::from_millis(1001));
    }
}
