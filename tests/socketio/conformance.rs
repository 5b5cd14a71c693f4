//! `--app echo`: the reference server of the Socket.IO protocol's test
//! suite on `/socket.io/` (`auth` on joining `/` or `/custom`,
//! `message` → `message-back`, `message-with-ack` acked, binary included,
//! other namespaces refused), and Engine.IO alone on `/engine.io/`,
//! echoing every message, over WebSocket and long-polling. The settings
//! are the values those suites use.

use std::io::Write;

use crate::common::*;

const CONFIG: &str = r#"{"app":"echo","auth":{"mode":"none"},"limits":{"max_message_bytes":1000000,"max_frame_bytes":1000000},"socketio":{"ping_interval_ms":300,"ping_timeout_ms":200,"connect_timeout_ms":1000}}"#;

fn frame_text(c: &mut Client) -> String {
    super::text_of(c)
}

fn frame_binary(c: &mut Client) -> Vec<u8> {
    let f = read_frame(c).unwrap();
    assert_eq!(f.opcode, op::BINARY, "{f:?}");
    f.payload
}

fn ws(server: &Server, path: &str) -> Client {
    let mut c = open_with(server.addr(), path, &[]);
    let open = frame_text(&mut c);
    assert!(open.starts_with(r#"0{"sid":""#), "{open}");
    assert!(
        open.ends_with(
            r#","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
        ),
        "{open}"
    );
    c
}

fn send(c: &mut Client, packet: &str) {
    c.write_all(&masked(op::TEXT, packet.as_bytes())).unwrap();
}

#[test]
fn socketio_behaves_as_the_test_suite_reference_server() {
    let server = Server::start_with_config(CONFIG, &[]);
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut c = ws(&server, path);
    send(&mut c, r#"40{"token":"123"}"#);
    assert!(frame_text(&mut c).starts_with(r#"40{"sid":""#));
    assert_eq!(frame_text(&mut c), r#"42["auth",{"token":"123"}]"#);
    send(&mut c, r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(
        frame_text(&mut c),
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    send(&mut c, r#"426["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(frame_text(&mut c), r#"436[1,"2",{"3":[false]}]"#);
    // Binary, in an event and in an ack.
    send(&mut c, r#"451-["message",{"_placeholder":true,"num":0}]"#);
    c.write_all(&masked(op::BINARY, &[1, 2, 3])).unwrap();
    assert_eq!(
        frame_text(&mut c),
        r#"451-["message-back",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(frame_binary(&mut c), [1, 2, 3]);
    send(
        &mut c,
        r#"451-7["message-with-ack",{"_placeholder":true,"num":0}]"#,
    );
    c.write_all(&masked(op::BINARY, &[4, 5])).unwrap();
    assert_eq!(
        frame_text(&mut c),
        r#"461-7[{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(frame_binary(&mut c), [4, 5]);
    // Namespaces: /custom is served, others refused.
    send(&mut c, "40/custom,");
    assert!(frame_text(&mut c).starts_with(r#"40/custom,{"sid":""#));
    assert_eq!(frame_text(&mut c), r#"42/custom,["auth",{}]"#);
    send(&mut c, "40/random,");
    assert_eq!(
        frame_text(&mut c),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    // Leaving a namespace keeps the session, as the reference server
    // does, even when it was the last one: the pings go on, and `/` can
    // be joined again.
    send(&mut c, "41/custom,");
    send(&mut c, r#"42["message","still"]"#);
    assert_eq!(frame_text(&mut c), r#"42["message-back","still"]"#);
    send(&mut c, "41");
    assert_eq!(frame_text(&mut c), "2");
    send(&mut c, "3");
    send(&mut c, r#"40{"again":true}"#);
    assert!(frame_text(&mut c).starts_with(r#"40{"sid":""#));
    assert_eq!(frame_text(&mut c), r#"42["auth",{"again":true}]"#);
}

#[test]
fn a_custom_namespace_can_be_joined_alone() {
    let server = Server::start_with_config(CONFIG, &[]);
    let mut c = ws(&server, "/socket.io/?EIO=4&transport=websocket");
    send(&mut c, "40/custom,");
    assert!(frame_text(&mut c).starts_with(r#"40/custom,{"sid":""#));
    assert_eq!(frame_text(&mut c), r#"42/custom,["auth",{}]"#);
}

#[test]
fn engineio_alone_echoes_every_message() {
    let server = Server::start_with_config(CONFIG, &[]);
    // WebSocket.
    let mut c = ws(&server, "/engine.io/?EIO=4&transport=websocket");
    send(&mut c, "4hello");
    assert_eq!(frame_text(&mut c), "4hello");
    c.write_all(&masked(op::BINARY, &[9, 8, 7])).unwrap();
    assert_eq!(frame_binary(&mut c), [9, 8, 7]);
    assert_eq!(frame_text(&mut c), "2");
    send(&mut c, "3");
    // Long-polling: a text and a binary message, answered in one payload.
    let addr = server.addr();
    let open = super::polling::http(addr, "GET", "/engine.io/?EIO=4&transport=polling", &[], "");
    let sid = open.body[9..31].to_owned();
    assert!(
        open.body.contains(r#""upgrades":["websocket"]"#),
        "{}",
        open.body
    );
    let target = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let r = super::polling::http(addr, "POST", &target, &[], "4hello\x1ebAQI=");
    assert_eq!(r.body, "ok");
    let r = super::polling::http(addr, "GET", &target, &[], "");
    assert_eq!(r.body, "4hello\x1ebAQI=");
}

#[test]
fn engineio_is_not_served_by_the_hero_application() {
    let server = Server::start_with_config(super::CONFIG, &[]);
    let r = super::polling::http(
        server.addr(),
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &[],
        "",
    );
    // Answered as any other path with a trailing slash.
    assert_eq!(r.status, "HTTP/1.1 400 Bad Request");
    assert_eq!(r.body, "invalid path\n");
}
