//! The HTTP responder over a real socket: `--static-dir` never serves a
//! path outside its directory, and the embedded page carries its headers.

mod common;

use std::io::{Read, Write};

use common::*;

fn get(server: &Server, target: &str) -> (String, Vec<(String, String)>, String) {
    let mut s = connect(server.addr());
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, headers, mut body) = read_response_head(&mut s);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    body.extend(rest);
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn static_dir_never_serves_a_path_outside_it() {
    let base = std::env::temp_dir().join(format!("palisade-static-{}", std::process::id()));
    let root = base.join("site");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(base.join("secret.txt"), "TOP SECRET").unwrap();
    std::fs::write(root.join("index.html"), "<p>custom page</p>").unwrap();
    std::fs::write(root.join("sub/a.txt"), "inside").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
    let server = Server::start(&["--static-dir", root.to_str().unwrap()]);

    let (status, headers, body) = get(&server, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "<p>custom page</p>");
    assert_eq!(
        header(&headers, "Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let (status, headers, body) = get(&server, "/sub/a.txt");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "inside")
    );
    assert_eq!(header(&headers, "Content-Length"), Some("6"));

    for target in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "//secret.txt",
        "/link.txt",
        &format!("/{}", base.join("secret.txt").display()),
        &format!("{}", base.join("secret.txt").display()),
        "http://127.0.0.1/../secret.txt",
    ] {
        let (status, _, body) = get(&server, target);
        assert!(
            status.starts_with("HTTP/1.1 400 ") || status.starts_with("HTTP/1.1 404 "),
            "{target}: {status}"
        );
        assert!(!body.contains("TOP SECRET"), "{target} leaked the secret");
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn the_embedded_page_has_its_security_headers() {
    let server = Server::start(&[]);
    let (status, headers, body) = get(&server, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&headers, "Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "X-Content-Type-Options"), Some("nosniff"));
    let csp = header(&headers, "Content-Security-Policy").expect("CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(
        header(&headers, "Content-Length").unwrap(),
        body.len().to_string()
    );
    for (path, ty) in [
        ("/index.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, _) = get(&server, path);
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
        assert_eq!(header(&headers, "Content-Type"), Some(ty), "{path}");
    }
    let (status, _, body) = get(&server, "/healthz");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    let (status, _, _) = get(&server, "/nope");
    assert!(status.starts_with("HTTP/1.1 404 "));
}

#[test]
fn keep_alive_serves_pipelined_requests_in_order() {
    let server = Server::start(&[]);
    let mut s = connect(server.addr());
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    let (status, _, body) = read_response_head(&mut s);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.starts_with(b"ok"));
    let mut rest = body[2..].to_vec();
    let mut tail = Vec::new();
    let _ = s.read_to_end(&mut tail);
    rest.extend(tail);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{rest}"
    );
    assert!(rest.contains("\r\nAllow: GET, HEAD\r\n"));
}

#[test]
fn pipelined_requests_cannot_queue_unbounded_responses() {
    let server = Server::start(&[]);
    let before = server.rss_kib();
    let mut s = connect(server.addr());
    // ~2,000 requests in one write: answered from one read, without the
    // socket in between. The queue stops at the high-water mark (256 KiB),
    // where the response ends the connection.
    let one = b"GET /index.js HTTP/1.1\r\nHost:localhost\r\n\r\n";
    let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 2000).collect();
    s.write_all(&burst).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let responses = text.matches("HTTP/1.1 200 OK\r\n").count();
    let asset_len = std::fs::metadata(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http/assets/index.js"
    ))
    .unwrap()
    .len() as usize;
    let bound = 256 * 1024 / asset_len + 2;
    eprintln!(
        "{responses} responses ({} bytes) for 2000 pipelined requests; bound {bound}",
        all.len()
    );
    assert!(
        responses >= 1 && responses <= bound,
        "{responses} responses, bound {bound}"
    );
    let last = text.rfind("HTTP/1.1 200 OK\r\n").unwrap();
    assert!(
        text[last..].contains("\r\nConnection: close\r\n"),
        "the last response ends the connection"
    );
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB");
}

/// A large file to a slow reader is sent in full: while a response is being
/// written the deadline is `idle_timeout_ms` from the last write that made
/// progress, not the request's. Also after the
/// client half-closes its side right after the request. The file is larger
/// than the largest kernel send buffer (4 MiB by default), so the server
/// still holds part of it when the timeouts (0.8 s together) have passed.
#[test]
fn a_slow_reader_gets_a_large_file_in_full() {
    let root = std::env::temp_dir().join(format!("palisade-big-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let body: Vec<u8> = (0..6u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(root.join("big.txt"), &body).unwrap();
    let server = Server::start_with_config(
        r#"{"limits":{"handshake_timeout_ms":500,"close_timeout_ms":300,"idle_timeout_ms":3000}}"#,
        &["--static-dir", root.to_str().unwrap()],
    );
    for (what, request, half_close) in [
        (
            "keep-alive",
            "GET /big.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            false,
        ),
        (
            "close + half-close",
            "GET /big.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            true,
        ),
    ] {
        // A small receive buffer, so the server cannot hand the whole file
        // to the kernel at once.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(16 * 1024).unwrap();
        sock.connect(&server.addr().into()).unwrap();
        let mut s: std::net::TcpStream = sock.into();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        if half_close {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let started = std::time::Instant::now();
        let (status, headers, mut got) = read_response_head(&mut s);
        assert_eq!(status, "HTTP/1.1 200 OK", "{what}");
        assert_eq!(header(&headers, "Content-Length"), Some("6291456"));
        let mut chunk = vec![0u8; 64 * 1024];
        while got.len() < body.len() {
            std::thread::sleep(std::time::Duration::from_millis(10));
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("{what}: read failed after {} bytes: {e}", got.len()),
            }
        }
        let took = started.elapsed();
        eprintln!(
            "{what}: {} of {} bytes in {took:?} (handshake timeout 0.5 s, close timeout 0.3 s)",
            got.len(),
            body.len()
        );
        assert!(
            took > std::time::Duration::from_millis(1500),
            "the read was not slow"
        );
        assert!(got == body, "{what}: body differs ({} bytes)", got.len());
    }
    let _ = std::fs::remove_dir_all(&root);
}
