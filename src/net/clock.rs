//! The loop's clock: the core's [`Stamp`]s (milliseconds since this server
//! started). The core never reads a clock; the loop reads it once per turn
//! here. Each server keeps its own origin (no global state).

use std::time::{Duration, Instant};

use crate::proto::Stamp;

/// Converts between the system's monotonic clock and [`Stamp`]s for one
/// server.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    /// The monotonic clock at `origin`, in whole milliseconds.
    #[cfg(target_os = "linux")]
    origin_ms: u64,
}

/// One reading of the clock: the loop reads the clock once per turn, right
/// after `epoll_wait` returns, and hands this to everything the turn does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    /// The moment, rounded down to the millisecond.
    pub stamp: Stamp,
}

impl Now {
    /// The stamp `d` from now, rounded up: never before the instant
    /// `now + d`.
    pub fn after(self, d: Duration) -> Stamp {
        self.stamp.after(d).plus_millis(1)
    }

    /// The next millisecond: for work that is due already but must wait
    /// for the next turn.
    pub fn next_ms(self) -> Stamp {
        self.stamp.plus_millis(1)
    }
}

/// `CLOCK_MONOTONIC` (the clock behind `Instant`) in whole milliseconds,
/// read straight from the vDSO without `Instant`'s `Timespec` arithmetic:
/// this runs on every turn of the loop.
#[cfg(target_os = "linux")]
fn monotonic_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            #[cfg(target_os = "linux")]
            origin_ms: monotonic_ms(),
        }
    }

    /// Reads the clock.
    pub(crate) fn now(&self) -> Now {
        #[cfg(target_os = "linux")]
        let stamp = Stamp::from_millis(monotonic_ms().saturating_sub(self.origin_ms));
        #[cfg(not(target_os = "linux"))]
        let stamp = self.stamp(Instant::now());
        Now { stamp }
    }

    /// The reading for `at` (the same clock as [`Clock::now`], to within a
    /// millisecond).
    pub(crate) fn at(&self, at: Instant) -> Now {
        Now {
            stamp: self.stamp(at),
        }
    }

    /// The stamp of `at`, rounded down to the millisecond (instants before
    /// the epoch are the epoch). In u64, not `Duration::as_millis`'s u128:
    /// this runs on every turn of the loop.
    pub fn stamp(&self, at: Instant) -> Stamp {
        let d = at.saturating_duration_since(self.origin);
        Stamp::from_millis(d.as_secs().saturating_mul(1000) + u64::from(d.subsec_millis()))
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
    fn now_agrees_with_instant() {
        let clock = Clock::new();
        std::thread::sleep(Duration::from_millis(20));
        let a = clock.at(Instant::now()).stamp.as_millis();
        let b = clock.now().stamp.as_millis();
        let c = clock.at(Instant::now()).stamp.as_millis();
        assert!(a <= b + 1 && b <= c + 1, "{a} {b} {c}");
        assert!(b >= 20, "{b}");
    }

    #[test]
    fn stamps_round_down_and_after_rounds_up() {
        let clock = Clock::new();
        let t0 = clock.origin + Duration::from_micros(1_234_567);
        let now = clock.at(t0);
        assert_eq!(now.stamp.as_millis(), 1_234);
        // `after` is never before the instant it stands for.
        assert_eq!(now.after(Duration::from_millis(100)).as_millis(), 1_335);
        assert_eq!(now.after(Duration::from_micros(1)).as_millis(), 1_236);
        assert_eq!(now.next_ms().as_millis(), 1_235);
        let later = clock.at(t0 + Duration::from_millis(1500));
        assert_eq!(later.stamp.millis_since(now.stamp), 1500);
        // Before the epoch: the epoch.
        let before = clock
            .origin
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(clock.origin);
        assert_eq!(clock.stamp(before), Stamp::EPOCH);
    }
}
