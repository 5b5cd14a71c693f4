//! Sockets that connect and never send (SPEC.md §2: the per-IP quota from
//! `accept`, `limits.max_pending_handshakes`, the open-file limit), and the
//! log lines they cause. The attacker is 127.0.0.1 (and, for many
//! addresses, 127.0.0.3 and up); the honest client is 127.0.0.2 and must
//! get its `101` and a hero reply within a second while the attack runs.

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const HONEST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Longest the honest client may take, TCP connect to hero reply.
const HONEST_BOUND: Duration = Duration::from_secs(1);

/// The attacker's addresses beyond 127.0.0.1: 127.0.0.3, 127.0.0.4, ...
fn attackers(n: u8) -> Vec<IpAddr> {
    std::iter::once(ATTACKER)
        .chain(
            (3..)
                .take(usize::from(n) - 1)
                .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d))),
        )
        .collect()
}

/// Samples the server's socket count every 100 ms for `d`; the highest.
fn peak_sockets(pid: u32, d: Duration) -> usize {
    let t = Instant::now();
    let mut peak = 0;
    while t.elapsed() < d {
        peak = peak.max(sockets_of(pid));
        thread::sleep(Duration::from_millis(100));
    }
    peak
}

#[test]
fn silent_sockets_from_one_address_hold_at_most_its_quota() {
    let _s = serial();
    need_open_files(4000);
    let server = Server::start_with_config(&config(""), &[]);
    let (addr, pid) = (server.addr(), server.pid());
    let victim = WellBehaved::start_from(addr, HONEST);
    let base = sockets_of(pid);
    let t = Instant::now();
    let flood = SilentFlood::start(vec![ATTACKER], 1000, addr, Duration::from_secs(20));
    eprintln!(
        "1,000 silent sockets from {ATTACKER} opened in {:?}",
        t.elapsed()
    );
    let held = peak_sockets(pid, Duration::from_secs(1)).saturating_sub(base);
    let took = honest_round_trip(HONEST, addr);
    let held_later = peak_sockets(pid, Duration::from_secs(2)).saturating_sub(base);
    let stats = flood.stop();
    eprintln!("server held {held} then {held_later} of them; honest client in {took:?}; {stats:?}");
    // The quota is 256 (limits.max_connections_per_ip); one more socket of
    // the honest client's may be in flight when sampled.
    assert!(held <= 257 && held_later <= 257, "{held} / {held_later}");
    assert!(took < HONEST_BOUND, "honest client took {took:?}");
    assert!(
        stats
            .answers
            .get("HTTP/1.1 429 Too Many Requests")
            .copied()
            .unwrap_or(0)
            > 0,
        "{stats:?}"
    );
    // Hundreds of refusals a second, one line per second and the counts
    // (the summary comes when the second is over).
    assert!(server.wait_for_log(
        "connection refused (repeated) reason=\"too many connections from this address\" repeated=",
        Duration::from_secs(3)
    ));
    let lines = count_logs(&server, "connection refused");
    let secs = t.elapsed().as_secs() + 1;
    eprintln!(
        "{} refusals made {lines} log lines in {secs} s",
        stats.closed_by_server
    );
    assert!(lines as u64 <= 2 * secs + 2, "{lines} lines in {secs} s");
    let v = victim.finish();
    record(
        "1,000 silent sockets from one address, re-opened when closed",
        &format!(
            "server holds at most {} (quota 256); 429 + close beyond; {lines} log lines for {} refusals; a new client from 127.0.0.2 in {:.0} ms",
            held.max(held_later),
            stats.closed_by_server,
            took.as_secs_f64() * 1000.0
        ),
        &v,
        peak_rss_kib(pid),
        SMALL_RSS_KIB,
    );
}

