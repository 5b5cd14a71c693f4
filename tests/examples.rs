//! `examples/echo.rs`, `examples/chat.rs` and `examples/quiz.rs`, built by
//! cargo test, run as processes and spoken to by tungstenite: the custom
//! handler answers, the chat pushes every message and a thread's ticks to
//! every connection, and the Socket.IO quiz asks a client for an ack and
//! hears the answer.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// An example's binary: cargo builds examples beside the test binaries
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
            .args(["build", "-q", "-p", "palisade", "--example", name])
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

/// Starts an example with `args` and waits for its `listening on ADDR`
/// log line (its stderr is drained on a thread so it never blocks).
fn start(name: &str, args: &[&str]) -> (Running, SocketAddr) {
    let bin = example(name);
    let mut child = Command::new(&bin)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let name = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{name}] {line}");
            if let Some(i) = line.find("listening on ") {
                let addr = line[i + 13..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("`listening on` within 10 s");
    (Running(child), addr.parse().unwrap())
}

fn client(addr: SocketAddr) -> Ws {
    let (ws, response) = tungstenite::connect(format!("ws://{addr}/ws")).unwrap();
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    ws
}

fn text(ws: &mut Ws) -> String {
    match ws.read().unwrap() {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn the_echo_example_is_a_custom_handler() {
    let (_server, addr) = start("echo", &["127.0.0.1:0"]);
    let mut ws = client(addr);
    assert_eq!(text(&mut ws), "hello");
    ws.send(Message::text("shout this")).unwrap();
    assert_eq!(text(&mut ws), "SHOUT THIS");
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![3u8, 2, 1]));
    ws.close(None).unwrap();
}

#[test]
fn the_chat_example_pushes_to_every_connection() {
    let (_server, addr) = start("chat", &["127.0.0.1:0", "1"]);
    let mut a = client(addr);
    let joined_a = text(&mut a);
    assert!(joined_a.ends_with(" joined"), "{joined_a}");
    let id_a = joined_a.trim_end_matches(" joined").to_owned();
    let mut b = client(addr);
    // Both hear that b joined (a first, through the handle).
    let joined_b = text(&mut b);
    assert!(joined_b.ends_with(" joined"), "{joined_b}");
    let seen_by_a = next_not_tick(&mut a);
    assert_eq!(seen_by_a, joined_b);
    a.send(Message::text("hello, everyone")).unwrap();
    let line = format!("{id_a}: hello, everyone");
    assert_eq!(next_not_tick(&mut a), line);
    assert_eq!(next_not_tick(&mut b), line);
    // The thread outside any callback reaches both.
    let t = Instant::now();
    for ws in [&mut a, &mut b] {
        loop {
            let m = text(ws);
            if m.starts_with("server time ") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "no tick: {m}");
        }
    }
}

/// The next message that is not a clock tick.
fn next_not_tick(ws: &mut Ws) -> String {
    loop {
        let m = text(ws);
        if !m.starts_with("server time ") {
            return m;
        }
    }
}

/// A Socket.IO client of `examples/quiz.rs`, speaking the protocol's frames.
fn sio(addr: SocketAddr) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, response) = tungstenite::connect(url).unwrap();
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let open = text(&mut ws);
    assert!(open.starts_with(r#"0{"sid":""#), "{open}");
    ws
}

#[test]
fn the_quiz_example_asks_for_an_ack_and_hears_it() {
    let (_server, addr) = start("quiz", &["127.0.0.1:0"]);
    let mut ws = sio(addr);
    ws.send(Message::text("40/quiz,")).unwrap();
    assert!(text(&mut ws).starts_with(r#"40/quiz,{"sid":""#));
    // The server's event asks for ack 0; the client's answer comes back
    // to the handler's on_ack.
    assert_eq!(text(&mut ws), r#"42/quiz,0["question","2 + 2?"]"#);
    ws.send(Message::text("43/quiz,0[4]")).unwrap();
    assert_eq!(text(&mut ws), r#"42/quiz,["verdict","right"]"#);
    // An event with an ack, in another namespace.
    ws.send(Message::text("40")).unwrap();
    assert!(text(&mut ws).starts_with(r#"40{"sid":""#));
    ws.send(Message::text(r#"427["ping"]"#)).unwrap();
    assert_eq!(text(&mut ws), r#"437["pong"]"#);
    // A wrong answer on a second connection.
    let mut other = sio(addr);
    other.send(Message::text("40/quiz,")).unwrap();
    let _joined = text(&mut other);
    assert_eq!(text(&mut other), r#"42/quiz,0["question","2 + 2?"]"#);
    other.send(Message::text("43/quiz,0[5]")).unwrap();
    assert_eq!(text(&mut other), r#"42/quiz,["verdict","wrong"]"#);
}
