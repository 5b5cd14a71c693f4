//! Socket.IO (protocol version 5) over Engine.IO (version 4, in
//! [`crate::proto::engineio`]): what the official Socket.IO clients speak.
//! `packet` is the packet codec and `session` one session's state machine
//! (heartbeat, CONNECT and namespaces, events, acks, attachments), pure
//! code like the WebSocket core. `net::sio` carries a session over a
//! WebSocket; long-polling is not served yet.

pub mod packet;
pub mod session;
