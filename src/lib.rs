//! palisade: a secure WebSocket server on a single-threaded event loop, and
//! a sans-IO RFC 6455 core that works without it.
//!
//! ```text
//!   socket ──► net (mio loop, deadlines, backpressure)
//!                 │ bytes                         ▲ bytes
//!                 ▼                               │
//!              proto (pure: handshake, frames, UTF-8, close)
//!                 │ UpgradeRequest      │ Event (Text/Binary/...)
//!                 ▼                     ▼
//!              security::Gate       app (hero / echo) ──► Sender
//!   non-upgrade requests ──► http (static files, /healthz)
//! ```
//!
//! Dependencies point one way: `app` → `security` → `net` → `proto`;
//! [`proto`] depends on nothing else in the crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod http;
pub mod log;
pub mod net;
pub mod router;
pub mod server;
pub use palisade_proto as proto;
pub mod security;
pub mod tls;

pub use config::Config;
pub use server::{Builder, Error, Server};
