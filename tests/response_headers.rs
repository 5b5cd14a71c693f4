//! SPEC.md §7: every HTTP response the server can send (the `101` aside)
//! carries the same security headers, built in one place: a
//! `Content-Security-Policy` (the page's own for HTML, `default-src 'none';
//! frame-ancestors 'none'` for everything else), `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer`, and `Cache-Control: no-store`
//! on errors, redirects and `/login`. This walks every status over real
//! sockets.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use palisade::auth::PasswordHash;
use palisade::auth::{Username, Users};

const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const NONE_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const PASSWORD: &str = "rust-headers-Tc6Wm1Qz8p";

/// Sends `raw`, reads every response head on the connection (a `100
/// Continue` and the final one), checks the common set on each, and
/// returns the statuses seen.
fn walk(addr: SocketAddr, raw: &str, pause_before_body: Option<&str>) -> Vec<u16> {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut statuses = Vec::new();
    let (status, headers, mut rest) = read_response_head(&mut s);
    check(&status, &headers);
    statuses.push(code(&status));
    if let Some(body) = pause_before_body {
        assert_eq!(code(&status), 100, "{status}");
        s.write_all(body.as_bytes()).unwrap();
        let mut more = rest.clone();
        let mut buf = [0u8; 4096];
        while !more.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the final response");
            more.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&more).into_owned();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        check(&status, &headers);
        statuses.push(code(&status));
        rest.clear();
    }
    statuses
}

fn code(status: &str) -> u16 {
    status.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn check(status: &str, headers: &[(String, String)]) {
    let c = code(status);
    let html = header(headers, "Content-Type").is_some_and(|t| t.starts_with("text/html"));
    let csp = if html { PAGE_CSP } else { NONE_CSP };
    assert_eq!(
        header(headers, "Content-Security-Policy"),
        Some(csp),
        "{status}"
    );
    assert_eq!(
        header(headers, "X-Content-Type-Options"),
        Some("nosniff"),
        "{status}"
    );
    assert_eq!(
        header(headers, "Referrer-Policy"),
        Some("no-referrer"),
        "{status}"
    );
    assert_eq!(header(headers, "X-Frame-Options"), Some("DENY"), "{status}");
    let cache = header(headers, "Cache-Control");
    if c >= 300 || c == 100 {
        assert_eq!(cache, Some("no-store"), "{status}");
    } else {
        assert!(cache.is_some(), "{status}");
    }
    assert_eq!(
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Security-Policy"))
            .count(),
        1,
        "{status}: one CSP"
    );
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

fn post_login(body: &str, extra: &str) -> String {
    format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

#[test]
fn every_status_carries_the_security_headers() {
    let dir = std::env::temp_dir().join(format!("palisade-headers-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let users_file = dir.join("users.json");
    let mut users = Users::default();
    let hash = PasswordHash::generate(PASSWORD.as_bytes(), 10_000).unwrap();
    users.insert(Username::new("alice").unwrap(), hash);
    users.save(&users_file).unwrap();
    let server = Server::start_with_config(
        &format!(
            r#"{{"auth":{{"mode":"required","users_file":{:?}}},"rate":{{"logins_per_ip_per_min":20,"handshakes_per_ip_per_s":3}},"limits":{{"handshake_timeout_ms":400,"max_headers":10}}}}"#,
            users_file.display().to_string()
        ),
        &[],
    );
    let addr = server.addr();
    let mut seen = BTreeSet::new();
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let good = format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#);
    let requests: Vec<(String, Option<&str>)> = vec![
        (get("/"), None),                                           // 200 HTML
        (get("/index.js"), None),                                   // 200 file
        (get("/healthz"), None),                                    // 200 text
        ("HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(), None),
        (post_login(&good, ""), None),                              // 200 login
        (post_login(r#"{"username":"alice","password":"wrong"}"#, ""), None), // 401
        (post_login(&good, "Expect: 100-continue\r\n"), Some(good.as_str())), // 100, then 200
        ("BLAH\r\n\r\n".into(), None),                              // 400
        (get("/nope"), None),                                       // 404
        ("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".into(), None), // 405
        (get("/login"), None),                                      // 405 login
        ("POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\r\n".into(), None), // 411
        ("POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n\r\n".into(), None), // 413
        ("POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}".into(), None), // 415
        (get("/").replace("localhost", "evil.example"), None),      // 421
        ("GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), None), // 426
        (format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n"), None), // 431
        ("GET /ws HTTP/1.1\r\nHost: localhost\r\n".into(), None),   // 408 (head timeout)
        ("POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{".into(), None), // 408 (body)
    ];
    for (raw, body) in &requests {
        seen.extend(walk(addr, raw, *body));
    }
    // 401, 403 and 429 at the handshake.
    for (headers, want) in [
        (vec![], 401u16),
        (vec![("Origin", "https://evil.example")], 403),
    ] {
        let mut s = connect(addr);
        let (status, h, _) = handshake(&mut s, "/ws", &headers);
        assert_eq!(code(&status), want, "{status}");
        check(&status, &h);
        seen.insert(want);
    }
    let mut limited = false;
    for _ in 0..12 {
        let mut s = connect(addr);
        let (status, h, _) = handshake(&mut s, "/ws", &[]);
        check(&status, &h);
        seen.insert(code(&status));
        limited |= code(&status) == 429;
    }
    assert!(limited, "the handshake rate (3/s, burst 6) was never hit");

    // 503: a server at max_connections.
    let full = Server::start_with_config(r#"{"limits":{"max_connections":1}}"#, &[]);
    let _held = open(full.addr());
    let mut s = connect(full.addr());
    let (status, h, _) = handshake(&mut s, "/ws", &[]);
    assert_eq!(code(&status), 503, "{status}");
    check(&status, &h);
    seen.insert(503);

    // 308 and HSTS: the redirect listener of a TLS server, and an https
    // error is checked in tests/tls.rs.
    let root = env!("CARGO_MANIFEST_DIR");
    let tls = Server::start_with_config(
        r#"{"tls":{"redirect_listen":"127.0.0.1:0"}}"#,
        &[
            "--tls-cert",
            &format!("{root}/certs/localhost.pem"),
            "--tls-key",
            &format!("{root}/certs/localhost.key"),
        ],
    );
    assert!(tls.wait_for_log("redirecting to https from", Duration::from_secs(5)));
    let line = tls
        .logs()
        .into_iter()
        .find(|l| l.contains("redirecting to https from"))
        .unwrap();
    let redirect: SocketAddr = line
        .split("from ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    seen.extend(walk(redirect, &get("/"), None));

    let _ = fs::remove_dir_all(&dir);
    let want: BTreeSet<u16> = [
        100, 200, 308, 400, 401, 403, 404, 405, 408, 411, 413, 415, 421, 426, 429, 431, 503,
    ]
    .into();
    assert_eq!(seen, want, "statuses walked");
}
