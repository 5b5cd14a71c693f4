//! The loop's clock: `Instant`s as the core's [`Stamp`]s (milliseconds
//! since this server started), and back. The core never reads a clock; the
//! loop reads it and converts here. Each server keeps its own origin (no
//! global state).

use std::time::{Duration, Instant};

use crate::proto::Stamp;

/// Converts between `Instant` and [`Stamp`] for one server.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The stamp of `at`, rounded down to the millisecond (instants before
    /// the epoch are the epoch).
    pub fn stamp(&self, at: Instant) -> Stamp {
        let ms = at.saturating_duration_since(self.origin).as_millis();
        Stamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The first stamp not before `at` (rounded up): a deadline kept as
    /// this stamp never fires early.
    pub fn ceil(&self, at: Instant) -> Stamp {
        let down = self.stamp(at);
        if self.instant(down) < at {
            down.after(Duration::from_millis(1))
        } else {
            down
        }
    }

    /// The instant a stamp stands for.
    pub fn instant(&self, s: Stamp) -> Instant {
        self.origin + Duration::from_millis(s.as_millis())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_millisecond() {
        let clock = Clock::new();
        let t0 = Instant::now() + Duration::from_micros(1234);
        let s = clock.stamp(t0);
        assert!(clock.instant(s) <= t0);
        assert!(t0 - clock.instant(s) < Duration::from_millis(1));
        let c = clock.ceil(t0);
        assert!(clock.instant(c) >= t0 && clock.instant(c) - t0 < Duration::from_millis(1));
        assert_eq!(clock.ceil(clock.instant(c)), c);
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(clock.stamp(later).millis_since(s), 1500);
        // Before the epoch: the epoch.
        let before = clock
            .origin
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(clock.origin);
        assert_eq!(clock.stamp(before), Stamp::EPOCH);
    }
}
