//! Connection deadlines in a hierarchical timer wheel.
//!
//! Why a wheel and not a heap: a heap's push and pop cost `log n` in the
//! number of deadlines, and every open connection has one (its idle
//! timeout), so the cost of a busy connection's deadline grew with the
//! number of idle ones. The wheel's insert is O(1) whatever it holds, and a
//! deadline is touched at most once per level on its way down to firing.
//!
//! The wheel counts whole milliseconds (the loop's [`Stamp`]s).
//! [`LEVELS`] levels of 64 slots: a slot of level `l` spans `64^l` ms, so
//! level 0 holds the next 64 ms to the millisecond, level 1 the next 4 s
//! in 64 ms slots, and so on up to about two years at level 5 (later
//! deadlines wait in the last slot and are placed again when it comes up).
//! A deadline goes to the lowest level whose current slot range it shares
//! with the wheel's time; when the wheel reaches a slot of a higher level,
//! its entries move down a level or more. A bitmap per level finds the next
//! occupied slot without a scan, so the loop's poll timeout costs a few
//! instructions.
//!
//! As with the heap before it, entries are never removed: each connection
//! keeps the stamp of its earliest entry (`Conn::timer_at`), an entry that
//! no longer matches it was superseded and is skipped when it comes up,
//! and a deadline that moves later (every message moves the idle deadline)
//! costs nothing until the old entry comes up and is re-armed.

use mio::Token;

use super::Server;
use super::clock::Now;
use super::conn::Conn;
use crate::handler::Handler;
use crate::proto::Stamp;

/// Bits of a slot index: 64 slots per level.
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
/// Levels: `64^6` ms is about 2.2 years.
const LEVELS: usize = 6;
/// The whole span of the wheel, in milliseconds.
const SPAN: u64 = 1 << (BITS * LEVELS as u32);

/// One deadline: when (ms since the clock's epoch) and whose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    at: u64,
    token: usize,
}

/// Entries per chunk: 4 KiB.
const CHUNK: usize = 4096 / std::mem::size_of::<Entry>();

/// A slot's entries, in chunks of [`CHUNK`] that never grow: a slot that
/// takes in thousands of deadlines at once (10,000 connections accepted
/// within a second) would otherwise grow one vector by doubling, and the
/// allocator keeps the memory of each smaller copy; equal chunks are
/// reused instead.
type Slot = Vec<Vec<Entry>>;

/// A level of the wheel.
struct Level {
    /// Bit `s` is set when slot `s` holds entries.
    occupied: u64,
    slots: [Slot; SLOTS],
}

/// The timer wheel.
pub(super) struct Timers {
    /// The wheel's time in ms: every deadline before it has been handed
    /// out by [`Timers::advance`].
    elapsed: u64,
    levels: Box<[Level; LEVELS]>,
    /// When the next slot comes up (see [`Timers::next`]): kept up to date
    /// so that a turn with nothing due costs one comparison.
    next_at: Option<u64>,
    /// Emptied chunks, for reuse.
    free: Vec<Vec<Entry>>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            elapsed: 0,
            levels: Box::new(std::array::from_fn(|_| Level {
                occupied: 0,
                slots: std::array::from_fn(|_| Vec::new()),
            })),
            next_at: None,
            free: Vec::new(),
        }
    }
}

/// The width of a slot of `level`, in ms.
fn slot_width(level: usize) -> u64 {
    1 << (BITS * level as u32)
}

