//! Echo WebSocket server on fastwebsockets, after its `echo_server` example:
//! hyper 1 performs the upgrade, a `FragmentCollector` reassembles messages,
//! every text or binary message is written back unchanged and pings and close
//! frames are answered by the library (auto_pong, auto_close).
//!
//!     fastwebsockets-echo PORT
//!
//! Listens on 127.0.0.1:PORT, any path, one thread, one task per connection.

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

fn main() {
    let port = port_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| die(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors and the like: keep serving the open connections.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    });
}

fn port_from_args() -> u16 {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| die("usage: fastwebsockets-echo PORT"));
    arg.parse()
        .unwrap_or_else(|_| die(&format!("invalid port {arg:?}")))
}

fn die(msg: &str) -> ! {
    eprintln!("fastwebsockets-echo: {msg}");
    std::process::exit(2)
}
