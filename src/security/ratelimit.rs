//! Token buckets per client IP, in a table of bounded size.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per
//! second; each attempt takes one. A bucket that has refilled completely is
//! indistinguishable from a new one, so it may be dropped: when the table is
//! full, those entries are swept out (at most once per second, so a flood of
//! new addresses costs O(1) per attempt between sweeps). If it is still full
//! after a sweep, new addresses are refused until entries age out — the
//! table never grows past `max_entries`, and nobody's bucket is reset by an
//! attacker who fills it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::client_ip::rate_key;
use crate::proto::Stamp;

/// A table every event loop uses (`--workers`): one lock, taken for one
/// call at a time (accepts, handshakes and logins, never a message), so a
/// limit is exact however many loops there are.
#[derive(Debug, Default)]
pub struct SharedTable<T>(std::sync::Arc<std::sync::Mutex<T>>);

impl<T> Clone for SharedTable<T> {
    fn clone(&self) -> Self {
        SharedTable(std::sync::Arc::clone(&self.0))
    }
}

impl<T> SharedTable<T> {
    /// `table`, to be shared.
    pub fn new(table: T) -> SharedTable<T> {
        SharedTable(std::sync::Arc::new(std::sync::Mutex::new(table)))
    }

    /// The table, locked (a panic while it was locked does not poison it:
    /// its tables stay consistent between calls).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Default bound on the number of addresses tracked per table.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-IP token buckets.
#[derive(Debug)]
pub struct PerIp {
    rate: f64,
    burst: f64,
    max_entries: usize,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// Why an attempt was refused, and when to come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until a token is available (for `Retry-After`), ≥ 1.
    pub retry_after_s: u64,
}

impl PerIp {
    /// Buckets of `burst` tokens refilled at `per_second`.
    pub fn new(per_second: f64, burst: u32, max_entries: usize) -> PerIp {
        PerIp {
            rate: per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            max_entries: max_entries.max(1),
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// `per_minute` attempts a minute, all of which may come at once.
    pub fn per_minute(per_minute: u32, max_entries: usize) -> PerIp {
        PerIp::new(f64::from(per_minute) / 60.0, per_minute, max_entries)
    }

    /// Takes a token for `ip` at `now`, or says how long to wait.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        let ip = rate_key(ip);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_entries {
            self.sweep(now);
            if self.buckets.len() >= self.max_entries {
                return Err(Limited { retry_after_s: 1 });
            }
        }
        let burst = self.burst;
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            Err(Limited {
                retry_after_s: (wait.ceil() as u64).max(1),
            })
        }
    }

    /// Whether `ip` has a token at `now`, without taking it.
    pub fn has_token(&self, ip: IpAddr, now: Instant) -> bool {
        match self.buckets.get(&rate_key(ip)) {
            None => true,
            Some(b) => {
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                (b.tokens + elapsed * self.rate).min(self.burst) >= 1.0
            }
        }
    }

    /// Drops the buckets that have refilled completely.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
    }

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut l = PerIp::per_minute(10, 100);
        for _ in 0..10 {
            l.check(ip(1), t0).unwrap();
        }
        assert_eq!(l.check(ip(1), t0), Err(Limited { retry_after_s: 6 }));
        // Another address has its own bucket.
        l.check(ip(2), t0).unwrap();
        // One token back after 6 s.
        l.check(ip(1), t0 + Duration::from_secs(6)).unwrap();
        assert!(l.check(ip(1), t0 + Duration::from_secs(6)).is_err());
    }

    #[test]
    fn table_is_bounded_and_sweeps_full_buckets() {
        let t0 = Instant::now();
        let mut l = PerIp::per_minute(60, 3);
        for n in 0..3 {
            l.check(ip(n), t0).unwrap();
        }
        // Full: a fourth address is refused, nobody is evicted.
        assert_eq!(l.check(ip(9), t0), Err(Limited { retry_after_s: 1 }));
        assert_eq!(l.len(), 3);
        // After a second every bucket has refilled: swept, room again.
        let t1 = t0 + Duration::from_secs(2);
        l.check(ip(9), t1).unwrap();
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn exhausted_buckets_survive_a_sweep() {
        let t0 = Instant::now();
        let mut l = PerIp::per_minute(2, 2);
        l.check(ip(1), t0).unwrap();
        l.check(ip(1), t0).unwrap();
        l.check(ip(2), t0).unwrap();
        let t1 = t0 + Duration::from_secs(2);
        assert!(l.check(ip(3), t1).is_err());
        // ip(1) was not reset by the attempt from ip(3).
        assert!(l.check(ip(1), t1).is_err());
    }
}

