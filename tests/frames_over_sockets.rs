//! Frame handling over a real socket: splits, pipelining, caps, closes and
//! deadlines, with exact payloads and close codes.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_frame_split_at_every_byte_boundary_is_echoed() {
    let server = Server::start(&["--app", "echo"]);
    let mut c = open(server.addr());
    let payload = "split ✓ at every byte".as_bytes();
    let bytes = text(payload);
    for cut in 1..bytes.len() {
        send_split(&mut c, &bytes, &[cut], Duration::from_millis(2)).unwrap();
        expect_frame(&mut c, op::TEXT, payload);
    }
    close_normally(&mut c);
}

#[test]
fn fragmented_text_with_a_code_point_split_across_fragments() {
    let server = Server::start(&["--app", "echo"]);
    let mut c = open(server.addr());
    let msg = "κόσμε €𝄞";
    let b = msg.as_bytes();
    // Cut inside the 2-byte κ, inside €, and inside the 4-byte 𝄞.
    let frames = vec![
        fragment(op::TEXT, false, &b[..1]),
        fragment(op::CONT, false, &b[1..12]),
        fragment(op::CONT, false, &b[12..15]),
        fragment(op::CONT, true, &b[15..]),
    ];
    send_frames(&mut c, &frames, Duration::from_millis(5)).unwrap();
    expect_frame(&mut c, op::TEXT, b);
    // The same message with its last byte wrong fails with 1007.
    let mut bad = b.to_vec();
    *bad.last_mut().unwrap() = b'x';
    let frames = vec![
        fragment(op::TEXT, false, &bad[..15]),
        fragment(op::CONT, true, &bad[15..]),
    ];
    send_frames(&mut c, &frames, Duration::from_millis(5)).unwrap();
    expect_close(&mut c, 1007);
}

#[test]
fn one_hundred_pipelined_messages_in_one_write() {
    let server = Server::start(&[]);
    let mut c = open(server.addr());
    let heroes = ["ironMan", "hulk", "wonderWoman", "batMan", "blackPanther"];
    let names = [
        "Tony Stark",
        "Bruce Banner",
        "Diana",
        "Bruce Wayne",
        "T'Challa",
    ];
    let mut bytes = Vec::new();
    for i in 0..100 {
        let req = format!(
            r#"{{"event":"get_name","data":{{"hero":"{}"}},"id":{i}}}"#,
            heroes[i % 5]
        );
        bytes.extend(text(req));
    }
    c.write_all(&bytes).unwrap();
    for i in 0..100 {
        let expected = format!(
            r#"{{"event":"name","data":{{"hero":"{}","hero_name":"{}"}},"id":{i}}}"#,
            heroes[i % 5],
            names[i % 5]
        );
        expect_frame(&mut c, op::TEXT, expected.as_bytes());
    }
    close_normally(&mut c);
}

#[test]
fn a_message_of_exactly_the_cap_is_accepted_and_one_byte_more_is_1009() {
    let server = Server::start(&[
        "--app",
        "echo",
        "--max-message-bytes",
        "1000",
        "--max-frame-bytes",
        "1000",
    ]);
    let mut c = open(server.addr());
    let exact = vec![b'a'; 1000];
    c.write_all(&text(&exact)).unwrap();
    expect_frame(&mut c, op::TEXT, &exact);
    // Only the header of the oversized frame is sent: the answer must not wait for the payload.
    c.write_all(&frame_header(true, 0, op::TEXT, 1001, Some(MASK)))
        .unwrap();
    expect_close(&mut c, 1009);
    drop(c); // the close is logged when TCP ends
    assert!(server.wait_for_log(
        "code=1009 by=server reason=\"frame too large\"",
        Duration::from_secs(2)
    ));
}

#[test]
fn replies_earned_before_a_protocol_error_are_sent_before_the_close() {
    let server = Server::start(&["--app", "echo"]);
    let mut c = open(server.addr());
    let bytes = concat(&[
        text("one"),
        text("two"),
        frame(true, 4, op::TEXT, b"rsv", Some(MASK)),
        text("never"),
    ]);
    c.write_all(&bytes).unwrap();
    expect_frame(&mut c, op::TEXT, b"one");
    expect_frame(&mut c, op::TEXT, b"two");
    expect_close(&mut c, 1002);
}

