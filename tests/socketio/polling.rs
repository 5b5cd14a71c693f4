//! Engine.IO long-polling on `/socket.io/`, with raw HTTP: the session's
//! requests, the protocol's refusals (a second pending `GET`, a body over
//! `maxPayload`, a malformed packet, an unknown `sid`), the heartbeat,
//! CORS by the Origin policy, the per-address cap, and the move to a
//! WebSocket (`2probe`, `3probe`, `6` to the held `GET`, `5`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;

const POLL: &str = "/socket.io/?EIO=4&transport=polling";

pub(super) struct Resp {
    pub status: String,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// One request on its own connection (`Connection: close`).
pub(super) fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if method == "POST" || !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let (status, headers, mut rest) = read_response_head(&mut s);
    let _ = s.read_to_end(&mut rest);
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&rest).into_owned(),
    }
}

/// A new polling session: its id, the open packet checked.
fn open_session(addr: SocketAddr) -> String {
    let r = http(addr, "GET", POLL, &[], "");
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{}", r.body);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=UTF-8"));
    let sid = r
        .body
        .strip_prefix(r#"0{"sid":""#)
        .and_then(|b| b.split_once('"'))
        .map(|(sid, _)| sid.to_owned())
        .unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(sid.len(), 22, "128 bits, base64url: {}", r.body);
    assert!(
        r.body.ends_with(
            r#"","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":65536}"#
        ),
        "{}",
        r.body
    );
    sid
}

fn target(sid: &str) -> String {
    format!("{POLL}&sid={sid}")
}

fn post(addr: SocketAddr, sid: &str, body: &str) -> Resp {
    http(addr, "POST", &target(sid), &[], body)
}

fn poll(addr: SocketAddr, sid: &str) -> Resp {
    http(addr, "GET", &target(sid), &[], "")
}

/// Opens a session and joins `/`.
/// A `GET` of `sid` on its own thread, held by the server by the time
/// this returns.
fn held_get(addr: SocketAddr, sid: &str) -> std::thread::JoinHandle<Resp> {
    let sid = sid.to_owned();
    let get = std::thread::spawn(move || poll(addr, &sid));
    std::thread::sleep(Duration::from_millis(100));
    get
}

