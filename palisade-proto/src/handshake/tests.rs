//! One test per row of SPEC.md §2 that the core decides, plus RFC vectors.

use super::*;
use std::prelude::rust_2024::*;

const GOOD: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

struct AcceptAll(&'static [&'static str]);

impl Policy for AcceptAll {
    type Identity = ();
    fn decide(&mut self, request: &UpgradeRequest<'_, '_, '_>) -> Decision<()> {
        Decision::Accept(Accept {
            protocol: request.select_protocol(self.0),
            identity: (),
        })
    }
}

struct RejectAll;

impl Policy for RejectAll {
    type Identity = ();
    fn decide(&mut self, _: &UpgradeRequest<'_, '_, '_>) -> Decision<()> {
        Decision::Reject(Reject {
            status: 403,
            reason: "origin not allowed",
            header: None,
        })
    }
}

/// Runs the whole core path on a head: read, parse, check, decide.
fn answer(head: &str, max_headers: usize) -> Result<String, HandshakeError> {
    let mut reader = HeadReader::new();
    let (_, end) = reader.push(head.as_bytes(), 8192)?;
    let end = end.ok_or(HandshakeError::Malformed)?;
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
    let req = parse_request(&reader.head()[..end], &mut storage)?;
    let up = UpgradeRequest::from_request(&req)?;
    let mut out = Vec::new();
    respond(&up, &mut AcceptAll(&["palisade.v1"]), &mut out).unwrap();
    Ok(String::from_utf8(out).unwrap())
}

fn status_of(head: &str) -> u16 {
    match answer(head, 64) {
        Ok(_) => 101,
        Err(e) => e.status(),
    }
}