impl Timers {
    /// Adds a deadline at `at` (ms) for `token`. A deadline already past
    /// goes to the current slot and comes out at the next `advance`.
    fn insert(&mut self, at: u64, token: usize) {
        // Where it is filed: not before the wheel's time, and less than one
        // turn of the top level ahead (a later deadline waits there and is
        // filed again when its slot comes up).
        let furthest = self.elapsed + (SPAN - slot_width(LEVELS - 1));
        let place = at.clamp(self.elapsed, furthest);
        // The lowest level whose current slot range holds both `place` and
        // the wheel's time: found from the highest bit where they differ.
        let differ = (self.elapsed ^ place) | (SLOTS as u64 - 1);
        let level = (((63 - differ.leading_zeros()) / BITS) as usize).min(LEVELS - 1);
        let shift = BITS * level as u32;
        let slot = ((place >> shift) as usize) & (SLOTS - 1);
        let l = &mut self.levels[level];
        let chunks = &mut l.slots[slot];
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(Entry { at, token }),
            _ => {
                let mut chunk = self.free.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
                chunk.push(Entry { at, token });
                chunks.push(chunk);
            }
        }
        l.occupied |= 1 << slot;
        let start = place >> shift << shift;
        self.next_at = Some(self.next_at.map_or(start, |n| n.min(start)));
    }

    /// The next slot to come up: its level, index, and the moment it
    /// starts (ms). Lower levels always come first: their entries lie in
    /// the current slot of every level above. Only the top level wraps
    /// around: a slot behind the wheel's time there is in its next turn.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level, l) in self.levels.iter().enumerate() {
            if l.occupied == 0 {
                continue;
            }
            let shift = BITS * level as u32;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            debug_assert!(
                level == LEVELS - 1 || l.occupied & ((1 << now_slot) - 1) == 0,
                "a slot behind the wheel's time"
            );
            let ahead =
                now_slot + l.occupied.rotate_right(now_slot as u32).trailing_zeros() as usize;
            let base = self.elapsed & !((slot_width(level) << BITS) - 1);
            return Some((
                level,
                ahead & (SLOTS - 1),
                base + ahead as u64 * slot_width(level),
            ));
        }
        None
    }

    /// The earliest moment something may be due: exact for the next 64 ms,
    /// otherwise the start of the slot whose entries must move down then.
    pub fn next(&self) -> Option<Stamp> {
        debug_assert_eq!(self.next_at, self.next_slot().map(|(_, _, at)| at));
        self.next_at.map(Stamp::from_millis)
    }

    /// Moves the wheel to `now`, appending every entry due by then to
    /// `due` as `(stamp, token)`.
    fn advance(&mut self, now: u64, due: &mut Vec<(Stamp, Token)>) {
        if self.next_at.is_none_or(|n| n > now) {
            self.elapsed = self.elapsed.max(now);
            return;
        }
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = start;
            let l = &mut self.levels[level];
            l.occupied &= !(1 << slot);
            // The chunks go back to the free list as they are emptied, so
            // the ones refilled below are the same memory.
            for mut chunk in std::mem::take(&mut l.slots[slot]) {
                for e in chunk.drain(..) {
                    if e.at <= now {
                        due.push((Stamp::from_millis(e.at), Token(e.token)));
                    } else {
                        self.insert(e.at, e.token);
                    }
                }
                self.free.push(chunk);
            }
        }
        self.elapsed = self.elapsed.max(now);
        self.next_at = self.next_slot().map(|(_, _, at)| at);
    }
}

impl Timers {
    /// Arms `conn`'s deadline at `at` unless an earlier one is armed (a
    /// later one is found when the earlier entry comes up).
    pub fn arm(&mut self, conn: &mut Conn, token: Token, at: Stamp) {
        if conn.timer_at.is_none_or(|t| at < t) {
            conn.timer_at = Some(at);
            self.insert(at.as_millis(), token.0);
        }
    }

    /// Whether anything may be due at `now` (a turn with nothing due costs
    /// this comparison).
    #[inline]
    pub fn any_due(&self, now: Stamp) -> bool {
        self.next_at.is_some_and(|n| n <= now.as_millis())
    }
}

impl<H: Handler> Server<H> {
    /// Arms `token`'s deadline at `at` unless an earlier one is armed.
    pub(super) fn schedule_at(&mut self, token: Token, at: Stamp) {
        if let Some(conn) = self.conns.get_mut(token) {
            self.timers.arm(conn, token, at);
        }
    }

