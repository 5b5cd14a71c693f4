//! The counters behind `GET /metrics` (SPEC.md §7), and their page in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Every event loop (worker) owns one [`Stats`] and is its only writer: a
//! count is a relaxed load and store of an atomic, which compiles to the
//! same single `add` to memory as a plain integer, with no locked
//! instruction, and any thread may read it. The page sums the workers'
//! figures when it is asked for. Labels take values from fixed lists, so a
//! client cannot grow the page: an unknown reason counts as `other`.
//!
//! What counts:
//!
//! - **messages**: WebSocket data messages (text or binary, whole), in and
//!   out, on every endpoint; a Socket.IO long-polling request's Engine.IO
//!   packets, in and out;
//! - **bytes**: what was read from and written to client sockets (TLS
//!   records and HTTP included);
//! - **handshakes**: requests on the WebSocket path and requests that open a
//!   Socket.IO session (over either transport), accepted or refused, with
//!   the refusal's reason;
//! - **closes**: WebSockets closed, by close code (`1006` when none was
//!   exchanged);
//! - **rate limited**: requests and messages refused by a rate or a quota;
//! - **auth failures**: credentials refused at a handshake, a log-in or a
//!   Socket.IO CONNECT.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A count with one writer (its worker) and any readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (only the owning worker calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Takes `n` from a gauge.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Counters under one label, whose values come from a fixed list (the last
/// is `other`).
#[derive(Debug)]
pub struct Labeled {
    values: &'static [&'static str],
    counts: Box<[Counter]>,
}

impl Labeled {
    fn new(values: &'static [&'static str]) -> Labeled {
        Labeled {
            values,
            counts: values.iter().map(|_| Counter::default()).collect(),
        }
    }

    /// Adds one to the series of `value` (`other` when it is not listed).
    pub fn inc(&self, value: &str) {
        let i = self.values.iter().position(|v| *v == value);
        self.counts[i.unwrap_or(self.values.len() - 1)].inc();
    }

    fn get(&self, i: usize) -> u64 {
        self.counts[i].get()
    }
}

/// Why a handshake was refused: the values of `reason` with
/// `result="refused"`.
pub const HANDSHAKE_REFUSALS: &[&str] = &[
    "bad_request",
    "head_too_large",
    "method",
    "host",
    "upgrade_required",
    "origin",
    "auth",
    "rate_limited",
    "ip_quota",
    "capacity",
    "other",
];

/// The `reason` of a refused handshake from its status and logged reason.
pub fn handshake_refusal(status: u16, reason: &str) -> &'static str {
    match status {
        400 => "bad_request",
        431 => "head_too_large",
        405 => "method",
        421 => "host",
        426 => "upgrade_required",
        403 => "origin",
        401 => "auth",
        429 if reason.contains("connections") => "ip_quota",
        429 => "rate_limited",
        503 => "capacity",
        _ => "other",
    }
}

/// What a rate or quota refused: the values of `kind`.
pub const RATE_KINDS: &[&str] = &[
    "handshake",
    "connections_per_ip",
    "message",
    "login",
    "other",
];

/// Why credentials were refused: the values of `reason`.
pub const AUTH_REASONS: &[&str] = &[
    "missing",
    "malformed",
    "unsupported_scheme",
    "query_token_disabled",
    "basic_not_allowed",
    "invalid_credentials",
    "invalid_api_key",
    "bad_signature",
    "wrong_alg",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "wrong_issuer",
    "revoked",
    "other",
];

/// Close codes with a series of their own (others count as `other`).
pub const CLOSE_CODES: &[&str] = &[
    "1000", "1001", "1002", "1003", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "other",
];

