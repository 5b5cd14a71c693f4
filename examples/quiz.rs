//! A Socket.IO application written against the handler trait itself: a
//! `/quiz` namespace where the server asks a question and waits for the
//! client's ack, and any namespace's `ping` is acked with `pong`. The
//! official clients reach it unchanged:
//!
//! ```js
//! const quiz = io("http://127.0.0.1:9000/quiz");
//! quiz.on("question", (q, answer) => answer(4));
//! quiz.on("verdict", (v) => console.log(v));   // "right"
//! ```
//!
//!     cargo run --example quiz -- 127.0.0.1:9000
use palisade::config::{AuthConfig, AuthMode};
use palisade::{Config, Context, Handler, Message, RawValue, Server, SocketAck, SocketEvent};

#[derive(Default)]
struct Quiz {
    /// The ack id of the question asked on each connection's `/quiz`.
    asked: std::collections::HashMap<palisade::ConnId, u64>,
}

/// JSON text kept as it is: what `emit_raw` and `ack_raw` send.
fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).expect("valid JSON")
}

impl Handler for Quiz {
    fn namespaces(&self) -> &[&'static str] {
        &["/quiz"]
    }

    fn on_join(&mut self, cx: &mut Context<'_>, namespace: &str, _auth: &serde_json::Value) {
        if namespace == "/quiz" {
            let q = raw(r#""2 + 2?""#);
            if let Ok(Some(id)) = cx.emit_with_ack("question", &[&q], &[]) {
                self.asked.insert(cx.id(), id);
            }
        }
    }

    fn on_event(&mut self, cx: &mut Context<'_>, event: &SocketEvent<'_>) {
        if event.name == "ping" {
            cx.ack_raw(&[&raw(r#""pong""#)], &[]);
        }
    }

    fn on_ack(&mut self, cx: &mut Context<'_>, ack: &SocketAck<'_>) {
        if self.asked.get(&cx.id()) != Some(&ack.id) {
            return;
        }
        self.asked.remove(&cx.id());
        let right = ack.args.first().map(|a| a.get()) == Some("4");
        let verdict = if right { r#""right""# } else { r#""wrong""# };
        let _ = cx.emit_raw("verdict", &[&raw(verdict)], &[]);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, _message: Message<'_>) {
        // A raw WebSocket client on /ws.
        let _ = cx.send_text("this server speaks Socket.IO on /socket.io/");
    }

    fn on_close(&mut self, closed: &palisade::Closed<'_>) {
        self.asked.remove(&closed.id);
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
    Server::new(config, Quiz::default())?.run()?;
    Ok(())
}