    /// Runs every deadline that is due at `now`.
    pub(super) fn fire_timers(&mut self, now: Now) {
        if !self.timers.any_due(now.stamp) {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.timers.advance(now.stamp.as_millis(), &mut due);
        for (at, token) in due.drain(..) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.timer_at != Some(at) {
                continue; // superseded by an earlier entry
            }
            conn.timer_at = None;
            self.on_timeout(token, now);
        }
        self.due = due;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Advances `w` to `now` and returns the tokens that came due, sorted.
    fn fire(w: &mut Timers, now: u64) -> Vec<usize> {
        let mut due = Vec::new();
        w.advance(now, &mut due);
        let mut t: Vec<usize> = due
            .iter()
            .map(|(at, t)| {
                assert!(at.as_millis() <= now, "{at:?} fired at {now}");
                t.0
            })
            .collect();
        t.sort_unstable();
        t
    }

    #[test]
    fn fires_each_deadline_once_and_never_early() {
        let mut w = Timers::default();
        w.insert(5, 1);
        w.insert(64, 2);
        w.insert(4_100, 3);
        w.insert(3, 4);
        assert_eq!(w.next(), Some(Stamp::from_millis(3)));
        assert_eq!(fire(&mut w, 2), Vec::<usize>::new());
        assert_eq!(fire(&mut w, 5), vec![1, 4]);
        assert_eq!(fire(&mut w, 63), Vec::<usize>::new());
        assert_eq!(fire(&mut w, 64), vec![2]);
        assert_eq!(fire(&mut w, 4_099), Vec::<usize>::new());
        assert_eq!(fire(&mut w, 10_000), vec![3]);
        assert_eq!(w.next(), None);
    }

    #[test]
    fn past_deadlines_come_out_at_once() {
        let mut w = Timers::default();
        assert_eq!(fire(&mut w, 1_000), Vec::<usize>::new());
        w.insert(10, 7);
        assert_eq!(w.next(), Some(Stamp::from_millis(1_000)));
        assert_eq!(fire(&mut w, 1_000), vec![7]);
    }

    #[test]
    fn next_is_never_after_the_earliest_deadline() {
        let mut w = Timers::default();
        w.insert(70_000, 1);
        let next = w.next().expect("armed").as_millis();
        assert!(next <= 70_000 && next > 0, "{next}");
        // Walking from wake-up to wake-up reaches it exactly.
        let mut now = 0;
        let mut wakeups = 0;
        while let Some(t) = w.next() {
            now = t.as_millis();
            wakeups += 1;
            if !fire(&mut w, now).is_empty() {
                break;
            }
        }
        assert_eq!(now, 70_000);
        assert!(wakeups <= LEVELS, "{wakeups}");
    }

    #[test]
    fn beyond_the_span_waits_and_is_filed_again() {
        let mut w = Timers::default();
        let far = SPAN * 3 + 17;
        w.insert(far, 9);
        let mut now = 0;
        for _ in 0..64 {
            match w.next() {
                Some(t) if t.as_millis() < far => {
                    now = t.as_millis();
                    assert_eq!(fire(&mut w, now), Vec::<usize>::new());
                }
                _ => break,
            }
        }
        assert!(now < far);
        assert_eq!(fire(&mut w, far), vec![9]);
    }

    #[test]
    fn a_crowded_slot_spans_chunks_that_are_reused() {
        let mut w = Timers::default();
        let n = CHUNK * 3 + 7;
        for token in 0..n {
            w.insert(10_000 + (token % 3) as u64, token);
        }
        assert_eq!(fire(&mut w, 10_002), (0..n).collect::<Vec<_>>());
        let spare = w.free.len();
        assert!(spare >= 4, "{spare}");
        for token in 0..n {
            w.insert(20_000, token);
        }
        assert_eq!(w.free.len(), spare - 4, "the same chunks again");
        assert_eq!(fire(&mut w, 20_000).len(), n);
    }

    /// The wheel against a plain list, over a long random schedule:
    /// every deadline fires exactly once, at the first advance at or after
    /// it, and `next` never lies past the earliest one.
    #[test]
    fn agrees_with_a_plain_list() {
        let mut w = Timers::default();
        let mut model: Vec<(u64, usize)> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = 0u64;
        for token in 0..20_000usize {
            let r = rand();
            // Mostly near deadlines, some far, a few in the past.
            let delta = match r % 8 {
                0 => r >> 40,
                1..=5 => (r >> 8) % 5_000,
                6 => (r >> 8) % 70,
                _ => 0,
            };
            let at = (now + delta).saturating_sub(if r % 16 == 15 { 3 } else { 0 });
            w.insert(at, token);
            model.push((at, token));
            if r % 3 == 0 {
                now += (r >> 20) % 200;
                if let (Some(next), Some(min)) = (w.next(), model.iter().map(|m| m.0).min()) {
                    assert!(next.as_millis() <= min.max(w.elapsed), "{next:?} {min}");
                }
                let got = fire(&mut w, now);
                let mut want: Vec<usize> =
                    model.iter().filter(|m| m.0 <= now).map(|m| m.1).collect();
                want.sort_unstable();
                model.retain(|m| m.0 > now);
                assert_eq!(got, want, "at {now}");
            }
        }
        let end = model.iter().map(|m| m.0).max().unwrap_or(now);
        let mut left = fire(&mut w, end);
        let mut want: Vec<usize> = model.iter().map(|m| m.1).collect();
        want.sort_unstable();
        left.sort_unstable();
        assert_eq!(left, want);
        assert_eq!(w.next(), None);
    }
}
