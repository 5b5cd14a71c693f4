//! Byte-vector tests of the connection state machine, one per row of
//! SPEC.md §3, with a fake clock.

use core::time::Duration;
use std::prelude::rust_2024::*;

use super::*;
use crate::frame::encode_header;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame(fin: bool, rsv: u8, op: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(fin, op, payload.len() as u64, masked.then_some(KEY), &mut h);
    h[0] |= rsv << 4;
    let mut v = h[..n].to_vec();
    let mut p = payload.to_vec();
    if masked {
        apply_mask(&mut p, KEY, 0);
    }
    v.extend_from_slice(&p);
    v
}

fn masked(op: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, op, payload, true)
}

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// A server frame read back from the output.
#[derive(Debug, PartialEq, Eq)]
struct Out(u8, Vec<u8>);

struct Harness {
    ws: WebSocket,
    limits: Limits,
    now: Stamp,
    events: Vec<Ev>,
}

impl Harness {
    fn new() -> Self {
        Self::with(Limits::default())
    }

    fn with(limits: Limits) -> Self {
        let now = Stamp::from_millis(1_000_000);
        Harness {
            ws: WebSocket::new(now, Vec::new()),
            limits,
            now,
            events: Vec::new(),
        }
    }

    /// Feeds bytes; the application echoes every message.
    fn feed(&mut self, bytes: &[u8]) {
        let mut input = bytes.to_vec();
        let events = &mut self.events;
        self.ws
            .handle_input(self.now, &mut input, &self.limits, |ev, tx| match ev {
                Event::Text(t) => {
                    events.push(Ev::Text(t.as_str().to_owned()));
                    tx.send_text(t).unwrap();
                }
                Event::Binary(b) => {
                    events.push(Ev::Binary(b.to_vec()));
                    tx.send_binary(b).unwrap();
                }
                Event::Ping(p) => events.push(Ev::Ping(p.to_vec())),
                Event::Pong(p) => events.push(Ev::Pong(p.to_vec())),
                Event::Close { code, reason } => events.push(Ev::Close(code, reason.to_owned())),
            });
    }

    /// Drains and decodes the server's frames.
    fn out(&mut self) -> Vec<Out> {
        let bytes = self.ws.output().to_vec();
        self.ws.consume_output(bytes.len());
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let (h, n) = decode_header(&bytes[pos..]).unwrap().unwrap();
            assert!(h.mask.is_none(), "server frames are never masked");
            assert!(h.fin, "server frames are never fragmented");
            pos += n;
            frames.push(Out(h.opcode, bytes[pos..pos + h.len as usize].to_vec()));
            pos += h.len as usize;
        }
        frames
    }

    fn expect_close(&mut self, code: u16) {
        let frames = self.out();
        let last = frames.last().expect("a close frame");
        assert_eq!(last.0, opcode::CLOSE, "{frames:?}");
        assert_eq!(
            u16::from_be_bytes([last.1[0], last.1[1]]),
            code,
            "{frames:?}"
        );
        assert!(!self.ws.is_open());
    }
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

#[test]
fn text_and_binary_are_echoed() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::TEXT, b"Hello"));
    h.feed(&masked(opcode::BINARY, &[0, 1, 2]));
    assert_eq!(
        h.events,
        vec![Ev::Text("Hello".into()), Ev::Binary(vec![0, 1, 2])]
    );
    assert_eq!(
        h.out(),
        vec![Out(1, b"Hello".to_vec()), Out(2, vec![0, 1, 2])]
    );
}

#[test]
fn row_unmasked_frame_is_1002() {
    let mut h = Harness::new();
    h.feed(&frame(true, 0, opcode::TEXT, b"Hello", false));
    h.expect_close(1002);
    assert!(h.events.is_empty());
}

#[test]
fn row_rsv_bits_are_1002() {
    for rsv in 1..8 {
        let mut h = Harness::new();
        h.feed(&frame(true, rsv, opcode::TEXT, b"x", true));
        h.expect_close(1002);
    }
}

