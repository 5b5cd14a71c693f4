//! Attacks on the Socket.IO endpoint (`/socket.io/`): polling floods, many
//! sessions from one address, huge polling bodies, packets announcing
//! thousands of attachments, a second pending `GET`, session id guessing.
//! The well-behaved client keeps its round trips meanwhile.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

const POLL: &str = "/socket.io/?EIO=4&transport=polling";

/// One request from `source` on its own connection: the status line and
/// the body.
fn request(source: IpAddr, addr: SocketAddr, head: &str, body: &[u8]) -> (String, String) {
    let mut s = connect_from(source, addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let (status, _, mut rest) = read_response_head(&mut s);
    let _ = s.read_to_end(&mut rest);
    (status, String::from_utf8_lossy(&rest).into_owned())
}

fn get(source: IpAddr, addr: SocketAddr, target: &str) -> (String, String) {
    let head = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    request(source, addr, &head, b"")
}

fn post(source: IpAddr, addr: SocketAddr, target: &str, body: &[u8]) -> (String, String) {
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    request(source, addr, &head, body)
}

/// A new polling session from `source`: its id.
fn open_session(source: IpAddr, addr: SocketAddr) -> Option<String> {
    let (status, body) = get(source, addr, POLL);
    if status != "HTTP/1.1 200 OK" {
        return None;
    }
    Some(body.get(9..31)?.to_owned())
}

fn sid_target(sid: &str) -> String {
    format!("{POLL}&sid={sid}")
}

const TIMINGS: &str =
    r#""socketio":{"ping_interval_ms":300,"ping_timeout_ms":200,"connect_timeout_ms":1000}"#;

#[test]
fn polling_handshake_flood_from_one_ip_gets_429_after_the_burst() {
    let _s = serial();
    let server = Server::start_with_config(
        &config(&format!(
            r#""rate":{{"handshakes_per_ip_per_s":50}},{TIMINGS}"#
        )),
        &[],
    );
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(40);
    let (mut opened, mut limited) = (0, 0);
    let t = Instant::now();
    for _ in 0..300 {
        match get(attacker, server.addr(), POLL).0.as_str() {
            "HTTP/1.1 200 OK" => opened += 1,
            "HTTP/1.1 429 Too Many Requests" => limited += 1,
            other => panic!("{other}"),
        }
    }
    // The burst of 100 plus what refilled at 50/s meanwhile.
    let allowed = 100.0 + 50.0 * t.elapsed().as_secs_f64() + 2.0;
    assert!(
        opened >= 100 && f64::from(opened) <= allowed,
        "{opened} opened"
    );
    assert_eq!(opened + limited, 300);
    assert!(server.wait_for_log("limit=rate.handshakes_per_ip_per_s", Duration::from_secs(5)));
    let v = victim.finish();
    record(
        "Socket.IO polling handshake flood, one IP (300 in a row)",
        &format!("200 x {opened}, then 429 x {limited}"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn polling_sessions_from_one_ip_are_capped_and_reaped() {
    let _s = serial();
    let server = Server::start_with_config(
        &config(&format!(
            r#""limits":{{"max_connections_per_ip":20}},"rate":{{"handshakes_per_ip_per_s":1000}},{TIMINGS}"#
        )),
        &[],
    );
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(41);
    let (mut opened, mut refused) = (0, 0);
    for _ in 0..100 {
        match open_session(attacker, server.addr()) {
            Some(_) => opened += 1,
            None => refused += 1,
        }
    }
    // Each request's own connection counts while it is open: at most 20
    // sessions, fewer when earlier connections were still closing.
    assert!((15..=20).contains(&opened), "{opened} opened");
    assert!(server.wait_for_log("socket.io session refused", Duration::from_secs(5)));
    // Sessions that never CONNECT are reaped (connect timeout 1 s): the
    // address gets its places back.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(open_session(attacker, server.addr()).is_some());
    let v = victim.finish();
    record(
        "Socket.IO: 100 polling sessions from one IP (quota 20)",
        &format!("{opened} sessions, then 429 x {refused}; reaped after connect_timeout_ms"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn a_huge_polling_body_is_413_before_it_is_read() {
    let _s = serial();
    let server = Server::start_with_config(&config(TIMINGS), &[]);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(42);
    let sid = open_session(attacker, server.addr()).unwrap();
    // Announces 1 GiB and sends 1 MiB of it.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        sid_target(&sid),
        1u64 << 30
    );
    let t = Instant::now();
    let (status, body) = request(attacker, server.addr(), &head, &vec![b'4'; 1 << 20]);
    assert_eq!(status, "HTTP/1.1 413 Content Too Large");
    assert_eq!(body, r#"{"code":3,"message":"Bad request"}"#);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(server.wait_for_log("reason=\"payload too large\"", Duration::from_secs(5)));
    assert_eq!(
        get(attacker, server.addr(), &sid_target(&sid)).1,
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
    let v = victim.finish();
    record(
        "Socket.IO: polling POST announcing 1 GiB",
        "413 at once, session ended",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn packets_announcing_thousands_of_attachments_end_the_session() {
    let _s = serial();
    let server = Server::start_with_config(&config(TIMINGS), &[]);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(43);
    // Over polling: 400 and the session ends.
    let sid = open_session(attacker, server.addr()).unwrap();
    assert_eq!(
        post(attacker, server.addr(), &sid_target(&sid), b"40").1,
        "ok"
    );
    // The count is checked before anything else of the packet.
    let packet = format!(r#"45{}-["x",{{"_placeholder":true,"num":0}}]"#, 5_000);
    let (status, _) = post(
        attacker,
        server.addr(),
        &sid_target(&sid),
        packet.as_bytes(),
    );
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    // Over a WebSocket: closed 1008 with the reason.
    let s = connect_from(attacker, server.addr()).unwrap();
    let mut s = s;
    let (status, _, rest) = handshake(&mut s, "/socket.io/?EIO=4&transport=websocket", &[]);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let mut c = Client::new(s, rest);
    let open = read_frame(&mut c).unwrap();
    assert_eq!(open.opcode, op::TEXT);
    c.write_all(&masked(op::TEXT, b"40")).unwrap();
    let _joined = read_frame(&mut c).unwrap();
    c.write_all(&masked(op::TEXT, packet.as_bytes())).unwrap();
    let f = read_frame(&mut c).unwrap();
    assert_eq!(f.close_code(), Some(1008));
    assert_eq!(
        String::from_utf8_lossy(&f.payload[2..]),
        "too many attachments"
    );
    let v = victim.finish();
    record(
        "Socket.IO: a packet announcing 5,000 attachments",
        "polling 400, WebSocket close 1008 `too many attachments`",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn a_second_pending_get_and_sid_guessing_get_the_protocol_errors() {
    let _s = serial();
    let server = Server::start_with_config(&config(TIMINGS), &[]);
    let victim = WellBehaved::start(server.addr());
    let attacker = loopback(44);
    let addr = server.addr();
    let sid = open_session(attacker, addr).unwrap();
    assert_eq!(post(attacker, addr, &sid_target(&sid), b"40").1, "ok");
    let _ = get(attacker, addr, &sid_target(&sid)); // the 40
    let held = {
        let target = sid_target(&sid);
        std::thread::spawn(move || get(attacker, addr, &target))
    };
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = get(attacker, addr, &sid_target(&sid));
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert_eq!(body, r#"{"code":3,"message":"Bad request"}"#);
    assert_eq!(held.join().unwrap().1, "1");
    // Guessing: 500 random ids, each a 400 code 1.
    let mut unknown = 0;
    for i in 0..500u32 {
        let guess = format!("{:0>22}", format!("{:x}", i.wrapping_mul(2_654_435_761)));
        let (_, body) = get(attacker, addr, &sid_target(&guess));
        if body == r#"{"code":1,"message":"Session ID unknown"}"# {
            unknown += 1;
        }
    }
    assert_eq!(unknown, 500);
    let v = victim.finish();
    record(
        "Socket.IO: a second pending GET; 500 guessed session ids",
        "400 code 3 (the held GET gets `1`); 400 code 1 x 500",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}
