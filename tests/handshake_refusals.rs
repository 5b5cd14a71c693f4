//! Every SPEC.md §2 row in scope, over a real socket: the exact status, the
//! extra header, `Connection: close`, the log line, then the TCP close.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn raw_request(server: &Server, request: &[u8]) -> (String, Vec<(String, String)>, String) {
    let mut s = connect(server.addr());
    s.write_all(request).unwrap();
    let (status, headers, mut rest) = read_response_head(&mut s);
    let mut tail = Vec::new();
    let _ = s.read_to_end(&mut tail);
    rest.extend_from_slice(&tail);
    (status, headers, String::from_utf8_lossy(&rest).into_owned())
}

fn upgrade_with(replace: &str, with: &str) -> String {
    handshake_request("127.0.0.1", "/ws", &[]).replace(replace, with)
}

/// Request bytes, expected status, expected extra header, expected reason.
type Case<'a> = (String, &'a str, Option<(&'a str, &'a str)>, &'a str);

#[test]
fn each_refusal_gets_its_status_header_and_log_line() {
    let server = Server::start(&[]);
    let too_many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<Case> = vec![
        (
            upgrade_with(
                "Upgrade: websocket\r\n",
                &format!("X-Big: {}\r\nUpgrade: websocket\r\n", "a".repeat(9000)),
            ),
            "431",
            None,
            "request head too large",
        ),
        (
            upgrade_with(
                "Upgrade: websocket\r\n",
                &format!("{too_many}Upgrade: websocket\r\n"),
            ),
            "431",
            None,
            "too many header fields",
        ),
        ("BLAH\r\n\r\n".into(), "400", None, "malformed HTTP request"),
        (
            upgrade_with("GET /ws", "POST /ws"),
            "405",
            Some(("Allow", "GET")),
            "method not allowed",
        ),
        (
            upgrade_with("Host: 127.0.0.1\r\n", ""),
            "400",
            None,
            "missing, repeated or invalid Host header",
        ),
        // SPEC.md §2: Host is RFC 3986 host [":" port], nothing else.
        (
            upgrade_with("Host: 127.0.0.1\r\n", "Host: evil example\r\n"),
            "400",
            None,
            "missing, repeated or invalid Host header",
        ),
        (
            upgrade_with("Host: 127.0.0.1\r\n", "Host: a/b@c\r\n"),
            "400",
            None,
            "missing, repeated or invalid Host header",
        ),
        (
            upgrade_with("Host: 127.0.0.1\r\n", "Host: x@evil.com\r\n"),
            "400",
            None,
            "missing, repeated or invalid Host header",
        ),
        (
            upgrade_with("Host: 127.0.0.1\r\n", "Host: [::1\r\n"),
            "400",
            None,
            "missing, repeated or invalid Host header",
        ),
        (
            upgrade_with(
                "Host: 127.0.0.1\r\n",
                "Host: 127.0.0.1\r\nHost: localhost\r\n",
            ),
            "400",
            None,
            "missing, repeated or invalid Host header",
        ),
        // A name the server is not configured for (DNS rebinding): 421.
        (
            upgrade_with("Host: 127.0.0.1\r\n", "Host: evil.example:8080\r\n"),
            "421",
            None,
            "host not allowed",
        ),
        (
            upgrade_with(
                "Host: 127.0.0.1\r\n",
                "Host: evil.example:8080\r\nOrigin: http://evil.example:8080\r\n",
            ),
            "421",
            None,
            "host not allowed",
        ),
        (
            upgrade_with("Upgrade: websocket\r\n", ""),
            "426",
            Some(("Upgrade", "websocket")),
            "not a WebSocket upgrade request",
        ),
        (
            upgrade_with("Connection: Upgrade\r\n", "Connection: keep-alive\r\n"),
            "426",
            Some(("Upgrade", "websocket")),
            "not a WebSocket upgrade request",
        ),
        (
            upgrade_with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            "426",
            Some(("Sec-WebSocket-Version", "13")),
            "unsupported Sec-WebSocket-Version",
        ),
        (
            upgrade_with(SAMPLE_KEY, "c2hvcnQ="),
            "400",
            None,
            "missing or invalid Sec-WebSocket-Key",
        ),
        (
            upgrade_with(
                "Sec-WebSocket-Version: 13\r\n",
                &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n"),
            ),
            "400",
            None,
            "missing or invalid Sec-WebSocket-Key",
        ),
    ];
    for (request, status, extra, reason) in cases {
        let (line, headers, body) = raw_request(&server, request.as_bytes());
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{reason}: got {line}"
        );
        assert_eq!(header(&headers, "Connection"), Some("close"), "{reason}");
        assert_eq!(
            header(&headers, "Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        if let Some((name, value)) = extra {
            assert_eq!(header(&headers, name), Some(value), "{reason}: {headers:?}");
        }
        assert_eq!(body, format!("{reason}\n"));
        assert!(
            server.wait_for_log(
                &format!("status={status} reason=\"{reason}\""),
                Duration::from_secs(2)
            ),
            "no log line for {reason}"
        );
    }
}

#[test]
fn handshake_split_into_one_byte_writes_is_accepted() {
    let server = Server::start(&["--app", "echo"]);
    let mut s = connect(server.addr());
    let req = handshake_request(
        "127.0.0.1",
        "/ws",
        &[("Sec-WebSocket-Protocol", "palisade.v1")],
    );
    let points: Vec<usize> = (1..req.len()).collect();
    send_split(&mut s, req.as_bytes(), &points, Duration::from_millis(1)).unwrap();
    let (status, headers, leftover) = read_response_head(&mut s);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(
        header(&headers, "Sec-WebSocket-Accept"),
        Some(SAMPLE_ACCEPT)
    );
    assert_eq!(
        header(&headers, "Sec-WebSocket-Protocol"),
        Some("palisade.v1")
    );
    let mut c = Client::new(s, leftover);
    c.write_all(&text("after a slow handshake")).unwrap();
    expect_frame(&mut c, op::TEXT, b"after a slow handshake");
    assert!(server.wait_for_log("handshake accepted", Duration::from_secs(2)));
}

