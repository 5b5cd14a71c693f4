//! The sans-IO RFC 6455 core of palisade: no sockets, no clock, no
//! randomness, no global state, and no `std` (`#![no_std]` with `alloc`).
//!
//! ```text
//!  bytes from peer ──► handshake::HeadReader ──► parse_request ──► UpgradeRequest
//!                                                                      │
//!                                           Policy::decide ◄───────────┘
//!                                                │ Accept / Reject
//!                                     respond ───┴──► 101 (or the caller's refusal)
//!  bytes from peer ──► WebSocket::handle_input ──► Event (Text/Binary/Ping/Pong/Close)
//!                              │                        │ replies through a Sender
//!                              └──────► WebSocket::output() ──► bytes to peer
//!  now ──► WebSocket::handle_timeout / poll_timeout (idle ping, close timeout)
//! ```
//!
//! [`engineio`] is the same for Engine.IO version 4, the transport under
//! Socket.IO: its query, errors, packets, payloads and heartbeat.
//!
//! Time is passed in by the caller as a [`Stamp`]: milliseconds since an
//! epoch the caller chooses (and keeps for the life of a connection). The
//! crate never reads a clock.
//!
//! Every MUST of RFC 6455 it enforces cites its section where it is
//! enforced. A complete blocking echo server on `std::net` is
//! `examples/proto_blocking.rs`, shown in the crate's README.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
#[macro_use]
extern crate std;

use core::time::Duration;

pub mod close;
pub mod conn;
pub mod engineio;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod host;
pub mod mask;
pub mod stamp;
pub mod utf8;

pub use stamp::Stamp;

/// The limits the core enforces. palisade's settings of the same names
/// (`limits.*`, its `config::LimitsConfig`) give the reason for each
/// default; these defaults are the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request head cap in bytes (`limits.max_request_head_bytes`).
    pub max_request_head_bytes: usize,
    /// Header field cap (`limits.max_headers`).
    pub max_headers: usize,
    /// Largest frame payload (`limits.max_frame_bytes`).
    pub max_frame_bytes: u64,
    /// Largest message, all fragments together (`limits.max_message_bytes`).
    pub max_message_bytes: u64,
    /// Most frames in one message (`limits.max_fragments`).
    pub max_fragments: u32,
    /// Outbound bytes queued before the peer is a slow consumer
    /// (`limits.max_outbound_bytes`).
    pub max_outbound_bytes: usize,
    /// Silence before a ping, and again before giving up (`limits.idle_timeout_ms`).
    pub idle_timeout: Duration,
    /// Wait for the peer's close after ours (`limits.close_timeout_ms`).
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_head_bytes: 8192,
            max_headers: 64,
            max_frame_bytes: 65536,
            max_message_bytes: 65536,
            max_fragments: 1024,
            max_outbound_bytes: 1 << 20,
            idle_timeout: Duration::from_millis(30_000),
            close_timeout: Duration::from_millis(3_000),
        }
    }
}