#[test]
fn row_reserved_opcodes_are_1002() {
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut h = Harness::new();
        h.feed(&masked(op, b""));
        h.expect_close(1002);
    }
}

#[test]
fn row_control_frame_too_long_or_fragmented_is_1002() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::PING, &[b'a'; 126]));
    h.expect_close(1002);
    let mut h = Harness::new();
    h.feed(&frame(false, 0, opcode::PING, b"x", true));
    h.expect_close(1002);
    let mut h = Harness::new();
    h.feed(&masked(opcode::PING, &[b'a'; 125]));
    assert_eq!(h.out(), vec![Out(opcode::PONG, vec![b'a'; 125])]);
}

#[test]
fn row_bad_continuation_is_1002() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::CONTINUATION, b"x"));
    h.expect_close(1002);
    let mut h = Harness::new();
    h.feed(&frame(false, 0, opcode::TEXT, b"a", true));
    h.feed(&masked(opcode::TEXT, b"b"));
    h.expect_close(1002);
}

#[test]
fn row_length_msb_is_1002() {
    let mut h = Harness::new();
    h.feed(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    h.expect_close(1002);
}

#[test]
fn row_non_minimal_length_is_1002() {
    // §5.2: `81 FE 00 05 <mask> hello` (a 16-bit length for 5 bytes) is
    // refused, not echoed; the same for a ping and a 64-bit length.
    let key = [1, 2, 3, 4];
    let hello: Vec<u8> = b"hello"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    for head in [
        vec![0x81, 0xfe, 0x00, 0x05],
        vec![0x89, 0xfe, 0x00, 0x05],
        vec![0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 5],
    ] {
        let mut h = Harness::new();
        let mut bytes = head.clone();
        bytes.extend_from_slice(&key);
        bytes.extend_from_slice(&hello);
        h.feed(&bytes);
        let frames = h.out();
        // Only the close: nothing echoed, no pong.
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].0, opcode::CLOSE);
        assert_eq!(frames[0].1[..2], 1002u16.to_be_bytes());
    }
}

#[test]
fn row_frame_over_cap_is_1009_before_payload() {
    let mut h = Harness::new();
    // Header alone announces 65537 bytes; no payload byte is sent.
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(true, opcode::BINARY, 65537, Some(KEY), &mut hdr);
    h.feed(&hdr[..n]);
    h.expect_close(1009);
    // The largest length the wire can carry is refused just the same.
    let mut h = Harness::new();
    let n = encode_header(true, opcode::BINARY, i64::MAX as u64, Some(KEY), &mut hdr);
    h.feed(&hdr[..n]);
    h.expect_close(1009);
    // Nothing was reserved for the announced payload: only the close frame's buffer.
    assert!(h.ws.buffered_bytes() < 256, "{}", h.ws.buffered_bytes());
}

#[test]
fn row_message_over_cap_is_1009_at_the_fragment_header() {
    let mut h = Harness::new();
    h.feed(&frame(false, 0, opcode::TEXT, &[b'a'; 30000], true));
    h.feed(&frame(false, 0, opcode::CONTINUATION, &[b'a'; 30000], true));
    assert_eq!(h.out(), vec![]);
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(true, opcode::CONTINUATION, 30000, Some(KEY), &mut hdr);
    h.feed(&hdr[..n]);
    h.expect_close(1009);
}

#[test]
fn message_of_exactly_the_cap_is_accepted() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::BINARY, &vec![7; 65536]));
    assert_eq!(h.out(), vec![Out(2, vec![7; 65536])]);
}

