//! Applications behind the WebSocket path (SPEC.md §6).

pub mod hero;

pub use hero::Heroes;

use crate::proto::conn::{Event, Sender};
use crate::proto::error::code;

/// The application that answers messages on every connection.
#[derive(Debug)]
pub enum App {
    /// Hero look-ups over JSON.
    Hero(Heroes),
    /// Echo: text as text, binary as binary (for conformance testing).
    Echo,
}

/// Subprotocols the server can confirm.
pub const PROTOCOLS: &[&str] = &["palisade.v1"];

impl App {
    /// Runs once after the `101`: the hero application greets an
    /// authenticated user with `user_authorized` (SPEC.md §6); echo sends
    /// nothing, so that it echoes exactly what it receives.
    pub fn on_open(&self, username: Option<&str>, tx: &mut Sender<'_>) {
        if let (App::Hero(_), Some(name)) = (self, username) {
            let _ = tx.send_text_with(|out| {
                out.extend_from_slice(br#"{"event":"user_authorized","data":{"username":"#);
                serde_json::to_writer(&mut *out, name).expect("a string serializes");
                out.extend_from_slice(b"}}");
            });
        }
    }

    /// Handles one event from a connection, replying through `tx`.
    pub fn on_event(&self, event: Event<'_>, tx: &mut Sender<'_>) {
        match (self, event) {
            (App::Echo, Event::Text(text)) => {
                let _ = tx.send_text(text);
            }
            (App::Echo, Event::Binary(data)) => {
                let _ = tx.send_binary(data);
            }
            (App::Hero(heroes), Event::Text(text)) => heroes.handle_text(text, tx),
            (App::Hero(_), Event::Binary(_)) => {
                // SPEC.md §6: the hero application speaks JSON text only.
                tx.close(code::UNSUPPORTED_DATA, "binary messages are not supported");
            }
            _ => {}
        }
    }
}
