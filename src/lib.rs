//! palisade: a secure WebSocket server on a single-threaded mio event loop,
//! around a sans-IO RFC 6455 core ([`proto`], the `palisade-proto` crate)
//! that works without it.
//!
//! Run your own application by implementing [`Handler`] and handing it to a
//! [`Server`]:
//!
//! ```no_run
//! use palisade::{Config, Context, Handler, Message, Server};
//!
//! struct Shout;
//!
//! impl Handler for Shout {
//!     fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
//!         if let Message::Text(text) = message {
//!             let _ = cx.send_text(text.as_str().to_uppercase().as_str());
//!         }
//!     }
//! }
//!
//! let mut config = Config::default();
//! config.auth.mode = palisade::config::AuthMode::None; // no login: loopback only
//! let mut server = Server::new(config, Shout)?;
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the server does before a message reaches the handler (TLS, the
//! request head, `Host`, Origin, credentials, rate limits and quotas, the
//! frame rules) is configured by [`Config`]; the protocol itself is
//! [`proto`]. [`Handle`] reaches connections from outside a callback.
//!
//! ```text
//!   socket ──► net (mio loop, accept, deadlines, TLS pumping, backpressure)
//!                 │ request head                   │ bytes of a WebSocket
//!                 ▼                                ▼
//!              router ──► http (files, /login)   proto (frames, UTF-8, close)
//!                 │  └──► security (hosts, origin, Gate: credentials)
//!                 ▼                                │ Message
//!              101 ─────────────────────────────► Handler ──► Context / Handle
//! ```
//!
//! Modules depend one way (each only on those below it; `tests/layering.rs`
//! checks it): `proto` (its own crate) < `config` < `log` < `tls`,
//! `security`, `socketio`, `metrics`, `cluster` < `http` < `router` < `handler` < `net` < `app` < `server`.
//! `docs/ARCHITECTURE.md` describes each and the path of one message.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod http;
mod log;
mod metrics;
mod net;
mod router;
mod security;
mod server;
pub mod socketio;
mod tls;

pub use palisade_proto as proto;

pub use app::{Echo, Hero, Heroes};
pub use config::Config;
pub use handler::{
    COMMAND_QUEUE, Closed, ConnId, Context, Handle, HandleError, Handler, Message, Outgoing,
    RawValue, SendError, SocketAck, SocketEvent, Target, Text,
};
pub use http::publish::publish;
pub use log::demo_login_line;

/// `cluster.redis_url` as palisade logs it: the password as `***` (the
/// URL unchanged when it does not parse: it holds no password then, or
/// the server refuses to start with it).
pub fn redis_url_redacted(url: &str) -> String {
    match cluster::Target::parse(url) {
        Ok(t) => t.redacted(),
        Err(_) if url.contains('@') => "<unparsable, hidden>".to_owned(),
        Err(_) => url.to_owned(),
    }
}
pub use server::{Builder, Error, Server, Workers, check_config};

/// Users files and tokens: what `palisade users` and a login flow of your
/// own need (SPEC.md §5).
pub mod auth {
    pub use crate::security::apikeys::ApiKeys;
    pub use crate::security::jwt::Signer;
    pub use crate::security::password::{
        DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, PasswordHash,
    };
    pub use crate::security::users::{Username, Users};
}