/// Upper bounds of the handshake-duration buckets, in milliseconds (the
/// loop's clock has millisecond steps).
pub const DURATION_BUCKETS_MS: &[u64] = &[1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/// One worker's figures.
#[derive(Debug)]
pub struct Stats {
    /// Connections counted in `max_connections` (HTTP and WebSocket).
    pub connections_open: Counter,
    /// Socket.IO sessions on a WebSocket.
    pub socketio_websocket: Counter,
    /// Socket.IO sessions on long-polling.
    pub socketio_polling: Counter,
    /// Data messages in.
    pub messages_received: Counter,
    /// Data messages out.
    pub messages_sent: Counter,
    /// Bytes read from client sockets.
    pub bytes_received: Counter,
    /// Bytes written to client sockets.
    pub bytes_sent: Counter,
    /// Handshakes accepted.
    pub handshakes_accepted: Counter,
    /// Requests handed to the event loop that owns their Socket.IO session.
    pub handoffs: Counter,
    /// Publications not queued for a subscriber whose queue was full.
    pub publications_dropped: Counter,
    /// Connections to Redis ready (a gauge: two per loop when all is well).
    pub cluster_links_up: Counter,
    /// Publications sent to Redis.
    pub cluster_sent: Counter,
    /// Broadcasts received from other instances through Redis.
    pub cluster_received: Counter,
    /// Publications that did not reach Redis (down, or its queue full, or
    /// lost with a connection before Redis confirmed them).
    pub cluster_unsent: Counter,
    /// Connections to Redis set up.
    pub cluster_connects: Counter,
    /// Connections to Redis that failed or were lost.
    pub cluster_failures: Counter,
    /// Handshakes refused, by reason ([`HANDSHAKE_REFUSALS`]).
    pub handshakes_refused: Labeled,
    /// WebSockets closed, by code ([`CLOSE_CODES`]).
    pub closes: Labeled,
    /// Rate and quota refusals, by kind ([`RATE_KINDS`]).
    pub rate_limited: Labeled,
    /// Credentials refused, by reason ([`AUTH_REASONS`]).
    pub auth_failures: Labeled,
    /// Accepted handshakes by duration ([`DURATION_BUCKETS_MS`], then
    /// `+Inf`), not cumulative.
    duration_buckets: Box<[Counter]>,
    /// Sum of the accepted handshakes' durations, in milliseconds.
    duration_sum_ms: Counter,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections_open: Counter::default(),
            socketio_websocket: Counter::default(),
            socketio_polling: Counter::default(),
            messages_received: Counter::default(),
            messages_sent: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            handshakes_accepted: Counter::default(),
            handoffs: Counter::default(),
            publications_dropped: Counter::default(),
            cluster_links_up: Counter::default(),
            cluster_sent: Counter::default(),
            cluster_received: Counter::default(),
            cluster_unsent: Counter::default(),
            cluster_connects: Counter::default(),
            cluster_failures: Counter::default(),
            handshakes_refused: Labeled::new(HANDSHAKE_REFUSALS),
            closes: Labeled::new(CLOSE_CODES),
            rate_limited: Labeled::new(RATE_KINDS),
            auth_failures: Labeled::new(AUTH_REASONS),
            duration_buckets: (0..=DURATION_BUCKETS_MS.len())
                .map(|_| Counter::default())
                .collect(),
            duration_sum_ms: Counter::default(),
        }
    }
}

impl Stats {
    /// A handshake accepted after `ms` milliseconds (from the connection's
    /// accept to its `101`, or to the answer that opened a long-polling
    /// session).
    pub fn accepted(&self, ms: u64) {
        self.handshakes_accepted.inc();
        let i = DURATION_BUCKETS_MS.partition_point(|b| *b < ms);
        self.duration_buckets[i].inc();
        self.duration_sum_ms.add(ms);
    }

    /// A WebSocket closed with `code`.
    pub fn closed(&self, code: u16) {
        let i = CLOSE_CODES.iter().position(|c| c.parse() == Ok(code));
        self.closes.counts[i.unwrap_or(CLOSE_CODES.len() - 1)].inc();
    }
}

/// Every worker's figures: what `/metrics` shows.
#[derive(Debug)]
pub struct Registry {
    workers: Box<[Arc<Stats>]>,
    version: &'static str,
}

impl Registry {
    /// Figures for `workers` event loops.
    pub fn new(workers: usize) -> Arc<Registry> {
        Arc::new(Registry {
            workers: (0..workers.max(1)).map(|_| Arc::default()).collect(),
            version: env!("CARGO_PKG_VERSION"),
        })
    }

    /// Worker `i`'s figures, for it to write.
    pub fn worker(&self, i: usize) -> Arc<Stats> {
        Arc::clone(&self.workers[i])
    }

    fn sum(&self, f: impl Fn(&Stats) -> u64) -> u64 {
        self.workers.iter().map(|w| f(w)).fold(0, u64::wrapping_add)
    }

