//! TLS end to end: rustls and tungstenite as the client (trusting only the
//! development CA), plain HTTP on the TLS port, silent clients, start-up
//! refusals and the SIGHUP certificate reload.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BIN, Server, header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn tls_args(cert: &Path, key: &Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]
}

fn start_tls(extra: &[&str]) -> Server {
    let mut args = tls_args(&repo("certs/localhost.pem"), &repo("certs/localhost.key"));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    Server::start(&args)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(repo("certs/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(server: &Server) -> Tls {
    let sock = TcpStream::connect(server.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(), name).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// The DER of the certificate the server presents.
fn presented_cert(server: &Server) -> Vec<u8> {
    let mut s = tls_connect(server);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    assert!(
        body.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

fn file_leaf(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn wss_with_tungstenite_over_rustls_and_https_with_hsts() {
    let server = start_tls(&["--app", "echo"]);
    let request = format!("wss://localhost:{}/ws", server.addr().port())
        .into_client_request()
        .unwrap();
    let (mut ws, response) = tungstenite::client(request, tls_connect(&server)).unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("over tls")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("over tls"));
    ws.send(Message::binary(vec![7u8; 40_000])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![7u8; 40_000]));
    ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"p".to_vec().into()));
    ws.close(None).unwrap();
    assert!(matches!(ws.read().unwrap(), Message::Close(_)));
    let mut s = tls_connect(&server);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("\r\nStrict-Transport-Security: max-age=31536000\r\n"),
        "{text}"
    );
    assert_eq!(
        s.conn.alpn_protocol(),
        None,
        "no ALPN offered, none selected"
    );
}

#[test]
fn plain_http_on_the_tls_port_gets_400_and_a_close() {
    let server = start_tls(&[]);
    let mut s = common::connect(server.addr());
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, headers, _) = common::read_response_head(&mut s);
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    assert_eq!(header(&headers, "Connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(server.wait_for_log("plain HTTP request on the TLS port", Duration::from_secs(2)));
}

#[test]
fn silent_clients_are_closed_at_the_handshake_timeout_while_others_are_served() {
    let args = tls_args(&repo("certs/localhost.pem"), &repo("certs/localhost.key"));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    // All clients share 127.0.0.1: the per-IP quota is raised so that this
    // test is about the TLS handshake timeout alone.
    let server = Server::start_with_config(
        r#"{"limits":{"handshake_timeout_ms":4000,"max_connections_per_ip":100000}}"#,
        &args,
    );
    let t0 = Instant::now();
    let silent: Vec<TcpStream> = (0..1000).map(|_| common::connect(server.addr())).collect();
    let connected = t0.elapsed();
    eprintln!("1000 silent clients connected in {connected:?}");
    // While they sit there, a well-behaved client gets every hero.
    let t1 = Instant::now();
    let request = format!("wss://localhost:{}/ws", server.addr().port())
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tungstenite::client(request, tls_connect(&server)).unwrap();
    for (hero, name) in [
        ("ironMan", "Tony Stark"),
        ("hulk", "Bruce Banner"),
        ("wonderWoman", "Diana"),
        ("batMan", "Bruce Wayne"),
        ("blackPanther", "T'Challa"),
    ] {
        ws.send(Message::text(format!(
            r#"{{"event":"get_name","data":{{"hero":"{hero}"}}}}"#
        )))
        .unwrap();
        let reply = ws.read().unwrap();
        assert_eq!(
            reply.to_text().unwrap(),
            format!(r#"{{"event":"name","data":{{"hero":"{hero}","hero_name":"{name}"}}}}"#)
        );
    }
    eprintln!(
        "the well-behaved client got every hero in {:?}",
        t1.elapsed()
    );
    // Every silent client is closed after the timeout, without a byte.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let waited = t0.elapsed();
    eprintln!("all silent clients closed {waited:?} after the first connected");
    assert!(
        waited >= Duration::from_millis(3900),
        "closed before the timeout: {waited:?}"
    );
    assert!(
        waited < connected + Duration::from_secs(7),
        "closed late: {waited:?}"
    );
    assert!(server.wait_for_log("tls handshake timed out", Duration::from_secs(2)));
}

#[test]
fn start_up_refuses_bad_tls_files_with_exit_code_2() {
    let cert = repo("certs/localhost.pem");
    let cases = [
        (
            tls_args(&cert, &repo("certs/missing.key")),
            "tls.key",
            "missing.key",
        ),
        (
            tls_args(&repo("certs/missing.pem"), &repo("certs/localhost.key")),
            "tls.cert",
            "missing.pem",
        ),
        (
            tls_args(&cert, &repo("certs/ca.key")),
            "does not match the certificate",
            "ca.key",
        ),
        (
            tls_args(
                &repo("tests/fixtures/expired.pem"),
                &repo("tests/fixtures/expired.key"),
            ),
            "certificate expired at 2020-01-02T00:00:00.000Z",
            "expired.pem",
        ),
        (
            tls_args(&cert, &repo("certs/README.md")),
            "tls.key",
            "README.md",
        ),
    ];
    for (args, needle, file) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(needle) && err.contains(file),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections() {
    let dir = std::env::temp_dir().join(format!("palisade-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(repo("certs/localhost.pem"), &cert).unwrap();
    std::fs::copy(repo("certs/localhost.key"), &key).unwrap();
    let args = tls_args(&cert, &key);
    let mut args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    args.extend(["--app", "echo"]);
    let server = Server::start(&args);
    assert_eq!(
        presented_cert(&server),
        file_leaf(&repo("certs/localhost.pem"))
    );
    let request = format!("wss://localhost:{}/ws", server.addr().port())
        .into_client_request()
        .unwrap();
    let (mut open_ws, _) = tungstenite::client(request, tls_connect(&server)).unwrap();

    // A new certificate from the same development CA, with a new serial.
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let made = Command::new("bash")
        .arg(repo("certs/gen.sh"))
        .arg(&fresh)
        .arg("30")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // gen.sh makes its own CA: trust it by checking the DER, not the chain.
    std::fs::copy(fresh.join("localhost.pem"), &cert).unwrap();
    std::fs::copy(fresh.join("localhost.key"), &key).unwrap();
    let hup = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        )
    };
    hup(server.pid());
    assert!(server.wait_for_log("tls=reloaded serial=", Duration::from_secs(5)));
    let new_leaf = file_leaf(&fresh.join("localhost.pem"));
    let presented = raw_presented_cert(&server);
    assert_eq!(
        presented, new_leaf,
        "new handshakes use the new certificate"
    );
    // The connection opened before the reload is still up.
    open_ws.send(Message::text("still open")).unwrap();
    assert_eq!(open_ws.read().unwrap(), Message::text("still open"));

    // A broken file: logged, and the current certificate stays in use.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    hup(server.pid());
    assert!(server.wait_for_log("tls=failed tls_error=", Duration::from_secs(5)));
    assert_eq!(raw_presented_cert(&server), new_leaf);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server's leaf certificate without verifying it (the reload test's
/// fresh certificate comes from a CA the client does not trust).
fn raw_presented_cert(server: &Server) -> Vec<u8> {
    #[derive(Debug)]
    struct Capture;
    impl rustls::client::danger::ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(m, c, d, &algs)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(m, c, d, &algs)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture))
        .with_no_client_auth();
    let sock = TcpStream::connect(server.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    assert!(body.starts_with(b"HTTP/1.1 200 OK"));
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn the_redirect_listener_answers_308_to_https() {
    let args = tls_args(&repo("certs/localhost.pem"), &repo("certs/localhost.key"));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let server = Server::start_with_config(r#"{"tls":{"redirect_listen":"127.0.0.1:0"}}"#, &args);
    assert!(server.wait_for_log(
        "redirecting to https from 127.0.0.1:",
        Duration::from_secs(5)
    ));
    let line = server
        .logs()
        .into_iter()
        .find(|l| l.contains("redirecting to https from"))
        .unwrap();
    let addr: std::net::SocketAddr = line
        .split("from ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut s = common::connect(addr);
    s.write_all(b"GET /index.html?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        .unwrap();
    let (status, headers, _) = common::read_response_head(&mut s);
    assert!(status.starts_with("HTTP/1.1 308 "), "{status}");
    let expected = format!("https://localhost:{}/index.html?x=1", server.addr().port());
    assert_eq!(header(&headers, "Location"), Some(expected.as_str()));
    assert_eq!(header(&headers, "Connection"), Some("close"));
    // The Location names the certificate's host whatever the request's
    // (allowed) Host was: it is never built from the request.
    let mut s = common::connect(addr);
    s.write_all(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let (status, headers, _) = common::read_response_head(&mut s);
    assert!(status.starts_with("HTTP/1.1 308 "), "{status}");
    let expected = format!("https://localhost:{}/a", server.addr().port());
    assert_eq!(header(&headers, "Location"), Some(expected.as_str()));
    assert_eq!(header(&headers, "Cache-Control"), Some("no-store"));
    // Without a Host, with one that is not a host, or with one this server
    // does not answer to, there is no redirect at all (no open redirect).
    for (request, want) in [
        ("GET / HTTP/1.1\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\nHost: x@evil.com\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", "421"),
    ] {
        let mut s = common::connect(addr);
        s.write_all(request.as_bytes()).unwrap();
        let (status, headers, _) = common::read_response_head(&mut s);
        assert!(
            status.starts_with(&format!("HTTP/1.1 {want} ")),
            "{request:?}: {status}"
        );
        assert_eq!(header(&headers, "Location"), None);
    }
}

#[test]
fn the_redirect_host_can_be_configured() {
    let args = tls_args(&repo("certs/localhost.pem"), &repo("certs/localhost.key"));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let server = Server::start_with_config(
        r#"{"tls":{"redirect_listen":"127.0.0.1:0","redirect_host":"app.example:443"},"allowed_hosts":["app.example","localhost"]}"#,
        &args,
    );
    assert!(server.wait_for_log("redirecting to https from", Duration::from_secs(5)));
    let line = server
        .logs()
        .into_iter()
        .find(|l| l.contains("redirecting to https from"))
        .unwrap();
    let addr: std::net::SocketAddr = line
        .split("from ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut s = common::connect(addr);
    s.write_all(b"GET /x?y HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, headers, _) = common::read_response_head(&mut s);
    assert!(status.starts_with("HTTP/1.1 308 "), "{status}");
    assert_eq!(
        header(&headers, "Location"),
        Some("https://app.example/x?y")
    );
}
