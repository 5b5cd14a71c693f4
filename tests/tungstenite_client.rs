//! A client nobody here wrote (tungstenite) against the echo and hero
//! applications: text, binary, ping and the close handshake.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, client::IntoClientRequest};

fn connect(server: &Server, protocol: Option<&str>) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("ws://{}/ws", server.addr())
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, response) = tungstenite::client(request, stream).unwrap();
    assert_eq!(response.status(), 101);
    if let Some(p) = protocol {
        assert_eq!(response.headers()["Sec-WebSocket-Protocol"], p);
    }
    ws
}

#[test]
fn text_binary_ping_and_close_with_echo() {
    let server = Server::start(&["--app", "echo"]);
    let mut ws = connect(&server, None);
    ws.send(Message::text("hello ünïcode")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello ünïcode"));
    let blob: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let server_big = Server::start(&[
        "--app",
        "echo",
        "--max-message-bytes",
        "100000",
        "--max-frame-bytes",
        "100000",
    ]);
    let mut big = connect(&server_big, None);
    big.send(Message::binary(blob.clone())).unwrap();
    assert_eq!(big.read().unwrap(), Message::binary(blob));
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected close, got {other:?}"),
    }
    // The server closes TCP: tungstenite then reports a clean close.
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
}

#[test]
fn hero_lookups_with_the_palisade_subprotocol() {
    let server = Server::start(&[]);
    let mut ws = connect(&server, Some("palisade.v1"));
    ws.send(Message::text(
        r#"{"event":"get_name","data":{"hero":"blackPanther"},"id":9}"#,
    ))
    .unwrap();
    let reply = ws.read().unwrap();
    let v: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"event":"name","data":{"hero":"blackPanther","hero_name":"T'Challa"},"id":9})
    );
    ws.send(Message::binary(vec![1])).unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Unsupported),
        other => panic!("expected close 1003, got {other:?}"),
    }
}
