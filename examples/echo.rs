//! A custom application: every text message comes back in capitals, every
//! binary one reversed, and each connection is greeted.
//!
//!     cargo run --example echo -- 127.0.0.1:9000
use palisade::config::{AuthConfig, AuthMode};
use palisade::{Config, Context, Handler, Message, Server};

struct Shout;

impl Handler for Shout {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = cx.send_text("hello");
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => cx.send_text(text.as_str().to_uppercase().as_str()),
            Message::Binary(data) => {
                cx.send_binary(&data.iter().rev().copied().collect::<Vec<_>>())
            }
        };
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        listen: std::env::args()
            .nth(1)
            .unwrap_or_else(|| "127.0.0.1:8080".into()),
        // No login (keep it on loopback); every other setting is the default.
        auth: AuthConfig {
            mode: AuthMode::None,
            ..AuthConfig::default()
        },
        ..Config::default()
    };
    Server::new(config, Shout)?.run()?;
    Ok(())
}
