//! Lines that an attacker can cause (refusals, timeouts, errors) are
//! limited: the same message with the same reason is written at most once
//! per [`WINDOW`]. The rest are counted, and once the window is over one
//! summary line says how many there were (`repeated=N`), so nothing is
//! lost but the detail of each. A flood of 30,000 refusals a second
//! becomes two lines a second per reason.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::LogLevel;

/// At most one line per message and reason in this long.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Distinct (message, reason) pairs tracked; beyond, new pairs share one
/// entry per message, so an attacker cannot grow the table by varying a
/// reason (a TLS alert text, say).
const MAX_KEYS: usize = 256;

struct Window {
    started: Instant,
    suppressed: u64,
    level: LogLevel,
    key_name: &'static str,
}

type Table = HashMap<(&'static str, String), Window>;

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// What to do with one line.
pub(super) enum Verdict {
    /// Write it; `repeated` lines were suppressed since the last one.
    Write { repeated: u64 },
    /// Count it and write nothing.
    Suppress,
}

/// Counts a line of `msg` whose reason is `key` at `now`.
pub(super) fn admit(
    level: LogLevel,
    msg: &'static str,
    key: (&'static str, &str),
    now: Instant,
) -> Verdict {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let table = guard.get_or_insert_with(HashMap::new);
    let mut value = key.1;
    if table.len() >= MAX_KEYS && !table.contains_key(&(msg, value.to_owned())) {
        value = "(other)";
    }
    let window = match table.entry((msg, value.to_owned())) {
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(Window {
                started: now,
                suppressed: 0,
                level,
                key_name: key.0,
            });
            return Verdict::Write { repeated: 0 };
        }
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
    };
    if now.saturating_duration_since(window.started) < WINDOW {
        window.suppressed += 1;
        return Verdict::Suppress;
    }
    let repeated = std::mem::take(&mut window.suppressed);
    window.started = now;
    Verdict::Write { repeated }
}

/// The summaries of windows that ended at `now` with lines suppressed:
/// (level, message, key name, key, count). Their windows start again.
pub(super) fn due(now: Instant) -> Vec<(LogLevel, &'static str, &'static str, String, u64)> {
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(table) = guard.as_mut() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    table.retain(|(msg, key), w| {
        let over = now.saturating_duration_since(w.started) >= WINDOW;
        if over && w.suppressed > 0 {
            out.push((w.level, *msg, w.key_name, key.clone(), w.suppressed));
            w.suppressed = 0;
            w.started = now;
        }
        // Quiet entries leave the table, so it holds only live floods.
        !(over && w.suppressed == 0 && now.saturating_duration_since(w.started) >= 2 * WINDOW)
    });
    out
}

/// Fields of a summary line.
pub(super) fn summary_fields<'a>(
    key_name: &'a str,
    key: &'a dyn Display,
    count: &'a dyn Display,
) -> [(&'a str, &'a dyn Display); 3] {
    [
        (key_name, key),
        ("repeated", count),
        ("window_ms", &1000u32),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_then_a_count() {
        let t0 = Instant::now();
        let msg = "test: limiter one line";
        let admit_at = |ms: u64| {
            admit(
                LogLevel::Info,
                msg,
                ("reason", "r"),
                t0 + Duration::from_millis(ms),
            )
        };
        assert!(matches!(admit_at(0), Verdict::Write { repeated: 0 }));
        for ms in 1..=999 {
            assert!(matches!(admit_at(ms), Verdict::Suppress), "{ms}");
        }
        // Another reason has its own window.
        assert!(matches!(
            admit(
                LogLevel::Info,
                msg,
                ("reason", "other"),
                t0 + Duration::from_millis(5)
            ),
            Verdict::Write { repeated: 0 }
        ));
        // The window is over: the summary is due, once.
        let due_now: Vec<_> = due(t0 + Duration::from_millis(1000))
            .into_iter()
            .filter(|d| d.1 == msg)
            .collect();
        assert_eq!(due_now.len(), 1);
        assert_eq!(
            (due_now[0].2, due_now[0].3.as_str(), due_now[0].4),
            ("reason", "r", 999)
        );
        assert!(
            due(t0 + Duration::from_millis(1000))
                .iter()
                .all(|d| d.1 != msg)
        );
        // The summary started a new window.
        assert!(matches!(admit_at(1500), Verdict::Suppress));
        assert!(matches!(admit_at(2000), Verdict::Write { repeated: 1 }));
    }
}
