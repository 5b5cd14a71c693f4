//! The counts behind the global caps, shared by every event loop
//! (`--workers`): connections and long-polling sessions against
//! `limits.max_connections`, and waiting handshakes and sessions that have
//! not joined against `limits.max_pending_handshakes`.
//!
//! Atomics, changed at accept, close and a session's start and end (never
//! per message). A slot is taken with a compare-and-swap against the cap,
//! so two loops cannot both take the last one: the caps are exact however
//! many loops there are.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared counts.
#[derive(Debug, Default)]
pub(crate) struct Capacity {
    /// Connections and long-polling sessions counted in `max_connections`.
    open: AtomicUsize,
    /// Connections that have not finished their handshake.
    pending: AtomicUsize,
    /// Long-polling sessions that have not joined a namespace yet.
    unjoined: AtomicUsize,
}

/// Which count.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Open,
    Pending,
    Unjoined,
}

impl Capacity {
    fn count(&self, which: Count) -> &AtomicUsize {
        match which {
            Count::Open => &self.open,
            Count::Pending => &self.pending,
            Count::Unjoined => &self.unjoined,
        }
    }

    /// Takes one of `max`; false (nothing taken) when all are taken.
    pub fn try_take(&self, which: Count, max: usize) -> bool {
        self.count(which)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes one whatever the cap (the caller decides what to do over it).
    pub fn take(&self, which: Count) {
        self.count(which).fetch_add(1, Ordering::AcqRel);
    }

    /// Gives one back.
    pub fn give_back(&self, which: Count) {
        let _ = self
            .count(which)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// How many are taken.
    pub fn taken(&self, which: Count) -> usize {
        self.count(which).load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_cap_is_exact_across_threads() {
        let c = Arc::new(Capacity::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    (0..1000).filter(|_| c.try_take(Count::Open, 1500)).count()
                })
            })
            .collect();
        let took: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(took, 1500);
        assert_eq!(c.taken(Count::Open), 1500);
        c.give_back(Count::Open);
        assert!(c.try_take(Count::Open, 1500));
        assert!(!c.try_take(Count::Open, 1500));
    }
}
