//! Compact points in time for per-connection state: 8 bytes where
//! [`Instant`] takes 16, with millisecond resolution.
//!
//! A stamp counts milliseconds from an origin fixed by the first instant
//! ever converted (a day before it), so the core still never reads the
//! clock itself: every stamp comes from a `now` the caller passed in.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// How far before the first converted instant the origin lies, so that
/// instants a caller took a little earlier still convert exactly.
const LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// A point in time, in whole milliseconds (rounded down).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

impl Stamp {
    /// The stamp of `at` (instants before the origin map to the origin).
    pub fn new(at: Instant) -> Stamp {
        let origin = *ORIGIN.get_or_init(|| at.checked_sub(LOOKBACK).unwrap_or(at));
        let ms =
            u64::try_from(at.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX);
        Stamp(NonZeroU64::MIN.saturating_add(ms))
    }

    /// The first stamp whose instant is not before `at` (rounded up): a
    /// timer kept as this stamp never fires before `at`.
    pub fn ceil(at: Instant) -> Stamp {
        let down = Stamp::new(at);
        if down.instant() < at {
            down.after(Duration::from_millis(1))
        } else {
            down
        }
    }

    /// The instant this stamp stands for (at most 1 ms before the one it
    /// was made from).
    pub fn instant(self) -> Instant {
        let origin = *ORIGIN
            .get()
            .expect("a stamp exists only after the origin is fixed");
        origin + Duration::from_millis(self.0.get() - 1)
    }

    /// Milliseconds from `earlier` to this stamp (0 if it is later).
    pub fn millis_since(self, earlier: Stamp) -> u64 {
        self.0.get().saturating_sub(earlier.0.get())
    }

    /// This stamp plus `d` (saturating).
    pub fn after(self, d: Duration) -> Stamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Stamp(self.0.saturating_add(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_millisecond() {
        let t0 = Instant::now();
        let s = Stamp::new(t0);
        assert!(s.instant() <= t0);
        assert!(t0 - s.instant() < Duration::from_millis(1));
        let later = t0 + Duration::from_millis(1500);
        let d = Stamp::new(later).0.get() - s.0.get();
        assert!(d == 1500 || d == 1501, "{d}");
        assert!(Stamp::new(later) >= s.after(Duration::from_millis(1500)));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn ceil_is_never_before() {
        let t0 = Instant::now() + Duration::from_micros(1234);
        let c = Stamp::ceil(t0);
        assert!(c.instant() >= t0);
        assert!(c.instant() - t0 < Duration::from_millis(1));
        assert_eq!(Stamp::ceil(c.instant()), c);
    }

    #[test]
    fn earlier_instants_still_order() {
        let t0 = Instant::now();
        let s = Stamp::new(t0);
        let before = t0.checked_sub(Duration::from_secs(60)).unwrap_or(t0);
        assert!(Stamp::new(before) <= s);
    }
}
