//! `examples/proto_blocking.rs` (the README's server) run as a process and
//! spoken to by tungstenite: it echoes, answers pings, closes cleanly, and
//! refuses what is not an upgrade.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::Message;

/// The example's binary: cargo builds examples beside the test binaries
/// (`target/<profile>/examples/`, one level above `deps/`).
/// `cargo test` builds them first; a run of this test alone builds the
/// one it needs.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("examples").join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "palisade-proto", "--example", name])
            .status()
            .expect("cargo build --example");
        assert!(status.success(), "cargo build --example {name} failed");
    }
    bin
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example on a free port and waits for `listening on ADDR`.
fn start() -> (Running, SocketAddr) {
    let bin = example("proto_blocking");
    let mut child = Command::new(&bin)
        .arg("127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().expect("a line on stderr").unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .expect(&line)
        .parse()
        .unwrap();
    (Running(child), addr)
}

#[test]
fn the_blocking_example_echoes_and_closes() {
    let (_server, addr) = start();
    let (mut ws, response) = tungstenite::connect(format!("ws://{addr}/ws")).unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello, proto")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello, proto"));
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3]));
    ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"p".to_vec().into()));
    ws.close(None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                // An empty close is answered with 1000 (RFC 6455 §5.5.1).
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
            }
            Ok(other) => panic!("after close: {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline);
    }
}

#[test]
fn the_blocking_example_refuses_what_is_not_an_upgrade() {
    let (_server, addr) = start();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nUpgrade: websocket\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nnot a WebSocket upgrade request\n"),
        "{answer}"
    );
}

#[test]
fn the_readme_shows_the_example_as_it_is() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let example = std::fs::read_to_string(dir.join("examples/proto_blocking.rs")).unwrap();
    assert!(
        readme.contains(&example),
        "README.md and examples/proto_blocking.rs differ"
    );
    let code = example
        .lines()
        .filter(|l| {
            !l.trim().is_empty() && !l.trim_start().starts_with("//") && !l.starts_with("use ")
        })
        .count();
    assert!(code < 40, "{code} lines of code");
}
