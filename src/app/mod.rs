//! The two applications the daemon serves (SPEC.md §6), each a
//! [`Handler`]: hero look-ups over JSON, and an echo for conformance
//! testing. Neither knows which transport carries its messages.

pub mod hero;

pub use hero::Heroes;

use crate::handler::{Context, Handler, Message, SocketEvent, Text};
use crate::proto::error::code;

/// The subprotocol both applications confirm when a client offers it.
pub const PROTOCOL: &str = "palisade.v1";

/// Hero look-ups (`get_name`, `list_heroes`); JSON text only.
#[derive(Clone, Debug, Default)]
pub struct Hero {
    heroes: Heroes,
}

impl Hero {
    /// The application over these heroes.
    pub fn new(heroes: Heroes) -> Hero {
        Hero { heroes }
    }

    /// The heroes it answers about.
    pub fn heroes(&self) -> &Heroes {
        &self.heroes
    }
}

impl Handler for Hero {
    fn protocols(&self) -> &[&'static str] {
        &[PROTOCOL]
    }

    /// Greets an authenticated user with `user_authorized` (SPEC.md §6).
    fn on_open(&mut self, cx: &mut Context<'_>) {
        if let Some(name) = cx.user() {
            let _ = cx.send_text_with(|out| {
                out.extend_from_slice(br#"{"event":"user_authorized","data":{"username":"#);
                serde_json::to_writer(&mut *out, name).expect("a string serializes");
                out.extend_from_slice(b"}}");
            });
        }
    }

    /// A Socket.IO `get_name` for a known hero is answered from the reply
    /// serialized once (the `name` event, and the ack when asked); every
    /// other event goes to [`Handler::on_message`] as the raw protocol's
    /// JSON, which answers it the same way the raw endpoint does.
    fn on_event(&mut self, cx: &mut Context<'_>, event: &SocketEvent<'_>) {
        #[derive(serde::Deserialize)]
        struct Ask<'a> {
            hero: &'a str,
        }
        if event.name == "get_name" && event.args.len() == 1 && event.binary.is_empty() {
            let ask = event.arg::<Ask<'_>>(0);
            let data = ask.as_ref().and_then(|a| self.heroes.reply_data(a.hero));
            if let (Some(data), Some(ask)) = (data, &ask) {
                let _ = cx.emit_raw("name", &[data], &[]);
                cx.ack_raw(&[data], &[]);
                self.heroes.announce(cx, ask.hero.as_bytes());
                return;
            }
        }
        let text = event.to_message();
        self.on_message(cx, Message::Text(Text::from(text.as_str())));
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        match message {
            Message::Text(text) => self.heroes.handle_text(text, cx),
            // SPEC.md §6: the hero application speaks JSON text only.
            Message::Binary(_) => {
                cx.close(code::UNSUPPORTED_DATA, "binary messages are not supported")
            }
        }
    }
}

/// Echo: text as text, binary as binary, and nothing else (not even a
/// greeting), so that it echoes exactly what it receives.
///
/// Socket.IO clients meet the reference server of the Socket.IO protocol's
/// test suite: on joining `/` or `/custom` the event `auth` carries the
/// CONNECT's payload; in `/`, `message` comes back as `message-back` with
/// the same arguments (binary ones included) and `message-with-ack` is
/// acked with them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn protocols(&self) -> &[&'static str] {
        &[PROTOCOL]
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => cx.send_text(text),
            Message::Binary(data) => cx.send_binary(data),
        };
    }

    fn namespaces(&self) -> &[&'static str] {
        &["/custom"]
    }

    fn on_join(&mut self, cx: &mut Context<'_>, _namespace: &str, auth: &serde_json::Value) {
        let _ = cx.emit("auth", std::slice::from_ref(auth), &[]);
    }

    fn on_event(&mut self, cx: &mut Context<'_>, event: &SocketEvent<'_>) {
        let binary: Vec<&[u8]> = event.binary.iter().map(Vec::as_slice).collect();
        match (event.namespace, event.name) {
            ("/", "message") => {
                let _ = cx.emit_raw("message-back", event.args, &binary);
            }
            ("/", "message-with-ack") => {
                cx.ack_raw(event.args, &binary);
            }
            _ => {}
        }
    }
}
