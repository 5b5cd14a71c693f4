//! Connection deadlines: a min-heap of (stamp, token). Each connection keeps
//! the stamp of its earliest entry (`Conn::timer_at`); an entry that no
//! longer matches it was superseded and is skipped when it comes up, so
//! moving a deadline earlier costs one push and never a search.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

use super::Server;
use crate::handler::Handler;
use crate::proto::Stamp;

/// The heap of deadlines.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Stamp, usize)>>,
}

impl Timers {
    /// The earliest deadline.
    pub fn next(&self) -> Option<Stamp> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }
}

impl<H: Handler> Server<H> {
    /// Arms `token`'s deadline at `at` (rounded up: a timer that fired
    /// before its instant would find nothing to do and be scheduled again
    /// for the same moment).
    pub(super) fn schedule(&mut self, token: Token, at: Instant) {
        let at = self.clock.ceil(at);
        self.schedule_at(token, at);
    }

    /// Arms `token`'s deadline at `at` unless an earlier one is armed.
    pub(super) fn schedule_at(&mut self, token: Token, at: Stamp) {
        if let Some(conn) = self.conns.get_mut(token) {
            if conn.timer_at.is_none_or(|t| at < t) {
                conn.timer_at = Some(at);
                self.timers.heap.push(Reverse((at, token.0)));
            }
        }
    }

    /// Runs every deadline that is due at `now`.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        let stamp = self.clock.stamp(now);
        while let Some(Reverse((at, t))) = self.timers.heap.peek().copied() {
            if at > stamp {
                break;
            }
            self.timers.heap.pop();
            let token = Token(t);
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.timer_at != Some(at) {
                continue; // superseded by an earlier entry
            }
            conn.timer_at = None;
            self.on_timeout(token, now);
        }
    }
}
