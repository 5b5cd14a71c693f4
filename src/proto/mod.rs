//! The sans-IO RFC 6455 core: no sockets, no clock, no randomness.
//!
//! ```text
//!  bytes from peer ──► handshake::HeadReader ──► parse_request ──► UpgradeRequest
//!                                                                      │
//!                                           Policy::decide ◄───────────┘
//!                                                │ Accept / Reject
//!                                     respond ───┴──► 101 or error bytes
//!  bytes from peer ──► WebSocket::handle_input ──► Event (Text/Binary/Ping/Pong/Close)
//!                              │                        │ app replies via Sender
//!                              └──────► WebSocket::output() ──► bytes to peer
//!  now ──► WebSocket::handle_timeout / poll_timeout (idle ping, close timeout)
//! ```
//!
//! This module depends on nothing else in the crate: it is the part an
//! embedder or a fuzzer uses on its own.

use std::time::Duration;

pub mod close;
pub mod conn;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod host;
pub mod mask;
pub mod stamp;
pub mod utf8;

/// The limits the core enforces. See `config::Limits` for the settings and
/// the reasons behind each default.
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
