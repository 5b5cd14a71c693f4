//! The Origin policy over real sockets (SPEC.md §4): same-origin by
//! default, an exact allow-list, `require_origin`, and 403 before 401.

mod common;

use std::time::Duration;

use common::*;

fn status_for(server: &Server, headers: &[(&str, &str)]) -> String {
    let mut s = connect(server.addr());
    let (status, _, _) = handshake(&mut s, "/ws", headers);
    status
}

#[test]
fn same_origin_only_by_default() {
    let server = Server::start(&[]);
    let own = format!("http://{}", server.addr());
    assert_eq!(
        status_for(&server, &[("Origin", &own)]),
        "HTTP/1.1 101 Switching Protocols"
    );
    assert_eq!(
        status_for(&server, &[]),
        "HTTP/1.1 101 Switching Protocols",
        "no Origin: not a browser"
    );
    let other_port = format!("http://127.0.0.1:{}", server.addr().port() + 1);
    for evil in ["https://evil.example", other_port.as_str(), "null"] {
        let mut s = connect(server.addr());
        let (status, h, body) = handshake(&mut s, "/ws", &[("Origin", evil)]);
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{evil}");
        assert_eq!(header(&h, "Connection"), Some("close"));
        let reason = if evil == "null" {
            "origin malformed"
        } else {
            "origin not allowed"
        };
        assert!(String::from_utf8_lossy(&body).starts_with(reason), "{evil}");
        let port = s.local_addr().unwrap().port();
        assert!(server.wait_for_refusal_log(
            "handshake refused",
            port,
            &format!("status=403 reason=\"{reason}\""),
            reason,
            Duration::from_secs(5)
        ));
    }
}

#[test]
fn allow_list_and_require_origin() {
    let server = Server::start_with_config(
        r#"{"allowed_origins":["https://app.example.com","http://localhost:3000"],"require_origin":true}"#,
        &[],
    );
    for ok in [
        "https://app.example.com",
        "https://APP.Example.com:443",
        "https://app.example.com.",
        "http://localhost:3000",
    ] {
        assert_eq!(
            status_for(&server, &[("Origin", ok)]),
            "HTTP/1.1 101 Switching Protocols",
            "{ok}"
        );
    }
    for bad in [
        "https://evil.example",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com@evil.example",
        "https://evil.example@app.example.com",
        "https://app.example.com.evil.example",
    ] {
        assert_eq!(
            status_for(&server, &[("Origin", bad)]),
            "HTTP/1.1 403 Forbidden",
            "{bad}"
        );
    }
    // Required: a request without Origin is refused too.
    assert_eq!(status_for(&server, &[]), "HTTP/1.1 403 Forbidden");
}

#[test]
fn origin_is_checked_before_credentials() {
    let server = Server::start(&["--auth-mode", "required"]);
    assert_eq!(
        status_for(&server, &[("Origin", "https://evil.example")]),
        "HTTP/1.1 403 Forbidden"
    );
    let own = format!("http://{}", server.addr());
    assert_eq!(
        status_for(&server, &[("Origin", &own)]),
        "HTTP/1.1 401 Unauthorized"
    );
}

#[test]
fn star_is_a_warning_and_a_bad_entry_an_error() {
    let server = Server::start_with_config(r#"{"allowed_origins":["*"]}"#, &[]);
    assert!(server.wait_for_log("WARN allowed_origins contains", Duration::from_secs(5)));
    assert_eq!(
        status_for(&server, &[("Origin", "https://anything.example")]),
        "HTTP/1.1 101 Switching Protocols"
    );
    let out = std::process::Command::new(BIN)
        .args(["--print-config", "--config", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(br#"{"allowed_origins":["app.example.com"]}"#)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allowed_origins: \"app.example.com\" is not an origin"),
        "{err}"
    );
}
