//! Socket.IO over a WebSocket on `/socket.io/`, with raw HTTP and frames:
//! the Engine.IO query errors with their JSON bodies, the open packet, the
//! CONNECT and its refusals, events and acks answered by the hero
//! application, malformed packets, the heartbeat and the connect timeout;
//! long-polling and the move to a WebSocket in `socketio/polling.rs`.
//! (The official clients are in tests/clients/socketio_client.py.)

mod common;
#[path = "socketio/conformance.rs"]
mod conformance;
#[path = "socketio/polling.rs"]
mod polling;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// The timings of the protocol's own test suites.
const CONFIG: &str = r#"{"auth":{"mode":"none"},"socketio":{"ping_interval_ms":300,"ping_timeout_ms":200,"connect_timeout_ms":1000}}"#;
const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

fn text_of(c: &mut Client) -> String {
    let f = read_frame(c).unwrap();
    assert_eq!(f.opcode, op::TEXT, "{f:?}");
    String::from_utf8(f.payload).unwrap()
}

fn send(c: &mut Client, packet: &str) {
    c.write_all(&text(packet)).unwrap();
}

/// A session on the server: the open packet read and checked.
fn opened(server: &Server) -> Client {
    let mut c = open_with(server.addr(), PATH, &[]);
    let open = text_of(&mut c);
    let sid = open
        .strip_prefix(r#"0{"sid":""#)
        .and_then(|r| r.split_once('"'))
        .map(|(sid, _)| sid.to_owned())
        .unwrap_or_else(|| panic!("{open}"));
    assert_eq!(sid.len(), 22, "128 bits, base64url: {open}");
    assert!(
        open.ends_with(
            r#"","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":65536}"#
        ),
        "{open}"
    );
    c
}

fn expect_close_reason(c: &mut Client, code: u16, reason: &str) {
    let f = read_frame(c).unwrap();
    assert_eq!(f.opcode, op::CLOSE, "{f:?}");
    assert_eq!(f.close_code(), Some(code), "{f:?}");
    assert_eq!(String::from_utf8_lossy(&f.payload[2..]), reason);
}

/// A plain HTTP request; the status line and body.
fn get(server: &Server, method: &str, target: &str) -> (String, Option<String>, String) {
    let mut s = connect(server.addr());
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, headers, mut body) = read_response_head(&mut s);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    body.extend(rest);
    let ct = header(&headers, "Content-Type").map(str::to_owned);
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn engineio_query_errors_have_the_reference_bodies() {
    let server = Server::start_with_config(CONFIG, &[]);
    let cases = [
        ("GET", "/socket.io/?EIO=4", 0, "Transport unknown"),
        (
            "GET",
            "/socket.io/?EIO=4&transport=abc",
            0,
            "Transport unknown",
        ),
        (
            "GET",
            "/socket.io/?EIO=abc&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            "/socket.io/?transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "POST",
            "/socket.io/?EIO=4&transport=polling",
            2,
            "Bad handshake method",
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=websocket",
            3,
            "Bad request",
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=abc",
            1,
            "Session ID unknown",
        ),
        (
            "PUT",
            "/socket.io/?EIO=4&transport=polling&sid=abc",
            1,
            "Session ID unknown",
        ),
    ];
    for (method, target, code, message) in cases {
        let (status, ct, body) = get(&server, method, target);
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{method} {target}");
        assert_eq!(ct.as_deref(), Some("application/json"));
        assert_eq!(
            body,
            format!(r#"{{"code":{code},"message":"{message}"}}"#),
            "{target}"
        );
    }
    // A WebSocket for a session that does not exist.
    let mut s = connect(server.addr());
    let (status, _, body) = handshake(&mut s, &format!("{PATH}&sid=nope"), &[]);
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let mut rest = body;
    let _ = s.read_to_end(&mut rest);
    assert!(
        String::from_utf8_lossy(&rest).ends_with(r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    assert!(server.wait_for_log("socket.io request refused", Duration::from_secs(5)));
}

#[test]
fn a_session_connects_and_the_hero_application_answers_events_and_acks() {
    let server = Server::start_with_config(CONFIG, &[]);
    let mut c = opened(&server);
    send(&mut c, "40");
    let connected = text_of(&mut c);
    assert!(connected.starts_with(r#"40{"sid":""#), "{connected}");
    send(&mut c, r#"42["get_name",{"hero":"hulk"}]"#);
    assert_eq!(
        text_of(&mut c),
        r#"42["name",{"hero":"hulk","hero_name":"Bruce Banner"}]"#
    );
    send(&mut c, r#"427["get_name",{"hero":"batMan"}]"#);
    assert_eq!(
        text_of(&mut c),
        r#"42["name",{"hero":"batMan","hero_name":"Bruce Wayne"}]"#
    );
    assert_eq!(
        text_of(&mut c),
        r#"437[{"hero":"batMan","hero_name":"Bruce Wayne"}]"#
    );
    send(&mut c, "40/random");
    assert_eq!(
        text_of(&mut c),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    send(&mut c, "42{}");
    expect_close_reason(&mut c, 1008, "payload of the wrong shape");
    assert!(server.wait_for_log("socket.io session closed peer=", Duration::from_secs(5)));
}

#[test]
fn malformed_packets_close_the_session_with_their_reason() {
    let server = Server::start_with_config(CONFIG, &[]);
    let cases: &[(&[&str], &str)] = &[
        (&["4abc"], "unknown packet type"),
        (&[r#"42["get_name"]"#], "a packet before CONNECT"),
        (&["40", "abc"], "unknown packet type"),
        (&["40", r#"42abc["x"]"#], "payload is not JSON"),
        (&["40", r#"42["disconnect"]"#], "reserved event name"),
        (&["40", r#"42123456789012345678901["x"]"#], "bad ack id"),
        (&["40", r#"4511-["x"]"#], "too many attachments"),
        (
            &["40", r#"42/x,["a"]"#],
            "a packet for a namespace not joined",
        ),
        (&["40", "2"], "ping from the client"),
    ];
    for (packets, reason) in cases {
        let mut c = opened(&server);
        for p in *packets {
            send(&mut c, p);
            if *p == "40" {
                assert!(text_of(&mut c).starts_with("40{"));
            }
        }
        expect_close_reason(&mut c, 1008, reason);
    }
}

#[test]
fn a_client_that_stops_answering_pings_is_closed() {
    let server = Server::start_with_config(CONFIG, &[]);
    let mut c = opened(&server);
    let opened_at = Instant::now();
    send(&mut c, "40");
    assert!(text_of(&mut c).starts_with("40{"));
    for _ in 0..2 {
        assert_eq!(text_of(&mut c), "2");
        send(&mut c, "3");
    }
    // Not answered: closed pingInterval + pingTimeout later.
    assert_eq!(text_of(&mut c), "2");
    let pinged = Instant::now();
    expect_close_reason(&mut c, 1000, "ping timeout");
    let waited = pinged.elapsed();
    eprintln!(
        "three pings in {:?}; closed {waited:?} after the unanswered one",
        pinged - opened_at
    );
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
}

#[test]
fn a_session_without_connect_is_closed_after_the_connect_timeout() {
    let server = Server::start_with_config(CONFIG, &[]);
    let mut c = opened(&server);
    let t = Instant::now();
    // Answer the pings, never CONNECT.
    loop {
        let f = read_frame(&mut c).unwrap();
        if f.opcode == op::CLOSE {
            assert_eq!(f.close_code(), Some(1000));
            assert_eq!(
                String::from_utf8_lossy(&f.payload[2..]),
                "no CONNECT in time"
            );
            break;
        }
        assert_eq!(f.payload, b"2");
        send(&mut c, "3");
    }
    let took = t.elapsed();
    eprintln!("closed {took:?} after the open packet");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}

#[test]
fn without_credentials_the_connect_is_refused_with_its_code() {
    let server = Server::start(&["--auth-mode", "required"]);
    let mut c = open_with(server.addr(), PATH, &[]);
    assert!(text_of(&mut c).starts_with(r#"0{"sid""#));
    send(&mut c, "40");
    assert_eq!(
        text_of(&mut c),
        r#"44{"data":{"code":"missing"},"message":"unauthorized"}"#
    );
    send(&mut c, r#"40{"token":"x.y.z"}"#);
    assert_eq!(
        text_of(&mut c),
        r#"44{"data":{"code":"malformed"},"message":"unauthorized"}"#
    );
    assert!(server.wait_for_log("socket.io connect refused", Duration::from_secs(5)));
}
