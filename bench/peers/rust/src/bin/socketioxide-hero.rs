//! The hero application on socketioxide (Socket.IO over hyper and tokio's
//! current-thread runtime): `get_name` is answered with a `name` event and,
//! when the client asks for one, the same data as the ack, as palisade's
//! hero application answers it over Socket.IO.
//!
//!     socketioxide-hero PORT
//!
//! Listens on 127.0.0.1:PORT, path /socket.io/, polling and WebSocket.

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use tokio::net::TcpListener;

const HEROES: [(&str, &str); 5] = [
    ("ironMan", "Tony Stark"),
    ("hulk", "Bruce Banner"),
    ("wonderWoman", "Diana"),
    ("batMan", "Bruce Wayne"),
    ("blackPanther", "T'Challa"),
];

#[derive(Deserialize)]
struct Ask {
    hero: String,
}

#[derive(Serialize)]
struct Name<'a> {
    hero: &'a str,
    hero_name: &'a str,
}

#[derive(Serialize)]
struct Unknown<'a> {
    code: &'a str,
    message: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or("usage: socketioxide-hero PORT")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(port))
}

async fn serve(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let (svc, io) = SocketIo::new_svc();
    io.ns("/", async |s: SocketRef| {
        s.on(
            "get_name",
            async |s: SocketRef, Data(ask): Data<Ask>, ack: AckSender| {
                match HEROES.iter().find(|(id, _)| *id == ask.hero) {
                    Some((_, name)) => {
                        let reply = Name {
                            hero: &ask.hero,
                            hero_name: name,
                        };
                        s.emit("name", &reply).ok();
                        ack.send(&reply).ok();
                    }
                    None => {
                        let e = Unknown {
                            code: "unknown_hero",
                            message: format!("no hero {:?}", ask.hero),
                        };
                        s.emit("error", &e).ok();
                        ack.send(&e).ok();
                    }
                }
            },
        );
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}
