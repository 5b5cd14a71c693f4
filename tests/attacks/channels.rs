//! Attacks on channels (SPEC.md §10): a subscription flood from one
//! connection, channel names built to hurt, publish requests without a
//! key or with a wrong one, and a hostile "Redis" on `cluster.redis_url`.
//! The well-behaved client keeps its round trips meanwhile.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// Every channel open to everyone (auth.mode none admits all to
/// "authenticated").
const OPEN: &str = r#""channels":[{"pattern":"*","subscribe":["authenticated"]}]"#;

#[test]
fn a_subscription_flood_stops_at_max_subscriptions() {
    let _s = serial();
    // The message rate out of the way: every request reaches the cap.
    let rate = r#""rate":{"messages_per_conn_per_s":1000000}"#;
    let server = Server::start_with_config(&config(&format!("{OPEN},{rate}")), &[]);
    let victim = WellBehaved::start(server.addr());
    let mut c = open(server.addr());
    let t = Instant::now();
    let n = 10_000;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend(text(format!(
            r#"{{"event":"subscribe","data":{{"channel":"flood.{i}"}},"id":{i}}}"#
        )));
    }
    c.write_all(&batch).unwrap();
    // Answered by the loop after the read; read until it has nothing more
    // to say.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let (mut subscribed, mut forbidden, mut other) = (0, 0, 0);
    while t.elapsed() < Duration::from_secs(60) {
        let Ok(f) = read_frame(&mut c) else {
            break;
        };
        let s = String::from_utf8_lossy(&f.payload);
        if s.starts_with(r#"{"event":"subscribed""#) {
            subscribed += 1;
        } else if s.contains("limits.max_subscriptions reached") {
            forbidden += 1;
        } else {
            other += 1;
        }
    }
    assert_eq!(
        (subscribed, forbidden, other),
        (64, n - 64, 0),
        "subscribed, forbidden, other"
    );
    expect_hero_answer(&mut c);
    let peak = peak_rss_kib(server.pid());
    let v = victim.finish();
    record(
        "subscription flood: 10,000 subscribe requests on one connection",
        &format!("subscribed x 64, then forbidden (limits.max_subscriptions) x {forbidden}"),
        &v,
        peak,
        SMALL_RSS_KIB,
    );
}

#[test]
fn abusive_channel_names_are_refused() {
    let _s = serial();
    let server = Server::start_with_config(&config(OPEN), &[]);
    let victim = WellBehaved::start(server.addr());
    let mut c = open(server.addr());
    let long = "x".repeat(60_000);
    let names = [
        long.as_str(),
        "a\\u0000b",
        "../../etc",
        "a b",
        "\\u202eevil",
        "",
        "ünïcödé",
        "a*",
    ];
    for (i, name) in names.iter().enumerate() {
        c.write_all(&text(format!(
            r#"{{"event":"subscribe","data":{{"channel":"{name}"}},"id":{i}}}"#
        )))
        .unwrap();
        let f = read_frame(&mut c).unwrap();
        let s = String::from_utf8_lossy(&f.payload);
        assert!(
            s.contains(r#""code":"invalid_message""#) && s.ends_with(&format!(r#","id":{i}}}"#)),
            "{name:?}: {s}"
        );
    }
    expect_hero_answer(&mut c);
    let v = victim.finish();
    record(
        "channel names: 60,000 bytes, NUL, path, spaces, bidi override, empty, non-ASCII, *",
        "invalid_message each, the connection goes on",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

fn expect_hero_answer(c: &mut Client) {
    c.write_all(&text(r#"{"event":"get_name","data":{"hero":"hulk"}}"#))
        .unwrap();
    let f = read_frame(c).unwrap();
    assert!(String::from_utf8_lossy(&f.payload).contains("Bruce Banner"));
}

#[test]
fn publish_without_a_key_is_refused_401() {
    let _s = serial();
    let server = Server::start_with_config(&config(OPEN), &[]);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(21);
    let body = r#"{"channel":"news","data":1}"#;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..500 {
        let auth = match i % 3 {
            0 => String::new(),
            1 => "Authorization: Bearer pk_guess\r\n".to_owned(),
            _ => "Authorization: Basic YTpi\r\n".to_owned(),
        };
        let mut s = connect_from(attacker, server.addr()).unwrap();
        let head = format!(
            "POST /api/publish HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let (status, _, mut rest) = read_response_head(&mut s);
        let _ = s.read_to_end(&mut rest);
        *statuses.entry(status).or_insert(0) += 1;
    }
    // Guessed keys count against the log-in rate (10 a minute): 10 are
    // checked and refused, the rest are not checked at all.
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        vec![
            ("HTTP/1.1 401 Unauthorized".to_owned(), 500 - 167 + 10),
            ("HTTP/1.1 429 Too Many Requests".to_owned(), 167 - 10),
        ]
    );
    let v = victim.finish();
    record(
        "publish without a key, with a guessed key, with Basic (500 requests)",
        "401; guessed keys 401 x 10 then 429 (the log-in rate)",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

/// What a hostile "Redis" answers the n-th connection palisade makes to
/// it: bytes that are not RESP, a length of 100 GB, arrays nested past
/// the bound, a reply nothing asked for, or nothing at all.
fn hostile_redis_reply(n: usize) -> Option<&'static [u8]> {
    const REPLIES: [Option<&[u8]>; 5] = [
        Some(b"?garbage\r\n"),
        Some(b"$99999999999\r\n"),
        Some(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
        Some(b":42\r\n:43\r\n"),
        None,
    ];
    REPLIES[n % REPLIES.len()]
}

#[test]
fn a_hostile_redis_costs_a_reconnect_with_back_off_and_nothing_else() {
    let _s = serial();
    let redis = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", redis.local_addr().unwrap().port());
    redis.set_nonblocking(true).unwrap();
    let cluster = format!(r#""cluster":{{"redis_url":"{url}"}}"#);
    let server = Server::start_with_config(&config(&format!("{OPEN},{cluster}")), &[]);
    let victim = WellBehaved::start(server.addr());
    let t = Instant::now();
    let mut held = Vec::new();
    let mut accepted = 0;
    while t.elapsed() < Duration::from_secs(4) {
        match redis.accept() {
            Ok((mut s, _)) => {
                if let Some(reply) = hostile_redis_reply(accepted) {
                    let _ = s.write_all(reply);
                }
                accepted += 1;
                held.push(s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    // Two connections (subscriber, publisher), each retried after 100 ms
    // doubling: about 5 attempts each in 4 s, never a tight loop.
    assert!((4..=16).contains(&accepted), "{accepted} connections");
    for why in [
        "not RESP: an unknown reply type",
        "a RESP reply over the limits",
        "a reply nothing asked for",
    ] {
        assert!(
            server.wait_for_log(why, Duration::from_secs(5)),
            "no log line with {why:?}"
        );
    }
    assert!(server.wait_for_log("retry_in_ms=", Duration::from_secs(1)));
    expect_hero_answer(&mut open(server.addr()));
    let v = victim.finish();
    record(
        "a hostile Redis on cluster.redis_url: garbage, a 100 GB length, deep arrays, stray replies, silence",
        &format!(
            "connection dropped and retried with back-off ({accepted} in 4 s), each reason logged"
        ),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}