#[test]
fn after_the_close_exchange_tcp_is_closed_at_once() {
    let server = Server::start(&["--app", "echo"]);
    let mut c = open(server.addr());
    let start = Instant::now();
    c.write_all(&close_frame(1000, b"done")).unwrap();
    expect_close_within(&mut c, 1000, Duration::from_millis(500));
    assert!(start.elapsed() < Duration::from_millis(500));
    assert!(server.wait_for_log("code=1000 by=client", Duration::from_secs(2)));
}

#[test]
fn a_peer_that_never_answers_the_close_is_dropped_after_close_timeout() {
    let server = Server::start_with_config(r#"{"limits":{"close_timeout_ms":400}}"#, &[]);
    let mut c = open(server.addr());
    // A binary message to the hero application: the server closes with 1003.
    c.write_all(&binary([1, 2, 3])).unwrap();
    let f = read_frame(&mut c).unwrap();
    assert_eq!((f.opcode, f.close_code()), (op::CLOSE, Some(1003)));
    let start = Instant::now();
    expect_eof(&mut c, Duration::from_secs(3));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(server.wait_for_log("timeout=close", Duration::from_secs(2)));
}

#[test]
fn an_idle_peer_is_pinged_then_dropped() {
    let server =
        Server::start_with_config(r#"{"limits":{"idle_timeout_ms":300}}"#, &["--app", "echo"]);
    let mut c = open(server.addr());
    let start = Instant::now();
    let f = read_frame(&mut c).unwrap();
    assert_eq!(f.opcode, op::PING);
    assert!(start.elapsed() >= Duration::from_millis(250));
    // Answering keeps it open; the next ping comes one idle period later.
    c.write_all(&pong(&f.payload)).unwrap();
    let f = read_frame(&mut c).unwrap();
    assert_eq!(f.opcode, op::PING);
    // Not answering drops it one more idle period later.
    expect_eof(&mut c, Duration::from_secs(2));
    assert!(server.wait_for_log("timeout=idle", Duration::from_secs(2)));
}

#[test]
fn unknown_heroes_and_bad_json_get_error_events_with_the_id() {
    let server = Server::start(&[]);
    let mut c = open(server.addr());
    c.write_all(&text(
        r#"{"event":"get_name","data":{"hero":"nobody"},"id":42}"#,
    ))
    .unwrap();
    expect_frame(
        &mut c,
        op::TEXT,
        br#"{"event":"error","data":{"code":"unknown_hero","message":"no such hero"},"id":42}"#,
    );
    c.write_all(&text("{oops")).unwrap();
    expect_frame(&mut c, op::TEXT, br#"{"event":"error","data":{"code":"invalid_json","message":"message is not valid JSON"}}"#);
    c.write_all(&text(r#"{"event":"list_heroes","id":1}"#))
        .unwrap();
    expect_frame(&mut c, op::TEXT, br#"{"event":"heroes","data":{"heroes":["ironMan","hulk","wonderWoman","batMan","blackPanther"]},"id":1}"#);
    c.write_all(&binary(b"\x00")).unwrap();
    let f = read_frame(&mut c).unwrap();
    assert_eq!((f.opcode, f.close_code()), (op::CLOSE, Some(1003)));
    // The server started the close: it waits for ours, then closes TCP at once.
    c.write_all(&close_frame(1003, b"")).unwrap();
    expect_eof(&mut c, std::time::Duration::from_millis(500));
    assert!(server.wait_for_log("code=1003 by=server", Duration::from_secs(2)));
}

#[test]
fn a_heroes_file_replaces_the_built_in_heroes() {
    let dir = std::env::temp_dir().join(format!("palisade-heroes-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("heroes.json");
    std::fs::write(
        &file,
        r#"{"spiderMan":"Peter Parker","storm":"Ororo Munroe"}"#,
    )
    .unwrap();
    let server = Server::start(&["--heroes", file.to_str().unwrap()]);
    let mut c = open(server.addr());
    c.write_all(&text(r#"{"event":"list_heroes"}"#)).unwrap();
    expect_frame(
        &mut c,
        op::TEXT,
        br#"{"event":"heroes","data":{"heroes":["spiderMan","storm"]}}"#,
    );
    c.write_all(&text(r#"{"event":"get_name","data":{"hero":"storm"}}"#))
        .unwrap();
    expect_frame(
        &mut c,
        op::TEXT,
        br#"{"event":"name","data":{"hero":"storm","hero_name":"Ororo Munroe"}}"#,
    );
    c.write_all(&text(r#"{"event":"get_name","data":{"hero":"ironMan"}}"#))
        .unwrap();
    expect_frame(
        &mut c,
        op::TEXT,
        br#"{"event":"error","data":{"code":"unknown_hero","message":"no such hero"}}"#,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
