//! Echo WebSocket server on tokio-tungstenite: every text or binary message is
//! sent back unchanged; tungstenite answers pings and close frames itself.
//!
//!     tokio-tungstenite-echo PORT
//!
//! Listens on 127.0.0.1:PORT, any path, one thread, one task per connection.

use std::future::poll_fn;
use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Error;

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
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        let _ = echo(stream).await;
                    });
                }
                // Out of file descriptors and the like: keep serving the open connections.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
}

async fn echo(stream: TcpStream) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    let mut unflushed = false;
    loop {
        // As `StreamExt::forward` does: echoes are queued with `feed` and
        // flushed once no further message is ready, so a burst costs one write.
        let next = poll_fn(|cx| match ws.poll_next_unpin(cx) {
            Poll::Pending if unflushed => match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    unflushed = false;
                    Poll::Pending
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                Poll::Pending => Poll::Pending,
            },
            ready_or_idle => ready_or_idle,
        })
        .await;
        match next {
            Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                ws.feed(msg).await?;
                unflushed = true;
            }
            Some(Ok(_)) => {}
            Some(Err(Error::ConnectionClosed)) | None => return Ok(()),
            Some(Err(e)) => return Err(e),
        }
    }
}

fn port_from_args() -> u16 {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| die("usage: tokio-tungstenite-echo PORT"));
    arg.parse()
        .unwrap_or_else(|_| die(&format!("invalid port {arg:?}")))
}

fn die(msg: &str) -> ! {
    eprintln!("tokio-tungstenite-echo: {msg}");
    std::process::exit(2)
}