    /// The page, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut p = Page(String::with_capacity(8192));
        p.head(
            "palisade_build_info",
            "gauge",
            "Always 1; the labels name the build.",
        );
        p.line("palisade_build_info", &[("version", self.version)], 1);
        self.gauges(&mut p);
        self.counters(&mut p);
        self.histogram(&mut p);
        p.0
    }

    fn gauges(&self, p: &mut Page) {
        p.head(
            "palisade_connections_open",
            "gauge",
            "Connections open (HTTP and WebSocket), counted in limits.max_connections.",
        );
        p.line(
            "palisade_connections_open",
            &[],
            self.sum(|w| w.connections_open.get()),
        );
        p.head(
            "palisade_worker_connections_open",
            "gauge",
            "Connections open, by event loop.",
        );
        for (i, w) in self.workers.iter().enumerate() {
            let worker = i.to_string();
            p.line(
                "palisade_worker_connections_open",
                &[("worker", &worker)],
                w.connections_open.get(),
            );
        }
        p.head(
            "palisade_socketio_sessions",
            "gauge",
            "Socket.IO sessions, by transport.",
        );
        let ws = self.sum(|w| w.socketio_websocket.get());
        let polling = self.sum(|w| w.socketio_polling.get());
        p.line(
            "palisade_socketio_sessions",
            &[("transport", "polling")],
            polling,
        );
        p.line(
            "palisade_socketio_sessions",
            &[("transport", "websocket")],
            ws,
        );
        p.head(
            "palisade_cluster_links_up",
            "gauge",
            "Connections to Redis (cluster.redis_url) ready: two per event loop when all is well, 0 without a cluster.",
        );
        let up = self.sum(|w| w.cluster_links_up.get());
        p.line("palisade_cluster_links_up", &[], up);
    }

    fn counters(&self, p: &mut Page) {
        let plain: [(&str, &str, CounterOf); 9] = [
            (
                "palisade_messages_received_total",
                "Data messages received (WebSocket messages, long-polling packets).",
                |w| &w.messages_received,
            ),
            (
                "palisade_messages_sent_total",
                "Data messages sent (WebSocket messages, long-polling packets).",
                |w| &w.messages_sent,
            ),
            (
                "palisade_bytes_received_total",
                "Bytes read from client sockets, TLS and HTTP included.",
                |w| &w.bytes_received,
            ),
            (
                "palisade_bytes_sent_total",
                "Bytes written to client sockets, TLS and HTTP included.",
                |w| &w.bytes_sent,
            ),
            (
                "palisade_handoffs_total",
                "Socket.IO requests handed to the event loop that owns their session (--workers).",
                |w| &w.handoffs,
            ),
            (
                "palisade_publications_dropped_total",
                "Publications not queued for a subscriber whose queue was full (limits.max_outbound_bytes).",
                |w| &w.publications_dropped,
            ),
            (
                "palisade_cluster_connects_total",
                "Connections to Redis set up (reconnections included).",
                |w| &w.cluster_connects,
            ),
            (
                "palisade_cluster_failures_total",
                "Connections to Redis that could not be set up or were lost.",
                |w| &w.cluster_failures,
            ),
            (
                "palisade_cluster_unsent_total",
                "Publications that did not reach Redis (down, its queue full, or lost unconfirmed with a connection).",
                |w| &w.cluster_unsent,
            ),
        ];
        for (name, help, field) in plain {
            p.head(name, "counter", help);
            p.line(name, &[], self.sum(|w| field(w).get()));
        }
        let name = "palisade_cluster_messages_total";
        p.head(
            name,
            "counter",
            "Broadcasts through Redis: publications sent, and broadcasts of other instances received.",
        );
        let sent = self.sum(|w| w.cluster_sent.get());
        let received = self.sum(|w| w.cluster_received.get());
        p.line(name, &[("direction", "received")], received);
        p.line(name, &[("direction", "sent")], sent);
        let name = "palisade_handshakes_total";
        p.head(
            name,
            "counter",
            "WebSocket and Socket.IO handshakes, by result and the reason of a refusal.",
        );
        let accepted = self.sum(|w| w.handshakes_accepted.get());
        p.line(name, &[("result", "accepted"), ("reason", "ok")], accepted);
        for (i, reason) in HANDSHAKE_REFUSALS.iter().enumerate() {
            let n = self.sum(|w| w.handshakes_refused.get(i));
            p.line(name, &[("result", "refused"), ("reason", reason)], n);
        }
        let labeled: [(&str, &str, &str, LabeledOf); 3] = [
            (
                "palisade_closes_total",
                "WebSockets closed, by close code (1006: none was exchanged).",
                "code",
                |w| &w.closes,
            ),
            (
                "palisade_rate_limited_total",
                "Requests and messages refused by a rate or a quota, by kind.",
                "kind",
                |w| &w.rate_limited,
            ),
            (
                "palisade_auth_failures_total",
                "Credentials refused at a handshake, a log-in or a Socket.IO CONNECT, by reason.",
                "reason",
                |w| &w.auth_failures,
            ),
        ];
        for (name, help, label, field) in labeled {
            p.head(name, "counter", help);
            let values = field(&self.workers[0]).values;
            for (i, value) in values.iter().enumerate() {
                let n = self.sum(|w| field(w).get(i));
                p.line(name, &[(label, value)], n);
            }
        }
    }

    fn histogram(&self, p: &mut Page) {
        let name = "palisade_handshake_duration_seconds";
        p.head(
            name,
            "histogram",
            "Accepted handshakes, from accept to the 101 (or the answer opening a long-polling session); millisecond steps.",
        );
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, ms) in DURATION_BUCKETS_MS.iter().enumerate() {
            cumulative += self.sum(|w| w.duration_buckets[i].get());
            let le = format!("{}", *ms as f64 / 1000.0);
            p.line(&bucket, &[("le", &le)], cumulative);
        }
        let last = DURATION_BUCKETS_MS.len();
        cumulative += self.sum(|w| w.duration_buckets[last].get());
        p.line(&bucket, &[("le", "+Inf")], cumulative);
        let sum_ms = self.sum(|w| w.duration_sum_ms.get());
        let _ = writeln!(p.0, "{name}_sum {}", sum_ms as f64 / 1000.0);
        p.line(&format!("{name}_count"), &[], cumulative);
    }
}