#[test]
fn row_too_many_fragments_is_1009() {
    let limits = Limits {
        max_fragments: 3,
        ..Limits::default()
    };
    let mut h = Harness::with(limits.clone());
    h.feed(&frame(false, 0, opcode::TEXT, b"a", true));
    h.feed(&frame(false, 0, opcode::CONTINUATION, b"b", true));
    h.feed(&frame(true, 0, opcode::CONTINUATION, b"c", true));
    assert_eq!(h.out(), vec![Out(1, b"abc".to_vec())]);
    let mut h = Harness::with(limits);
    h.feed(&frame(false, 0, opcode::CONTINUATION, b"", true));
    h.expect_close(1002);
    let mut h = Harness::with(Limits {
        max_fragments: 3,
        ..Limits::default()
    });
    h.feed(&frame(false, 0, opcode::TEXT, b"a", true));
    h.feed(&frame(false, 0, opcode::CONTINUATION, b"", true));
    h.feed(&frame(false, 0, opcode::CONTINUATION, b"", true));
    h.feed(&frame(true, 0, opcode::CONTINUATION, b"", true));
    h.expect_close(1009);
}

#[test]
fn row_invalid_utf8_is_1007_even_mid_frame() {
    let mut h = Harness::new();
    h.feed(&masked(
        opcode::TEXT,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    ));
    h.expect_close(1007);
    // Only the first part of a frame has arrived; the bad byte is in it.
    let mut h = Harness::new();
    let f = masked(
        opcode::TEXT,
        b"hello\xffworld and more that has not arrived",
    );
    h.feed(&f[..2 + 4 + 6]);
    h.expect_close(1007);
}

#[test]
fn whole_text_frames_past_the_ascii_check_are_validated() {
    // A byte with bit 7 set, in an 8-byte word or in the tail after the
    // last whole word, sends the text to std's validator: invalid is 1007,
    // valid is delivered as it is.
    for (text, valid) in [
        (&b"abcdefg\x80abcdefgh"[..], false),
        (&b"abcdefghabcdefgh\xff"[..], false),
        (&b"abcdefghabcdefgh\xc3"[..], false),
        ("abcdefghabcdefgh\u{e9}".as_bytes(), true),
        ("abcdefgh\u{20ac}abcdefgh".as_bytes(), true),
        (&b"abcdefghabcdefgh\x7f"[..], true),
    ] {
        let mut h = Harness::new();
        h.feed(&masked(opcode::TEXT, text));
        if valid {
            let s = core::str::from_utf8(text).unwrap();
            assert_eq!(h.events, vec![Ev::Text(s.to_owned())], "{text:x?}");
        } else {
            h.expect_close(1007);
        }
    }
}

#[test]
fn utf8_split_across_fragments_is_accepted() {
    let euro = "€".as_bytes(); // e2 82 ac
    let mut h = Harness::new();
    h.feed(&frame(false, 0, opcode::TEXT, &euro[..1], true));
    h.feed(&frame(false, 0, opcode::CONTINUATION, &euro[1..2], true));
    h.feed(&frame(true, 0, opcode::CONTINUATION, &euro[2..], true));
    assert_eq!(h.out(), vec![Out(1, euro.to_vec())]);
    // A truncated code point at the end of the message is 1007.
    let mut h = Harness::new();
    h.feed(&frame(false, 0, opcode::TEXT, &euro[..1], true));
    h.feed(&frame(true, 0, opcode::CONTINUATION, &euro[1..2], true));
    h.expect_close(1007);
}

#[test]
fn row_close_payload_rules() {
    let cases: &[(&[u8], u16)] = &[
        (&[0x03], 1002),
        (&[0x03, 0xed], 1002), // 1005
        (&[0x03, 0xee], 1002), // 1006
        (&[0x03, 0xe7], 1002), // 999
        (&[0x13, 0x88], 1002), // 5000
        (b"\x03\xe8\xff\xfe", 1007),
    ];
    for (payload, code) in cases {
        let mut h = Harness::new();
        h.feed(&masked(opcode::CLOSE, payload));
        h.expect_close(*code);
    }
}

#[test]
fn row_ping_gets_pong() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::PING, b"Hello"));
    assert_eq!(h.out(), vec![Out(opcode::PONG, b"Hello".to_vec())]);
    assert_eq!(h.events, vec![Ev::Ping(b"Hello".to_vec())]);
}

