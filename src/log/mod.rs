//! Structured logging to stderr, one line per event, off the event loop.
//!
//! Lines are formatted on the calling thread and handed to a writer thread
//! through a bounded channel, so a stalled stderr never blocks the loop; when
//! the channel is full the line is dropped and counted, and the count is
//! reported once the writer catches up.

use std::fmt::{self, Display, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use crate::config::{LogFormat, LogLevel};

mod limit;
mod redact;
pub use redact::{Header, Target, holds_jwt};

struct Logger {
    level: LogLevel,
    format: LogFormat,
    tx: SyncSender<String>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines handed to the writer thread, and lines it has written.
static SENT: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Lines that can wait in the channel before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;

/// Starts the writer thread. Later calls are ignored.
pub fn init(level: LogLevel, format: LogFormat) {
    let (tx, rx) = sync_channel::<String>(QUEUE_LINES);
    if LOGGER.set(Logger { level, format, tx }).is_err() {
        return;
    }
    std::thread::Builder::new()
        .name("palisade-log".into())
        .spawn(move || {
            let stderr = std::io::stderr();
            loop {
                // Wakes at least twice per window to write the summaries
                // of limited lines.
                let line = match rx.recv_timeout(limit::WINDOW / 2) {
                    Ok(line) => Some(line),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let mut out = stderr.lock();
                if let Some(line) = line {
                    let _ = out.write_all(line.as_bytes());
                    WRITTEN.fetch_add(1, Ordering::Release);
                }
                for (level, msg, key_name, key, count) in limit::due(Instant::now()) {
                    let fields = limit::summary_fields(key_name, &key, &count);
                    let line = format_line(format, level, &format!("{msg} (repeated)"), &fields);
                    let _ = out.write_all(line.as_bytes());
                }
                let dropped = DROPPED.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let _ = writeln!(
                        out,
                        "{} WARN log lines dropped count={dropped}",
                        timestamp()
                    );
                }
            }
        })
        .expect("spawn log thread");
}

/// Waits (at most `timeout`) until the writer thread has written every
/// line logged so far: call before the process exits.
pub fn flush(timeout: std::time::Duration) {
    let target = SENT.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + timeout;
    while WRITTEN.load(Ordering::Acquire) < target && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether `level` would be logged.
pub fn enabled(level: LogLevel) -> bool {
    LOGGER
        .get()
        .map_or(level <= LogLevel::Info, |l| level <= l.level)
}

/// Logs `msg` with `fields`.
pub fn emit(level: LogLevel, msg: &str, fields: &[(&str, &dyn Display)]) {
    if !enabled(level) {
        return;
    }
    let format = LOGGER.get().map_or(LogFormat::Text, |l| l.format);
    let line = format_line(format, level, msg, fields);
    match LOGGER.get() {
        Some(l) => match l.tx.try_send(line) {
            Ok(()) => {
                SENT.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        },
        None => eprint!("{line}"),
    }
}

/// Logs like [`emit`] a line an attacker can cause (a refusal, a timeout,
/// an error): at most one line per second for `msg` with the same `key`
/// (the reason, as a field name and value; it should be among `fields`).
/// The lines in between are counted, and one `"{msg} (repeated)"` line
/// with `repeated=N` follows when the second is over.
pub fn limited(
    level: LogLevel,
    msg: &'static str,
    key: (&'static str, &str),
    fields: &[(&str, &dyn Display)],
) {
    if !enabled(level) {
        return;
    }
    match limit::admit(level, msg, key, Instant::now()) {
        limit::Verdict::Suppress => {}
        limit::Verdict::Write { repeated: 0 } => emit(level, msg, fields),
        limit::Verdict::Write { repeated } => {
            let mut all: Vec<(&str, &dyn Display)> = fields.to_vec();
            all.push(("repeated", &repeated));
            emit(level, msg, &all);
        }
    }
}

/// Logs at warn level.
pub fn warn(msg: &str, fields: &[(&str, &dyn Display)]) {
    emit(LogLevel::Warn, msg, fields)
}
/// Logs at info level.
pub fn info(msg: &str, fields: &[(&str, &dyn Display)]) {
    emit(LogLevel::Info, msg, fields)
}
/// Logs at debug level.
pub fn debug(msg: &str, fields: &[(&str, &dyn Display)]) {
    emit(LogLevel::Debug, msg, fields)
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
    }
}

/// Formats one line (with its newline).
pub fn format_line(
    format: LogFormat,
    level: LogLevel,
    msg: &str,
    fields: &[(&str, &dyn Display)],
) -> String {
    let mut line = String::with_capacity(128);
    match format {
        LogFormat::Text => {
            let _ = write!(line, "{} {} {}", timestamp(), level_name(level), msg);
            for (k, v) in fields {
                let v = v.to_string();
                if v.is_empty() || v.contains([' ', '"', '=', '\n', '\r', '\\']) {
                    let _ = write!(line, " {k}={}", serde_json::Value::String(v));
                } else {
                    let _ = write!(line, " {k}={v}");
                }
            }
        }
        LogFormat::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), timestamp().to_string().into());
            obj.insert(
                "level".into(),
                level_name(level).to_ascii_lowercase().into(),
            );
            obj.insert("msg".into(), msg.into());
            for (k, v) in fields {
                obj.insert((*k).into(), json_value(v.to_string()));
            }
            line = serde_json::Value::Object(obj).to_string();
        }
    }
    line.push('\n');
    line
}

/// A field's text as JSON: a number when it is written as one (counts,
/// milliseconds, status codes, ids), else a string.
fn json_value(text: String) -> serde_json::Value {
    let b = text.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let integer = !digits.is_empty()
        && digits.len() <= 15
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if integer {
        if let Ok(n) = text.parse::<i64>() {
            return n.into();
        }
    }
    text.into()
}

/// The format lines are written in (text before [`init`]).
pub fn format() -> LogFormat {
    LOGGER.get().map_or(LogFormat::Text, |l| l.format)
}

/// The line that shows the demo user's password once (written to stderr
/// directly, never through the log), in the log's format.
pub fn demo_login_line(password: &str) -> String {
    match format() {
        LogFormat::Json => serde_json::json!({
            "ts": timestamp().to_string(),
            "level": "info",
            "msg": "demo login",
            "username": "demo",
            "password": password,
        })
        .to_string(),
        LogFormat::Text => format!("demo login: demo / {password}"),
    }
}

/// UTC time as RFC 3339 with milliseconds.
pub struct Timestamp(u64);

impl Timestamp {
    /// A timestamp from Unix seconds.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub fn from_unix_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }
}

/// The current time.
pub fn timestamp() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Timestamp(ms)
}

impl Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_411), (2025, 11, 19));
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn text_and_json_lines() {
        let l = format_line(
            LogFormat::Text,
            LogLevel::Info,
            "handshake refused",
            &[("status", &426), ("reason", &"not a WebSocket upgrade")],
        );
        assert!(
            l.ends_with(" INFO handshake refused status=426 reason=\"not a WebSocket upgrade\"\n"),
            "{l}"
        );
        let j = format_line(LogFormat::Json, LogLevel::Warn, "m", &[("k", &"v\"")]);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["k"], "v\"");
        // Numbers as numbers; what only looks like one stays a string.
        let fields: [(&str, &dyn Display); 5] = [
            ("grace_ms", &5000),
            ("code", &-1),
            ("user", &"007"),
            ("peer", &"127.0.0.1:80"),
            ("big", &"12345678901234567890"),
        ];
        let j = format_line(LogFormat::Json, LogLevel::Info, "m", &fields);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["grace_ms"], 5000);
        assert_eq!(v["code"], -1);
        assert_eq!(v["user"], "007");
        assert_eq!(v["peer"], "127.0.0.1:80");
        assert_eq!(v["big"], "12345678901234567890");
    }
}