/// Which counter of a worker's figures a series shows.
type CounterOf = fn(&Stats) -> &Counter;

/// Which labeled counters of a worker's figures a series shows.
type LabeledOf = fn(&Stats) -> &Labeled;

/// The text being written.
struct Page(String);

impl Page {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample; label values come from the lists above and never need
    /// escaping.
    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_line(page: &str, line: &str) {
        assert!(
            page.lines().any(|l| l == line),
            "{line} missing from\n{page}"
        );
    }

    #[test]
    fn one_writer_counts_and_the_page_sums_workers() {
        let r = Registry::new(2);
        let (a, b) = (r.worker(0), r.worker(1));
        a.messages_received.add(3);
        b.messages_received.add(2);
        a.connections_open.set(4);
        b.connections_open.set(1);
        a.handshakes_refused.inc("origin");
        b.handshakes_refused.inc("origin");
        a.handshakes_refused.inc("no such reason");
        a.closed(1000);
        b.closed(4001);
        a.rate_limited.inc("message");
        a.auth_failures.inc("expired");
        let page = r.render();
        for line in [
            "palisade_messages_received_total 5",
            "palisade_connections_open 5",
            "palisade_worker_connections_open{worker=\"0\"} 4",
            "palisade_worker_connections_open{worker=\"1\"} 1",
            "palisade_handshakes_total{result=\"refused\",reason=\"origin\"} 2",
            "palisade_handshakes_total{result=\"refused\",reason=\"other\"} 1",
            "palisade_handshakes_total{result=\"accepted\",reason=\"ok\"} 0",
            "palisade_closes_total{code=\"1000\"} 1",
            "palisade_closes_total{code=\"other\"} 1",
            "palisade_rate_limited_total{kind=\"message\"} 1",
            "palisade_auth_failures_total{reason=\"expired\"} 1",
            "palisade_socketio_sessions{transport=\"polling\"} 0",
        ] {
            assert_line(&page, line);
        }
    }

    #[test]
    fn handshake_durations_fall_in_cumulative_buckets() {
        let r = Registry::new(1);
        let w = r.worker(0);
        w.accepted(0);
        w.accepted(1);
        w.accepted(3);
        w.accepted(9000);
        let page = r.render();
        for line in [
            "palisade_handshake_duration_seconds_bucket{le=\"0.001\"} 2",
            "palisade_handshake_duration_seconds_bucket{le=\"0.002\"} 2",
            "palisade_handshake_duration_seconds_bucket{le=\"0.005\"} 3",
            "palisade_handshake_duration_seconds_bucket{le=\"5\"} 3",
            "palisade_handshake_duration_seconds_bucket{le=\"+Inf\"} 4",
            "palisade_handshake_duration_seconds_sum 9.004",
            "palisade_handshake_duration_seconds_count 4",
            "palisade_handshakes_total{result=\"accepted\",reason=\"ok\"} 4",
        ] {
            assert_line(&page, line);
        }
    }

    #[test]
    fn refusals_map_to_their_reason() {
        assert_eq!(handshake_refusal(403, "origin not allowed"), "origin");
        assert_eq!(
            handshake_refusal(429, "too many connections from this address"),
            "ip_quota"
        );
        assert_eq!(
            handshake_refusal(429, "too many handshakes from this address"),
            "rate_limited"
        );
        assert_eq!(handshake_refusal(418, "teapot"), "other");
    }
}