/// What a connection's message bucket says about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate.
    Allowed,
    /// Over the rate: the message is dropped. `first` is true for the
    /// first refusal since the bucket was last allowed to fill, which gets
    /// the `rate_limited` error event (later ones are dropped silently, so
    /// a flood cannot turn the server into an amplifier).
    Refused {
        /// Whether to tell the client.
        first: bool,
    },
    /// The client kept sending past the burst after being told: close `1008`.
    StrikeOut,
}

/// One connection's message rate: a token bucket plus a count of the
/// messages refused since it was last full. Kept inline in the connection
/// (16 bytes of state).
#[derive(Clone, Copy, Debug)]
pub struct MessageRate {
    tokens: f32,
    strikes: u32,
    last: Stamp,
}

impl MessageRate {
    /// A full bucket at `now`.
    pub fn new(burst: u32, now: Stamp) -> MessageRate {
        MessageRate {
            tokens: burst as f32,
            strikes: 0,
            last: now,
        }
    }

    /// Counts one message at `now` against `per_second` with bursts of
    /// twice that (SPEC.md §8); more than one burst of refused messages is
    /// a strike-out.
    pub fn check(&mut self, per_second: u32, now: Stamp) -> Verdict {
        // Messages of one read share a stamp: nothing refills between them.
        if now != self.last {
            self.refill(per_second, now);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allowed;
        }
        self.refuse(per_second)
    }

    fn refill(&mut self, per_second: u32, now: Stamp) {
        let rate = per_second.max(1) as f32;
        let burst = 2.0 * rate;
        let elapsed = now.millis_since(self.last) as f32 / 1000.0;
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= burst {
            self.strikes = 0;
        }
    }

    #[cold]
    fn refuse(&mut self, per_second: u32) -> Verdict {
        let burst = 2.0 * per_second.max(1) as f32;
        self.strikes += 1;
        if self.strikes as f32 > burst {
            Verdict::StrikeOut
        } else {
            Verdict::Refused {
                first: self.strikes == 1,
            }
        }
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn burst_then_refusals_then_strike_out() {
        let t0 = Stamp::from_millis(5_000);
        let mut m = MessageRate::new(20, t0);
        for _ in 0..20 {
            assert_eq!(m.check(10, t0), Verdict::Allowed);
        }
        assert_eq!(m.check(10, t0), Verdict::Refused { first: true });
        for _ in 0..19 {
            assert_eq!(m.check(10, t0), Verdict::Refused { first: false });
        }
        assert_eq!(m.check(10, t0), Verdict::StrikeOut);
    }

    #[test]
    fn a_client_that_slows_down_is_forgiven() {
        let t0 = Stamp::from_millis(5_000);
        let mut m = MessageRate::new(20, t0);
        for _ in 0..25 {
            m.check(10, t0);
        }
        // 0.1 s later one token is back.
        assert_eq!(
            m.check(10, t0.after(Duration::from_millis(100))),
            Verdict::Allowed
        );
        // After a full refill the strikes are gone: a new burst, and the
        // next refusal is reported again.
        let t1 = t0.after(Duration::from_secs(3));
        for _ in 0..20 {
            assert_eq!(m.check(10, t1), Verdict::Allowed);
        }
        assert_eq!(m.check(10, t1), Verdict::Refused { first: true });
    }
}

/// Open connections per client address, capped at `max_per_ip`. Entries
/// are removed when their count drops to zero, so the table never holds
/// more entries than there are open connections.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    counts: std::collections::HashMap<IpAddr, u32>,
}

impl ConnectionCounts {
    /// Counts one more connection from `ip`; false when that is over
    /// `max_per_ip` (the connection is counted anyway, and released on
    /// close like the others).
    pub fn charge(&mut self, ip: IpAddr, max_per_ip: u32) -> bool {
        let ip = rate_key(ip);
        let n = self.counts.entry(ip).or_insert(0);
        *n += 1;
        *n <= max_per_ip
    }

    /// One connection from `ip` is gone.
    pub fn release(&mut self, ip: IpAddr) {
        let ip = rate_key(ip);
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.counts.entry(ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}