#[test]
fn row_close_is_answered_with_same_code_then_finished() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::CLOSE, &close_payload(3000, b"bye")));
    assert_eq!(h.events, vec![Ev::Close(Some(3000), "bye".into())]);
    assert_eq!(
        h.out(),
        vec![Out(opcode::CLOSE, 3000u16.to_be_bytes().to_vec())]
    );
    assert!(
        h.ws.is_finished(),
        "TCP is closed at once after the exchange"
    );
    let mut h = Harness::new();
    h.feed(&masked(opcode::CLOSE, b""));
    assert_eq!(
        h.out(),
        vec![Out(opcode::CLOSE, 1000u16.to_be_bytes().to_vec())]
    );
    assert_eq!(h.ws.close_info().unwrap().by, Initiator::Client);
}

#[test]
fn nothing_is_processed_after_the_close() {
    let mut h = Harness::new();
    let mut bytes = masked(opcode::CLOSE, &close_payload(1000, b""));
    bytes.extend(masked(opcode::TEXT, b"late"));
    bytes.extend(masked(opcode::PING, b"late"));
    h.feed(&bytes);
    assert_eq!(
        h.out(),
        vec![Out(opcode::CLOSE, 1000u16.to_be_bytes().to_vec())]
    );
}

#[test]
fn replies_before_a_protocol_error_come_first() {
    let mut h = Harness::new();
    let mut bytes = Vec::new();
    for i in 0..3 {
        bytes.extend(masked(opcode::TEXT, format!("m{i}").as_bytes()));
    }
    bytes.extend(frame(true, 1, opcode::TEXT, b"bad", true));
    bytes.extend(masked(opcode::TEXT, b"never"));
    h.feed(&bytes);
    let out = h.out();
    assert_eq!(out.len(), 4);
    assert_eq!(out[2], Out(1, b"m2".to_vec()));
    assert_eq!(out[3].0, opcode::CLOSE);
    assert!(h.ws.wants_shutdown_write());
}

#[test]
fn server_close_waits_for_peer_then_finishes() {
    let mut h = Harness::new();
    let limits = h.limits.clone();
    h.ws.close(h.now, &limits, 1001, "going away");
    let out = h.out();
    assert_eq!(out[0].0, opcode::CLOSE);
    assert_eq!(&out[0].1[2..], b"going away");
    assert!(!h.ws.is_finished());
    // Data is discarded while closing; the peer's close ends the exchange.
    h.feed(&masked(opcode::TEXT, b"ignored"));
    assert!(h.events.is_empty());
    h.feed(&masked(opcode::CLOSE, &close_payload(1001, b"")));
    assert!(h.ws.is_finished());
    assert_eq!(h.out(), vec![]);
}

/// Deadlines are kept to the millisecond; the fake clock only has whole
/// milliseconds, so they are exact.
fn assert_near(deadline: Stamp, exact: Stamp) {
    assert_eq!(deadline, exact);
}

/// `s` less `ms` milliseconds.
fn before(s: Stamp, ms: u64) -> Stamp {
    Stamp::from_millis(s.as_millis() - ms)
}

#[test]
fn close_timeout_drops_a_silent_peer() {
    let mut h = Harness::new();
    let limits = h.limits.clone();
    h.ws.close(h.now, &limits, 1001, "going away");
    let deadline = h.ws.poll_timeout(&limits);
    assert_near(deadline, h.now.after(Duration::from_millis(3000)));
    assert_eq!(h.ws.handle_timeout(before(deadline, 1), &limits), None);
    assert_eq!(h.ws.handle_timeout(deadline, &limits), Some(Expired::Close));
}

#[test]
fn idle_ping_then_timeout() {
    let mut h = Harness::new();
    let limits = h.limits.clone();
    let t1 = h.ws.poll_timeout(&limits);
    assert_near(t1, h.now.after(limits.idle_timeout));
    assert_eq!(h.ws.handle_timeout(t1, &limits), None);
    assert_eq!(h.out(), vec![Out(opcode::PING, vec![])]);
    let t2 = h.ws.poll_timeout(&limits);
    assert_near(t2, t1.after(limits.idle_timeout));
    assert_eq!(h.ws.handle_timeout(t2, &limits), Some(Expired::Idle));
    assert_eq!(h.ws.close_info().unwrap().reason, "idle timeout");
}

