//! Server push: every message is broadcast to every open connection through
//! the server's handle, and a thread of its own announces the time every
//! few seconds, outside any callback.
//!
//!     cargo run --example chat -- 127.0.0.1:9000 [seconds between ticks]
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade::config::{AuthConfig, AuthMode};
use palisade::{Closed, Config, Context, Handler, Message, Server};

struct Chat;

impl Handler for Chat {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = cx.handle().broadcast_text(format!("{} joined", cx.id()));
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            // Queued for every open connection, the sender's own included.
            let _ = cx
                .handle()
                .broadcast_text(format!("{}: {}", cx.id(), text.as_str()));
        }
    }

    fn on_close(&mut self, _closed: &Closed<'_>) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let config = Config {
        listen: args.next().unwrap_or_else(|| "127.0.0.1:8080".into()),
        // No login (keep it on loopback); every other setting is the default.
        auth: AuthConfig {
            mode: AuthMode::None,
            ..AuthConfig::default()
        },
        ..Config::default()
    };
    let tick = Duration::from_secs(args.next().and_then(|s| s.parse().ok()).unwrap_or(10));
    let mut server = Server::new(config, Chat)?;
    let handle = server.handle();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(tick);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if handle.broadcast_text(format!("server time {now}")).is_err() {
                return; // the server has stopped
            }
        }
    });
    server.run()?;
    Ok(())
}