fn joined(addr: SocketAddr) -> String {
    let sid = open_session(addr);
    let r = post(addr, &sid, "40");
    assert_eq!(
        (r.status.as_str(), r.body.as_str()),
        ("HTTP/1.1 200 OK", "ok")
    );
    let r = poll(addr, &sid);
    assert!(r.body.starts_with(r#"40{"sid":""#), "{}", r.body);
    sid
}

#[test]
fn a_polling_session_connects_and_the_hero_application_answers() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    let r = post(addr, &sid, r#"421["get_name",{"hero":"hulk"}]"#);
    assert_eq!(r.body, "ok");
    let r = poll(addr, &sid);
    assert_eq!(
        r.body,
        "42[\"name\",{\"hero\":\"hulk\",\"hero_name\":\"Bruce Banner\"}]\x1e431[{\"hero\":\"hulk\",\"hero_name\":\"Bruce Banner\"}]"
    );
    // Two packets in one POST, each answered.
    let r = post(
        addr,
        &sid,
        "42[\"get_name\",{\"hero\":\"ironMan\"}]\x1e42[\"get_name\",{\"hero\":\"batMan\"}]",
    );
    assert_eq!(r.body, "ok");
    let r = poll(addr, &sid);
    assert_eq!(
        r.body,
        "42[\"name\",{\"hero\":\"ironMan\",\"hero_name\":\"Tony Stark\"}]\x1e42[\"name\",{\"hero\":\"batMan\",\"hero_name\":\"Bruce Wayne\"}]"
    );
    // The client closes: `1`; after the one GET that may have raced it,
    // the session is gone.
    assert_eq!(post(addr, &sid, "1").body, "ok");
    assert_eq!(poll(addr, &sid).body, "6");
    let r = poll(addr, &sid);
    assert_eq!(r.status, "HTTP/1.1 400 Bad Request");
    assert_eq!(r.body, r#"{"code":1,"message":"Session ID unknown"}"#);
}

#[test]
fn a_held_get_is_answered_by_the_ping_and_a_silent_client_is_dropped() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    // Held until the ping (pingInterval 300 ms).
    let start = Instant::now();
    let r = poll(addr, &sid);
    assert_eq!(r.body, "2");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    // Answered: the session goes on.
    assert_eq!(post(addr, &sid, "3").body, "ok");
    assert_eq!(poll(addr, &sid).body, "2");
    // Not answered: gone within pingInterval + pingTimeout (+ slack).
    std::thread::sleep(Duration::from_millis(700));
    let r = poll(addr, &sid);
    assert_eq!(r.body, r#"{"code":1,"message":"Session ID unknown"}"#);
    assert!(server.wait_for_log("reason=\"ping timeout\"", Duration::from_secs(5)));
}

#[test]
fn a_second_pending_get_closes_the_session() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    let first = held_get(addr, &sid);
    let second = poll(addr, &sid);
    assert_eq!(second.status, "HTTP/1.1 400 Bad Request");
    assert_eq!(second.body, r#"{"code":3,"message":"Bad request"}"#);
    // The held one hears the close.
    assert_eq!(first.join().unwrap().body, "1");
    assert!(server.wait_for_log("reason=\"a second pending GET\"", Duration::from_secs(5)));
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
}

#[test]
fn bodies_over_max_payload_and_malformed_packets_end_the_session() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    // 65,536 is the maxPayload of the open packet.
    let sid = joined(addr);
    let big = format!("42[\"x\",\"{}\"]", "a".repeat(65_536));
    let r = post(addr, &sid, &big);
    assert_eq!(r.status, "HTTP/1.1 413 Content Too Large");
    assert!(server.wait_for_log("reason=\"payload too large\"", Duration::from_secs(5)));
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );

    for (packet, reason) in [
        (r#"42"not an array""#, "malformed"),
        ("9", "unknown"),
        (r#"42["connect"]"#, "reserved"),
        ("2", "ping from the client"),
    ] {
        let sid = joined(addr);
        let r = post(addr, &sid, packet);
        assert_eq!(r.status, "HTTP/1.1 400 Bad Request", "{packet}");
        assert_eq!(r.body, r#"{"code":3,"message":"Bad request"}"#);
        assert_eq!(
            poll(addr, &sid).body,
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        let logs = server.logs().join("\n");
        assert!(logs.contains("socket.io session closed"), "{reason}");
    }
}

#[test]
fn cors_follows_the_origin_policy() {
    let config = r#"{"auth":{"mode":"none"},"allowed_origins":["http://app.example"],"socketio":{"ping_interval_ms":300,"ping_timeout_ms":200,"connect_timeout_ms":1000}}"#;
    let server = Server::start_with_config(config, &[]);
    let addr = server.addr();
    let good = [("Origin", "http://app.example")];
    let evil = [("Origin", "http://evil.example")];
    // Preflight.
    let r = http(
        addr,
        "OPTIONS",
        POLL,
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        "",
    );
    assert_eq!(r.status, "HTTP/1.1 204 No Content");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("http://app.example")
    );
    assert_eq!(r.header("Access-Control-Allow-Credentials"), Some("true"));
    assert_eq!(
        r.header("Access-Control-Allow-Methods"),
        Some("GET, POST, OPTIONS")
    );
    let r = http(addr, "OPTIONS", POLL, &evil, "");
    assert_eq!(r.status, "HTTP/1.1 403 Forbidden");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    // The requests themselves.
    let r = http(addr, "GET", POLL, &good, "");
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("http://app.example")
    );
    assert_eq!(r.header("Access-Control-Allow-Credentials"), Some("true"));
    let r = http(addr, "GET", POLL, &evil, "");
    assert_eq!(r.status, "HTTP/1.1 403 Forbidden");
    assert_eq!(r.body, r#"{"code":4,"message":"Forbidden"}"#);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    let sid = open_session(addr);
    let r = http(addr, "POST", &target(&sid), &evil, "40");
    assert_eq!(r.status, "HTTP/1.1 403 Forbidden");
}

#[test]
fn polling_sessions_count_against_the_per_address_cap() {
    let config = r#"{"auth":{"mode":"none"},"limits":{"max_connections_per_ip":3},"socketio":{"ping_interval_ms":300,"ping_timeout_ms":200,"connect_timeout_ms":1000}}"#;
    let server = Server::start_with_config(config, &[]);
    let addr = server.addr();
    // Each request's own connection counts too, while it is open: two
    // sessions and the request's connection fill the quota of 3.
    let _a = open_session(addr);
    let _b = open_session(addr);
    // (The connections of those requests are gone once closed.)
    std::thread::sleep(Duration::from_millis(300));
    let r = http(addr, "GET", POLL, &[], "");
    assert_eq!(r.status, "HTTP/1.1 429 Too Many Requests", "{}", r.body);
    assert_eq!(r.body, "too many connections from this address\n");
    assert!(server.wait_for_log("socket.io session refused", Duration::from_secs(5)));
    // Sessions that never join are reaped (connect timeout 1000 ms), and
    // their places come back.
    std::thread::sleep(Duration::from_millis(1_300));
    let _c = open_session(addr);
}

#[test]
fn the_session_moves_to_a_websocket_after_the_probe() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    let held = held_get(addr, &sid);
    let mut ws = open_with(
        addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &[],
    );
    ws.write_all(&masked(op::TEXT, b"2probe")).unwrap();
    assert_eq!(super::text_of(&mut ws), "3probe");
    // The held GET ends with a noop, so the client can pause polling.
    assert_eq!(held.join().unwrap().body, "6");
    ws.write_all(&masked(op::TEXT, b"5")).unwrap();
    ws.write_all(&masked(op::TEXT, br#"421["get_name",{"hero":"hulk"}]"#))
        .unwrap();
    assert_eq!(
        super::text_of(&mut ws),
        r#"42["name",{"hero":"hulk","hero_name":"Bruce Banner"}]"#
    );
    assert_eq!(
        super::text_of(&mut ws),
        r#"431[{"hero":"hulk","hero_name":"Bruce Banner"}]"#
    );
    // The heartbeat goes on over the WebSocket.
    assert_eq!(super::text_of(&mut ws), "2");
    ws.write_all(&masked(op::TEXT, b"3")).unwrap();
    // Polling is over for this session.
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
    // A second WebSocket for the upgraded session opens and is closed at
    // once, as the reference server does; the first one carries on.
    let mut second = open_with(
        addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &[],
    );
    super::expect_close_reason(&mut second, 1008, "session already upgraded");
    ws.write_all(&masked(op::TEXT, br#"422["get_name",{"hero":"batMan"}]"#))
        .unwrap();
    assert_eq!(
        super::text_of(&mut ws),
        r#"42["name",{"hero":"batMan","hero_name":"Bruce Wayne"}]"#
    );
    // A probe for a session that does not exist is refused before the 101.
    let mut s = connect(addr);
    let (status, _, _) = handshake(
        &mut s,
        "/socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAAAA",
        &[],
    );
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
}

#[test]
fn a_client_that_closes_ends_its_held_get_with_a_noop() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    let held = held_get(addr, &sid);
    assert_eq!(post(addr, &sid, "1").body, "ok");
    // The client's own `1` is not echoed: its held GET just ends.
    let r = held.join().unwrap();
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.body, "6");
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
    assert!(server.wait_for_log("reason=\"closed by the client\"", Duration::from_secs(5)));
    // With no GET held, the one that raced the `1` (sent first, read
    // second) still gets its `6`, once.
    let sid = joined(addr);
    assert_eq!(post(addr, &sid, "1").body, "ok");
    let r = poll(addr, &sid);
    assert_eq!(
        (r.status.as_str(), r.body.as_str()),
        ("HTTP/1.1 200 OK", "6")
    );
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
    // Unclaimed, it is gone after the ping timeout (200 ms here).
    let sid = joined(addr);
    assert_eq!(post(addr, &sid, "1").body, "ok");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
}

#[test]
fn a_probe_websocket_that_sends_anything_else_is_closed() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    let mut ws = open_with(
        addr,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        &[],
    );
    // `5` before the probe.
    ws.write_all(&masked(op::TEXT, b"5")).unwrap();
    super::expect_close_reason(&mut ws, 1008, "expected a probe or an upgrade");
    // The session is still on polling.
    assert_eq!(post(addr, &sid, "3").body, "ok");
}

#[test]
fn a_session_that_ends_while_a_get_is_held_answers_it_with_close() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    assert_eq!(poll(addr, &sid).body, "2");
    // No pong: the ping timeout ends the session while this GET is held.
    let start = Instant::now();
    let r = poll(addr, &sid);
    assert_eq!(r.body, "1");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(server.wait_for_log("reason=\"ping timeout\"", Duration::from_secs(5)));
    // The loop goes on serving.
    let r = http(addr, "GET", "/healthz", &[], "");
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
    // The same with a session that never joined (the connect timeout).
    let sid = open_session(addr);
    let mut bodies = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        let r = poll(addr, &sid);
        bodies.push(r.body.clone());
        if r.body != "2" {
            break;
        }
        assert_eq!(post(addr, &sid, "3").body, "ok");
    }
    assert_eq!(bodies.last().map(String::as_str), Some("1"), "{bodies:?}");
    assert!(server.wait_for_log("reason=\"no CONNECT in time\"", Duration::from_secs(5)));
}

#[test]
fn bodies_framed_otherwise_than_by_content_length_are_refused() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    let r = http(
        addr,
        "POST",
        &target(&sid),
        &[("Transfer-Encoding", "chunked")],
        "",
    );
    assert_eq!(r.status, "HTTP/1.1 400 Bad Request");
    assert_eq!(r.body, r#"{"code":3,"message":"Bad request"}"#);
    // An empty POST ends the session with a 400.
    let r = post(addr, &sid, "");
    assert_eq!(r.status, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
}

#[test]
fn a_client_that_stops_collecting_its_packets_is_ended() {
    let config = r#"{"auth":{"mode":"none"},"limits":{"max_outbound_bytes":4096},"socketio":{"ping_interval_ms":300,"ping_timeout_ms":200,"connect_timeout_ms":1000}}"#;
    let server = Server::start_with_config(config, &[]);
    let addr = server.addr();
    let sid = joined(addr);
    // Each acked get_name queues about 110 bytes; nobody GETs them.
    let events = "421[\"get_name\",{\"hero\":\"hulk\"}]\x1e".repeat(60);
    let r = post(addr, &sid, events.trim_end_matches('\x1e'));
    assert_eq!(r.body, "ok");
    assert!(server.wait_for_log("packets not collected", Duration::from_secs(5)));
    // Ended and removed (a held GET would have got its `1`).
    assert_eq!(
        poll(addr, &sid).body,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
}