#[test]
fn expired_credentials_close_with_1008() {
    let mut h = Harness::new();
    let limits = h.limits.clone();
    let at = h.now.after(Duration::from_millis(1500));
    h.ws.set_expiry(at);
    // The expiry comes before the idle ping.
    assert_near(h.ws.poll_timeout(&limits), at);
    assert_eq!(h.ws.handle_timeout(before(at, 1), &limits), None);
    assert_eq!(h.out(), vec![]);
    assert_eq!(h.ws.handle_timeout(at, &limits), None);
    assert_eq!(
        h.out(),
        vec![Out(opcode::CLOSE, close_payload(1008, b"token expired"))]
    );
    // Then the usual closing handshake: the peer's close ends it.
    assert_near(h.ws.poll_timeout(&limits), at.after(limits.close_timeout));
    h.feed(&masked(opcode::CLOSE, &close_payload(1008, b"")));
    assert!(h.ws.is_finished());
    let info = h.ws.close_info().unwrap();
    assert_eq!((info.code, info.reason), (1008, "token expired"));
}

#[test]
fn a_peer_streaming_after_our_close_is_read_only_so_far() {
    let mut h = Harness::new();
    let limits = h.limits.clone();
    h.ws.close(h.now, &limits, 1001, "going away");
    assert_eq!(
        h.out(),
        vec![Out(opcode::CLOSE, close_payload(1001, b"going away"))]
    );
    // A few messages in flight are fine: still waiting for the close.
    let msg = masked(opcode::TEXT, &vec![b'a'; 60_000]);
    h.feed(&msg);
    assert!(h.ws.wants_read(&limits));
    // Four messages' worth more and the server stops reading.
    for _ in 0..5 {
        h.feed(&msg);
    }
    assert!(!h.ws.wants_read(&limits));
    assert!(h.ws.is_finished());
}

#[test]
fn pong_keeps_the_connection_alive() {
    let mut h = Harness::new();
    let limits = h.limits.clone();
    let t1 = h.ws.poll_timeout(&limits);
    h.ws.handle_timeout(t1, &limits);
    h.now = t1.after(Duration::from_millis(10));
    h.feed(&masked(opcode::PONG, b""));
    assert_eq!(h.ws.poll_timeout(&limits), h.now.after(limits.idle_timeout));
}

#[test]
fn every_split_point_gives_the_same_result() {
    let mut bytes = Vec::new();
    bytes.extend(masked(opcode::TEXT, "héllo wörld".as_bytes()));
    bytes.extend(frame(false, 0, opcode::TEXT, "€".as_bytes(), true));
    bytes.extend(masked(opcode::PING, b"p"));
    bytes.extend(frame(true, 0, opcode::CONTINUATION, "x€".as_bytes(), true));
    bytes.extend(masked(opcode::BINARY, &[1u8; 300]));
    let mut whole = Harness::new();
    whole.feed(&bytes);
    let expected = whole.out();
    assert_eq!(expected.len(), 4);
    for cut in 0..bytes.len() {
        for cut2 in cut..bytes.len() {
            let mut h = Harness::new();
            h.feed(&bytes[..cut]);
            h.feed(&bytes[cut..cut2]);
            h.feed(&bytes[cut2..]);
            assert_eq!(h.out(), expected, "cuts {cut} {cut2}");
            assert_eq!(h.events, whole.events);
        }
    }
}

#[test]
fn byte_at_a_time() {
    let mut bytes = masked(opcode::TEXT, &[b'z'; 200]);
    bytes.extend(masked(opcode::BINARY, &[3u8; 65536]));
    let mut h = Harness::new();
    for b in &bytes {
        h.feed(std::slice::from_ref(b));
    }
    assert_eq!(
        h.out(),
        vec![Out(1, vec![b'z'; 200]), Out(2, vec![3; 65536])]
    );
}

