//! palisade: a secure WebSocket server on a single-threaded event loop.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod proto;
