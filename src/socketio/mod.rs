//! Socket.IO (protocol version 5) over Engine.IO (version 4, in
//! [`crate::proto::engineio`]): what the official Socket.IO clients speak.
//! `packet` is the packet codec, pure code like the WebSocket core.

pub mod packet;