#[test]
fn send_text_with_fixes_up_every_header_size() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let mut h = Harness::new();
        let limits = h.limits.clone();
        h.ws.with_sender(h.now, &limits, |tx| {
            tx.send_text_with(|b| b.extend(std::iter::repeat_n(b'q', len)))
        })
        .unwrap();
        assert_eq!(h.out(), vec![Out(1, vec![b'q'; len])], "len {len}");
    }
    let mut h = Harness::new();
    let limits = h.limits.clone();
    let r =
        h.ws.with_sender(h.now, &limits, |tx| tx.send_text_with(|b| b.push(0xff)));
    assert_eq!(r, Err(SendError::NotUtf8));
    assert!(h.ws.output().is_empty());
}

#[test]
fn slow_consumer_is_closed_with_1008() {
    let limits = Limits {
        max_outbound_bytes: 1000,
        ..Limits::default()
    };
    let mut h = Harness::with(limits.clone());
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(h.ws.with_sender(h.now, &limits, |tx| tx.send_binary(&[0; 400])));
    }
    assert_eq!(results[..3], [Ok(()), Ok(()), Ok(())]);
    assert_eq!(results[3], Err(SendError::SlowConsumer));
    assert_eq!(results[4], Err(SendError::Closed));
    h.expect_close(1008);
    assert!(!h.ws.wants_read(&limits) || h.ws.output().is_empty());
}

#[test]
fn pipelined_requests_stop_at_the_high_water_mark_and_resume() {
    // Small requests with large replies, all in one read: decoding stops
    // once the queue passes half of max_outbound_bytes, the rest is held
    // (not read further), and resumes when the peer has read its replies.
    let limits = Limits {
        max_outbound_bytes: 1000,
        ..Limits::default()
    };
    let mut h = Harness::with(limits.clone());
    let mut input = Vec::new();
    for i in 0..20u8 {
        input.extend(masked(opcode::BINARY, &[i; 300]));
    }
    h.feed(&input);
    // 300 + 300 > 500 after two replies: two echoed, eighteen held.
    assert_eq!(h.events.len(), 2);
    assert!(!h.ws.wants_read(&limits));
    assert!(!h.ws.wants_resume(&limits));
    assert!(!h.ws.is_idle());
    let mut echoed = h.out().len();
    while h.ws.wants_resume(&limits) {
        h.feed(&[]);
        echoed += h.out().len();
    }
    assert_eq!(echoed, 20);
    assert_eq!(h.events.len(), 20);
    assert!(h.ws.is_open(), "never a slow consumer");
    assert!(h.ws.wants_read(&limits));
    assert!(h.ws.is_idle());
}

#[test]
fn eof_while_open_is_1006() {
    let mut h = Harness::new();
    let info = h.ws.handle_eof();
    assert_eq!((info.code, info.by), (1006, Initiator::Client));
}

#[test]
fn buffers_can_be_pooled_when_idle() {
    let mut h = Harness::new();
    let f = masked(opcode::BINARY, &[5; 1000]);
    h.feed(&f[..500]);
    assert!(!h.ws.is_idle());
    h.feed(&f[500..]);
    h.out();
    assert!(h.ws.is_idle());
    let mut taken = Vec::new();
    h.ws.take_buffers(0, |b| taken.push(b));
    assert!(!taken.is_empty());
    assert_eq!(h.ws.buffered_bytes(), 0);
}

#[test]
fn a_small_output_buffer_can_stay() {
    let mut h = Harness::new();
    h.feed(&masked(opcode::TEXT, b"hi"));
    assert_eq!(h.out(), vec![Out(opcode::TEXT, b"hi".to_vec())]);
    assert!(h.ws.is_idle());
    let kept = h.ws.buffered_bytes();
    assert!(kept > 0 && kept <= 256, "{kept}");
    let mut taken = Vec::new();
    h.ws.take_buffers(256, |b| taken.push(b));
    assert!(taken.is_empty());
    assert_eq!(h.ws.buffered_bytes(), kept);
    h.ws.take_buffers(0, |b| taken.push(b));
    assert_eq!(taken.len(), 1);
    assert_eq!(h.ws.buffered_bytes(), 0);
}