#[test]
fn rfc_1_3_accept_key_example() {
    assert_eq!(
        &accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn valid_request_gets_101_with_accept_key() {
    let resp = answer(GOOD, 64).unwrap();
    assert_eq!(
        resp,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn row_head_too_large_is_431() {
    let mut r = HeadReader::new();
    let big = format!("GET /ws HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(
        r.push(big.as_bytes(), 8192),
        Err(HandshakeError::HeadTooLarge)
    );
    assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
}

#[test]
fn row_too_many_headers_is_431() {
    let mut head = String::from("GET /ws HTTP/1.1\r\nHost: a\r\n");
    for i in 0..64 {
        head.push_str(&format!("X-{i}: y\r\n"));
    }
    head.push_str("\r\n");
    assert_eq!(answer(&head, 64), Err(HandshakeError::TooManyHeaders));
    assert_eq!(status_of(&head), 431);
}

#[test]
fn row_timeout_is_408() {
    assert_eq!(HandshakeError::Timeout.status(), 408);
}

#[test]
fn row_unparseable_is_400() {
    for head in [
        "GARBAGE\r\n\r\n",
        "GET /ws HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET /ws HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET ws HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/ws HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(status_of(head), 400, "{head:?}");
    }
    assert_eq!(status_of(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), 400);
}

#[test]
fn row_method_not_get_is_405_with_allow() {
    let head = GOOD.replace("GET", "POST");
    assert_eq!(answer(&head, 64), Err(HandshakeError::MethodNotAllowed));
    assert_eq!(status_of(&head), 405);
}

#[test]
fn row_no_host_is_400() {
    let head = GOOD.replace("Host: 127.0.0.1:8080\r\n", "");
    assert_eq!(answer(&head, 64), Err(HandshakeError::BadHost));
    let twice = GOOD.replace("Host: 127.0.0.1:8080\r\n", "Host: a\r\nHost: b\r\n");
    assert_eq!(answer(&twice, 64), Err(HandshakeError::BadHost));
}

#[test]
fn row_upgrade_and_connection_tokens_are_426() {
    let no_upgrade = GOOD.replace("Upgrade: websocket\r\n", "");
    assert_eq!(answer(&no_upgrade, 64), Err(HandshakeError::NotUpgrade));
    let no_conn = GOOD.replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n");
    assert_eq!(answer(&no_conn, 64), Err(HandshakeError::NotUpgrade));
    assert_eq!(status_of(&no_conn), 426);
    // Token lists and case are accepted (Firefox sends "keep-alive, Upgrade").
    let list = GOOD
        .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE")
        .replace("Upgrade: websocket", "Upgrade: h2c, WebSocket");
    assert_eq!(status_of(&list), 101);
    // A substring is not a token.
    let substring = GOOD.replace("Connection: Upgrade", "Connection: Upgraded");
    assert_eq!(status_of(&substring), 426);
}

#[test]
fn row_version_not_13_is_426() {
    for v in ["Sec-WebSocket-Version: 8\r\n", ""] {
        let head = GOOD.replace("Sec-WebSocket-Version: 13\r\n", v);
        assert_eq!(
            answer(&head, 64),
            Err(HandshakeError::UnsupportedVersion),
            "{v:?}"
        );
    }
    let twice = GOOD.replace(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert_eq!(status_of(&twice), 426);
}

#[test]
fn row_bad_key_is_400() {
    for key in [
        "",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n",
        "Sec-WebSocket-Key: !!!!IHNhbXBsZSBub25jZQ==\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=\r\n",
    ] {
        let head = GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", key);
        assert_eq!(answer(&head, 64), Err(HandshakeError::BadKey), "{key:?}");
    }
}

#[test]
fn checks_run_in_spec_order() {
    // Method is checked before Host, Host before Upgrade, Upgrade before version, version before key.
    let all_bad = "POST /ws HTTP/1.1\r\n\r\n";
    assert_eq!(status_of(all_bad), 405);
    let no_host_no_upgrade = "GET /ws HTTP/1.1\r\n\r\n";
    assert_eq!(answer(no_host_no_upgrade, 64), Err(HandshakeError::BadHost));
    let no_upgrade_no_version = "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        answer(no_upgrade_no_version, 64),
        Err(HandshakeError::NotUpgrade)
    );
    let no_version_no_key =
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert_eq!(
        answer(no_version_no_key, 64),
        Err(HandshakeError::UnsupportedVersion)
    );
}

#[test]
fn body_on_upgrade_is_400() {
    let head = GOOD.replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(answer(&head, 64), Err(HandshakeError::UnexpectedBody));
    let zero = GOOD.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status_of(&zero), 101);
}

#[test]
fn subprotocol_selection() {
    let offered = GOOD.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: chat, palisade.v1\r\n\r\n",
    );
    assert!(
        answer(&offered, 64)
            .unwrap()
            .contains("\r\nSec-WebSocket-Protocol: palisade.v1\r\n")
    );
    let split = GOOD.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: palisade.v1\r\n\r\n",
    );
    assert!(
        answer(&split, 64)
            .unwrap()
            .contains("Sec-WebSocket-Protocol: palisade.v1")
    );
    let other = GOOD.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n");
    assert!(
        !answer(&other, 64)
            .unwrap()
            .contains("Sec-WebSocket-Protocol")
    );
    let bad = GOOD.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: a b\r\n\r\n");
    assert_eq!(answer(&bad, 64), Err(HandshakeError::BadProtocol));
}

#[test]
fn policy_rejection_is_returned_and_nothing_written() {
    let mut reader = HeadReader::new();
    reader.push(GOOD.as_bytes(), 8192).unwrap();
    let mut storage = [httparse::EMPTY_HEADER; 16];
    let req = parse_request(reader.head(), &mut storage).unwrap();
    let up = UpgradeRequest::from_request(&req).unwrap();
    let mut out = Vec::new();
    let err = respond(&up, &mut RejectAll, &mut out).unwrap_err();
    assert_eq!((err.status, err.reason), (403, "origin not allowed"));
    assert!(out.is_empty());
    write_error_response(err.status, err.reason, &[], &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.ends_with("\r\n\r\norigin not allowed\n"));
}

#[test]
fn policy_cannot_confirm_a_protocol_the_client_did_not_offer() {
    struct Pushy;
    impl Policy for Pushy {
        type Identity = ();
        fn decide(&mut self, _: &UpgradeRequest<'_, '_, '_>) -> Decision<()> {
            Decision::Accept(Accept {
                protocol: Some("palisade.v1"),
                identity: (),
            })
        }
    }
    let mut storage = [httparse::EMPTY_HEADER; 16];
    let req = parse_request(GOOD.as_bytes(), &mut storage).unwrap();
    let up = UpgradeRequest::from_request(&req).unwrap();
    let mut out = Vec::new();
    let acc = respond(&up, &mut Pushy, &mut out).unwrap();
    assert_eq!(acc.protocol, None);
    assert!(
        !String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Protocol")
    );
}

#[test]
fn head_reader_one_byte_at_a_time_and_leftover() {
    let mut r = HeadReader::new();
    let bytes = format!("{GOOD}\u{81}");
    let bytes = bytes.as_bytes();
    let mut done = None;
    for (i, b) in bytes.iter().enumerate() {
        let (taken, end) = r.push(std::slice::from_ref(b), 8192).unwrap();
        if let Some(end) = end {
            assert_eq!(taken, 1);
            done = Some((i, end));
            break;
        }
    }
    let (i, end) = done.unwrap();
    assert_eq!(end, GOOD.len());
    assert_eq!(i + 1, GOOD.len());
    // Leftover bytes after the head are not taken.
    let mut r = HeadReader::new();
    let (taken, end) = r.push(bytes, 8192).unwrap();
    assert_eq!((taken, end), (GOOD.len(), Some(GOOD.len())));
}

#[test]
fn head_end_detection() {
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n", 0), Some(18));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
}
