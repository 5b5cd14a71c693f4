//! Points in time as the caller counts them: whole milliseconds since an
//! epoch the caller chooses. The core never reads a clock and keeps no
//! global state: every stamp comes from a `now` the caller passed in, and
//! only differences between stamps mean anything.
//!
//! 8 bytes (and `Option<Stamp>` too), where `std::time::Instant` takes 16.

use core::num::NonZeroU64;
use core::time::Duration;

/// A point in time, in whole milliseconds since the caller's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

impl Stamp {
    /// The epoch itself.
    pub const EPOCH: Stamp = Stamp(NonZeroU64::MIN);

    /// The point `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Stamp {
        Stamp(NonZeroU64::MIN.saturating_add(ms))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0.get() - 1
    }

    /// This stamp plus `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: u64) -> Stamp {
        Stamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to this stamp (0 if it is later).
    pub const fn millis_since(self, earlier: Stamp) -> u64 {
        self.0.get().saturating_sub(earlier.0.get())
    }

    /// This stamp plus `d`, rounded up to whole milliseconds (saturating),
    /// so a deadline kept as a stamp is never earlier than asked.
    #[inline]
    pub fn after(self, d: Duration) -> Stamp {
        // In u64 (not `Duration::as_millis`'s u128): this runs for every
        // message, when the connection's next deadline is worked out.
        let ms = d
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
        Stamp(self.0.saturating_add(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn arithmetic() {
        let t0 = Stamp::from_millis(1000);
        assert_eq!(t0.as_millis(), 1000);
        assert_eq!(Stamp::EPOCH.as_millis(), 0);
        assert_eq!(t0.after(Duration::from_millis(250)).millis_since(t0), 250);
        assert_eq!(t0.plus_millis(7).as_millis(), 1007);
        assert_eq!(
            Stamp::from_millis(u64::MAX - 2).plus_millis(9).as_millis(),
            u64::MAX - 1
        );
        assert_eq!(t0.after(Duration::from_micros(1)).millis_since(t0), 1);
        assert_eq!(t0.millis_since(t0.after(Duration::from_secs(1))), 0);
        assert!(t0 < t0.after(Duration::from_millis(1)));
        assert_eq!(Stamp::from_millis(u64::MAX).as_millis(), u64::MAX - 1);
        assert_eq!(core::mem::size_of::<Option<Stamp>>(), 8);
    }
}