#[test]
fn silent_sockets_from_9_addresses_cannot_fill_max_connections() {
    let _s = serial();
    need_open_files(6000);
    let server = Server::start_with_config(&config(r#""limits":{"max_connections":2000}"#), &[]);
    let (addr, pid) = (server.addr(), server.pid());
    let victim = WellBehaved::start_from(addr, HONEST);
    let base = sockets_of(pid);
    let flood = SilentFlood::start(attackers(9), 256, addr, Duration::from_secs(20));
    let held = peak_sockets(pid, Duration::from_secs(1)).saturating_sub(base);
    let mut took = Vec::new();
    for _ in 0..3 {
        took.push(honest_round_trip(HONEST, addr));
        thread::sleep(Duration::from_millis(300));
    }
    let held_later = peak_sockets(pid, Duration::from_secs(1)).saturating_sub(base);
    let stats = flood.stop();
    let worst = took.iter().max().copied().unwrap_or_default();
    eprintln!("9 x 256 silent: server held {held} then {held_later}; honest {took:?}; {stats:?}");
    // max_pending_handshakes defaults to 2000 / 4; the honest client's own
    // sockets may be in flight.
    assert!(held <= 503 && held_later <= 503, "{held} / {held_later}");
    assert!(worst < HONEST_BOUND, "honest client took {took:?}");
    assert!(stats.closed_by_server > 0, "{stats:?}");
    assert!(server.wait_for_log("pending connection closed peer=", Duration::from_secs(3)));
    assert!(server.wait_for_log(
        "reason=limits.max_pending_handshakes",
        Duration::from_secs(3)
    ));
    let lines = count_logs(&server, "pending connection closed");
    let v = victim.finish();
    record(
        "9 addresses x 256 silent sockets, `max_connections` 2,000",
        &format!(
            "at most {} held (pending cap 500), the longest-silent closed first ({} closed, {lines} log lines); new clients from 127.0.0.2 in at most {:.0} ms",
            held.max(held_later),
            stats.closed_by_server,
            worst.as_secs_f64() * 1000.0
        ),
        &v,
        peak_rss_kib(pid),
        SMALL_RSS_KIB,
    );
}

#[test]
fn out_of_descriptors_the_established_are_served_and_new_clients_get_in() {
    let _s = serial();
    need_open_files(4000);
    // A hard limit of 300 descriptors, a max_connections far above it, and
    // no pending cap below it: the server runs out of descriptors first.
    let server = Server::start_wrapped(
        &["prlimit", "--nofile=300:300"],
        &config(r#""limits":{"max_connections":1000,"max_pending_handshakes":1000}"#),
        &[],
    );
    let (addr, pid) = (server.addr(), server.pid());
    assert!(server.wait_for_log(
        "open-file limit is below limits.max_connections plus a margin",
        Duration::from_secs(2)
    ));
    let victim = WellBehaved::start_from(addr, HONEST);
    let flood = SilentFlood::start(attackers(3), 200, addr, Duration::from_secs(20));
    thread::sleep(Duration::from_millis(500));
    let mut took = Vec::new();
    for _ in 0..3 {
        took.push(honest_round_trip(HONEST, addr));
        thread::sleep(Duration::from_millis(200));
    }
    let held = sockets_of(pid);
    let stats = flood.stop();
    let worst = took.iter().max().copied().unwrap_or_default();
    eprintln!("EMFILE: server holds {held} sockets; honest {took:?}; {stats:?}");
    assert!(worst < HONEST_BOUND, "honest client took {took:?}");
    assert!(server.wait_for_log("pending connection closed peer=", Duration::from_secs(3)));
    assert!(server.wait_for_log("reason=\"out of file descriptors\"", Duration::from_secs(3)));
    let v = victim.finish();
    record(
        "600 silent sockets against an open-file limit of 300",
        &format!(
            "EMFILE: the longest-silent pending socket gives up its descriptor; established clients served, new ones in at most {:.0} ms",
            worst.as_secs_f64() * 1000.0
        ),
        &v,
        peak_rss_kib(pid),
        SMALL_RSS_KIB,
    );
}

#[test]
fn the_soft_open_file_limit_is_raised_at_start() {
    let _s = serial();
    let server = Server::start_wrapped(&["prlimit", "--nofile=200:4096"], &config(""), &[]);
    assert!(server.wait_for_log(
        "open-file limit raised from=200 to=4096",
        Duration::from_secs(2)
    ));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some("4096"), "{line}");
    // 4,096 is below the default max_connections (10,000) plus the margin.
    assert!(server.wait_for_log("nofile=4096 max_connections=10000", Duration::from_secs(2)));
}
