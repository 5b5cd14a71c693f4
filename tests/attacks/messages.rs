//! Attacks after the `101`: message floods, oversized and fragmented
//! frames, empty continuations, ping floods, readers that never read,
//! trickled frames, protocol violations, JSON bombs.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

#[test]
fn message_flood_gets_rate_limited_then_1008() {
    let _s = serial();
    let server =
        Server::start_with_config(&config(r#""rate":{"messages_per_conn_per_s":50}"#), &[]);
    let victim = WellBehaved::start(server.addr());
    let mut s = connect_from(loopback(14), server.addr()).unwrap();
    let (status, _, rest) = handshake(&mut s, "/ws", &[]);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let mut c = Client::new(s, rest);
    let msg = text(r#"{"event":"get_name","data":{"hero":"hulk"}}"#);
    let burst: Vec<u8> = msg.iter().copied().cycle().take(msg.len() * 400).collect();
    c.write_all(&burst).unwrap();
    let (mut names, mut limited) = (0, 0);
    let close = loop {
        let f = read_frame(&mut c).unwrap();
        match f.opcode {
            op::TEXT if f.payload.starts_with(br#"{"event":"name""#) => names += 1,
            op::TEXT if f.payload.windows(12).any(|w| w == b"rate_limited") => limited += 1,
            op::CLOSE => break f.close_code(),
            _ => panic!("unexpected {f:?}"),
        }
    };
    assert_eq!(names, 100, "the burst (2 x 50) is answered");
    assert_eq!(limited, 1, "one rate_limited event, not one per message");
    assert_eq!(close, Some(1008));
    let attacker = loopback(14);
    assert!(server.wait_for_log(
        &format!("client={attacker} limit=rate.messages_per_conn_per_s"),
        Duration::from_secs(5)
    ));
    let v = victim.finish();
    record(
        "message flood on one connection (400 at once, rate 50/s)",
        &format!("{names} answers, 1 `rate_limited`, then close 1008"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn oversized_frame_headers_close_1009_before_any_payload() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    for (what, len) in [("2^63-1", (1u64 << 63) - 1), ("max+1", 65_537)] {
        let mut s = connect_from(loopback(15), server.addr()).unwrap();
        let (_, _, rest) = handshake(&mut s, "/ws", &[]);
        let mut c = Client::new(s, rest);
        // Only the header: the close must come without any payload sent.
        c.write_all(&frame_header(true, 0, op::BINARY, len, Some(MASK)))
            .unwrap();
        let t = Instant::now();
        expect_close(&mut c, 1009);
        eprintln!("{what}: 1009 after {:?}", t.elapsed());
    }
    let v = victim.finish();
    assert!(peak_rss_kib(server.pid()) < SMALL_RSS_KIB);
    record(
        "frame announcing 2^63-1 bytes, and max+1",
        "close 1009 before any payload",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn fragments_summing_over_the_message_cap_close_1009() {
    let _s = serial();
    let server = Server::start_with_config(
        &config(r#""limits":{"max_frame_bytes":16384,"max_message_bytes":65536}"#),
        &[],
    );
    let victim = WellBehaved::start(server.addr());
    let mut s = connect_from(loopback(16), server.addr()).unwrap();
    let (_, _, rest) = handshake(&mut s, "/ws", &[]);
    let mut c = Client::new(s, rest);
    let chunk = vec![b'a'; 16_000];
    c.write_all(&fragment(op::TEXT, false, &chunk)).unwrap();
    for _ in 0..3 {
        c.write_all(&fragment(op::CONT, false, &chunk)).unwrap();
    }
    // 64,000 so far; one more fragment would make 80,000.
    let _ = c.write_all(&fragment(op::CONT, true, &chunk));
    expect_close(&mut c, 1009);
    let v = victim.finish();
    record(
        "fragments each under the frame cap, together over the message cap",
        "close 1009",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn empty_continuations_and_ping_floods_are_bounded() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    // 10,000 zero-length continuations: closed at max_fragments (1024).
    let mut s = connect_from(loopback(17), server.addr()).unwrap();
    let (_, _, rest) = handshake(&mut s, "/ws", &[]);
    let mut c = Client::new(s, rest);
    let mut flood = fragment(op::TEXT, false, b"");
    for _ in 0..10_000 {
        flood.extend(fragment(op::CONT, false, b""));
    }
    let _ = c.write_all(&flood);
    expect_close(&mut c, 1009);
    // A ping flood from a client that never reads: the pongs queue up to
    // max_outbound_bytes, then the server stops reading and closes it.
    let cpu0 = cpu_time(server.pid());
    let mut s = connect_from(loopback(18), server.addr()).unwrap();
    let (_, _, _) = handshake(&mut s, "/ws", &[]);
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let pings: Vec<u8> = (0..1000).flat_map(|_| ping(vec![b'p'; 125])).collect();
    let mut sent = 0usize;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        match s.write(&pings) {
            Ok(n) => sent += n,
            Err(_) => break, // the server stopped reading (backpressure) or closed
        }
    }
    let cpu = cpu_time(server.pid()) - cpu0;
    let rss = peak_rss_kib(server.pid());
    eprintln!(
        "ping flood: {} KiB of pings accepted before the server stopped reading; server CPU {cpu:?}; peak RSS {rss} KiB",
        sent / 1024
    );
    assert!(
        sent < 64 << 20,
        "the server kept reading {sent} bytes of pings"
    );
    assert!(rss < SMALL_RSS_KIB, "{rss} KiB");
    let v = victim.finish();
    record(
        "10,000 empty continuations; ping flood without reading",
        &format!(
            "1009 at max_fragments; pings read until backpressure ({} KiB)",
            sent / 1024
        ),
        &v,
        rss,
        SMALL_RSS_KIB,
    );
}

#[test]
fn a_reader_that_never_reads_is_held_back_then_dropped() {
    let _s = serial();
    // A small outbound cap, so that one read's worth of requests earns more
    // replies than half of it; no message rate, which would stop the
    // client first.
    let server = Server::start_with_config(
        &config(
            r#""limits":{"max_outbound_bytes":16384,"idle_timeout_ms":1000},"rate":{"messages_per_conn_per_s":1000000}"#,
        ),
        &[],
    );
    let victim = WellBehaved::start(server.addr());
    let mut s = connect_from(loopback(19), server.addr()).unwrap();
    let (_, _, rest) = handshake(&mut s, "/ws", &[]);
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // list_heroes replies are larger than the requests: the replies pile up
    // until the server stops decoding (half the cap) and stops reading.
    let req = text(r#"{"event":"list_heroes"}"#);
    let batch: Vec<u8> = req.iter().copied().cycle().take(req.len() * 1000).collect();
    let mut sent = 0usize;
    let t = Instant::now();
    let mut blocked = false;
    while t.elapsed() < Duration::from_secs(5) {
        match s.write(&batch) {
            Ok(n) => sent += n,
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "the server kept reading: {} KiB sent", sent / 1024);
    // Not reading, it never answers the idle ping: dropped as a slow
    // consumer at twice the idle timeout.
    assert!(
        server.wait_for_log(
            r#"code=1008 by=server reason="slow consumer""#,
            Duration::from_secs(5)
        ),
        "no slow-consumer close in the log"
    );
    let dropped_after = t.elapsed();
    let mut c = Client::new(s, rest);
    let mut replies = 0u32;
    while let Ok(f) = read_frame(&mut c) {
        if f.opcode == op::TEXT {
            replies += 1;
        }
    }
    let rss = peak_rss_kib(server.pid());
    eprintln!(
        "never-reading client: {} KiB of requests sent before its writes blocked; dropped after {dropped_after:?}; {replies} replies readable; peak RSS {rss} KiB",
        sent / 1024
    );
    let v = victim.finish();
    record(
        "a reader that never reads while the server replies (`max_outbound_bytes` 16 KiB, `idle_timeout_ms` 1000)",
        &format!(
            "its writes block once the queue passes 8 KiB; dropped after {:.1} s, logged `1008 slow consumer`",
            dropped_after.as_secs_f64()
        ),
        &v,
        rss,
        SMALL_RSS_KIB,
    );
}

#[test]
fn a_frame_trickled_byte_by_byte_is_bounded_by_the_idle_timeout() {
    let _s = serial();
    let server = Server::start_with_config(&config(r#""limits":{"idle_timeout_ms":1000}"#), &[]);
    let victim = WellBehaved::start(server.addr());
    let mut s = connect_from(loopback(30), server.addr()).unwrap();
    let (_, _, _) = handshake(&mut s, "/ws", &[]);
    let frame = masked(op::TEXT, &[b'x'; 100]);
    let t = Instant::now();
    let mut written = 0;
    for b in &frame {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            break;
        }
        written += 1;
        thread::sleep(Duration::from_millis(100));
        if t.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    // The server pinged after 1 s of no complete frame and dropped the
    // connection after 1 s more: reading ends in EOF or a reset.
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rest = Vec::new();
    let end = std::io::Read::read_to_end(&mut s, &mut rest);
    let took = t.elapsed();
    eprintln!("trickle: {written} bytes written, connection ended after {took:?} ({end:?})");
    assert!(
        written < frame.len(),
        "the whole frame was accepted byte by byte"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(server.wait_for_log("timeout=idle", Duration::from_secs(3)));
    let v = victim.finish();
    record(
        "a frame trickled one byte per 100 ms (idle timeout 1 s)",
        &format!(
            "ping at 1 s, TCP closed at 2 s ({written} of {} bytes sent)",
            frame.len()
        ),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn protocol_violations_get_their_close_codes() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8",
            masked(op::TEXT, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80"),
            1007,
        ),
        ("invalid close code", close_frame(1005, b""), 1002),
        (
            "unmasked frame",
            frame(true, 0, op::TEXT, b"hi", None),
            1002,
        ),
        ("RSV bit", frame(true, 4, op::TEXT, b"hi", Some(MASK)), 1002),
        (
            "reserved opcode",
            frame(true, 0, 0x3, b"", Some(MASK)),
            1002,
        ),
    ];
    let mut seen = Vec::new();
    for (i, (what, bytes, code)) in cases.into_iter().enumerate() {
        let mut s = connect_from(loopback(20 + i as u32), server.addr()).unwrap();
        let (_, _, rest) = handshake(&mut s, "/ws", &[]);
        let mut c = Client::new(s, rest);
        c.write_all(&bytes).unwrap();
        expect_close(&mut c, code);
        seen.push(format!("{what} {code}"));
    }
    let v = victim.finish();
    record(
        "invalid UTF-8, close codes, unmasked frames, RSV bits, opcodes",
        &seen.join(", "),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

#[test]
fn json_bombs_are_invalid_json_without_a_crash() {
    let _s = serial();
    let server = Server::start_with_config(
        &config(r#""limits":{"max_message_bytes":1048576,"max_frame_bytes":1048576}"#),
        &[],
    );
    let victim = WellBehaved::start(server.addr());
    let mut c = open(server.addr());
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_data = format!(
        r#"{{"event":"get_name","data":{{"hero":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_ignored = format!(
        r#"{{"event":"get_name","x":{}{},"data":{{"hero":"hulk"}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge_number = format!(r#"{{"event":"get_name","id":1{}}}"#, "0".repeat(100_000));
    let big_float = r#"{"event":"get_name","data":{"hero":1e999999}}"#.to_string();
    let unclosed = format!(r#"{{"event":"get_name","x":{}"#, "[".repeat(100_000));
    // Each answer is exact: a bomb where the schema wants a string fails
    // at its first byte (invalid_message); nesting in an ignored field is
    // skipped by serde_json without recursion and the request is answered;
    // broken JSON is invalid_json.
    let hulk = r#"{"event":"name","data":{"hero":"hulk","hero_name":"Bruce Banner"}}"#;
    let schema = r#""code":"invalid_message""#;
    let syntax = r#""code":"invalid_json""#;
    for (what, msg, want) in [
        ("100,000 nested arrays", nested, schema),
        ("nested arrays inside data", deep_data, schema),
        ("nested arrays in an ignored field", deep_ignored, hulk),
        ("100,000 unclosed arrays", unclosed, syntax),
        ("a 100,000-digit id", huge_number, syntax),
        ("1e999999", big_float, syntax),
    ] {
        c.write_all(&text(&msg)).unwrap();
        let f = read_frame(&mut c).unwrap();
        let reply = String::from_utf8_lossy(&f.payload);
        eprintln!("{what}: {reply}");
        assert!(reply.contains(want), "{what}: {reply}");
    }
    // The connection and the server are fine.
    c.write_all(&text(r#"{"event":"get_name","data":{"hero":"hulk"}}"#))
        .unwrap();
    let f = read_frame(&mut c).unwrap();
    assert!(f.payload.starts_with(br#"{"event":"name""#));
    let v = victim.finish();
    record(
        "JSON bombs: 100,000 nested arrays, huge numbers",
        "`error` invalid_message (schema) or invalid_json (syntax); no crash",
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}

/// RFC 6455 §5.2: a length in more bytes than needed (`81 FE 00 05 <mask>
/// hello`) is a protocol error, for data and control frames, on the fast
/// path (whole frame in one read) and in the decoder (split) alike.
#[test]
fn lengths_in_more_bytes_than_needed_close_1002() {
    let _s = serial();
    let server = Server::start_with_config(&config(""), &[]);
    let victim = WellBehaved::start(server.addr());
    let mut closed = 0;
    for (opcode, wide, split) in [
        (op::TEXT, false, false),
        (op::TEXT, false, true),
        (op::PING, false, false),
        (op::BINARY, true, false),
        (op::BINARY, true, true),
    ] {
        let mut s = connect_from(loopback(90), server.addr()).unwrap();
        let (_, _, rest) = handshake(&mut s, "/ws", &[]);
        let mut c = Client::new(s, rest);
        let form = if wide { LenForm::U64 } else { LenForm::U16 };
        let mut f = frame_header_raw(true, 0, opcode, 5, form, Some(MASK));
        f.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        if split {
            send_split(&mut c, &f, &[1, 3, 7], Duration::from_millis(5)).unwrap();
        } else {
            c.write_all(&f).unwrap();
        }
        // No echo, no pong: the close comes first.
        expect_close(&mut c, 1002);
        closed += 1;
    }
    let v = victim.finish();
    record(
        "length not minimally encoded (`81 FE 00 05 <mask> hello`, 64-bit for 5, ping)",
        &format!("close 1002 x {closed}, nothing echoed"),
        &v,
        peak_rss_kib(server.pid()),
        SMALL_RSS_KIB,
    );
}