#[test]
fn a_client_that_never_finishes_its_head_gets_408_then_close() {
    let server = Server::start_with_config(r#"{"limits":{"handshake_timeout_ms":300}}"#, &[]);
    let mut s = connect(server.addr());
    let start = Instant::now();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let (status, _, _) = read_response_head(&mut s);
    let elapsed = start.elapsed();
    assert!(status.starts_with("HTTP/1.1 408 "), "{status}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(server.wait_for_log(
        "status=408 reason=\"request head not received in time\"",
        Duration::from_secs(2)
    ));
    // A client that sends nothing at all is closed too.
    let mut silent = connect(server.addr());
    let mut buf = Vec::new();
    let _ = silent.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408 "));
}

#[test]
fn max_connections_is_enforced_with_503() {
    let server =
        Server::start_with_config(r#"{"limits":{"max_connections":2}}"#, &["--app", "echo"]);
    let _a = open(server.addr());
    let _b = open(server.addr());
    let mut c = connect(server.addr());
    let (status, headers, _) = handshake(&mut c, "/ws", &[]);
    assert!(status.starts_with("HTTP/1.1 503 "), "{status}");
    assert_eq!(header(&headers, "Retry-After"), Some("1"));
    assert!(server.wait_for_log("status=503", Duration::from_secs(2)));
    drop(_a);
    // Once a slot is free, a new client gets in.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(server.addr());
        let (status, _, _) = handshake(&mut s, "/ws", &[]);
        if status.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SPEC.md §2: the Host rules hold on every endpoint, not only the
/// WebSocket path; `allowed_hosts` widens or opens the list.
#[test]
fn host_is_checked_on_every_endpoint() {
    let server = Server::start(&[]);
    let port = server.addr().port();
    let get = |server: &Server, path: &str, host: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw_request(server, req.as_bytes())
    };
    for path in ["/healthz", "/", "/index.js", "/missing", "/login"] {
        for bad in ["evil example", "a/b@c", "x@evil.com", "[::1", "a:b"] {
            let (line, headers, body) = get(&server, path, bad);
            assert!(line.starts_with("HTTP/1.1 400 "), "{path} {bad}: {line}");
            assert_eq!(body, "missing, repeated or invalid Host header\n");
            assert_eq!(header(&headers, "Connection"), Some("close"));
        }
        for other in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.2",
            "localhost.evil.example",
        ] {
            let (line, _, body) = get(&server, path, other);
            assert_eq!(line, "HTTP/1.1 421 Misdirected Request", "{path} {other}");
            assert_eq!(body, "host not allowed\n");
        }
    }
    for ok in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "LOCALHOST.".to_string(),
        "[::1]".to_string(),
    ] {
        let (line, _, body) = get(&server, "/healthz", &ok);
        assert_eq!(line, "HTTP/1.1 200 OK", "{ok}");
        assert_eq!(body, "ok");
    }
    assert!(server.wait_for_log(
        "status=421 reason=\"host not allowed\"",
        Duration::from_secs(2)
    ));

    let named = Server::start_with_config(r#"{"allowed_hosts":["app.example"]}"#, &[]);
    let (line, _, _) = get(&named, "/healthz", "App.Example:8443");
    assert_eq!(line, "HTTP/1.1 200 OK");
    let (line, _, _) = get(&named, "/healthz", "localhost");
    assert_eq!(line, "HTTP/1.1 421 Misdirected Request");

    let any = Server::start_with_config(r#"{"allowed_hosts":["*"]}"#, &[]);
    assert!(any.wait_for_log("WARN allowed_hosts contains \"*\"", Duration::from_secs(2)));
    let (line, _, _) = get(&any, "/healthz", "evil.example");
    assert_eq!(line, "HTTP/1.1 200 OK");
    // Malformed stays malformed even when any host is allowed.
    let (line, _, _) = get(&any, "/healthz", "x@evil.com");
    assert!(line.starts_with("HTTP/1.1 400 "), "{line}");
}

/// DNS rebinding: a page on `evil.example` whose name now resolves to this
/// server sends `Host: evil.example:PORT` and a matching `Origin`, which the
/// same-origin rule alone would accept. Even with `auth.mode` none it gets
/// `421`, before any WebSocket exists.
#[test]
fn dns_rebinding_is_refused_before_the_origin_check() {
    let server = Server::start(&["--auth-mode", "none"]);
    let port = server.addr().port();
    let evil = format!("evil.example:{port}");
    let mut s = connect(server.addr());
    let req = handshake_request(&evil, "/ws", &[("Origin", &format!("http://{evil}"))]);
    s.write_all(req.as_bytes()).unwrap();
    let (line, _, _) = read_response_head(&mut s);
    assert_eq!(line, "HTTP/1.1 421 Misdirected Request");
    // The same page on the server's own name is fine.
    let own = format!("localhost:{port}");
    let mut s = connect(server.addr());
    let req = handshake_request(&own, "/ws", &[("Origin", &format!("http://{own}"))]);
    s.write_all(req.as_bytes()).unwrap();
    let (line, _, _) = read_response_head(&mut s);
    assert_eq!(line, "HTTP/1.1 101 Switching Protocols");
}
