//! Graceful shutdown (SPEC.md §7): SIGINT / SIGTERM stop accepting, close
//! every WebSocket with 1001, wait up to `shutdown_grace_ms`, exit 0.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut server = Server::start_with_config(
        r#"{"shutdown_grace_ms":1500,"limits":{"close_timeout_ms":10000}}"#,
        &[],
    );
    let addr = server.addr();
    let mut polite: Vec<Client> = (0..3).map(|_| open(addr)).collect();
    let mut silent = open(addr);
    // A keep-alive HTTP connection between requests is simply closed.
    let mut http = connect(addr);
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response_head(&mut http);
    assert_eq!(status, "HTTP/1.1 200 OK");

    let t = Instant::now();
    server.terminate();
    for c in &mut polite {
        let f = read_frame(c).unwrap();
        assert_eq!(f.opcode, op::CLOSE);
        assert_eq!(f.close_code(), Some(1001));
        assert_eq!(&f.payload[2..], b"server shutting down");
        c.write_all(&close_frame(1001, b"")).unwrap();
        expect_eof(c, Duration::from_secs(2));
    }
    let f = read_frame(&mut silent).unwrap();
    assert_eq!(f.close_code(), Some(1001));
    expect_eof(&mut http, Duration::from_secs(2));
    // No new connections are served (the kernel may still complete the
    // TCP handshake into the backlog, but nobody answers).
    let answered = match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => false,
        Ok(mut s) => {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut b = [0u8; 1];
            matches!(std::io::Read::read(&mut s, &mut b), Ok(1))
        }
    };
    assert!(!answered, "a new connection was served during shutdown");
    // The silent client holds the server until the grace period ends.
    let status = server.wait_exit(Duration::from_secs(5)).expect("exits");
    let took = t.elapsed();
    eprintln!("exited {status} {took:?} after SIGTERM (grace 1.5 s, one client silent)");
    assert!(status.success(), "{status}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(server.wait_for_log("stopped connections_dropped=1", Duration::from_secs(2)));
    assert!(server.wait_for_log("shutting down connections=5", Duration::from_secs(1)));
}

#[test]
fn sigint_without_clients_exits_at_once() {
    let mut server = Server::start(&[]);
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &server.pid().to_string()])
        .status();
    let status = server.wait_exit(Duration::from_secs(3)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(server.wait_for_log("stopped connections_dropped=0", Duration::from_secs(2)));
}

#[test]
fn readyz_is_200_until_a_shutdown_and_503_during_it() {
    let mut server = Server::start_with_config(r#"{"shutdown_grace_ms":1500}"#, &[]);
    let addr = server.addr();
    let mut s = connect(addr);
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response_head(&mut s);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty() || body == b"ready", "{body:?}");
    // A probe whose request is on its way when the shutdown starts.
    let mut probe = connect(addr);
    probe
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.terminate();
    assert!(server.wait_for_log("shutting down", Duration::from_secs(2)));
    probe.write_all(b"\r\n").unwrap();
    let (status, headers, _) = read_response_head(&mut probe);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(header(&headers, "Retry-After"), Some("1"));
    let status = server.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status}");
}
